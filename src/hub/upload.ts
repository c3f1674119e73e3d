// Tarball uploads that become flists (hub-api.md §7 upload, §8.1): the multipart body is
// streamed through the flist builder as it arrives (no extraction, no copy on disk), only
// missing blocks are written, and the flist is published atomically once everything worked.
import { PassThrough } from 'node:stream';
import { type NextFunction, type Request, type Response, Router } from 'express';
import multer from 'multer';
import { conflict, G8osError, invalid, isKind, tooLarge, unavailable } from '../errors';
import { backendFor } from '../flist/backend';
import { BuildError, buildFromTar, type BuildStats } from '../flist/builder';
import { fileContent } from '../flist/content';
import type { Tree } from '../flist/tree';
import { StoreError } from '../store/types';
import type { BlockStore } from '../store/types';
import { type AuthedRequest, errorAnswer, route, success } from './http';
import { type Job, type Jobs } from './progress';
import { publishTree } from './publish';
import { flistName, type Registry } from './registry';

const SUFFIXES = ['.tar.gz', '.tgz', '.tar'];
/** Metadata the hub sets itself or that only image imports may carry (flist-format.md §9). */
const PROTECTED = new Set(['readme', 'backend', 'entrypoint', 'environ', 'port', 'volume']);
const FILE_STATS = ['regular', 'symlink', 'directory', 'special', 'failure', 'fullsize', 'uploaded_chunks', 'uploaded_bytes'] as const;
const MAX_README = 1024 * 1024;
const MAX_WARNINGS = 20;
const FIELD_LIMITS = { fields: 64, fieldSize: 64 * 1024, fieldNameSize: 128 };
/** Room for the multipart framing and fields on top of --max-upload. */
const FRAMING = FIELD_LIMITS.fields * (FIELD_LIMITS.fieldSize + 256) + 64 * 1024;
/** Share of the progress bar the transfer takes; the rest is finishing and publishing. */
const TRANSFER_SHARE = 90;

export type UploadStats = Pick<BuildStats, (typeof FILE_STATS)[number]>;

export interface UploadDeps {
  registry: Registry;
  store: BlockStore;
  jobs: Jobs;
  /** the hub's base URL (links, backend metadata) */
  publicUrl: string;
  maxUpload: number;
  maxExpanded: number;
}

/** One upload request's state, from its first byte to its answer. */
class Upload {
  name?: string;
  /** how the name was chosen, to detect a `name` field arriving after the file */
  nameFrom?: 'header' | 'field' | 'file';
  result?: { tree: Tree; stats: BuildStats };
  failure?: G8osError;
  /** whether the file part starts as gzip data does (for a .tar.gz that is not) */
  gzipped?: boolean;
  private input?: PassThrough;
  private build?: Promise<unknown>;
  private unlock?: () => void;

  constructor(
    readonly deps: UploadDeps,
    readonly user: string,
    readonly job: Job,
  ) {}

  /** Stop the build (client gone, size limit): nothing gets published after this. */
  abort(why: G8osError): void {
    this.failure ??= why;
    this.input?.destroy(why);
  }

  lock(locks: Set<string>, name: string): void {
    const key = `${this.user}/${name}`;
    if (locks.has(key)) throw conflict(`an upload of ${name} is already in progress`);
    locks.add(key);
    this.unlock = () => locks.delete(key);
  }

  /** Build from the file part; resolves when the build settled (so workers are released). */
  start(file: Express.Multer.File, req: Request): Promise<void> {
    // The builder reads `input`, not the part stream itself: destroying the part stream would
    // make multer answer before the build has released its workers. A pipe keeps it streaming.
    const input = new PassThrough();
    this.input = input;
    file.stream.once('data', (chunk: Buffer) => {
      this.gzipped = chunk[0] === 0x1f && (chunk.length < 2 || chunk[1] === 0x8b);
    });
    file.stream.on('error', (e) => input.destroy(e));
    file.stream.on('limit', () => this.abort(overMaxUpload(this.deps.maxUpload)));
    file.stream.pipe(input);
    if (this.failure) input.destroy(this.failure);

    const total = Number(req.headers['content-length']) || 0;
    let received = 0;
    let reported = -1;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      const pct = total ? Math.floor((received / total) * TRANSFER_SHARE) : 0;
      const step = total ? pct : Math.floor(received / (8 << 20));
      if (step === reported) return;
      reported = step;
      this.job.update(`Receiving ${file.originalname}: ${mib(received)}${total ? ` of ${mib(total)}` : ''}`, pct);
    };
    req.on('data', onData);
    let warnings = 0;
    const build = buildFromTar(input, {
      store: this.deps.store,
      maxExpandedBytes: this.deps.maxExpanded,
      // skipped members and the like: shown to listeners, a few only (an archive may have thousands)
      onWarning: (m) => warnings++ < MAX_WARNINGS && this.job.update(warnings === MAX_WARNINGS ? `warning: ${m} (further warnings not shown)` : `warning: ${m}`),
    }).finally(() => {
      req.off('data', onData);
      file.stream.unpipe(input);
      file.stream.resume(); // whatever is left goes nowhere
    });
    this.build = build.catch(() => undefined);
    return build.then(
      (r) => {
        this.result = r;
      },
      (e: unknown) => {
        throw this.failure ?? buildFailure(e, file.originalname, this.deps.maxExpanded, this.gzipped);
      },
    );
  }

  /** Wait for the build to stop, release the name. Idempotent. */
  async end(): Promise<void> {
    await this.build;
    this.unlock?.();
    this.unlock = undefined;
  }
}

