// Shared plumbing of the reliability suites: cleanup that survives failures and signals, tmpfs
// scratch space, processes (hub, mounts) started as separate processes (a Node process must
// never touch a FUSE mount it serves itself), the per-suite tally and the dated results files.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../bench/lib';

export { freePort };

export const REPO = path.resolve(__dirname, '../..'); // dist/stress -> repo root
export const G8OS = path.join(REPO, 'bin', 'g8os');
export const MiB = 1024 * 1024;
export const BLOCK = 512 * 1024;

export type Level = 'ci' | 'quick' | 'full';

/** What run.ts hands each suite. */
export interface Context {
  level: Level;
  seed: number;
  /** a real rootfs tarball for the content pass (full runs), when one is available */
  image?: string;
  /** scratch directory (on disk) for this run */
  work: string;
}

/** Picks the value for the run's level. */
export const by = <T>(ctx: Context, ci: T, quick: T, full: T): T => (ctx.level === 'ci' ? ci : ctx.level === 'quick' ? quick : full);

// ---------------------------------------------------------------------------
// Cleanup that must happen even on SIGINT/SIGTERM or an uncaught error

const cleanups = new Set<() => void>();
let hooked = false;

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function runCleanups(): void {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      fn();
    } catch (e) {
      process.stderr.write(`stress: cleanup failed: ${(e as Error).message}\n`);
    }
  }
}

