// The node's mount service: each distinct flist (sha256 of the flist file, plus the block store
// it reads from) is mounted read-only once, by one `g8os mount --ro` child, and shared by every
// container that leases it; each container puts its own overlay on top (overlay.ts).
// Reference-counted: the lower goes `graceMs` after its last lease is released (a restart of the
// same flist stays warm). A lower whose process dies while leased is restarted at the same path
// (overlays made on the dead one answer ENOTCONN/EIO from then on, never other bytes). Each lower
// keeps <dir>/<key>/state.json, so a new service sweeps what a crashed agent left.
import crypto from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { G8osError, kindOf, oneLine, unavailable } from '../errors';
import { mountAt, readMounts } from '../fs/mount-table';
import { type FlistInfo, inspectFlist } from './inspect';
import { spawnLower, stopLower } from './lower';
import { otherLiveOwner, type Owner, self } from './owner';
import { localFlist } from './source';

export type { FlistInfo } from './inspect';
export { mountOverlay } from './overlay';

export interface MountServiceOptions {
  /** one directory per lower, <dir>/<key> */
  dir: string;
  /** the block cache every lower shares */
  cacheDir: string;
  /** how long an unused lower stays mounted (default 30 s; 0: unmounted at once) */
  graceMs?: number;
  /** how long a lower may take to come up (default 120 s) */
  timeoutMs?: number;
  log?: (line: string) => void;
}

/** One user's hold on a lower; release() once. */
export interface Lease {
  readonly key: string;
  /** the read-only tree */
  readonly path: string;
  readonly info: FlistInfo;
  release(): Promise<void>;
}

export interface LowerInfo {
  key: string;
  source: string;
  path: string;
  pid?: number;
  leases: number;
  restarts: number;
}

interface LowerState {
  key: string;
  sha256: string;
  source: string;
  storage?: string;
  pid?: number;
  owner: Owner;
  info?: FlistInfo;
}

const RESTART_DELAYS_MS = [100, 1000, 5000];
/** a lower that keeps dying is given up after this many restarts (its users then fail with EIO) */
const MAX_RESTARTS = 10;

class Lower {
  readonly leases = new Set<object>();
  ready!: Promise<void>;
  info!: FlistInfo;
  pid?: number;
  child?: ChildProcess;
  grace?: NodeJS.Timeout;
  stopping?: Promise<void>;
  restarts = 0;

  constructor(readonly key: string, readonly dir: string, readonly sha256: string, readonly source: string, readonly storage: string | undefined) {}

  get target(): string {
    return path.join(this.dir, 'root');
  }

  get backend(): string {
    return path.join(this.dir, 'backend');
  }

  get file(): string {
    return path.join(this.dir, 'flist');
  }

