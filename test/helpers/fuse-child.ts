// Serves a read-only flist mount from a child process (dist/src/fs/serve-child.js), so the
// test process can use the mount: a process touching its own FUSE mount deadlocks.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Daemon, startDaemon } from '../../harness/daemon';
import { forceUnmount, isMounted } from '../../harness/mounts';
import type { ServeArgs } from '../../src/fs/serve-child';
import type { RofsStats } from '../../src/fs/rofs';
import { BIN, ROOT } from './cli';

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

export { forceUnmount, isMounted };

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

/** A `g8os mount` CLI process; a mount that fails is a result too, so exits are not errors. */
export interface MountProc {
  child: ChildProcess;
  /** resolves with the exit code (or the signal name) */
  exited: Promise<number | string>;
  stdout(): string;
  stderr(): string;
}

/** Spawns `g8os mount …` (added to `procs`, for stopChildren); resolves once it printed `mount starts` or exited. */
export function spawnMount(args: string[], procs: Set<ChildProcess>, env: NodeJS.ProcessEnv = {}): Promise<MountProc> {
  const child = spawn(process.execPath, [BIN, 'mount', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  procs.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const p: MountProc = { child, exited, stdout: () => out, stderr: () => err };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mount neither started nor failed within 30 s: ${err}`)), 30_000);
    child.stdout!.on('data', () => {
      if (out.includes('mount starts\n')) {
        clearTimeout(timer);
        resolve(p);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(p);
    });
  });
}

export async function serveFlists(args: ServeArgs, timeoutMs = 30_000): Promise<FuseChild> {
  if (!fs.existsSync(SERVE_CHILD)) throw new Error(`${SERVE_CHILD} is missing: run npm run build`);
  fs.mkdirSync(args.mountpoint, { recursive: true });
  let d: Daemon;
  try {
    d = await startDaemon({ label: 'serve-child', cmd: process.execPath, args: [SERVE_CHILD, JSON.stringify(args)], ipc: true, ready: /^mount starts$/, timeoutMs, graceMs: 5000 });
  } catch (e) {
    forceUnmount(args.mountpoint);
    throw e;
  }
  const { child } = d;
  return {
    mountpoint: args.mountpoint,
    child,
    stderr: () => d.stderr(),
    stats: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no stats answer')), 5000);
        child.once('message', (m: { stats: RofsStats; fetched: number }) => {
          clearTimeout(timer);
          resolve(m);
        });
        child.send({ type: 'stats' });
      }),
    async stop() {
      await d.stop();
      forceUnmount(args.mountpoint);
    },
  };
}
