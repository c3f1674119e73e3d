// The 0-hub JSON API (hub-api.md §6, §7): public listings, inspection and downloads here,
// the authenticated /api/flist/me routes in ./me.ts. Upload routes live in ./upload.ts.
import fs from 'node:fs';
import type net from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import { type Hub, route, sendJson } from './app';
import { meRoutes } from './me';
import { checkName, flistName, HubError, splitTarget, type Registry, type RegistryEntry } from './registry';
import {
  allNames, cleanTarget, contentsDump, findEntry, findFlist, infoObject, knownUser, linkText, metadataOf, repoListing, tagListing,
} from './views';

type Params = Record<string, string>;

/** Like app.ts route(), for handlers that may pass the request on with next(). */
const passable =
  (fn: (req: Request<Params>, res: Response, next: NextFunction) => Promise<void>) =>
  (req: Request<Params>, res: Response, next: NextFunction): void => {
    fn(req, res, next).catch(next);
  };

export function apiRoutes(hub: Hub): void {
  const { app, registry: reg } = hub;
  meRoutes(hub);

  app.get('/api/flist', (_req, res) => sendJson(res, 200, allNames(reg)));
  app.get('/api/repositories', (_req, res) => sendJson(res, 200, reg.users()));
  app.get('/api/fileslist', (_req, res) => {
    const out: Record<string, unknown> = {};
    for (const u of reg.users()) out[u.name] = repoListing(reg, u.name);
    sendJson(res, 200, out);
  });
  app.get('/api/flist/:user', route((req: Request<Params>, res) => {
    sendJson(res, 200, repoListing(reg, knownUser(reg, req.params.user)));
  }));
  app.get('/api/flist/:user/tags/:tag', route((req: Request<Params>, res) => {
    const user = knownUser(reg, req.params.user);
    const tag = checkName(req.params.tag, 'tag name');
    if (!reg.tagExists(user, tag)) throw new HubError(404, 'tag not found');
    sendJson(res, 200, tagListing(reg, user, tag));
  }));
  app.get('/api/flist/:user/:flist', route(async (req: Request<Params>, res) => {
    sendJson(res, 200, await contentsDump(reg, findFlist(reg, req.params.user, req.params.flist)));
  }));
  app.get('/api/flist/:user/:flist/light', route((req: Request<Params>, res) => {
    sendJson(res, 200, infoObject(reg, findEntry(reg, req.params.user, req.params.flist)));
  }));
  app.get('/api/flist/:user/:flist/metadata', route(async (req: Request<Params>, res) => {
    sendJson(res, 200, await metadataOf(reg, findFlist(reg, req.params.user, req.params.flist), hub.config.publicUrl));
  }));
  // A crosstag link is stored without ".flist" (the reference looked the name up raw).
  app.get('/api/flist/:user/:flist/taglink', route((req: Request<Params>, res) => {
    const user = knownUser(reg, req.params.user);
    const raw = flistName(req.params.flist).slice(0, -'.flist'.length);
    const e = reg.entry(user, checkName(raw, 'link name')) ?? reg.entry(user, `${raw}.flist`);
    if (!e) throw new HubError(404, 'source not found');
    if (e.kind !== 'crosstag') throw new HubError(401, 'could not read tag link');
    sendJson(res, 200, { target: cleanTarget(linkText(e)) });
  }));

  // Downloads and descriptions: /<user>/<file>, /<user>/tags/<tag>/<file>, and through a
  // crosstag link /<user>/<link>/<file> (the path the reference's on-disk layout resolved).
  app.get('/:user/tags/:tag/:file', passable(async (req, res, next) => {
    const file = parseFile(req.params.file);
    if (!file) return next();
    const user = knownUser(reg, req.params.user);
    const tag = checkName(req.params.tag, 'tag name');
    const t = reg.tagEntry(user, tag, flistName(file.name));
    const e = t && reg.resolve(...splitTarget(t.target));
    if (!e) throw new HubError(404, 'source not found');
    await serve(hub, req, res, file.kind, `${user}/tags/${tag}`, flistName(file.name), e);
  }));
  app.get('/:user/:link/:file', passable(async (req, res, next) => {
    const file = parseFile(req.params.file);
    if (!file) return next();
    const user = knownUser(reg, req.params.user);
    const e = reg.resolveCrosstag(user, checkName(req.params.link, 'link name'), flistName(file.name));
    if (!e) throw new HubError(404, 'source not found');
    await serve(hub, req, res, file.kind, `${user}/${req.params.link}`, flistName(file.name), e);
  }));
  app.get('/:user/:file', passable(async (req, res, next) => {
    const file = parseFile(req.params.file);
    if (!file) return next();
    const e = findFlist(reg, req.params.user, file.name);
    await serve(hub, req, res, file.kind, req.params.user, flistName(file.name), e);
  }));
}

