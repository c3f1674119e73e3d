// `g8os mount`: one or more flists as a directory tree. The read-only FUSE layer serves
// <backend>/ro (or the target itself with --ro); a kernel overlay puts <backend>/rw on top of it
// at the target (g8ufs.md §2, §3). This process is the FUSE server, so it never touches the
// mounted trees itself except through child processes (mount, umount) and async calls.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ErrorKind, G8osError, kindOf } from '../errors';
import { storeFromBackend } from '../flist/backend';
import { openFlist } from '../flist/open';
import type { FlistReader } from '../flist/types';
import { withDeadline } from '../lib/deadline';
import { openStore, redactUrl } from '../store';
import type { BlockStore } from '../store/types';
import { BlockCache } from './cache';
import {
  detach, fsName, isStale, mountAt, ourMount, overlayComplaint, PID_FILE, pidFromFile, processAlive, readMountsAsync, runMount, unmount,
} from './mount-table';
import { ReadOnlyFs } from './rofs';
import { bindCodec, type Layer } from './types';
import { warm } from './warm';

export interface MountOptions {
  /** flist sources (local path or http(s) URL), bottom first: the last one is on top */
  flists: string[];
  target: string;
  backend?: string;
  cache?: string;
  /** store for every layer's blocks, instead of each flist's backend metadata */
  storageUrl?: string;
  ro?: boolean;
  reset?: boolean;
  cacheBytes?: number;
  prefetch?: boolean;
  lazyConnect?: boolean;
  debug?: boolean;
  /** extra pid file (the backend always gets one) */
  pidFile?: string;
  /** aborts a mount still being set up (signals) */
  signal?: AbortSignal;
  /** warnings and notes for the user */
  note?: (line: string) => void;
  /** where the FUSE layer and the block cache report failed reads (default stderr) */
  log?: (line: string) => void;
}

/** A failure to set up the mount: its message is the one line the user sees. */
export class MountError extends G8osError {
  /** `kind` defaults to the cause's (a store's 'unavailable', a flist's 'corrupt'), else 'invalid'. */
  constructor(message: string, kind?: ErrorKind, cause?: unknown) {
    const k = kind ?? (cause === undefined || kindOf(cause) === 'internal' ? 'invalid' : kindOf(cause));
    super(k, message, cause === undefined ? {} : { cause });
  }
}

export const DEFAULT_CACHE_BYTES = 10 * 2 ** 30;
const PROBE_TIMEOUT_MS = 15_000;
const WATCH_MS = 1000;

/** /var/cache/g8os as root, else $XDG_CACHE_HOME/g8os (~/.cache/g8os). */
export function cacheBase(): string {
  if (process.getuid?.() === 0) return '/var/cache/g8os';
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'g8os');
}

export const defaultCacheDir = (): string => path.join(cacheBase(), 'cache');
export const defaultBackend = (target: string): string =>
  path.join(cacheBase(), 'mounts', crypto.createHash('sha1').update(target).digest('hex'));

/**
 * The absolute target path with symlinks in its parents resolved, found without stat'ing the
 * target itself when something is mounted there (a stale mount answers ENOTCONN, a hung one
 * never answers).
 */
export function resolveTarget(t: string): string {
  let p = path.resolve(t);
  for (let hops = 0; hops < 40; hops++) {
    if (p === '/') throw new MountError('cannot mount over /');
    let parent: string;
    try {
      parent = fs.realpathSync(path.dirname(p));
    } catch {
      throw new MountError(`target ${t} does not exist`, 'not_found');
    }
    p = path.join(parent, path.basename(p));
    if (mountAt(p)) return p;
    let link: string;
    try {
      if (!fs.lstatSync(p).isSymbolicLink()) return p;
      link = fs.readlinkSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new MountError(`target ${t} does not exist`, 'not_found');
      throw new MountError(`target ${t}: ${code ?? (e as Error).message}`, undefined, e);
    }
    // follow the link by hand: realpath would stat what is mounted at its end
    p = path.resolve(parent, link);
  }
  throw new MountError(`target ${t}: too many symbolic links`);
}

/** Refuses a live mount at `p`; detaches a stale one of ours (killed server). */
async function clearStale(p: string, what: string, note: (l: string) => void): Promise<void> {
  for (let i = 0; i < 8; i++) {
    const top = mountAt(p);
    if (!top) return;
    const ours = ourMount(p);
    if (!ours) throw new MountError(`${what} ${p} is already mounted (${top.fstype} ${top.source})`, 'conflict');
    if (ours.pid !== undefined) {
      throw new MountError(
        what === 'target'
          ? `target ${p} is already mounted by g8os (pid ${ours.pid}): run "g8os umount ${p}" first`
          : `backend ${path.dirname(p)} is in use by the mount process ${ours.pid}`,
        'conflict',
      );
    }
    if (!(await isStale(ours))) throw new MountError(`${what} ${p} is already mounted (${top.fstype} ${top.source})`, 'conflict');
    note(`recovering the stale mount at ${p} (its server is gone)`);
    const err = await detach(p);
    if (err) throw new MountError(err, 'unavailable');
    if (ours.fuse && ours.fuse !== ours.top) {
      const e2 = await detach(ours.fuse.mountPoint);
      if (e2) throw new MountError(e2, 'unavailable');
    }
  }
  throw new MountError(`${what} ${p}: too many stacked mounts`);
}

