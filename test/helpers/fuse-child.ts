// Serves a read-only flist mount from a child process (dist/src/fs/serve-child.js), so the
// test process can use the mount: a process touching its own FUSE mount deadlocks.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ServeArgs } from '../../src/fs/serve-child';
import type { RofsStats } from '../../src/fs/rofs';
import { ROOT } from './cli';

export const SERVE_CHILD = path.join(ROOT, 'dist/src/fs/serve-child.js');

export interface FuseChild {
  mountpoint: string;
  child: ChildProcess;
  /** Everything the child wrote on stderr so far. */
  stderr(): string;
  /** The server's counters and the blocks it fetched from its stores. */
  stats(): Promise<{ stats: RofsStats; fetched: number }>;
  /** SIGTERM (SIGKILL after 5 s), then make sure nothing stays mounted. */
  stop(): Promise<void>;
}

export function isMounted(mnt: string): boolean {
  const want = path.resolve(mnt);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === want);
}

/** Lazy unmounts until nothing is mounted there (also recovers "Transport endpoint is not connected"). */
export function forceUnmount(mnt: string): void {
  for (let i = 0; i < 5 && isMounted(mnt); i++) {
    for (const cmd of [['fusermount', '-uz', mnt], ['umount', '-l', mnt]]) {
      try {
        execFileSync(cmd[0], cmd.slice(1), { stdio: 'ignore' });
        break;
      } catch {
        // try the next way
      }
    }
  }
}

/** SIGTERM every child still running (SIGKILL after 10 s), wait for all, forget them. */
export async function stopChildren(procs: Set<ChildProcess>): Promise<void> {
  for (const c of procs) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
  }
  procs.clear();
}

export async function serveFlists(args: ServeArgs, timeoutMs = 30_000): Promise<FuseChild> {
  if (!fs.existsSync(SERVE_CHILD)) throw new Error(`${SERVE_CHILD} is missing: run npm run build`);
  fs.mkdirSync(args.mountpoint, { recursive: true });
  const child = spawn(process.execPath, [SERVE_CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    forceUnmount(args.mountpoint);
  };

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "mount starts" within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
      const onData = (): void => {
        if (!out.includes('mount starts\n')) return;
        clearTimeout(timer);
        resolve();
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`serve-child exited (${code ?? sig}) before mounting: ${err.trim()}`));
      });
    });
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    mountpoint: args.mountpoint,
    child,
    stderr: () => err,
    stats: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no stats answer')), 5000);
        child.once('message', (m: { stats: RofsStats; fetched: number }) => {
          clearTimeout(timer);
          resolve(m);
        });
        child.send({ type: 'stats' });
      }),
    stop,
  };
}
