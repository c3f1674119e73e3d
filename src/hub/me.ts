// Authenticated /api/flist/me routes (hub-api.md §7, §8.2, §8.3): the caller changes only
// their own repository. State-changing GETs (sic) are also accepted as POST.
// Status codes: 0-hub answered 500 for bad input to merge and upload-flist; we answer 400
// (404 for a missing source) with the reference's messages. The 401s for link conflicts are
// kept as the reference has them, for its clients.
import fs from 'node:fs';
import path from 'node:path';
import express, { type Response } from 'express';
import multer from 'multer';
import { FlistError } from '../flist/archive';
import { mergeFlists } from '../flist/merge';
import { openGen2 } from '../flist/reader';
import { writeFlist } from '../flist/writer';
import type { BlockStore } from '../store/types';
import { type AuthedRequest, type Hub, requireUser, route, sendJson, success } from './app';
import { readBody } from './blocks';
import { checkName, flistName, HubError, splitTarget, type Registry } from './registry';
import { contentsDump, findEntry, findFlist, knownUser } from './views';

type MeRequest = AuthedRequest & { params: Record<string, string> };

/** Largest flist accepted by upload-flist (an flist is metadata only; 100k files ≈ 10 MB). */
export const MAX_FLIST_UPLOAD = 1024 ** 3;
const MAX_JSON = 1024 * 1024;
const EXISTS_BATCH = 1000;

export function meRoutes(hub: Hub): void {
  const reg = hub.registry;
  const r = express.Router();
  const me = (req: MeRequest): string => req.user!;
  const both = (p: string, fn: (req: MeRequest, res: Response) => Promise<void> | void): void => {
    r.get(p, route(fn));
    r.post(p, route(fn));
  };

  r.get('/', route((req: MeRequest, res) => success(res, { username: me(req) })));

  r.post('/upload-flist', route((req: MeRequest, res) => uploadFlist(hub, req, res)));

  r.post('/merge/:target', route(async (req: MeRequest, res) => {
    const target = flistName(req.params.target);
    let sources: unknown;
    try {
      sources = JSON.parse((await readBody(req, MAX_JSON)).toString('utf8'));
    } catch (e) {
      if (e instanceof HubError) throw e;
      throw new HubError(400, 'malformed json request');
    }
    if (!Array.isArray(sources)) throw new HubError(400, 'malformed json request');
    if (sources.length === 0) throw new HubError(400, 'no source found');
    const files: string[] = [];
    for (const s of sources) {
      if (typeof s !== 'string' || s.split('/').length !== 2) throw new HubError(400, 'malformed source filename');
      const [u, n] = s.split('/');
      let e;
      try {
        e = findFlist(reg, u, n);
      } catch (err) {
        if (err instanceof HubError && err.status === 404) throw new HubError(404, `${s} does not exists`);
        throw err;
      }
      files.push(reg.filePath(e.file!));
    }
    const tmp = reg.tempPath('merge');
    try {
      const { tree, metadata } = await mergeFlists(files).catch((err: unknown) => {
        if (err instanceof FlistError) throw new HubError(400, `cannot merge: ${err.message}`);
        throw err;
      });
      await writeFlist(tree, tmp, metadata, { tmpDir: reg.tmpDir });
      await reg.publish(me(req), target, tmp);
    } finally {
      await fs.promises.rm(tmp, { force: true });
    }
    success(res);
  }));

  both('/promote/:repo/:file/:local', (req, res) => {
    const local = flistName(req.params.local);
    const src = findFlist(reg, req.params.repo, req.params.file);
    reg.copy(src, me(req), local);
    success(res, {
      source: { username: req.params.repo, filename: flistName(req.params.file) },
      destination: { username: me(req), filename: local },
    });
  });

  both('/:source/link/:linkname', (req, res) => {
    const source = flistName(req.params.source);
    const link = flistName(req.params.linkname);
    findFlist(reg, me(req), source);
    refuseLoop(reg, me(req), source, link);
    reg.link(me(req), link, 'symlink', `${me(req)}/${source}`);
    success(res);
  });

  both('/:linkname/crosslink/:repo/:source', (req, res) => {
    const link = flistName(req.params.linkname);
    const repo = checkName(req.params.repo, 'repository name');
    if (!reg.userExists(repo)) throw new HubError(404, 'source repository not found');
    const source = flistName(req.params.source);
    findFlist(reg, repo, source);
    refuseLoop(reg, repo, source, link, me(req));
    reg.link(me(req), link, 'symlink', `${repo}/${source}`);
    success(res);
  });

  both('/:linkname/crosstag/:repo/:tag', (req, res) => {
    const repo = checkName(req.params.repo, 'repository name');
    const tag = checkName(req.params.tag, 'tag name');
    if (!reg.userExists(repo) || !reg.tagExists(repo, tag)) throw new HubError(404, 'source tag not found');
    if (req.params.linkname.endsWith('.flist')) throw new HubError(401, 'tag symlink cannot ends with .flist');
    const link = checkName(req.params.linkname, 'link name');
    if (reg.entry(me(req), `${link}.flist`)) throw new HubError(401, 'there is a .flist file with the same name existing already');
    reg.link(me(req), link, 'crosstag', `${repo}/${tag}`);
    success(res);
  });

  const tagPath = '/:tag/:linkname/tag/:repo/:source';
  both(tagPath, (req, res) => {
    const tag = checkName(req.params.tag, 'tag name');
    const link = flistName(req.params.linkname);
    const repo = checkName(req.params.repo, 'repository name');
    if (!reg.userExists(repo)) throw new HubError(404, 'source repository not found');
    const source = flistName(req.params.source);
    findFlist(reg, repo, source);
    reg.setTag(me(req), tag, link, `${repo}/${source}`);
    success(res);
  });
  // Untagging needs only the tag entry: its source may be gone already.
  r.delete(tagPath, route((req: MeRequest, res) => {
    const tag = checkName(req.params.tag, 'tag name');
    const link = flistName(req.params.linkname);
    checkName(req.params.repo, 'repository name');
    flistName(req.params.source);
    if (!reg.removeTag(me(req), tag, link)) throw new HubError(404, 'target not found on this tag');
    success(res);
  }));

  both('/:source/rename/:destination', (req, res) => {
    const source = flistName(req.params.source);
    const dest = flistName(req.params.destination);
    if (!reg.rename(me(req), source, dest)) throw new HubError(404, 'source not found');
    success(res);
  });

  r.get('/:flist', route(async (req: MeRequest, res) => {
    sendJson(res, 200, await contentsDump(reg, findFlist(reg, me(req), req.params.flist)));
  }));
  // A crosstag link has no ".flist": delete it by its bare name.
  r.delete('/:flist', route((req: MeRequest, res) => {
    const user = knownUser(reg, me(req));
    const raw = req.params.flist;
    const crosstag = !raw.endsWith('.flist') && reg.entry(user, checkName(raw, 'link name'))?.kind === 'crosstag';
    if (!reg.remove(user, crosstag ? raw : findEntry(reg, user, raw).name)) throw new HubError(404, 'source not found');
    success(res);
  }));

  hub.app.use('/api/flist/me', requireUser(hub), r);
}

