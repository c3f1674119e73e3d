// One read-only lower: a `g8os mount --ro` child serving one flist at one directory. A FUSE
// mount served by a Node process deadlocks when that same process touches it synchronously, so
// the agent never serves a mount itself. The child runs in its own process group, so terminal
// signals to the agent do not reach it.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { detach, mountAt, processAlive, unmount } from '../fs/mount-table';
import { repoRoot } from '../lib/paths';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface LowerSpawn {
  flist: string;
  target: string;
  backend: string;
  cache: string;
  storageUrl?: string;
  /** the child's stderr goes here */
  log: string;
  timeoutMs: number;
  /** called if the child exits on its own once started */
  onExit?: (code: number | null, signal: string | null) => void;
}

const lastLine = (file: string): string => {
  try {
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    return (lines.pop() ?? '').replace(/^g8os:\s*/, '');
  } catch {
    return '';
  }
};

/** Starts the child and waits for its "mount starts"; `onSpawn` gets the pid at once, to be recorded first. */
export async function spawnLower(o: LowerSpawn, onSpawn: (pid: number) => void): Promise<ChildProcess> {
  fs.mkdirSync(o.target, { recursive: true });
  const args = [path.join(repoRoot(), 'bin/g8os'), 'mount', o.flist, o.target, '--ro', '--backend', o.backend, '--cache', o.cache];
  if (o.storageUrl) args.push('--storage-url', o.storageUrl);
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
  return child;
}

/** Whether `pid` is still the mount process serving `target` (a recorded pid may be reused). */
export function isLowerProcess(pid: number | undefined, target: string): pid is number {
  if (!pid) return false;
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(target);
  } catch {
    return false;
  }
}

/**
 * Stops a mount process (SIGTERM: it unmounts; SIGKILL after `graceMs`) and detaches whatever it
 * left at the target and its backend's FUSE view.
 */
export async function stopLower(pid: number | undefined, target: string, backend: string, graceMs = 10_000): Promise<void> {
  if (isLowerProcess(pid, target)) {
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