type FileKind = 'flist' | 'md5' | 'json' | 'txt';

/** "<name>.flist" and friends → the flist name and what to send; undefined = not ours. */
function parseFile(file: string): { name: string; kind: FileKind } | undefined {
  for (const [suffix, kind] of [['.flist.md5', 'md5'], ['.flist', 'flist'], ['.json', 'json'], ['.txt', 'txt']] as const) {
    if (file.endsWith(suffix) && file.length > suffix.length) {
      return { name: kind === 'md5' ? file.slice(0, -'.md5'.length) : kind === 'flist' ? file : file.slice(0, -suffix.length), kind };
    }
  }
  return undefined;
}

async function serve(hub: Hub, req: Request, res: Response, kind: FileKind, where: string, name: string, e: RegistryEntry): Promise<void> {
  const source = `${hub.config.publicUrl}/${where}/${name}`;
  const storage = hub.config.publicUrl;
  if (kind === 'md5') {
    res.status(200).type('text/plain').end(`${e.md5}\n`);
  } else if (kind === 'json') {
    sendJson(res, 200, { flist: name, uploader: where.split('/')[0], source, storage, checksum: e.md5 });
  } else if (kind === 'txt') {
    const lines = [`File:     ${name}`, `Uploader: ${where.split('/')[0]}`, `Source:   ${source}`, `Storage:  ${storage}`, `Checksum: ${e.md5}`];
    res.status(200).type('text/plain').end(`${lines.join('\n')}\n`);
  } else {
    await sendFlist(hub.registry, req, res, e);
  }
}

/** The flist bytes, with the md5 as ETag (conditional GETs answer 304). */
async function sendFlist(reg: Registry, req: Request, res: Response, e: RegistryEntry): Promise<void> {
  const etag = `"${e.md5}"`;
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(reg.filePath(e.file!), 'r');
  } catch {
    throw new HubError(404, 'source not found'); // deleted between lookup and open
  }
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', 'no-cache');
  const inm = req.headers['if-none-match'];
  if (inm && inm.split(',').some((t) => t.trim() === etag || t.trim() === `W/${etag}` || t.trim() === '*')) {
    await fh.close();
    res.status(304).end();
    return;
  }
  res.status(200);
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Content-Length', String(e.size));
  if (req.method === 'HEAD') {
    await fh.close();
    res.end();
    return;
  }
  const stream = fh.createReadStream();
  await new Promise<void>((resolve) => {
    stream.on('error', () => res.destroy());
    res.on('close', () => {
      stream.destroy();
      resolve();
    });
    stream.pipe(res);
  });
}

// -- INFO /api/flist/<user>/<flist> ----------------------------------------------------------
// Node's HTTP parser rejects methods it does not know, so an INFO request never reaches
// Express: it arrives here as a client error carrying the raw request, and is answered
// directly (connection closed afterwards).

const STATUS_TEXT: Record<number, string> = { 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 408: 'Request Timeout', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error' };

function rawResponse(status: number, body?: unknown): string {
  const text = body === undefined ? '' : `${JSON.stringify(body)}\n`;
  const head = [`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`, 'Connection: close', 'Access-Control-Allow-Origin: *'];
  if (body !== undefined) head.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(text)}`);
  return `${head.join('\r\n')}\r\n\r\n${text}`;
}

/** A 'clientError' listener: serves INFO, otherwise answers as Node's default would. */
export function infoMethod(hub: Hub) {
  return (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: net.Socket): void => {
    const busy = (socket as net.Socket & { _httpMessage?: unknown })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || busy) {
      socket.destroy();
      return;
    }
    const line = /^INFO (\S+) HTTP\/1\.[01]\r?\n/.exec(err.rawPacket?.toString('latin1') ?? '');
    if (err.code !== 'HPE_INVALID_METHOD' || !line) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(rawResponse(status));
      return;
    }
    let status = 200;
    let body: unknown;
    try {
      const m = /^\/api\/flist\/([^/?#]+)\/([^/?#]+)\/?(?:[?#].*)?$/.exec(line[1]);
      if (!m) throw new HubError(404, 'not found');
      const [user, flist] = [m[1], m[2]].map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          throw new HubError(400, 'bad percent-encoding in path');
        }
      });
      body = infoObject(hub.registry, findEntry(hub.registry, user, flist));
    } catch (e) {
      status = e instanceof HubError ? e.status : 500;
      body = { status: 'error', message: e instanceof HubError ? e.message : 'internal error' };
    }
    socket.end(rawResponse(status, body));
  };
}
