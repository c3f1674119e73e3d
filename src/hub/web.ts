// The hub's web UI, back end (web/README.md is the contract with the pages): the pages and
// their static files under /web/, the one-page-app routes that answer web/index.html, and the
// read-only JSON the pages browse with (/api/ui/...), read from the registry and from the flist
// files themselves through a small cache of open readers.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type NextFunction, type Request, type Response, Router } from 'express';
import { repoRoot } from '../agent/containers/rootfs';
import { modeString } from '../cli/util';
import { storeFromBackend } from '../flist/backend';
import { FlistError } from '../flist/archive';
import { type Gen2Reader, openGen2 } from '../flist/reader';
import { entrypointOf, environOf } from '../flist/runmeta';
import { type Entry, relPath, S_IFMT, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK } from '../flist/types';
import { corrupt, invalid, notFound, unavailable } from '../errors';
import { matchesEtag } from './blocks';
import { route, sendJson } from './http';
import { findEntry, findFlist, knownUser } from './listings';
import { checkName, splitTarget, type Registry, type RegistryEntry } from './registry';

/** Every page and script the hub serves runs under this policy: no inline code, nothing from elsewhere. */
export const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
};

/** Most results a search returns. */
export const SEARCH_LIMIT = 200;
/** Open flist readers kept (each may hold an extracted database in a temp dir). */
const READERS = 8;

// -- static files ----------------------------------------------------------------------------

/** Headers of everything the web UI is made of. */
function securityHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
}

interface Cached {
  mtimeMs: number;
  size: number;
  body: Buffer;
  etag: string;
}

/** Files served as they are on disk, re-read when they change (the pages are edited live). */
class Files {
  private readonly cache = new Map<string, Cached>();

  read(file: string): Cached | undefined {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      this.cache.delete(file);
      return undefined;
    }
    if (!st.isFile()) return undefined;
    const hit = this.cache.get(file);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit;
    let body: Buffer;
    try {
      body = fs.readFileSync(file);
    } catch {
      return undefined;
    }
    const etag = `"${crypto.createHash('sha1').update(body).digest('base64url').slice(0, 27)}"`;
    const c: Cached = { mtimeMs: st.mtimeMs, size: st.size, body, etag };
    if (body.length <= 4 * 1024 * 1024) this.cache.set(file, c);
    return c;
  }

  /** 200 with the bytes (or 304 for a matching If-None-Match); false when there is no such file. */
  send(req: Request, res: Response, file: string, type?: string): boolean {
    const f = this.read(file);
    if (!f) return false;
    securityHeaders(res);
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('ETag', f.etag);
    res.setHeader('Content-Type', type ?? TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream');
    const inm = req.headers['if-none-match'];
    if (inm && matchesEtag(inm, f.etag)) {
      res.status(304).end();
      return true;
    }
    res.setHeader('Content-Length', String(f.body.length));
    res.status(200);
    if (req.method === 'HEAD') res.end();
    else res.end(f.body);
    return true;
  }
}

/** A path below `dir` for a URL path, or undefined (traversal, hidden files, bad encoding). */
function below(dir: string, urlPath: string): string | undefined {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  const parts = rel.split('/').filter((p) => p !== '');
  if (!parts.length || parts.some((p) => p.startsWith('.') || p.includes('\0') || p.includes('\\'))) return undefined;
  const file = path.resolve(dir, ...parts);
  return file.startsWith(dir + path.sep) ? file : undefined;
}

export type PageHandler = (req: Request, res: Response) => void;

/** /web/..., /web/vendor/... and /favicon.ico, and the handler answering web/index.html (for pagesRouter). */
export function webFiles(webDir = path.join(repoRoot(), 'web')): { router: Router; index: PageHandler } {
  const app = Router();
  const root = repoRoot();
  const files = new Files();
  const vendor: Record<string, string> = {
    'marked.js': path.join(root, 'node_modules/marked/lib/marked.esm.js'),
    'purify.js': path.join(root, 'node_modules/dompurify/dist/purify.es.mjs'),
  };
  const missing = (res: Response): void => {
    securityHeaders(res);
    sendJson(res, 404, { status: 'error', message: 'not found' });
  };

  app.get('/web/vendor/:file', (req: Request, res: Response) => {
    const file = vendor[String(req.params.file)];
    if (!file || !files.send(req, res, file, TYPES['.js'])) missing(res);
  });
  app.get(/^\/web\/(.+)$/, (req: Request, res: Response) => {
    const file = below(webDir, req.path.slice('/web/'.length));
    if (!file || !files.send(req, res, file)) missing(res);
  });
  app.get('/favicon.ico', (req: Request, res: Response) => {
    if (!files.send(req, res, path.join(webDir, 'favicon.ico'))) missing(res);
  });

  const index = (req: Request, res: Response): void => {
    if (files.send(req, res, path.join(webDir, 'index.html'))) return;
    securityHeaders(res);
    res.status(503).type('text/plain').end(`the web pages are missing (${path.join(webDir, 'index.html')}); the JSON API still works\n`);
  };
  return { router: app, index };
}

