// Benchmark plumbing of its own (the shared kind is in harness/): run-and-measure, statistics,
// page cache, cached inputs, Markdown tables and the dated results files. Benchmarks are not
// tests: they only report.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onCleanup } from '../harness/cleanup';
import { type Hub, startHub } from '../harness/hub';
import type { Netns } from '../harness/netns';
import { MiB, REPO } from '../harness/paths';
import { killTree } from '../harness/procs';
import { datedBase, environment, environmentLine, padTable, writeResultFiles } from '../harness/results';
import { type Plot, writePlots } from './plot';

// What this module exported before the harness took it over, for benches written against it.
export { log, onCleanup } from '../harness/cleanup';
export { withTmpfs } from '../harness/mounts';
export { GiB, MiB, REPO } from '../harness/paths';
export { freePort } from '../harness/ports';
export { environment } from '../harness/results';

// ---------------------------------------------------------------------------
// Measuring one command

export interface Sample {
  wallS: number;
  /** Peak RSS of the whole process (all threads share it; children included as a max). */
  rssMiB: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

const TIME = '/usr/bin/time'; // GNU time (Debian package `time`): %M = ru_maxrss in KiB
const KEEP_OUTPUT = MiB; // per stream: enough for --json output, safe for a command that streams data

function collect(stream: NodeJS.ReadableStream, into: Buffer[]): void {
  let kept = 0;
  stream.on('data', (b: Buffer) => {
    if (kept >= KEEP_OUTPUT) return;
    into.push(b);
    kept += b.length;
  });
}

/** Runs cmd under GNU time; wall time is taken here (sub-ms), peak RSS from time's %M. */
export function measure(cmd: string, args: string[], opts: RunOptions = {}): Promise<Sample> {
  const out = path.join(os.tmpdir(), `g8os-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(TIME, ['-f', '%e %M', '-o', out, cmd, ...args], {
      cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    // The whole tree: the measured command is a grandchild (under GNU time) and would otherwise
    // keep writing into a scratch dir after its tmpfs is gone.
    const unregister = onCleanup(() => {
      if (child.pid) killTree(child.pid);
      fs.rmSync(out, { force: true });
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    collect(child.stdout!, stdout);
    collect(child.stderr!, stderr);
    child.on('error', (e) => {
      unregister();
      reject(new Error(`cannot run ${TIME}: ${e.message} (apt-get install time)`));
    });
    child.on('close', (code) => {
      const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
      unregister();
      let timeOut = '';
      try {
        timeOut = fs.readFileSync(out, 'utf8');
        fs.rmSync(out, { force: true });
      } catch {
        // reported below as a missing measurement
      }
      const err = Buffer.concat(stderr).toString();
      if (code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}\n${err.slice(-2000)}${timeOut}`));
        return;
      }
      // The last line is ours; "Command exited with …" lines may precede it.
      const m = /(\d+(?:\.\d+)?) (\d+)\s*$/.exec(timeOut);
      if (!m) {
        reject(new Error(`no GNU time output for ${cmd}: ${JSON.stringify(timeOut)}`));
        return;
      }
      resolve({ wallS, rssMiB: Number(m[2]) / 1024, stdout: Buffer.concat(stdout).toString(), stderr: err });
    });
  });
}

/** Runs fn n times in sequence. */
export async function repeat<T>(n: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await fn(i));
  return out;
}

/** Times a synchronous or async in-process function (seconds). */
export async function timeIt(fn: () => unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

// ---------------------------------------------------------------------------
// Statistics

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(xs: number[]): Spread {
  if (xs.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], n: s.length };
}

/** "1.23 [1.20–1.31]", or just the value for a single run. */
export function fmtSpread(s: Spread, digits = 2, scale = 1): string {
  const f = (v: number): string => (v * scale).toFixed(digits);
  return s.n <= 1 ? f(s.median) : `${f(s.median)} [${f(s.min)}–${f(s.max)}]`;
}

/** Rounded copy for the results JSON (keeps the files small). */
export function roundSpread(s: Spread, digits = 3): Spread {
  const r = (v: number): number => Number(v.toFixed(digits));
  return { median: r(s.median), min: r(s.min), max: r(s.max), n: s.n };
}

// ---------------------------------------------------------------------------
// Page cache and cached inputs

