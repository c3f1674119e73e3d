// Authenticated /api/flist/me routes (hub-api.md §7, §8.2, §8.3): the caller changes only
// their own repository. State-changing GETs (sic) are also accepted as POST.
// Status codes: 0-hub answered 500 for bad input to merge and upload-flist; we answer 400
// (404 for a missing source) with the reference's messages. The 401s for link conflicts are
// kept as the reference has them, for its clients.
import fs from 'node:fs';
import { type Response, Router } from 'express';
import multer from 'multer';
import { G8osError, invalid, isKind, notFound, tooLarge, unauthorized } from '../errors';
import { FlistError } from '../flist/archive';
import { type CheckResult, checkFlist } from '../flist/check';
import { mergeFlists } from '../flist/merge';
import { openGen2 } from '../flist/reader';
import type { BlockStore } from '../store/types';
import { readBody } from './blocks';
import { type AuthedRequest, route, sendJson, success } from './http';
import { contentsDump, findEntry, findFlist, knownUser } from './listings';
import { publishTree } from './publish';
import { checkName, flistName, splitTarget, type Registry } from './registry';

type MeRequest = AuthedRequest & { params: Record<string, string> };

/** Largest flist accepted by upload-flist (an flist is metadata only; 100k files ≈ 10 MB). */
export const MAX_FLIST_UPLOAD = 1024 ** 3;
const MAX_JSON = 1024 * 1024;

export interface MeDeps {
  registry: Registry;
  store: BlockStore;
  /** largest upload body accepted, bytes */
  maxUpload: number;
}

/** The caller's own repository; mount at /api/flist/me behind requireUser. */
export function meRouter(deps: MeDeps): Router {
  const reg = deps.registry;
  const r = Router();
  const me = (req: MeRequest): string => req.user!;
  const both = (p: string, fn: (req: MeRequest, res: Response) => Promise<void> | void): void => {
    r.get(p, route(fn));
    r.post(p, route(fn));
  };

  r.get('/', route((req: MeRequest, res) => success(res, { username: me(req) })));

  r.post('/upload-flist', route((req: MeRequest, res) => uploadFlist(deps, req, res)));

  r.post('/merge/:target', route(async (req: MeRequest, res) => {
    const target = flistName(req.params.target);
    let sources: unknown;
    try {
      sources = JSON.parse((await readBody(req, MAX_JSON)).toString('utf8'));
    } catch (e) {
      if (e instanceof G8osError) throw e;
      throw invalid('malformed json request');
    }
    if (!Array.isArray(sources)) throw invalid('malformed json request');
    if (sources.length === 0) throw invalid('no source found');
    const files: string[] = [];
    for (const s of sources) {
      if (typeof s !== 'string' || s.split('/').length !== 2) throw invalid('malformed source filename');
      const [u, n] = s.split('/');
      let e;
      try {
        e = findFlist(reg, u, n);
      } catch (err) {
        if (isKind(err, 'not_found')) throw notFound(`${s} does not exists`);
        throw err;
      }
      files.push(reg.filePath(e.file!));
    }
    const { tree, metadata } = await mergeFlists(files).catch((err: unknown) => {
      if (err instanceof FlistError) throw invalid(`cannot merge: ${err.message}`);
      throw err;
    });
    await publishTree(reg, me(req), target, tree, metadata);
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
    if (!reg.userExists(repo)) throw notFound('source repository not found');
    const source = flistName(req.params.source);
    findFlist(reg, repo, source);
    refuseLoop(reg, repo, source, link, me(req));
    reg.link(me(req), link, 'symlink', `${repo}/${source}`);
    success(res);
  });

  both('/:linkname/crosstag/:repo/:tag', (req, res) => {
    const repo = checkName(req.params.repo, 'repository name');
    const tag = checkName(req.params.tag, 'tag name');
    if (!reg.userExists(repo) || !reg.tagExists(repo, tag)) throw notFound('source tag not found');
    if (req.params.linkname.endsWith('.flist')) throw unauthorized('tag symlink cannot ends with .flist');
    const link = checkName(req.params.linkname, 'link name');
    if (reg.entry(me(req), `${link}.flist`)) throw unauthorized('there is a .flist file with the same name existing already');
    reg.link(me(req), link, 'crosstag', `${repo}/${tag}`);
    success(res);
  });

  const tagPath = '/:tag/:linkname/tag/:repo/:source';
  both(tagPath, (req, res) => {
    const tag = checkName(req.params.tag, 'tag name');
    const link = flistName(req.params.linkname);
    const repo = checkName(req.params.repo, 'repository name');
    if (!reg.userExists(repo)) throw notFound('source repository not found');
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
    if (!reg.removeTag(me(req), tag, link)) throw notFound('target not found on this tag');
    success(res);
  }));

  both('/:source/rename/:destination', (req, res) => {
    const source = flistName(req.params.source);
    const dest = flistName(req.params.destination);
    if (!reg.rename(me(req), source, dest)) throw notFound('source not found');
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
    if (!reg.remove(user, crosstag ? raw : findEntry(reg, user, raw).name)) throw notFound('source not found');
    success(res);
  }));

  return r;
}

