// Downloads and descriptions of flists: /<user>/<file>, /<user>/tags/<tag>/<file>,
// and through a crosstag link /<user>/<link>/<file> (the path the reference's on-disk layout
// resolved). <file> is "<name>.flist", ".flist.md5", ".json" or ".txt"; anything else is passed on.
import fs from 'node:fs';
import { type NextFunction, type Request, type Response, Router } from 'express';
import { notFound } from '../errors';
import { passable, sendJson } from './http';
import { findFlist, knownUser } from './listings';
import { checkName, flistName, splitTarget, type Registry, type RegistryEntry } from './registry';

type Params = Record<string, string>;

/** First path segments that are the hub's own, never a user's downloads. */
const RESERVED = new Set(['api', 'web', 'listen']);

export interface DownloadDeps {
  registry: Registry;
  publicUrl: string;
}

export function downloadRouter({ registry: reg, publicUrl }: DownloadDeps): Router {
  const app = Router();
  app.use('/:user', (req: Request<Params>, _res: Response, next: NextFunction) => (RESERVED.has(req.params.user) ? next('router') : next()));
  app.get('/:user/tags/:tag/:file', passable(async (req: Request<Params>, res, next) => {
    const file = parseFile(req.params.file);
    if (!file) return next();
    const user = knownUser(reg, req.params.user);
    const tag = checkName(req.params.tag, 'tag name');
    const t = reg.tagEntry(user, tag, flistName(file.name));
    const e = t && reg.resolve(...splitTarget(t.target));
    if (!e) throw notFound('source not found');
    await serve(reg, publicUrl, req, res, file.kind, `${user}/tags/${tag}`, flistName(file.name), e);
  }));
  app.get('/:user/:link/:file', passable(async (req: Request<Params>, res, next) => {
    const file = parseFile(req.params.file);
    if (!file) return next();
    const user = knownUser(reg, req.params.user);
    const e = reg.resolveCrosstag(user, checkName(req.params.link, 'link name'), flistName(file.name));
    if (!e) throw notFound('source not found');
    await serve(reg, publicUrl, req, res, file.kind, `${user}/${req.params.link}`, flistName(file.name), e);
  }));
  app.get('/:user/:file', passable(async (req: Request<Params>, res, next) => {
    const file = parseFile(req.params.file);
    if (!file) return next();
    const e = findFlist(reg, req.params.user, file.name);
    await serve(reg, publicUrl, req, res, file.kind, req.params.user, flistName(file.name), e);
  }));
  return app;
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

async function serve(reg: Registry, publicUrl: string, req: Request, res: Response, kind: FileKind, where: string, name: string, e: RegistryEntry): Promise<void> {
  const source = `${publicUrl}/${where}/${name}`;
  const storage = publicUrl;
  if (kind === 'md5') {
    res.status(200).type('text/plain').end(`${e.md5}\n`);
  } else if (kind === 'json') {
    sendJson(res, 200, { flist: name, uploader: where.split('/')[0], source, storage, checksum: e.md5 });
  } else if (kind === 'txt') {
    const lines = [`File:     ${name}`, `Uploader: ${where.split('/')[0]}`, `Source:   ${source}`, `Storage:  ${storage}`, `Checksum: ${e.md5}`];
    res.status(200).type('text/plain').end(`${lines.join('\n')}\n`);
  } else {
    await sendFlist(reg, req, res, e);
  }
}

/** The flist bytes, with the md5 as ETag (conditional GETs answer 304). */
async function sendFlist(reg: Registry, req: Request, res: Response, e: RegistryEntry): Promise<void> {
  const etag = `"${e.md5}"`;
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(reg.filePath(e.file!), 'r');
  } catch {
    throw notFound('source not found'); // deleted between lookup and open
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