/** Drops the page cache (cold-cache runs); false when not permitted. */
export function dropCaches(): boolean {
  try {
    execFileSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/** Reads a file once so that the runs that follow find it in the page cache. */
export function warmFile(file: string): void {
  const buf = Buffer.allocUnsafe(4 * MiB);
  const fd = fs.openSync(file, 'r');
  try {
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** Where generated inputs are kept between runs (gitignored). */
export function cacheDir(): string {
  const dir = process.env.G8OS_BENCH_CACHE ?? path.join(REPO, '.g8os', 'bench-cache');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Returns `file`, creating it with make(tmpPath) first if absent (atomic rename, so a killed run leaves no half file). */
export async function cached(file: string, make: (tmp: string) => Promise<void>): Promise<string> {
  if (fs.existsSync(file)) return file;
  const tmp = `${file}.partial-${process.pid}`;
  const unregister = onCleanup(() => fs.rmSync(tmp, { force: true, recursive: true }));
  try {
    await make(tmp);
    fs.renameSync(tmp, file);
  } finally {
    unregister();
    fs.rmSync(tmp, { force: true, recursive: true });
  }
  return file;
}

// ---------------------------------------------------------------------------
// Reporting

export interface Table {
  title: string;
  headers: string[];
  rows: Array<Array<string | number>>;
  notes?: string[];
}

/** What run.ts hands each benchmark. */
export interface Context {
  quick: boolean;
  /** Prints a table as soon as it is ready. */
  print(t: Table): void;
}

export interface BenchResult {
  name: string;
  tables: Table[];
  /** Small machine-readable numbers (medians and spreads), for comparing runs. */
  data: Record<string, unknown>;
  /** Bar charts (bench/plot.ts), written as <date>[-quick]-<name>.svg and linked from the Markdown. */
  plots?: Plot[];
  /** Issue targets this bench measured; run.ts gathers them into one table. */
  targets?: Target[];
}

/** One measured figure against its target. met: null when it could not be measured. */
export interface Target {
  what: string;
  target: string;
  measured: string;
  met: boolean | null;
  /** a figure the issue asks to report, with no bound to meet */
  info?: boolean;
}

/** The targets of a run as one table: what, target, measured, met. */
export function targetsTable(targets: Target[], title: string): Table {
  const met = (m: boolean | null): string => (m === null ? 'not measured' : m ? 'met' : 'NOT met');
  return {
    title,
    headers: ['what', 'target', 'measured', 'met?'],
    rows: targets.map((t) => [t.what, t.target, t.measured, t.info ? '–' : met(t.met)]),
    notes: ['Each figure is from the bench section named first in its row, same run; median [min–max] unless said.'],
  };
}

const NUMERIC = /^[-+]?[\d.,]+(\s*[×%x])?(\s*\[.*\])?$/;

/** A Markdown table, padded so it also reads well in a terminal; numeric columns right-aligned. */
export function markdownTable(t: Table): string {
  const right = t.headers.map((_, i) => t.rows.length > 0 && t.rows.every((r) => NUMERIC.test(String(r[i] ?? '')) || r[i] === '–'));
  const notes = t.notes?.length ? `\n${t.notes.join('\n')}` : '';
  return [`### ${t.title}`, '', ...padTable(t.headers, t.rows.map((r) => r.map(String)), right), notes].join('\n').trimEnd() + '\n';
}

/**
 * Writes bench/results/<date>[-quick].json and .md. A run with --only replaces just its own
 * benches in today's file, so partial runs do not erase the others.
 */
export function writeResults(results: BenchResult[], quick: boolean, when = new Date()): { json: string; md: string } {
  const base = datedBase(path.join(REPO, 'bench', 'results'), when, quick ? '-quick' : '');
  type Stored = BenchResult & { date: string; env: Record<string, string | number> };
  let benches: Record<string, Stored> = {};
  try {
    benches = (JSON.parse(fs.readFileSync(`${base}.json`, 'utf8')) as { benches: Record<string, Stored> }).benches ?? {};
  } catch {
    // first run today
  }
  // Each bench keeps the date and environment of its own run (--only runs mix them).
  const env = environment();
  for (const r of results) benches[r.name] = { name: r.name, date: when.toISOString(), env, tables: r.tables, data: r.data, ...(r.plots?.length ? { plots: r.plots } : {}) };
  const doc = { quick, benches };
  // Every stored bench's plots are drawn again (a partial run keeps the others' files current).
  const svgs = new Map(Object.values(benches).map((r) => [r.name, r.plots?.length ? writePlots(r.plots, base) : []]));
  const md = [
    `# g8os benchmarks ${when.toISOString().slice(0, 10)}${quick ? ' (--quick)' : ''}`,
    '',
    ...Object.values(benches).flatMap((r) => [
      `## ${r.name}`,
      '',
      `Run ${r.date}; ${environmentLine(r.env)}.`,
      '',
      ...r.tables.map(markdownTable),
      ...(r.plots ?? []).map((p, i) => `![${p.title}](${svgs.get(r.name)![i]})\n`),
    ]),
  ].join('\n');
  // One line per array of plain values keeps the file short and its diffs readable.
  const json = JSON.stringify(doc, null, 1).replace(/\[\n\s*([^[\]{}]*?)\n\s*\]/g, (_, inner: string) => `[${inner.replace(/,\n\s*/g, ', ')}]`);
  return writeResultFiles(base, `${json}\n`, md);
}

export interface BenchHub {
  url: string;
  token: string;
  hub: Hub;
  stop(): Promise<unknown>;
}

/** A hub with everything (registry, blocks, the writer's temp files) under dir, and a token; inside the namespace when given (its loopback is the agent's). */
export async function benchHub(dir: string, ns?: Netns): Promise<BenchHub> {
  const hub = await startHub({ netns: ns?.name, dir });
  try {
    return { url: hub.url, token: hub.token('bench'), hub, stop: () => hub.stop() };
  } catch (e) {
    await hub.stop();
    throw e;
  }
}

export interface FirstLine {
  /** spawn to the expected first line, seconds */
  firstS: number;
  /** spawn to exit */
  totalS: number;
}
