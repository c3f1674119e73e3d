// `g8os hub upload`: streams a tarball to a hub as multipart/form-data (assembled here, with
// the length known up front, so nothing is buffered) and shows a progress bar on stderr.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { closingPart, fieldPart, filePart, hubTarget, parseJson, refusal } from './hub-client';
import { formatBytes, UsageError } from './util';

export interface UploadOptions {
  hub: string;
  token: string;
  name?: string;
  meta?: Record<string, string>;
  /** progress bar (TTY) or one summary line on this stream */
  progress?: NodeJS.WriteStream;
}

export interface UploadAnswer {
  name: string;
  url: string;
  job?: string;
  files: Record<string, number>;
}

const READ_CHUNK = 1024 * 1024;
const IDLE_TIMEOUT_MS = 10 * 60_000; // the hub may be busy finishing a big flist after the last byte

/** Upload and publish; resolves with the hub's answer, rejects with a one-line reason. */
export async function uploadTarball(file: string, opts: UploadOptions): Promise<UploadAnswer> {
  const { url: base, text: hubText } = hubTarget(opts.hub);
  const st = await fs.promises.stat(file).catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${e.code ?? e.message}`);
  });
  if (!st.isFile()) throw new UsageError(`${file} is not a regular file`);

  const boundary = `g8os-${crypto.randomBytes(12).toString('hex')}`;
  const fields: Buffer[] = [];
  if (opts.name) fields.push(fieldPart(boundary, 'name', opts.name));
  for (const [k, v] of Object.entries(opts.meta ?? {})) fields.push(fieldPart(boundary, `metadata-${k}`, v));
  const head = Buffer.concat([...fields, filePart(boundary, path.basename(file))]);
  const tail = closingPart(boundary);
  const total = head.length + st.size + tail.length;

  const target = new URL(`${base.pathname.replace(/\/+$/, '')}/api/flist/me/upload`, base);
  const progress = new Progress(opts.progress ?? process.stderr, st.size, path.basename(file));
  const mod = target.protocol === 'https:' ? https : http;
  const req = mod.request(target, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${opts.token}`,
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(total),
      'x-job-id': crypto.randomUUID(),
      accept: 'application/json',
    },
  });
  req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no answer for ${IDLE_TIMEOUT_MS / 60_000} minutes`)));

  // The hub may answer before it has read everything (a refusal): stop sending then.
  let answered = false;
  const answer = new Promise<UploadAnswer>((resolve, reject) => {
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', (e) => reject(new Error(`upload to ${hubText} failed: ${e.message}`)));
      res.on('end', () => {
        const body = parseJson(Buffer.concat(parts).toString('utf8')) as { status?: string; payload?: UploadAnswer } | undefined;
        if (res.statusCode === 200 && body?.status === 'success' && body.payload) resolve(body.payload);
        else reject(new Error(`upload refused by ${hubText}: ${refusal(res, body)}`));
        req.destroy();
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (!answered) reject(new Error(`cannot upload to ${hubText}: ${e.code ?? e.message}`));
    });
  });
  answer.catch(() => undefined); // awaited below, after sending

  const sent = (async () => {
    const stop = new Promise<void>((resolve) => {
      req.once('response', () => resolve());
      req.once('close', () => resolve());
    });
    req.write(head);
    const input = fs.createReadStream(file, { highWaterMark: READ_CHUNK });
    try {
      for await (const chunk of input) {
        if (answered || req.destroyed) return;
        progress.add((chunk as Buffer).length);
        if (!req.write(chunk)) await Promise.race([new Promise((r) => req.once('drain', r)), stop]);
      }
      if (!answered && !req.destroyed) req.end(tail);
    } finally {
      input.destroy();
    }
  })();
  try {
    await sent;
    const result = await answer;
    progress.done(result);
    return result;
  } catch (e) {
    progress.stop();
    throw e;
  }
}

/** A cli-progress bar on a TTY; elsewhere just the final summary line. */
class Progress {
  private bar?: import('cli-progress').SingleBar;
  private sent = 0;
  private readonly t0 = Date.now();

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly size: number,
    private readonly label: string,
  ) {
    if (!out.isTTY) return;
    // Loaded only when drawn: the module is not needed for scripted uploads.
    const { SingleBar } = require('cli-progress') as typeof import('cli-progress');
    this.bar = new SingleBar({
      stream: out,
      format: `${label} [{bar}] {percentage}% | {done}/{size} | {rate} | ETA {eta_formatted}`,
      barsize: 30,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    });
    this.bar.start(size, 0, { done: formatBytes(0), size: formatBytes(size), rate: '–' });
  }

  add(n: number): void {
    this.sent += n;
    if (!this.bar) return;
    const secs = (Date.now() - this.t0) / 1000;
    this.bar.update(this.sent, { done: formatBytes(this.sent), rate: secs > 0 ? `${formatBytes(this.sent / secs)}/s` : '–' });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  done(r: UploadAnswer): void {
    this.stop();
    const secs = (Date.now() - this.t0) / 1000;
    const f = r.files ?? {};
    this.out.write(
      `uploaded ${this.label}: ${formatBytes(this.size)} in ${secs.toFixed(1)} s (${formatBytes(this.size / Math.max(secs, 0.001))}/s); ` +
        `${f.regular ?? 0} files, ${f.directory ?? 0} directories, ${f.uploaded_chunks ?? 0} new blocks (${formatBytes(f.uploaded_bytes ?? 0)})\n`,
    );
  }
}