/** First path segments that are the hub's own, never a repository page. */
const RESERVED = new Set(['api', 'web', 'listen', 'favicon.ico']);

/**
 * The one-page app's routes, all answering web/index.html. Mount after the downloads: a
 * repository's page paths (/<user>/tags/<tag>) can also be download paths, and those win.
 */
export function pagesRouter(index: PageHandler): Router {
  const app = Router();
  app.get(['/', '/search', '/upload', '/me', '/node', '/login'], index);
  // The pages of a repository: only names a user could have, so nothing else is shadowed.
  const isName = (s: unknown): boolean => {
    if (RESERVED.has(String(s))) return false;
    try {
      checkName(String(s));
      return true;
    } catch {
      return false;
    }
  };
  app.get('/:user', (req: Request, res: Response, next: NextFunction) => (isName(req.params.user) ? index(req, res) : next()));
  app.get('/:user/tags/:tag', (req: Request, res: Response, next: NextFunction) =>
    isName(req.params.user) && isName(req.params.tag) ? index(req, res) : next(),
  );
  app.get('/:user/:page', (req: Request, res: Response, next: NextFunction) => {
    const page = String(req.params.page);
    return isName(req.params.user) && page.endsWith('.md') && isName(page) ? index(req, res) : next();
  });
  return app;
}

// -- open flists -----------------------------------------------------------------------------

interface Held {
  reader: Promise<Gen2Reader>;
  users: number;
  evicted: boolean;
  /** whole-flist counts, computed once (the file never changes: it is content-addressed) */
  stats?: UiStats;
}

export interface UiStats {
  files: number;
  dirs: number;
  symlinks: number;
  specials: number;
  bytes: number;
}

/** Open readers by the flist file's sha256, least recently used first; closed when evicted and idle. */
export class ReaderCache {
  private readonly held = new Map<string, Held>();
  private closed = false;

  constructor(
    private readonly reg: Registry,
    private readonly max = READERS,
  ) {}

  /** Runs fn on the open flist of a regular entry (fn must not keep the reader). */
  async use<T>(e: RegistryEntry, fn: (r: Gen2Reader, held: Held) => T): Promise<T> {
    if (this.closed) throw unavailable('the hub is stopping');
    const sha = e.file!;
    let h = this.held.get(sha);
    if (h) {
      this.held.delete(sha);
      this.held.set(sha, h);
    } else {
      const file = this.reg.filePath(sha);
      if (!fs.existsSync(file)) throw notFound('source not found');
      h = { reader: openGen2(file), users: 0, evicted: false };
      const mine = h;
      // a file that does not open is not kept
      mine.reader.catch(() => this.held.get(sha) === mine && this.held.delete(sha));
      this.held.set(sha, h);
      this.evict();
    }
    h.users++;
    try {
      const r = await h.reader.catch((err: unknown) => {
        if (err instanceof FlistError) throw corrupt(`cannot read ${e.user}/${e.name}: ${err.message}`);
        throw err;
      });
      return fn(r, h);
    } finally {
      h.users--;
      if (h.evicted && h.users === 0) void close(h);
    }
  }

  private evict(): void {
    while (this.held.size > this.max) {
      const [sha, h] = this.held.entries().next().value as [string, Held];
      this.held.delete(sha);
      h.evicted = true;
      if (h.users === 0) void close(h);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.held.values()];
    this.held.clear();
    await Promise.all(all.map((h) => {
      h.evicted = true;
      return h.users === 0 ? close(h) : undefined;
    }));
  }
}

async function close(h: Held): Promise<void> {
  try {
    (await h.reader).close();
  } catch {
    // never opened: nothing to close
  }
}

// -- shapes ----------------------------------------------------------------------------------

export type UiType = 'regular' | 'symlink' | 'taglink' | 'crosslink';

/** How a registry entry shows in the UI; `target` as "<user>/<name>.flist" or "<user>/tags/<tag>". */
export function uiKind(e: RegistryEntry): { type: UiType; target?: string } {
  if (e.kind === 'regular') return { type: 'regular' };
  const [u, n] = splitTarget(e.target!);
  if (e.kind === 'crosstag') return { type: 'taglink', target: `${u}/tags/${n}` };
  return { type: u === e.user ? 'symlink' : 'crosslink', target: e.target! };
}