const overMaxUpload = (maxUpload: number): G8osError => tooLarge(`upload is larger than this hub accepts (--max-upload ${maxUpload} bytes)`);

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function buildFailure(e: unknown, file: string, maxExpanded: number, gzipped: boolean | undefined): G8osError {
  if (e instanceof BuildError) {
    if (isKind(e, 'too_large')) return tooLarge(`${file}: archive expands to more than ${maxExpanded} bytes (the hub's --max-expanded limit)`);
    const notGzip = gzipped === false && /\.(tar\.gz|tgz)$/i.test(file);
    return invalid(`${file}: ${e.message}${notGzip ? ' (and not gzip data either)' : ''}`);
  }
  if (e instanceof G8osError) return e;
  if (e instanceof StoreError) return unavailable(`cannot store blocks: ${e.message}`);
  // busboy: the multipart body itself is broken (cut short, bad boundary)
  return invalid(`malformed upload: ${(e as Error).message}`);
}

/** The archive suffix of a file name, or undefined when it is not one we take. */
function archiveSuffix(filename: string): string | undefined {
  const lower = filename.toLowerCase();
  return SUFFIXES.find((s) => lower.endsWith(s) && lower.length > s.length);
}

function stripSuffix(name: string): string {
  const lower = name.toLowerCase();
  for (const s of [...SUFFIXES, '.flist']) if (lower.endsWith(s) && lower.length > s.length) return name.slice(0, -s.length);
  return name;
}

/** The flist name: X-Original-Name, else a `name` field sent before the file, else the file name. */
function chooseName(req: Request, filename: string): { name: string; from: 'header' | 'field' | 'file' } {
  const header = req.headers['x-original-name'];
  if (typeof header === 'string' && header !== '') return { name: flistName(stripSuffix(header)), from: 'header' };
  const field = (req.body as Record<string, unknown> | undefined)?.name;
  if (typeof field === 'string' && field !== '') return { name: flistName(stripSuffix(field)), from: 'field' };
  // File names are only sanitised (spaces and the like), never made safe by dropping "..".
  const base = stripSuffix(filename).replace(/[^A-Za-z0-9._+@:=,-]/g, '_');
  return { name: flistName(base), from: 'file' };
}

/** Builds from the file part as busboy delivers it (multer StorageEngine). */
class TarStorage implements multer.StorageEngine {
  constructor(private readonly locks: Set<string>) {}

  _handleFile(req: Request, file: Express.Multer.File, cb: (error?: unknown, info?: Partial<Express.Multer.File>) => void): void {
    const up = uploads.get(req);
    const refuse = (e: unknown): void => {
      file.stream.resume();
      cb(e);
    };
    if (!up) return refuse(new G8osError('internal', 'upload state missing'));
    if (!archiveSuffix(file.originalname)) {
      return refuse(invalid(`this file is not allowed: ${JSON.stringify(file.originalname)} is not a .tar, .tar.gz or .tgz archive`));
    }
    try {
      const { name, from } = chooseName(req, file.originalname);
      up.lock(this.locks, name);
      up.name = name;
      up.nameFrom = from;
    } catch (e) {
      return refuse(e);
    }
    up.job.update(`Receiving ${file.originalname}`, 0);
    up.start(file, req).then(
      () => cb(null, { size: up.result!.stats.input_bytes }),
      (e: unknown) => cb(e),
    );
  }

  _removeFile(_req: Request, _file: Express.Multer.File, cb: (error: Error | null) => void): void {
    cb(null); // nothing was written outside the block store (blocks are shared, never removed)
  }
}

const uploads = new WeakMap<Request, Upload>();