/** A link at user/link → repo/source must not be on the chain it would point into. */
function refuseLoop(reg: Registry, repo: string, source: string, link: string, user = repo): void {
  let at: [string, string] | undefined = [repo, source];
  for (let hops = 0; at && hops < 16; hops++) {
    if (at[0] === user && at[1] === link) throw new HubError(400, `link ${link} would point at itself (through ${repo}/${source})`);
    const e = reg.entry(...at);
    at = e?.kind === 'symlink' ? splitTarget(e.target!) : undefined;
  }
}

// -- upload-flist ----------------------------------------------------------------------------

interface UploadState {
  tmpFiles: string[];
  streams: NodeJS.ReadableStream[];
}
type UploadRequest = MeRequest & { flistUpload?: UploadState };

/** Multer storage writing straight to the registry's temp dir, so publish() is a rename. */
function tempStorage(reg: Registry): multer.StorageEngine {
  return {
    _handleFile(req, file, cb) {
      const state = (req as UploadRequest).flistUpload!;
      const tmp = reg.tempPath('upload-flist');
      state.tmpFiles.push(tmp);
      state.streams.push(file.stream);
      const out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
      file.stream.pipe(out);
      file.stream.on('error', (e) => out.destroy(e));
      out.on('error', (e) => cb(e));
      out.on('finish', () => cb(null, { path: tmp, size: out.bytesWritten }));
    },
    _removeFile(_req, file, cb) {
      fs.rm(file.path, { force: true }, () => cb(null));
    },
  };
}

function multerError(e: unknown, max: number): HubError {
  if (e instanceof HubError) return e;
  if (e instanceof multer.MulterError) {
    if (e.code === 'LIMIT_FILE_SIZE') return new HubError(413, `flist larger than ${max} bytes`);
    if (e.code === 'LIMIT_UNEXPECTED_FILE') return new HubError(400, `unexpected file field ${JSON.stringify(e.field)}: send the flist as field "file"`);
    return new HubError(400, `bad multipart upload: ${e.message}`);
  }
  return new HubError(400, `bad multipart upload: ${(e as Error).message}`);
}