/** The target must be an empty directory. */
function checkTarget(p: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new MountError(code === 'ENOENT' ? `target ${p} does not exist` : `target ${p}: ${code ?? (e as Error).message}`, undefined, e);
  }
  if (!st.isDirectory()) throw new MountError(`target ${p} is not a directory`);
  if (fs.readdirSync(p).length > 0) throw new MountError(`target ${p} is not empty`, 'conflict');
}

/** overlay options split on ',' and ':' (and mount(8) on ','), so backend paths may not contain them. */
function checkBackendPath(b: string): void {
  if (/[,:\\]/.test(b)) throw new MountError(`backend directory ${b} contains ',' ':' or '\\', which overlay options cannot carry`);
}

async function openLayer(source: string): Promise<FlistReader> {
  let r: FlistReader;
  try {
    r = await openFlist(source);
  } catch (e) {
    throw new MountError((e as Error).message, undefined, e);
  }
  try {
    const root = r.stat('');
    if (!root || root.kind !== 'dir') throw new Error(`corrupt flist ${source}: no root directory`);
  } catch (e) {
    r.close();
    throw new MountError((e as Error).message, 'corrupt', e);
  }
  return r;
}

/** A block id of the flist for the store round trip (the first file's), or undefined. */
function someBlockId(r: FlistReader): Buffer | undefined {
  let n = 0;
  for (const e of r.walk()) {
    const b = e.blocks?.[0];
    if (b && b.id.length === 16) return b.id;
    if (++n > 2000) break;
  }
  return undefined;
}

/** Fail fast (g8ufs.md §7.2): one round trip to the store before the mount is offered. */
async function probeStore(store: BlockStore, url: string, reader: FlistReader, source: string, note: (l: string) => void): Promise<void> {
  const hint = '(--lazy-connect mounts anyway)';
  if (url.startsWith('dir:')) {
    const root = decodeURIComponent(new URL(url).pathname);
    // a dir store answers "missing" for anything when its directory is gone
    if (!fs.statSync(root, { throwIfNoEntry: false })?.isDirectory()) throw new MountError(`store ${url}: ${root} is not a directory ${hint}`, 'unavailable');
  }
  const id = someBlockId(reader);
  let have: boolean[];
  try {
    const what = `store ${redactUrl(url)}`;
    have = await withDeadline(store.exists([id ?? Buffer.alloc(16)]), PROBE_TIMEOUT_MS, () => new Error(`${what}: no answer within ${PROBE_TIMEOUT_MS / 1000} s`));
  } catch (e) {
    throw new MountError(`store unreachable for ${source}: ${(e as Error).message} ${hint}`, 'unavailable', e);
  }
  if (id && !have[0]) note(`warning: store ${redactUrl(url)} does not have block ${id.toString('hex')} of ${source}; reads of missing blocks fail with EIO`);
}