/** POST /upload (mount at /api/flist/me behind requireUser). */
export function uploadRouter(deps: UploadDeps): Router {
  const { jobs, registry } = deps;
  const locks = new Set<string>();
  const parse = multer({
    storage: new TarStorage(locks),
    limits: { fileSize: deps.maxUpload, files: 1, parts: FIELD_LIMITS.fields + 1, ...FIELD_LIMITS },
  }).single('file');

  const begin = (req: AuthedRequest, res: Response, next: NextFunction): void => {
    const length = Number(req.headers['content-length']);
    if (length > deps.maxUpload + FRAMING) {
      return next(tooLarge(`upload of ${length} bytes is larger than this hub accepts (--max-upload ${deps.maxUpload} bytes)`));
    }
    let job: Job;
    try {
      job = jobs.forRequest(req, res);
    } catch (e) {
      return next(e);
    }
    const up = new Upload(deps, req.user!, job);
    uploads.set(req, up);
    res.on('close', () => {
      if (!res.writableFinished) up.abort(invalid('client disconnected'));
    });
    next();
  };

  const publish = route(async (req: AuthedRequest, res: Response) => {
    const up = uploads.get(req)!;
    try {
      if (!up.result) throw invalid('no file found: send the archive as multipart/form-data field "file"');
      const body = (req.body ?? {}) as Record<string, unknown>;
      if (up.nameFrom === 'file' && typeof body.name === 'string' && body.name !== '' && flistName(stripSuffix(body.name)) !== up.name) {
        throw invalid('the "name" field must come before the "file" part of the form');
      }
      const { tree, stats } = up.result;
      const metadata = userMetadata(body);
      const readme = await readReadme(deps.store, tree, up.job);
      if (readme !== undefined) metadata.readme = JSON.stringify({ readme });
      metadata.backend = backendFor(deps.publicUrl);
      if (up.failure) throw up.failure;
      up.job.update('Writing flist', 95);
      await publishTree(registry, up.user, up.name!, tree, metadata, {
        beforePublish: () => {
          if (up.failure) throw up.failure;
          up.job.update('Publishing', 98);
        },
      });
      const files = Object.fromEntries(FILE_STATS.map((k) => [k, stats[k]])) as UploadStats;
      up.job.update('Upload ready', 100);
      up.job.finish({ filename: up.name, flist: files });
      success(res, { name: up.name, files, url: `${deps.publicUrl}/${up.user}/${up.name}`, job: up.job.id });
    } finally {
      await up.end();
    }
  });

  /** Any failure: stop and clean up first, then report on the job and let the app answer. */
  const fail = (err: unknown, req: Request, _res: Response, next: NextFunction): void => {
    const up = uploads.get(req);
    // Our own reason first: after a disconnect multer reports the socket's "aborted".
    const e = up?.failure ?? multerFailure(err, deps.maxUpload) ?? err;
    if (!up) return next(e);
    const cleaned = up.end().catch((x: unknown) => console.error('hub: upload cleanup:', x));
    void cleaned.then(() => {
      up.job.fail(errorAnswer(e).message);
      next(e);
    });
  };

  const router = Router();
  router.post('/upload', begin, parse, publish, fail);
  return router;
}

function multerFailure(err: unknown, maxUpload: number): G8osError | undefined {
  if (!(err instanceof multer.MulterError)) return undefined;
  switch (err.code) {
    case 'LIMIT_FILE_SIZE':
      return overMaxUpload(maxUpload);
    case 'LIMIT_FIELD_VALUE':
      return tooLarge(`form field ${err.field ?? ''} is larger than ${FIELD_LIMITS.fieldSize} bytes`);
    case 'LIMIT_UNEXPECTED_FILE':
    case 'LIMIT_FILE_COUNT':
      return invalid(`send exactly one archive, in form field "file"${err.field && err.field !== 'file' ? ` (got field ${JSON.stringify(err.field)})` : ''}`);
    default:
      return invalid(`malformed upload: ${err.message.toLowerCase()}`);
  }
}

/** `metadata-<key>` fields, protected keys dropped (the reference ignores them silently). */
function userMetadata(body: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [field, value] of Object.entries(body)) {
    if (!field.startsWith('metadata-')) continue;
    const key = field.slice('metadata-'.length);
    if (key === '' || PROTECTED.has(key)) continue;
    if (typeof value !== 'string') throw invalid(`form field ${field} must be one text value`);
    out[key] = value;
  }
  return out;
}

/** Text of /.README.md or /.README, read back from the store like any reader would. */
async function readReadme(store: BlockStore, tree: Tree, job: Job): Promise<string | undefined> {
  const node = tree.get('.README.md') ?? tree.get('.README');
  if (!node || node.entry.kind !== 'file') return undefined;
  if (node.entry.size > MAX_README) {
    job.update(`/${node.entry.path} is over ${MAX_README} bytes: not used as readme`);
    return undefined;
  }
  const parts: Buffer[] = [];
  for await (const b of fileContent(store, node.entry, 'gen2')) parts.push(b);
  return Buffer.concat(parts).toString('utf8');
}