  save(): void {
    const s: LowerState = { key: this.key, sha256: this.sha256, source: this.source, storage: this.storage, pid: this.pid, owner: self(), info: this.info };
    const tmp = path.join(this.dir, 'state.json.tmp');
    fs.writeFileSync(tmp, JSON.stringify(s));
    fs.renameSync(tmp, path.join(this.dir, 'state.json'));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Keeps the kind of what failed, with a prefix saying which step. */
const step = (what: string, e: unknown): G8osError => {
  const kind = kindOf(e);
  return new G8osError(kind === 'internal' ? 'invalid' : kind, `${what}: ${oneLine(e)}`, { cause: e });
};

export class MountService {
  private readonly lowers = new Map<string, Lower>();
  private closed = false;
  private readonly o: Required<MountServiceOptions>;

  constructor(opts: MountServiceOptions) {
    this.o = {
      dir: path.resolve(opts.dir),
      cacheDir: opts.cacheDir,
      graceMs: opts.graceMs ?? 30_000,
      timeoutMs: opts.timeoutMs ?? 120_000,
      log: opts.log ?? ((l) => process.stderr.write(`${l}\n`)),
    };
  }

  /** Sweeps what a crashed service left: lower processes, mounts, directories. */
  async init(): Promise<void> {
    fs.mkdirSync(this.o.dir, { recursive: true });
    fs.rmSync(path.join(this.o.dir, 'tmp'), { recursive: true, force: true });
    for (const key of fs.readdirSync(this.o.dir)) {
      const dir = path.join(this.o.dir, key);
      let state: LowerState | undefined;
      try {
        state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as LowerState;
      } catch {
        // made and not yet recorded
      }
      if (otherLiveOwner(state?.owner)) {
        this.o.log(`mounts: ${dir} belongs to the running agent ${state!.owner.pid}; left alone`);
        continue;
      }
      this.o.log(`mounts: sweeping ${dir} left by a previous agent`);
      await stopLower(state?.pid, path.join(dir, 'root'), path.join(dir, 'backend')).catch((e: Error) => this.o.log(`mounts: sweep ${dir}: ${e.message}`));
      this.removeDir(dir);
    }
  }

  /** A lease on the lower of `source` read from `storage`, mounted first if need be. */
  async acquire(source: string, storage?: string): Promise<Lease> {
    if (this.closed) throw unavailable('the mount service is shutting down');
    const local = await localFlist(source, path.join(this.o.dir, 'tmp')).catch((e: unknown) => {
      throw step('cannot use flist', e);
    });
    const key = crypto.createHash('sha256').update(`${local.sha256}\0${storage ?? ''}`).digest('hex').slice(0, 24);
    try {
      let l = this.lowers.get(key);
      while (l?.stopping) {
        await l.stopping;
        l = this.lowers.get(key);
      }
      l ??= this.start(key, local.sha256, source, storage, local);
      const token = {};
      l.leases.add(token);
      clearTimeout(l.grace);
      try {
        await l.ready;
      } catch (e) {
        l.leases.delete(token);
        throw e;
      }
      const lower = l;
      return { key, path: l.target, info: l.info, release: () => this.release(lower, token) };
    } finally {
      if (local.temp) fs.rmSync(local.file, { force: true });
    }
  }

  /** What is mounted now (tests, info). */
  list(): LowerInfo[] {
    return [...this.lowers.values()].map((l) => ({ key: l.key, source: l.source, path: l.target, pid: l.pid, leases: l.leases.size, restarts: l.restarts }));
  }

  /** Unmounts every lower at once (the agent stops; its containers are gone). */
  async shutdown(): Promise<void> {
    this.closed = true;
    const all = [...this.lowers.values()];
    await Promise.allSettled(all.map((l) => l.ready));
    await Promise.all(all.map((l) => this.stop(l)));
    fs.rmSync(path.join(this.o.dir, 'tmp'), { recursive: true, force: true });
    try {
      fs.rmdirSync(this.o.dir);
    } catch {
      // not empty (a lower that would not unmount) or already gone
    }
  }

  private start(key: string, sha256: string, source: string, storage: string | undefined, local: { file: string; temp: boolean }): Lower {
    const l = new Lower(key, path.join(this.o.dir, key), sha256, source, storage);
    this.lowers.set(key, l);
    l.ready = (async () => {
      try {
        fs.mkdirSync(l.dir, { recursive: true });
        l.save();
        if (fs.statSync(local.file).isDirectory()) fs.symlinkSync(local.file, l.file);
        else if (local.temp) fs.renameSync(local.file, l.file);
        else fs.copyFileSync(local.file, l.file);
        l.info = await inspectFlist(l.file, storage).catch((e: unknown) => {
          throw step('cannot use flist', new G8osError(kindOf(e), oneLine(e).split(l.file).join(source)));
        });
        l.save();
        await this.spawn(l).catch((e: unknown) => {
          throw new G8osError('internal', `cannot mount flist: ${oneLine(e)}`);
        });
      } catch (e) {
        this.lowers.delete(key);
        await stopLower(l.pid, l.target, l.backend).catch((x: Error) => this.o.log(`mounts: ${l.dir}: ${x.message}`));
        this.removeDir(l.dir);
        throw e;
      }
    })();
    l.ready.catch(() => undefined);
    return l;
  }

  private async spawn(l: Lower): Promise<void> {
    l.child = await spawnLower(
      {
        flist: l.file, target: l.target, backend: l.backend, cache: this.o.cacheDir, storageUrl: l.storage,
        log: path.join(l.dir, 'mount.log'), timeoutMs: this.o.timeoutMs,
        onExit: (code, sig) => this.exited(l, `${sig ?? `code ${code}`}`),
      },
      (pid) => {
        l.pid = pid;
        l.save();
      },
    );
  }

  /** A lower's process ended on its own: restart it while it is leased, else let it go. */
  private exited(l: Lower, how: string): void {
    if (l.stopping || this.closed) return;
    if (!l.leases.size) {
      this.o.log(`mounts: the mount of ${l.source} exited (${how}); it had no users`);
      void this.stop(l);
      return;
    }
    l.restarts++;
    if (l.restarts > MAX_RESTARTS) {
      this.o.log(`mounts: the mount of ${l.source} exited (${how}) ${l.restarts} times; not restarting it again`);
      l.ready = Promise.reject(unavailable(`the mount of ${l.source} keeps crashing (${how})`));
      l.ready.catch(() => undefined);
      return;
    }
    this.o.log(`mounts: the mount of ${l.source} exited (${how}) with ${l.leases.size} user(s); restarting it`);
    l.ready = (async () => {
      let last: unknown;
      for (const ms of RESTART_DELAYS_MS) {
        await sleep(ms);
        if (l.stopping || this.closed) throw unavailable(`the mount of ${l.source} is stopping`);
        try {
          await this.spawn(l);
          this.o.log(`mounts: ${l.source} mounted again at ${l.target}`);
          return;
        } catch (e) {
          last = e;
          this.o.log(`mounts: restarting the mount of ${l.source}: ${oneLine(e)}`);
        }
      }
      throw unavailable(`the mount of ${l.source} crashed and does not restart: ${oneLine(last)}`);
    })();
    l.ready.catch(() => undefined);
  }

  private async release(l: Lower, token: object): Promise<void> {
    if (!l.leases.delete(token) || l.leases.size) return;
    if (this.o.graceMs <= 0 || this.closed) return this.stop(l);
    clearTimeout(l.grace);
    l.grace = setTimeout(() => {
      if (!l.leases.size) void this.stop(l);
    }, this.o.graceMs);
    l.grace.unref();
  }

  private stop(l: Lower): Promise<void> {
    l.stopping ??= (async () => {
      clearTimeout(l.grace);
      await l.ready.catch(() => undefined);
      try {
        await stopLower(l.pid, l.target, l.backend);
      } catch (e) {
        this.o.log(`mounts: stopping ${l.target}: ${(e as Error).message}`);
      }
      this.removeDir(l.dir);
      if (this.lowers.get(l.key) === l) this.lowers.delete(l.key);
    })();
    return l.stopping;
  }

  /** Removes a lower's directory unless something is still mounted in it. */
  private removeDir(dir: string): void {
    if (mountAt(dir) || readMounts().some((m) => m.mountPoint.startsWith(`${dir}/`))) {
      this.o.log(`mounts: ${dir} still has mounts; left in place`);
      return;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