function writePid(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${process.pid}\n`);
}

function removePid(file: string): void {
  if (pidFromFile(file) === process.pid) fs.rmSync(file, { force: true });
}

/** A running mount; `closed` resolves once everything is unmounted and released. */
export class Mount {
  readonly closed: Promise<void>;
  /** the block caches, one per store (for stats and prefetch) */
  readonly caches: BlockCache[] = [];
  private resolveClosed!: () => void;
  private watcher?: NodeJS.Timeout;
  private stopping?: Promise<void>;
  private rofs?: ReadOnlyFs;
  private overlay = false;
  private readonly stopped = new AbortController();
  private readonly readers: FlistReader[] = [];
  private readonly stores: BlockStore[] = [];
  private readonly layers: Layer[] = [];
  /** the block cache of each layer */
  private readonly layerCaches: BlockCache[] = [];

  private constructor(
    readonly target: string,
    readonly backend: string,
    private readonly pidFiles: string[],
    private readonly note: (l: string) => void,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Sets everything up; resolves once the target is usable (print `mount starts` then). */
  static async start(o: MountOptions): Promise<Mount> {
    const note = o.note ?? ((l: string) => process.stderr.write(`g8os: ${l}\n`));
    if (o.flists.length === 0) throw new MountError('no flist given', 'usage');
    const target = resolveTarget(o.target);
    const backend = path.resolve(o.backend ?? defaultBackend(target));
    checkBackendPath(backend);
    if (backend === target || backend.startsWith(`${target}/`)) throw new MountError(`backend ${backend} is inside the target ${target}`);
    const ro = path.join(backend, 'ro');

    await clearStale(target, 'target', note);
    checkTarget(target);
    await clearStale(ro, 'backend layer', note);

    // The pid file doubles as a lock on the backend directory.
    fs.mkdirSync(backend, { recursive: true });
    const pidFile = path.join(backend, PID_FILE);
    const holder = pidFromFile(pidFile);
    if (holder !== undefined && holder !== process.pid && processAlive(holder)) {
      throw new MountError(`backend ${backend} is in use by process ${holder}`, 'conflict');
    }
    const pidFiles = [pidFile, ...(o.pidFile ? [path.resolve(o.pidFile)] : [])];
    pidFiles.forEach(writePid);

    const m = new Mount(target, backend, pidFiles, note);
    try {
      await m.setup(o);
    } catch (e) {
      await m.teardown();
      throw e instanceof MountError ? e : new MountError((e as Error).message, undefined, e);
    }
    m.watch(o.ro ? [target] : [target, ro]);
    if (o.prefetch) m.prefetch();
    return m;
  }

  private async setup(o: MountOptions): Promise<void> {
    const interrupted = (): MountError => new MountError('interrupted before the mount was ready', 'unavailable');
    const aborted = (): void => {
      if (o.signal?.aborted) throw interrupted();
    };
    // A signal ends a slow step (download, store probe) at once; what it yields later is closed.
    const interruptible = <T>(p: Promise<T>, dispose?: (v: T) => void): Promise<T> => {
      const signal = o.signal;
      if (!signal) return p;
      return new Promise<T>((resolve, reject) => {
        const onAbort = (): void => {
          reject(interrupted());
          p.then((v) => dispose?.(v), () => undefined);
        };
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        p.then(
          (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
          (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
        );
      });
    };
    const ro = path.join(this.backend, 'ro');
    const rw = path.join(this.backend, 'rw');
    const wd = path.join(this.backend, 'wd');
    for (const src of o.flists) {
      this.readers.push(await interruptible(openLayer(src), (r) => r.close()));
    }
    // one store (and block cache) per distinct URL; the cache directory is shared
    const cacheDir = path.resolve(o.cache ?? defaultCacheDir());
    const byUrl = new Map<string, BlockCache>();
    for (let i = 0; i < this.readers.length; i++) {
      const r = this.readers[i];
      const src = o.flists[i];
      let url = o.storageUrl;
      if (!url) {
        try {
          url = storeFromBackend(r.metadata().backend);
        } catch (e) {
          throw new MountError(`${src}: ${(e as Error).message}`, undefined, e);
        }
      }
      if (!url) throw new MountError(`${src} has no backend metadata naming its block store: pass --storage-url <url>`);
      let cache = byUrl.get(url);
      if (!cache) {
        let store: BlockStore;
        try {
          store = await openStore(url);
        } catch (e) {
          throw new MountError(`${src}: ${(e as Error).message}`, undefined, e);
        }
        this.stores.push(store);
        if (!o.lazyConnect) await interruptible(probeStore(store, url, r, src, this.note));
        try {
          cache = new BlockCache({ dir: cacheDir, store, maxBytes: o.cacheBytes ?? DEFAULT_CACHE_BYTES, log: o.log });
        } catch (e) {
          throw new MountError((e as Error).message, undefined, e);
        }
        byUrl.set(url, cache);
        this.caches.push(cache);
      }
      this.layers.push({ reader: r, blocks: bindCodec(cache, r.format) });
      this.layerCaches.push(cache);
      aborted();
    }

    // layout (g8ufs.md §2)
    if (o.reset) {
      fs.rmSync(rw, { recursive: true, force: true });
      fs.rmSync(wd, { recursive: true, force: true });
    }
    fs.mkdirSync(ro, { recursive: true });
    if (!o.ro) {
      const fresh = !fs.existsSync(rw);
      fs.mkdirSync(rw, { recursive: true });
      fs.mkdirSync(wd, { recursive: true });
      // The merged root takes its attributes from the upper dir: give it the flist root's
      // (the top layer's). A reused rw/ keeps what the user may have changed.
      if (fresh) {
        const root = this.readers[this.readers.length - 1].stat('')!;
        fs.chmodSync(rw, root.mode & 0o7777);
        if (root.uid >= 0 && root.gid >= 0) fs.chownSync(rw, root.uid, root.gid);
      }
    }

    const at = o.ro ? this.target : ro;
    this.rofs = new ReadOnlyFs(this.layers, { mountpoint: at, name: fsName(process.pid), debug: o.debug, log: o.log });
    try {
      await this.rofs.mount();
    } catch (e) {
      throw new MountError(`cannot mount the read-only layer at ${at}: ${(e as Error).message}`, 'unavailable', e);
    }
    aborted();
    if (!o.ro) {
      const opts = `lowerdir=${ro},upperdir=${rw},workdir=${wd},redirect_dir=on,noatime`;
      const err = await runMount(['-t', 'overlay', 'overlay', '-o', opts, this.target]);
      if (err) {
        const kernel = await overlayComplaint([rw, wd, ro]);
        const why = kernel ?? `${err.replace(/^mount: [^:]*: /, '')} (rw/ and wd/ must be on one filesystem that can be an overlay upper layer: not overlay, not FUSE)`;
        throw new MountError(`cannot mount the overlay at ${this.target}: ${why}`, 'invalid');
      }
      this.overlay = true;
      aborted();
    }
  }

  /** Unmounts (overlay, then the FUSE layer) and releases everything; idempotent. */
  stop(): Promise<void> {
    this.stopped.abort();
    this.stopping ??= this.teardown().finally(() => this.resolveClosed());
    return this.stopping;
  }

  /** --prefetch: every file's blocks into the cache, in the background, behind demand reads. */
  private prefetch(): void {
    const run = async (): Promise<void> => {
      let blocks = 0;
      let failed = 0;
      for (let i = 0; i < this.layers.length; i++) {
        if (this.stopping) return;
        const r = await warm(this.layerCaches[i], this.layers[i].reader, { signal: this.stopped.signal });
        blocks += r.blocks;
        failed += r.failed;
        if (r.errors[0]) this.note(`prefetch: ${r.errors[0]}`);
      }
      if (!this.stopping) this.note(`prefetch done: ${blocks} blocks${failed ? `, ${failed} failed` : ''}`);
    };
    run().catch((e: Error) => this.note(`prefetch stopped: ${e.message}`));
  }

  /** An external unmount of the target (or of <backend>/ro) stops the mount. */
  private watch(paths: string[]): void {
    let busy = false;
    this.watcher = setInterval(() => {
      if (busy || this.stopping) return;
      busy = true;
      readMountsAsync()
        .then((mounts) => {
          const gone = paths.find((p) => !mounts.some((m) => m.mountPoint === p));
          if (gone !== undefined && !this.stopping) {
            this.note(`${gone} was unmounted from outside; stopping`);
            void this.stop();
          }
        })
        .catch(() => undefined)
        .finally(() => (busy = false));
    }, WATCH_MS);
  }

  private async teardown(): Promise<void> {
    if (this.watcher) clearInterval(this.watcher);
    if (this.overlay) {
      const err = await unmount(this.target);
      if (err) this.note(err);
      this.overlay = false;
    }
    if (this.rofs) {
      try {
        await this.rofs.unmount();
      } catch (e) {
        this.note(`unmounting the read-only layer: ${(e as Error).message}`);
      }
      // whatever is left of our FUSE layer (unmount failed, or it raced an external unmount)
      for (const p of [this.target, path.join(this.backend, 'ro')]) {
        const m = mountAt(p);
        if (m && m.source === fsName(process.pid)) {
          const err = await detach(p);
          if (err) this.note(err);
        }
      }
      this.rofs = undefined;
    }
    // The kernel sends no more requests: what is still being fetched is of no use to anyone.
    await Promise.all(this.caches.splice(0).map((c) => c.close().catch(() => undefined)));
    for (const r of this.readers.splice(0)) {
      try {
        r.close();
      } catch {
        // closing is best effort
      }
    }
    // a store waiting on a dead server must not hold the exit either
    await Promise.all(this.stores.splice(0).map((s) => withDeadline(s.close(), 2000, () => new Error('store close timed out')).catch(() => undefined)));
    this.pidFiles.forEach(removePid);
  }

  /**
   * Last resort when stop() takes too long: lazily detach whatever of ours is still mounted
   * (synchronously, no waiting on anything) so the process can exit leaving no mount.
   */
  detachNow(): void {
    if (this.watcher) clearInterval(this.watcher);
    for (const p of [this.target, path.join(this.backend, 'ro')]) {
      for (let i = 0; i < 4; i++) {
        const m = mountAt(p);
        if (!m || !(m.fstype === 'overlay' || m.source === fsName(process.pid))) break;
        const cmd: [string, string[]] = m.fstype.startsWith('fuse') ? ['fusermount', ['-uz', p]] : ['umount', ['-l', p]];
        if (spawnSync(cmd[0], cmd[1], { stdio: 'ignore', timeout: 5000 }).status !== 0) spawnSync('umount', ['-l', p], { stdio: 'ignore', timeout: 5000 });
      }
    }
    this.pidFiles.forEach(removePid);
  }
}