/** A listing row: links show the size, date and md5 of the flist they end at (as 0-hub's listing does). */
function row(reg: Registry, e: RegistryEntry): { name: string; type: UiType; target?: string; size: number; updated: number; md5?: string } {
  const k = uiKind(e);
  const r = e.kind === 'regular' ? e : e.kind === 'symlink' ? reg.resolve(e.user, e.name) : undefined;
  const out: { name: string; type: UiType; target?: string; size: number; updated: number; md5?: string } = {
    name: e.name, type: k.type, size: r?.size ?? 0, updated: r?.updated ?? e.updated,
  };
  if (k.target !== undefined) out.target = k.target;
  if (r?.md5) out.md5 = r.md5;
  return out;
}

const TYPE_NAMES: Record<number, string> = {
  [S_IFDIR]: 'dir', [S_IFLNK]: 'symlink', [S_IFCHR]: 'char', [S_IFBLK]: 'block', [S_IFIFO]: 'fifo', [S_IFSOCK]: 'socket',
};

export interface TreeEntry {
  name: string;
  path: string;
  type: 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  size: number;
  /** full st_mode: type bits | permission bits (07777) */
  mode: number;
  modeText: string;
  uid: number;
  gid: number;
  user: string;
  group: string;
  mtime: number;
  target?: string;
  rdev?: string;
}

