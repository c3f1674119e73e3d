// Container root filesystems: each flist is mounted by its own `g8os mount` child process. A FUSE
// mount served by a Node process deadlocks when that same process touches it synchronously, so
// the agent never serves a mount itself.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { storeFromBackend } from '../../flist/backend';
import { openFlist } from '../../flist/open';
import { entrypointOf, environOf } from '../../flist/runmeta';
import { openStore } from '../../store';
import { detach, mountAt, processAlive, unmount } from '../../fs/mount-table';

/** The checkout's root (this file is src/agent/containers/x.ts, or its build under dist/). */
export function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'bin/g8os')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface FlistInfo {
  /** the flist's `environ` metadata (flist-format.md §9) */
  environ: Record<string, string>;
  /** its `entrypoint` metadata as argv (a JSON list, or a string run by /bin/sh -c) */
  entrypoint?: string[];
}

/** How many blocks of an flist are looked up in its store before mounting it (all, up to this). */
const PROBE_BLOCKS = 4096;

/**
 * Reads an flist's metadata and checks that its store has its blocks (all of them, or an even
 * sample of a large flist), so a missing or unreachable store fails the create instead of the
 * first read inside the container.
 */
export async function inspectFlist(source: string, storageUrl: string | undefined): Promise<FlistInfo> {
  const r = await openFlist(source);
  try {
    const meta = r.metadata();
    const environ = environOf(meta);
    const entrypoint = entrypointOf(meta);
    const seen = new Map<string, Buffer>();
    for (const e of r.walk()) for (const b of e.blocks ?? []) seen.set(b.id.toString('hex'), b.id);
    const ids = [...seen.values()];
    if (ids.length) {
      const url = storageUrl ?? storeFromBackend(meta.backend);
      if (!url) throw new Error(`${source} names no block store (pass storage)`);
      const step = Math.max(1, ids.length / PROBE_BLOCKS);
      const sample: Buffer[] = [];
      for (let i = 0; i < ids.length; i += step) sample.push(ids[Math.floor(i)]);
      const store = await openStore(url);
      try {
        const has = await store.exists(sample);
        const missing = has.filter((x) => !x).length;
        if (missing) throw new Error(`${missing} of ${sample.length} blocks of ${source} are missing from ${store.url}`);
      } finally {
        await store.close().catch(() => undefined);
      }
    }
    return { environ, entrypoint };
  } finally {
    r.close();
  }
}

export interface MountOptions {
  flist: string;
  target: string;
  backend: string;
  cache: string;
  storageUrl?: string;
  /** the FUSE view only, no writable overlay (flists mounted into a container) */
  ro?: boolean;
  /** the mount process's stderr goes here */
  log: string;
  timeoutMs: number;
  /** called if the mount process exits on its own once started */
  onExit?: (code: number | null, signal: string | null) => void;
}

export interface FlistMount {
  pid: number;
  target: string;
  backend: string;
  child: ChildProcess;
}

const lastLine = (file: string): string => {
  try {
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    return (lines.pop() ?? '').replace(/^g8os:\s*/, '');
  } catch {
    return '';
  }
};

/**
 * Starts `g8os mount` (own process group, so terminal signals to the agent do not reach it) and
 * waits for its "mount starts". `onSpawn` gets the pid at once, to be recorded before waiting.
 */
export async function mountFlist(o: MountOptions, onSpawn: (pid: number) => void): Promise<FlistMount> {
  fs.mkdirSync(o.target, { recursive: true });
  const args = [path.join(repoRoot(), 'bin/g8os'), 'mount', o.flist, o.target, '--backend', o.backend, '--cache', o.cache, '--reset'];
  if (o.storageUrl) args.push('--storage-url', o.storageUrl);
  if (o.ro) args.push('--ro');
  const log = fs.openSync(o.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', log] });
  } finally {
    fs.closeSync(log);
  }
  if (child.pid === undefined) {
    await new Promise((r) => child.once('error', r));
    throw new Error(`cannot start g8os mount for ${o.flist}`);
  }
  onSpawn(child.pid);
  let ready = false;
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      reject(new Error(`mount of ${o.flist} did not start within ${Math.round(o.timeoutMs / 1000)} s`));
    }, o.timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      if (ready) return;
      out += d.toString();
      if (!out.includes('mount starts\n')) return;
      ready = true;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(lastLine(o.log) || `g8os mount exited (${sig ?? `code ${code}`})`));
      else o.onExit?.(code, sig);
    });
  });
  return { pid: child.pid, target: o.target, backend: o.backend, child };
}

/**
 * Stops a mount process (SIGTERM: it unmounts; SIGKILL after `graceMs`) and detaches whatever it
 * left at the target and its backend's FUSE view. `pid` is only signalled while its command line
 * still names the target (a pid from a state file may have been reused).
 */
export async function stopMount(pid: number | undefined, target: string, backend: string, graceMs = 10_000): Promise<void> {
  if (pid !== undefined && isMountProcess(pid, target)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
    const until = Date.now() + graceMs;
    while (processAlive(pid) && Date.now() < until) await sleep(25);
    if (processAlive(pid)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
      while (processAlive(pid) && Date.now() < until + 5000) await sleep(25);
    }
  }
  for (const p of [target, path.join(backend, 'ro')]) {
    if (!mountAt(p)) continue;
    const err = (await unmount(p)) && (await detach(p));
    if (err) throw new Error(err);
  }
}

function isMountProcess(pid: number, target: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(target);
  } catch {
    return false;
  }
}