function hookSignals(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', runCleanups); // synchronous only, which is why cleanups are sync
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nstress: ${sig}, cleaning up\n`);
      runCleanups();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

/** Registers a synchronous cleanup; returns its unregister function. */
export function onCleanup(fn: () => void): () => void {
  hookSignals();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

export function log(msg: string): void {
  process.stderr.write(`stress: ${msg}\n`);
}

/** The last non-empty lines of a process's output, for error messages. */
export const tail = (s: string, n = 3): string => s.trim().split('\n').filter(Boolean).slice(-n).join(' / ');

// ---------------------------------------------------------------------------
// Scratch space

/** Mounts a fresh tmpfs of `bytes` for the duration of fn; unmounted even on error or signal. */
export async function withTmpfs<T>(parent: string, bytes: number, fn: (dir: string) => Promise<T>): Promise<T> {
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, 'tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil(bytes / MiB)}m`, 'tmpfs', dir], { stdio: 'pipe' });
  const release = (): void => {
    detachUnder(dir);
    for (let i = 0; ; i++) {
      try {
        execFileSync('umount', i < 20 ? [dir] : ['-l', dir], { stdio: 'pipe' });
        break;
      } catch (e) {
        if (i >= 20) throw e;
        sleepSync(100);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const unregister = onCleanup(release);
  try {
    return await fn(dir);
  } finally {
    unregister();
    release();
  }
}

const unescapeMount = (p: string): string => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function mountPoints(): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((l) => unescapeMount(l.split(' ')[4]));
}

/** The filesystem type mounted at target (the top one), or undefined. */
export function fsType(target: string): string | undefined {
  const t = path.resolve(target);
  let type: string | undefined;
  for (const l of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = l.split(' ');
    if (f.length > 4 && unescapeMount(f[4]) === t) type = f[f.indexOf('-') + 1];
  }
  return type;
}

export function isMounted(target: string): boolean {
  const t = path.resolve(target);
  return mountPoints().includes(t);
}

/** Lazily detaches every mount strictly below dir (deepest first). */
export function detachUnder(dir: string): void {
  const d = path.resolve(dir);
  const under = mountPoints().filter((m) => m.startsWith(`${d}/`)).sort((a, b) => b.length - a.length);
  for (const m of under) {
    if (spawnSync('umount', ['-l', m], { stdio: 'ignore' }).status !== 0) spawnSync('fusermount', ['-uz', m], { stdio: 'ignore' });
  }
}

// ---------------------------------------------------------------------------
// Processes


export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // a zombie is not alive
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export interface Daemon {
  child: ChildProcess;
  pid: number;
  output(): string;
  /** resolves when the process has exited */
  exited: Promise<void>;
  /** SIGKILL of its whole process group, then waits for the exit */
  kill(): Promise<void>;
  /** SIGTERM, SIGKILL of the group after graceMs */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns argv in its own process group and resolves once `ready` appears in its output. */
export async function startDaemon(label: string, argv: string[], ready: string, env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): Promise<Daemon> {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
  const killGroup = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  };
  const unregister = onCleanup(killGroup);
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > 256 * 1024) out = out.slice(-128 * 1024);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label} did not start within ${timeoutMs / 1000} s:\n${tail(out, 20)}`)), timeoutMs);
      const check = (): void => {
        if (out.includes(ready)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      child.stderr!.on('data', check);
      child.once('exit', (code, sig) => (clearTimeout(timer), reject(new Error(`${label} exited (${code ?? sig}) before it was ready:\n${tail(out, 20)}`))));
      child.once('error', (e) => (clearTimeout(timer), reject(e)));
    });
  } catch (e) {
    killGroup();
    unregister();
    throw e;
  }
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    child,
    pid: child.pid!,
    output: () => out,
    exited,
    async kill() {
      killGroup();
      await exited;
      unregister();
    },
    async stop(graceMs = 30_000) {
      if (alive()) {
        child.kill('SIGTERM');
        const t = setTimeout(killGroup, graceMs);
        await exited;
        clearTimeout(t);
      }
      killGroup();
      unregister();
    },
  };
}

/** Runs a command to completion; rejects with its output on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; allowFail?: boolean; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, detached: true, cwd: opts.cwd });
    const kill = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    };
    const unregister = onCleanup(kill);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs ? setTimeout(kill, opts.timeoutMs) : undefined;
    child.once('error', (e) => (clearTimeout(timer), unregister(), reject(e)));
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      unregister();
      const c = code ?? 128;
      if (c !== 0 && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? sig}\n${tail(stderr || stdout, 10)}`));
      else resolve({ code: c, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------
// The hub

export interface Hub {
  url: string;
  port: number;
  data: string;
  token: string;
  user: string;
  daemon(): Daemon;
  /** SIGKILL (a crash) */
  kill(): Promise<void>;
  /** start again on the same data dir and port */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** `g8os hub` on loopback with its data (registry, blocks, temp files) under dir, and a user. */
export async function startHub(dir: string, user = 'stress'): Promise<Hub> {
  const data = path.join(dir, 'hub');
  const tmp = path.join(dir, 'hub-tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const port = await freePort();
  const env = { ...process.env, TMPDIR: tmp };
  const launch = (): Promise<Daemon> =>
    startDaemon('hub', [process.execPath, G8OS, 'hub', '--listen', `127.0.0.1:${port}`, '--data', data], 'hub listening', env, 30_000);
  let d = await launch();
  const add = spawnSync(process.execPath, [G8OS, 'hub', 'user', 'add', user, '--data', data], { encoding: 'utf8' });
  if (add.status !== 0) {
    await d.kill();
    throw new Error(`hub user add: ${add.stderr}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    data,
    user,
    token: add.stdout.trim().split('\n').pop()!,
    daemon: () => d,
    kill: () => d.kill(),
    async restart() {
      // the port was just freed by the killed process: retry briefly if it is not yet
      for (let i = 0; ; i++) {
        try {
          d = await launch();
          return;
        } catch (e) {
          if (i >= 10) throw e;
          await sleep(200);
        }
      }
    },
    stop: () => d.stop(15_000),
  };
}

// ---------------------------------------------------------------------------
// Mounts: `g8os mount … -d --pid`, served by a detached process

export interface Mount {
  target: string;
  backend: string;
  pid: number;
  /** SIGTERM to the serving process, wait for it; the target must be unmounted after */
  stop(): Promise<void>;
}

export async function mount(src: string, target: string, backend: string, extra: string[]): Promise<Mount> {
  fs.mkdirSync(target, { recursive: true });
  fs.mkdirSync(backend, { recursive: true });
  const pidFile = path.join(backend, 'serve.pid');
  fs.rmSync(pidFile, { force: true });
  const readPid = (): number => {
    try {
      return Number(fs.readFileSync(pidFile, 'utf8').trim());
    } catch {
      return NaN;
    }
  };
  const force = (): void => {
    const pid = readPid();
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const m of [target, path.join(backend, 'ro')]) {
      for (let i = 0; i < 3 && isMounted(m); i++) {
        if (spawnSync('umount', ['-l', m], { stdio: 'ignore' }).status !== 0) spawnSync('fusermount', ['-uz', m], { stdio: 'ignore' });
      }
    }
  };
  const unregister = onCleanup(force);
  try {
    await run(process.execPath, [G8OS, 'mount', src, target, '-d', '--backend', backend, '--pid', pidFile, ...extra], { timeoutMs: 120_000 });
  } catch (e) {
    force();
    unregister();
    let logText = '';
    try {
      logText = tail(fs.readFileSync(path.join(backend, 'mount.log'), 'utf8'), 10);
    } catch {
      // no log
    }
    throw new Error(`${(e as Error).message}${logText ? `\nmount.log: ${logText}` : ''}`);
  }
  const pid = readPid();
  if (!(pid > 0)) {
    force();
    unregister();
    throw new Error(`g8os mount ${src}: no pid in ${pidFile}`);
  }
  return {
    target,
    backend,
    pid,
    async stop() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
      const until = Date.now() + 30_000;
      while (processAlive(pid) && Date.now() < until) await sleep(50);
      const survived = processAlive(pid) || isMounted(target) || isMounted(path.join(backend, 'ro'));
      force();
      unregister();
      if (survived) throw new Error(`the mount at ${target} did not stop cleanly (pid ${pid})`);
    },
  };
}

/** `g8os flist create` of a tarball into a dir:// store. */
export async function flistCreate(tarball: string, out: string, store: string): Promise<void> {
  await run(process.execPath, [G8OS, 'flist', 'create', tarball, '-o', out, '--store', store]);
}

// ---------------------------------------------------------------------------
// Counting

export interface SuiteResult {
  name: string;
  /** one line: what the suite did */
  what: string;
  ops: number;
  /** bytes read back and checked */
  bytesChecked: number;
  /** errors the suite provoked on purpose (reads during a hub outage, aborted uploads) */
  expectedErrors: number;
  /** everything else that failed */
  errors: number;
  /** bytes that differed from what was written / published (must be 0) */
  wrongBytes: number;
  seconds: number;
  /** the first problems, one line each */
  problems: string[];
  /** small machine-readable details */
  data: Record<string, unknown>;
}

export class Tally {
  ops = 0;
  bytesChecked = 0;
  expectedErrors = 0;
  errors = 0;
  wrongBytes = 0;
  problems: string[] = [];
  data: Record<string, unknown> = {};

  constructor(readonly name: string) {}

  private note(msg: string): void {
    if (this.problems.length < 40) this.problems.push(msg);
    if (this.problems.length <= 10) log(`${this.name}: ${msg}`);
  }

  /** An unexpected error. */
  error(msg: string): void {
    this.errors++;
    this.note(`error: ${msg}`);
  }

  /** Bytes that came back wrong (n > 0). */
  wrong(n: number, msg: string): void {
    this.wrongBytes += n;
    this.note(`${n} wrong bytes: ${msg}`);
  }

  result(what: string, seconds: number): SuiteResult {
    return {
      name: this.name, what, ops: this.ops, bytesChecked: this.bytesChecked, expectedErrors: this.expectedErrors,
      errors: this.errors, wrongBytes: this.wrongBytes, seconds: Number(seconds.toFixed(1)), problems: this.problems, data: this.data,
    };
  }
}

/** Number of differing bytes of a and b over their common length, plus the length difference. */
export function diffBytes(want: Buffer, got: Buffer): number {
  const n = Math.min(want.length, got.length);
  let d = Math.abs(want.length - got.length);
  if (n === want.length && n === got.length && want.equals(got)) return 0;
  if (want.subarray(0, n).equals(got.subarray(0, n))) return d;
  for (let i = 0; i < n; i++) if (want[i] !== got[i]) d++;
  return d;
}

/** Offset of the first differing byte, or -1. */
export function firstDiff(want: Buffer, got: Buffer): number {
  const n = Math.min(want.length, got.length);
  for (let i = 0; i < n; i++) if (want[i] !== got[i]) return i;
  return want.length === got.length ? -1 : n;
}

// ---------------------------------------------------------------------------
// Reporting

const fmtInt = (n: number): string => n.toLocaleString('en-US');

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, stdio: 'pipe' }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, stdio: 'pipe' }).toString().trim();
    return dirty ? `${head}+dirty-src` : head;
  } catch {
    return 'unknown';
  }
}

export function environment(): Record<string, string | number> {
  return {
    node: process.version, cpus: os.availableParallelism(), mem_gib: Math.round(os.totalmem() / 1024 ** 3), kernel: os.release(),
    commit: gitCommit(), load1: Number(os.loadavg()[0].toFixed(2)),
  };
}

export function markdown(results: SuiteResult[], level: Level, seed: number, when: Date, totalS: number): string {
  const headers = ['suite', 'what', 'operations', 'bytes checked', 'expected errors', 'errors', 'wrong bytes', 'seconds'];
  const rows = results.map((r) => [
    r.name, r.what, fmtInt(r.ops), fmtInt(r.bytesChecked), fmtInt(r.expectedErrors), fmtInt(r.errors), fmtInt(r.wrongBytes), r.seconds.toFixed(1),
  ]);
  const width = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const right = headers.map((_, i) => i >= 2);
  const line = (r: string[]): string => `| ${r.map((c, i) => (right[i] ? c.padStart(width[i]) : c.padEnd(width[i]))).join(' | ')} |`;
  const sep = `|${width.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  const env = environment();
  const problems = results.filter((r) => r.problems.length).flatMap((r) => [`**${r.name}**:`, '', ...r.problems.slice(0, 10).map((p) => `- ${p}`), '']);
  return [
    `# g8os reliability suites ${when.toISOString().slice(0, 10)} (${level === 'full' ? 'full' : `--${level}`})`,
    '',
    `Seed ${seed}; ${totalS.toFixed(0)} s in all; ${Object.entries(env).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
    '',
    line(headers),
    sep,
    ...rows.map(line),
    '',
    '"expected errors" are the failures a suite provokes on purpose (reads while the hub is down, aborted uploads, jobs past their max_time are not errors at all); "errors" are everything else. Wrong bytes must be 0.',
    '',
    ...(problems.length ? ['## Problems', '', ...problems] : []),
  ].join('\n');
}

export function writeResults(dir: string, results: SuiteResult[], level: Level, seed: number, when: Date, totalS: number): { json: string; md: string } {
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `${when.toISOString().slice(0, 10)}${level === 'full' ? '' : `-${level}`}`);
  const doc = { level, seed, date: when.toISOString(), seconds: Number(totalS.toFixed(1)), env: environment(), suites: results };
  for (const [file, text] of [[`${base}.json`, `${JSON.stringify(doc, null, 1)}\n`], [`${base}.md`, markdown(results, level, seed, when, totalS)]]) {
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
  }
  return { json: `${base}.json`, md: `${base}.md` };
}
