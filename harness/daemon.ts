// One way to run a long-lived process for a test, a benchmark or a stress suite: its own process
// group, output kept, ready when a line, a port or a probe says so, and never left behind (the
// group and every descendant are killed on stop after a grace period, and on exit or signal).
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { log, onCleanup, sleep, tail } from './cleanup';
import { inNetns } from './netns';
import { portOpen } from './ports';
import { descendants, killGroup, killTree } from './procs';

export type Ready =
  /** a line of its stdout or stderr matches */
  | RegExp
  /** its output contains this text */
  | string
  /** something accepts connections there (inside its network namespace) */
  | { port: number; host?: string }
  /** polled until true */
  | (() => boolean | Promise<boolean>);

export interface DaemonOptions {
  cmd: string;
  args?: string[];
  /** added to process.env */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** started once this holds; without it, once spawned */
  ready?: Ready;
  /** run inside this network namespace (`nsenter --net`) */
  netns?: string;
  /** for messages; the command's base name by default */
  label?: string;
  /** to be ready, default 60 s */
  timeoutMs?: number;
  /** stop()'s SIGTERM to SIGKILL, default 30 s */
  graceMs?: number;
  /** an IPC channel (child.send / 'message') */
  ipc?: boolean;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Daemon {
  label: string;
  child: ChildProcess;
  pid: number;
  /** stdout and stderr as they came (the last MiBs of a chatty one) */
  log(): string;
  stdout(): string;
  stderr(): string;
  alive(): boolean;
  /** resolves when the process has exited */
  exited: Promise<Exit>;
  /** SIGTERM; after graceMs SIGKILL of its group and descendants; then whatever of its group is left */
  stop(graceMs?: number): Promise<Exit>;
  /** SIGKILL of the process alone (a crash: what it started outlives it until stop() or exit) */
  kill(): Promise<Exit>;
}

const KEEP = 4 * 1024 * 1024;
const keep = (s: string): string => (s.length > KEEP ? s.slice(-KEEP / 2) : s);

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const label = opts.label ?? path.basename(opts.cmd);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const argv = inNetns(opts.netns, [opts.cmd, ...(opts.args ?? [])]);
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe', ...(opts.ipc ? (['ipc'] as const) : [])],
    detached: true,
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
  });
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
  // the tree while it runs; once it is gone, only its group (its pid may belong to another process by then)
  const killAll = (): void => {
    if (!child.pid) return;
    if (alive()) killTree(child.pid);
    else killGroup(child.pid);
  };
  const unregister = onCleanup(killAll);
  let all = '';
  let out = '';
  let err = '';
  const lines: ((line: string) => void)[] = [];
  for (const [stream, add] of [[child.stdout!, (s: string) => (out = keep(out + s))], [child.stderr!, (s: string) => (err = keep(err + s))]] as const) {
    let partial = '';
    stream.on('data', (d: Buffer) => {
      const s = d.toString();
      add(s);
      all = keep(all + s);
      const parts = (partial + s).split('\n');
      partial = parts.pop()!;
      for (const l of parts) for (const fn of lines) fn(l);
    });
  }

  try {
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (e?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (e) reject(e);
        else resolve();
      };
      const timer = setTimeout(() => finish(new Error(`${label} did not start within ${timeoutMs / 1000} s:\n${tail(all, 20)}`)), timeoutMs);
      child.once('error', (e) => finish(new Error(`${label}: ${e.message}`)));
      child.once('exit', (code, sig) => finish(new Error(`${label} exited (${code ?? sig}) before it was ready:\n${tail(all, 20)}`)));
      const ready = opts.ready;
      if (ready === undefined) child.once('spawn', () => finish());
      else if (typeof ready === 'string') {
        const check = (): void => void (all.includes(ready) && finish());
        child.stdout!.on('data', check);
        child.stderr!.on('data', check);
      } else if (ready instanceof RegExp) lines.push((l) => ready.test(l) && finish());
      else {
        const probe = typeof ready === 'function' ? ready : () => portOpen(ready.port, ready.host, opts.netns);
        void (async () => {
          while (!done) {
            if (alive() && (await Promise.resolve(probe()).catch(() => false))) finish();
            else await sleep(50);
          }
        })();
      }
    });
  } catch (e) {
    killAll();
    unregister();
    if (child.pid) await Promise.race([exited, sleep(5000)]);
    throw e;
  }

  const daemon: Daemon = {
    label,
    child,
    pid: child.pid!,
    log: () => all,
    stdout: () => out,
    stderr: () => err,
    alive,
    exited,
    async stop(graceMs = opts.graceMs ?? 30_000) {
      if (alive()) {
        child.kill('SIGTERM');
        const t = setTimeout(() => {
          log(`${label} did not stop within ${graceMs / 1000} s of SIGTERM: killing it and its descendants (${descendants(child.pid!).length})`);
          killAll();
        }, graceMs);
        await exited;
        clearTimeout(t);
      }
      killAll(); // whatever of its group it left behind
      unregister();
      return exited;
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      return exited;
    },
  };
  return daemon;
}