/** "../x/My App.flist" → "My_App" (0-hub sanitised upload names the same way). */
export function uploadName(original: string): string {
  const base = original.split(/[/\\]/).pop() ?? '';
  return base.replace(/\.flist$/, '').replace(/[^A-Za-z0-9._+@:=,-]/g, '_').replace(/^[._]+/, '');
}

async function uploadFlist(hub: Hub, req: UploadRequest, res: Response): Promise<void> {
  const reg = hub.registry;
  const max = Math.min(hub.config.maxUpload, MAX_FLIST_UPLOAD);
  const state: UploadState = { tmpFiles: [], streams: [] };
  req.flistUpload = state;
  // A client that goes away mid-upload leaves multer waiting on the part: end it.
  const onClose = (): void => {
    if (!req.complete) for (const s of state.streams) (s as NodeJS.ReadableStream & { destroy(e?: Error): void }).destroy(new Error('upload aborted by the client'));
  };
  req.once('close', onClose);
  const parse = multer({ storage: tempStorage(reg), limits: { fileSize: max, files: 1, fields: 16, fieldSize: 64 * 1024, parts: 32 } }).single('file');
  try {
    await new Promise<void>((resolve, reject) => parse(req, res, (e: unknown) => (e ? reject(multerError(e, max)) : resolve())));
    const f = req.file;
    if (!f) throw new HubError(400, 'no file found');
    if (!f.originalname.endsWith('.flist')) throw new HubError(400, `this file is not allowed: ${JSON.stringify(f.originalname)} is not a .flist file`);
    const name = uploadName(f.originalname);
    if (!name) throw new HubError(400, `invalid flist name ${JSON.stringify(f.originalname)}`);
    const target = flistName(name);
    const stats = await checkBlocks(hub.store, f.path, f.originalname);
    if (stats.missing > 0) {
      throw new HubError(400, `unauthorized upload, contents is not fully present on backend (${stats.missing} of ${stats.blocks} blocks missing)`);
    }
    await reg.publish(req.user!, target, f.path);
    success(res, { name: target, files: stats });
  } finally {
    req.off('close', onClose);
    await Promise.all(state.tmpFiles.map((p) => fs.promises.rm(p, { force: true })));
  }
}

export interface CheckStats {
  regular: number;
  symlink: number;
  directory: number;
  special: number;
  /** files with at least one block missing from the store */
  failure: number;
  fullsize: number;
  blocks: number;
  missing: number;
}

/** Whether every block of every file is in the store (§8.2 "check"). */
export async function checkBlocks(store: BlockStore, file: string, shownAs = path.basename(file)): Promise<CheckStats> {
  let r;
  try {
    r = await openGen2(file);
  } catch (e) {
    if (e instanceof FlistError) throw new HubError(400, `not a valid flist: ${e.message.replace(file, shownAs)}`);
    throw e;
  }
  const s: CheckStats = { regular: 0, symlink: 0, directory: 0, special: 0, failure: 0, fullsize: 0, blocks: 0, missing: 0 };
  try {
    const ids = new Map<string, Buffer>();
    for (const e of r.walk()) {
      if (e.kind === 'dir') s.directory++;
      else if (e.kind === 'link') s.symlink++;
      else if (e.kind === 'special') s.special++;
      else {
        s.regular++;
        s.fullsize += e.size;
        for (const b of e.blocks ?? []) ids.set(b.id.toString('hex'), b.id);
      }
    }
    s.directory--; // the root is not an entry
    s.blocks = ids.size;
    const missing = new Set<string>();
    const valid = [...ids.entries()].filter(([hex]) => {
      if (hex.length === 32) return true;
      missing.add(hex); // not a gen-2 storage id: cannot be in the store
      return false;
    });
    for (let i = 0; i < valid.length; i += EXISTS_BATCH) {
      const batch = valid.slice(i, i + EXISTS_BATCH);
      const have = await store.exists(batch.map(([, id]) => id));
      batch.forEach(([hex], j) => {
        if (!have[j]) missing.add(hex);
      });
    }
    s.missing = missing.size;
    if (missing.size) {
      for (const e of r.walk()) if (e.kind === 'file' && e.blocks?.some((b) => missing.has(b.id.toString('hex')))) s.failure++;
    }
  } finally {
    r.close();
  }
  return s;
}
