// The 0-hub JSON API (hub-api.md §6, §7): public listings and inspection here; the
// authenticated /api/flist/me routes in ./me.ts, uploads in ./upload.ts and ./docker.ts,
// downloads in ./downloads.ts.
import type net from 'node:net';
import { type Request, Router } from 'express';
import { invalid, notFound, unauthorized } from '../errors';
import { errorAnswer, route, sendJson } from './http';
import {
  allNames, cleanTarget, contentsDump, findEntry, findFlist, infoObject, knownUser, linkText, metadataOf, repoListing, tagListing,
} from './listings';
import { checkName, flistName, type Registry } from './registry';

type Params = Record<string, string>;

export interface ApiDeps {
  registry: Registry;
  publicUrl: string;
}

export function apiRouter({ registry: reg, publicUrl }: ApiDeps): Router {
  const app = Router();
  // /api/flist/me/... is the caller's own repository (./me.ts), never a user named "me"
  app.use('/flist/me', (_req, _res, next) => next('router'));

  app.get('/flist', (_req, res) => sendJson(res, 200, allNames(reg)));
  app.get('/repositories', (_req, res) => sendJson(res, 200, reg.users()));
  app.get('/fileslist', (_req, res) => {
    const out: Record<string, unknown> = {};
    for (const u of reg.users()) out[u.name] = repoListing(reg, u.name);
    sendJson(res, 200, out);
  });
  app.get('/flist/:user', route((req: Request<Params>, res) => {
    sendJson(res, 200, repoListing(reg, knownUser(reg, req.params.user)));
  }));
  app.get('/flist/:user/tags/:tag', route((req: Request<Params>, res) => {
    const user = knownUser(reg, req.params.user);
    const tag = checkName(req.params.tag, 'tag name');
    if (!reg.tagExists(user, tag)) throw notFound('tag not found');
    sendJson(res, 200, tagListing(reg, user, tag));
  }));
  app.get('/flist/:user/:flist', route(async (req: Request<Params>, res) => {
    sendJson(res, 200, await contentsDump(reg, findFlist(reg, req.params.user, req.params.flist)));
  }));
  app.get('/flist/:user/:flist/light', route((req: Request<Params>, res) => {
    sendJson(res, 200, infoObject(reg, findEntry(reg, req.params.user, req.params.flist)));
  }));
  app.get('/flist/:user/:flist/metadata', route(async (req: Request<Params>, res) => {
    sendJson(res, 200, await metadataOf(reg, findFlist(reg, req.params.user, req.params.flist), publicUrl));
  }));
  // A crosstag link is stored without ".flist" (the reference looked the name up raw).
  app.get('/flist/:user/:flist/taglink', route((req: Request<Params>, res) => {
    const user = knownUser(reg, req.params.user);
    const raw = flistName(req.params.flist).slice(0, -'.flist'.length);
    const e = reg.entry(user, checkName(raw, 'link name')) ?? reg.entry(user, `${raw}.flist`);
    if (!e) throw notFound('source not found');
    if (e.kind !== 'crosstag') throw unauthorized('could not read tag link');
    sendJson(res, 200, { target: cleanTarget(linkText(e)) });
  }));
  return app;
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
export function infoMethod(registry: Registry) {
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
      if (!m) throw notFound('not found');
      const [user, flist] = [m[1], m[2]].map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          throw invalid('bad percent-encoding in path');
        }
      });
      body = infoObject(registry, findEntry(registry, user, flist));
    } catch (e) {
      const a = errorAnswer(e);
      status = a.status;
      body = { status: 'error', message: a.message };
    }
    socket.end(rawResponse(status, body));
  };
}