/** A link at user/link → repo/source must not be on the chain it would point into. */
function refuseLoop(reg: Registry, repo: string, source: string, link: string, user = repo): void {
  let at: [string, string] | undefined = [repo, source];
  for (let hops = 0; at && hops < 16; hops++) {
    if (at[0] === user && at[1] === link) throw invalid(`link ${link} would point at itself (through ${repo}/${source})`);
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

function multerError(e: unknown, max: number): Error {
  if (e instanceof G8osError) return e;
  if (e instanceof multer.MulterError) {
    if (e.code === 'LIMIT_FILE_SIZE') return tooLarge(`flist larger than ${max} bytes`);
    if (e.code === 'LIMIT_UNEXPECTED_FILE') return invalid(`unexpected file field ${JSON.stringify(e.field)}: send the flist as field "file"`);
    return invalid(`bad multipart upload: ${e.message}`);
  }
  return invalid(`bad multipart upload: ${(e as Error).message}`);
}

/** "../x/My App.flist" → "My_App" (0-hub sanitised upload names the same way). */
export function uploadName(original: string): string {
  const base = original.split(/[/\\]/).pop() ?? '';
  return base.replace(/\.flist$/, '').replace(/[^A-Za-z0-9._+@:=,-]/g, '_').replace(/^[._]+/, '');
}

async function uploadFlist(deps: MeDeps, req: UploadRequest, res: Response): Promise<void> {
  const reg = deps.registry;
  const max = Math.min(deps.maxUpload, MAX_FLIST_UPLOAD);
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
    if (!f) throw invalid('no file found');
    if (!f.originalname.endsWith('.flist')) throw invalid(`this file is not allowed: ${JSON.stringify(f.originalname)} is not a .flist file`);
    const name = uploadName(f.originalname);
    if (!name) throw invalid(`invalid flist name ${JSON.stringify(f.originalname)}`);
    const target = flistName(name);
    const stats = await presentBlocks(deps.store, f.path, f.originalname);
    if (stats.missing > 0) {
      throw invalid(`unauthorized upload, contents is not fully present on backend (${stats.missing} of ${stats.blocks} blocks missing)`);
    }
    await reg.publish(req.user!, target, f.path);
    success(res, { name: target, files: stats });
  } finally {
    req.off('close', onClose);
    await Promise.all(state.tmpFiles.map((p) => fs.promises.rm(p, { force: true })));
  }
}

/** What upload-flist answers of the check: the checker's counts without its decode results. */
export type CheckStats = Pick<CheckResult, 'regular' | 'symlink' | 'directory' | 'special' | 'failure' | 'fullsize' | 'blocks' | 'missing'>;

/** Whether every block of every file is in the store (§8.2 "check"). */
async function presentBlocks(store: BlockStore, file: string, shownAs: string): Promise<CheckStats> {
  let r;
  try {
    r = await openGen2(file);
  } catch (e) {
    if (e instanceof FlistError) throw invalid(`not a valid flist: ${e.message.replace(file, shownAs)}`);
    throw e;
  }
  try {
    const { regular, symlink, directory, special, failure, fullsize, blocks, missing } = await checkFlist(r, store);
    return { regular, symlink, directory, special, failure, fullsize, blocks, missing };
  } finally {
    r.close();
  }
}