export function treeEntry(e: Entry): TreeEntry {
  const type = (e.kind === 'file' ? 'file' : (TYPE_NAMES[e.mode & S_IFMT] ?? 'file')) as TreeEntry['type'];
  const out: TreeEntry = {
    name: e.name, path: `/${e.path}`, type, size: e.kind === 'dir' ? 0 : e.size,
    mode: e.mode, modeText: modeString(e.mode),
    uid: e.uid, gid: e.gid, user: e.uname || String(e.uid), group: e.gname || String(e.gid), mtime: e.mtime,
  };
  if (e.target !== undefined) out.target = e.target;
  if (e.rdev) out.rdev = `${e.rdev.major},${e.rdev.minor}`;
  return out;
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** JSON-decoded well-known metadata (flist-format.md §9), in the shapes the pages use. */
export function uiMetadata(rows: Record<string, string>): Record<string, unknown> {
  const json = (k: string): unknown => {
    try {
      return JSON.parse(rows[k]);
    } catch {
      return undefined;
    }
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const out: Record<string, unknown> = {};
  // as the agent runs it (a string entrypoint goes to /bin/sh -c)
  const entrypoint = entrypointOf(rows);
  if (entrypoint) out.entrypoint = entrypoint;
  if (rows.environ) out.environ = environOf(rows);
  const port = rows.port ? json('port') : undefined;
  if (isObject(port)) out.port = port;
  const volume = rows.volume ? json('volume') : undefined;
  if (isObject(volume)) out.volume = Object.keys(volume);
  else if (Array.isArray(volume)) out.volume = volume.filter((v): v is string => typeof v === 'string');
  if (rows.readme) {
    const r = json('readme');
    if (isObject(r) && typeof r.readme === 'string') out.readme = r.readme;
    else if (typeof r === 'string') out.readme = r;
    else if (r === undefined) out.readme = rows.readme;
  }
  if (rows.backend) {
    try {
      out.backend = storeFromBackend(rows.backend) ?? rows.backend;
    } catch {
      out.backend = rows.backend;
    }
  }
  return out;
}

// -- the read-only JSON ----------------------------------------------------------------------

type Params = Record<string, string>;

export interface UiDeps {
  registry: Registry;
  publicUrl: string;
}

/** /api/ui/...: what the pages browse with; close() closes the open flists. */
export function uiApi({ registry: reg, publicUrl }: UiDeps): { router: Router; close(): Promise<void> } {
  const app = Router();
  const readers = new ReaderCache(reg);
  const db = reg.db;
  const q = (req: Request): string => (typeof req.query.q === 'string' ? req.query.q.trim() : '');

  app.get('/repositories', route((req: Request, res) => {
    const entries = new Map(
      (db.prepare(`SELECT user, SUM(kind = 'regular') AS flists, SUM(kind != 'regular') AS links,
          SUM(CASE WHEN kind = 'regular' THEN size ELSE 0 END) AS size, MAX(updated) AS updated FROM entries GROUP BY user`)
        .all() as Array<{ user: string; flists: number; links: number; size: number; updated: number }>).map((r) => [r.user, r]),
    );
    const tags = new Map(
      (db.prepare('SELECT user, COUNT(DISTINCT tag) AS tags, MAX(updated) AS updated FROM tags GROUP BY user').all() as Array<{ user: string; tags: number; updated: number }>)
        .map((r) => [r.user, r]),
    );
    const want = q(req).toLowerCase();
    const repositories = reg
      .users()
      .filter((u) => !want || u.name.toLowerCase().includes(want))
      .map((u) => {
        const e = entries.get(u.name);
        const t = tags.get(u.name);
        return {
          name: u.name, flists: e?.flists ?? 0, links: e?.links ?? 0, tags: t?.tags ?? 0, size: e?.size ?? 0,
          updated: Math.max(u.updated, e?.updated ?? 0, t?.updated ?? 0),
        };
      })
      .sort((a, b) => b.updated - a.updated || byName(a.name, b.name));
    sendJson(res, 200, { repositories });
  }));

  app.get('/repository/:user', route((req: Request<Params>, res) => {
    const user = knownUser(reg, req.params.user);
    sendJson(res, 200, {
      name: user,
      flists: reg.entries(user).map((e) => row(reg, e)),
      tags: reg.tags(user).map((t) => t.tag),
    });
  }));

  app.get('/search', route((req: Request, res) => {
    const want = q(req);
    const rows = (want
      ? db.prepare('SELECT * FROM entries WHERE instr(lower(name), lower(?)) > 0 ORDER BY updated DESC, user, name LIMIT 5000').all(want)
      : db.prepare('SELECT * FROM entries ORDER BY updated DESC, user, name LIMIT ?').all(SEARCH_LIMIT)) as RegistryEntry[];
    const lower = want.toLowerCase();
    // exact names first, then names starting with the query, then the rest; newest first in each
    const rank = (e: RegistryEntry): number => {
      const n = e.name.toLowerCase().replace(/\.flist$/, '');
      return n === lower ? 0 : n.startsWith(lower) ? 1 : 2;
    };
    const results = rows
      .map((e, i) => ({ e, i, rank: rank(e) }))
      .sort((a, b) => a.rank - b.rank || a.i - b.i)
      .slice(0, SEARCH_LIMIT)
      .map(({ e }) => {
        const r = row(reg, e);
        return { user: e.user, name: r.name, type: r.type, size: r.size, updated: r.updated };
      });
    sendJson(res, 200, { results });
  }));

  app.get('/flist/:user/:name', route(async (req: Request<Params>, res) => {
    const e = findEntry(reg, req.params.user, req.params.name);
    const f = findFlist(reg, req.params.user, req.params.name);
    const { metadata, stats } = await readers.use(f, (r, held) => {
      held.stats ??= wholeStats(r);
      return { metadata: uiMetadata(r.metadata()), stats: held.stats };
    });
    const k = uiKind(e);
    sendJson(res, 200, {
      user: e.user, name: e.name, type: k.type, ...(k.target !== undefined ? { target: k.target } : {}),
      size: f.size, md5: f.md5, updated: f.updated,
      url: `${publicUrl}/${encodeURIComponent(e.user)}/${encodeURIComponent(e.name)}`,
      metadata, stats,
    });
  }));

  app.get('/flist/:user/:name/tree', route(async (req: Request<Params>, res) => {
    const f = findFlist(reg, req.params.user, req.params.name);
    const raw = req.query.path === undefined ? '/' : req.query.path;
    if (typeof raw !== 'string') throw invalid('path: expected one path');
    const p = relPath(raw);
    if (p.split('/').includes('..')) throw invalid(`path ${JSON.stringify(raw)}: ".." is not allowed`);
    const entries = await readers.use(f, (r) => {
      const at = r.stat(p);
      if (!at) throw notFound(`${'/' + p}: no such file or directory`);
      if (at.kind !== 'dir') throw invalid(`${'/' + p}: not a directory`);
      return r.list(p).map(treeEntry);
    });
    entries.sort((a, b) => Number(b.type === 'dir') - Number(a.type === 'dir') || byName(a.name, b.name));
    sendJson(res, 200, { path: `/${p}`, entries });
  }));

  return { router: app, close: () => readers.close() };
}

/** Counts below the root (the root itself is not counted). */
function wholeStats(r: Gen2Reader): UiStats {
  const s = r.stats();
  return { files: s.files, dirs: s.dirs - 1, symlinks: s.symlinks, specials: s.specials, bytes: s.bytes };
}
