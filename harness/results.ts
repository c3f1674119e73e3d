// What bench and stress results files share: the machine and commit they ran on, dated file
// names, atomic writes and padded Markdown tables.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GiB, REPO } from './paths';

const LOAD_AT_START = os.loadavg()[0]; // others share this machine: record how busy it was

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, stdio: 'pipe' }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, stdio: 'pipe' }).toString().trim();
    return dirty ? `${head}+dirty-src` : head;
  } catch {
    return 'unknown';
  }
}

/** The machine, the tools and the commit a run measured, and how busy the machine was. */
export function environment(): Record<string, string | number> {
  let tarVersion = 'unknown';
  try {
    tarVersion = execFileSync('tar', ['--version'], { stdio: 'pipe' }).toString().split('\n')[0];
  } catch {
    // not fatal: only reported
  }
  return {
    node: process.version,
    cpus: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    mem_gib: Math.round(os.totalmem() / GiB),
    kernel: os.release(),
    tar: tarVersion,
    commit: gitCommit(),
    load1_start: Number(LOAD_AT_START.toFixed(2)),
    load1_end: Number(os.loadavg()[0].toFixed(2)),
  };
}

/** "k v, k v" of an environment(), for a results file's header line. */
export const environmentLine = (env: Record<string, string | number>): string => Object.entries(env).map(([k, v]) => `${k} ${v}`).join(', ');

/** <dir>/<YYYY-MM-DD><suffix> (dir made if missing). */
export function datedBase(dir: string, when: Date, suffix = ''): string {
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, `${when.toISOString().slice(0, 10)}${suffix}`);
}

/** <base>.json and <base>.md, each written whole or not at all (rename). */
export function writeResultFiles(base: string, json: string, md: string): { json: string; md: string } {
  for (const [file, text] of [[`${base}.json`, json], [`${base}.md`, md]]) {
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
  }
  return { json: `${base}.json`, md: `${base}.md` };
}

/** A Markdown table padded so that it also reads well in a terminal; `right` columns right-aligned. */
export function padTable(headers: string[], rows: string[][], right: boolean[]): string[] {
  const width = headers.map((h, i) => Math.max(3, h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (right[i] ? (c ?? '').padStart(width[i]) : (c ?? '').padEnd(width[i]))).join(' | ')} |`;
  const sep = `|${width.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(headers), sep, ...rows.map(line)];
}
