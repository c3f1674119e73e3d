// HTTP plumbing shared by the `g8os hub …` clients: the hub's base URL, one request function
// (idle timeout, connection failures as one line), the 0-hub answer envelope, multipart parts.
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { UsageError } from './util';

export interface HubTarget {
  url: URL;
  /** the base URL as shown in messages: no trailing slash */
  text: string;
}

export const DEFAULT_TIMEOUT_MS = 60_000;
/** For calls where the hub works for a while before answering (merge, upload-flist). */
export const SLOW_TIMEOUT_MS = 10 * 60_000;
const MAX_ANSWER = 64 * 1024 * 1024;

export function hubTarget(hub: string | undefined): HubTarget {
  if (hub === undefined) throw new UsageError('no hub: pass --hub <url> or set G8OS_HUB');
  let u: URL;
  try {
    u = new URL(hub);
  } catch {
    throw new UsageError(`--hub ${JSON.stringify(hub)}: not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--hub ${hub}: expected an http:// or https:// URL`);
  return { url: u, text: u.origin + u.pathname.replace(/\/+$/, '') };
}

/** The request path for an API path under the hub's base (which may have a path prefix). */
export const hubPath = (hub: HubTarget, p: string): string => `${hub.url.pathname.replace(/\/+$/, '')}${p}`;

/**
 * One path segment. "." and ".." are sent percent-encoded so that nothing on the way
 * collapses them: the hub itself must see (and refuse) such names.
 */
export const seg = (s: string): string => (/^\.+$/.test(s) ? s.replaceAll('.', '%2E') : encodeURIComponent(s));

export interface RequestOptions {
  token?: string;
  body?: Buffer | { stream: Readable; length: number };
  contentType?: string;
  timeoutMs?: number;
}

/** Sends a request; resolves with the response once its head arrived. */
export function hubRequest(hub: HubTarget, method: string, p: string, o: RequestOptions = {}): Promise<http.IncomingMessage> {
  const timeout = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.contentType) headers['content-type'] = o.contentType;
  const body = o.body;
  if (body) headers['content-length'] = String(body.length);
  // The base URL gives host, port and protocol; the path is passed raw (a URL would resolve
  // dot segments).
  const mod = hub.url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(hub.url, { method, path: hubPath(hub, p), headers });
    let answered = false;
    req.setTimeout(timeout, () => req.destroy(new Error(`no answer from hub ${hub.text} within ${Math.round(timeout / 1000)} s`)));
    req.on('response', (res) => {
      answered = true;
      resolve(res);
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (answered) return; // the hub refused before reading all of the body: its answer counts
      if (body && !Buffer.isBuffer(body)) body.stream.destroy();
      reject(e.code ? new Error(`cannot reach hub ${hub.text}: ${e.code}`) : e);
    });
    if (!body) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else {
      body.stream.on('error', (e) => req.destroy(e));
      // A refusal may come before the hub read everything: stop sending, drop the connection.
      req.once('response', (res) => {
        body.stream.unpipe(req);
        body.stream.destroy();
        res.once('end', () => {
          if (!req.writableFinished) req.destroy();
        });
      });
      body.stream.pipe(req);
    }
  });
}

/** The whole response body as text (answers are small JSON; the cap guards against junk). */
export async function readText(res: http.IncomingMessage, max = MAX_ANSWER): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      res.destroy();
      throw new Error(`answer larger than ${max} bytes`);
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts, size).toString('utf8');
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // not our hub, or a proxy's page
  }
}

/** Why an answer is a refusal: the hub's message, else the HTTP status line. */
export function refusal(res: { statusCode?: number; statusMessage?: string }, body: unknown): string {
  const message = (body as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : `HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim();
}

/**
 * A JSON API call: resolves with the parsed answer (an envelope, or a bare listing value);
 * a refusal rejects as "<hub> refused <verb>: <message>".
 */
export async function hubCall(hub: HubTarget, verb: string, method: string, p: string, o: RequestOptions = {}): Promise<unknown> {
  const res = await hubRequest(hub, method, p, o);
  const text = await readText(res).catch((e: Error) => {
    throw new Error(`${hub.text} broke off its answer to ${verb}: ${e.message}`);
  });
  const body = parseJson(text);
  const status = res.statusCode ?? 0;
  if (status >= 200 && status < 300 && body !== undefined && (body as { status?: unknown } | null)?.status !== 'error') return body;
  throw new Error(`${hub.text} refused ${verb}: ${refusal(res, body)}`);
}

/** The payload of a success envelope (undefined when there is none). */
export const payloadOf = <T>(body: unknown): T => (body as { payload?: T }).payload as T;

// -- multipart/form-data, assembled by hand so that a file is streamed with a known length ----

const quote = (s: string): string => s.replace(/["\\\r\n]/g, (c) => (c === '"' ? '%22' : c === '\\' ? '\\\\' : ''));

export function fieldPart(boundary: string, name: string, value: string): Buffer {
  return Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${quote(name)}"\r\n\r\n${value}\r\n`);
}

export function filePart(boundary: string, filename: string): Buffer {
  // Non-ASCII names also go in RFC 5987 form, which busboy prefers.
  const ascii = /^[\x20-\x7e]*$/.test(filename);
  const star = ascii ? '' : `; filename*=UTF-8''${encodeURIComponent(filename)}`;
  return Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quote(ascii ? filename : filename.replace(/[^\x20-\x7e]/g, '_'))}"${star}\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
}

export const closingPart = (boundary: string): Buffer => Buffer.from(`\r\n--${boundary}--\r\n`);
