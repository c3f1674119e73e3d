// The suites' dated results: <dir>/<date>[-level].json and .md.
import { datedBase, environment, environmentLine, padTable, writeResultFiles } from '../harness/results';
import type { Level, SuiteResult } from './suite';

const fmtInt = (n: number): string => n.toLocaleString('en-US');

export function markdown(results: SuiteResult[], level: Level, seed: number, when: Date, totalS: number): string {
  const headers = ['suite', 'what', 'operations', 'bytes checked', 'expected errors', 'errors', 'wrong bytes', 'seconds'];
  const rows = results.map((r) => [
    r.name, r.what, fmtInt(r.ops), fmtInt(r.bytesChecked), fmtInt(r.expectedErrors), fmtInt(r.errors), fmtInt(r.wrongBytes), r.seconds.toFixed(1),
  ]);
  const env = environment();
  const problems = results.filter((r) => r.problems.length).flatMap((r) => [`**${r.name}**:`, '', ...r.problems.slice(0, 10).map((p) => `- ${p}`), '']);
  return [
    `# g8os reliability suites ${when.toISOString().slice(0, 10)} (${level === 'full' ? 'full' : `--${level}`})`,
    '',
    `Seed ${seed}; ${totalS.toFixed(0)} s in all; ${environmentLine(env)}.`,
    '',
    ...padTable(headers, rows, headers.map((_, i) => i >= 2)),
    '',
    '"expected errors" are the failures a suite provokes on purpose (reads while the hub is down, aborted uploads, jobs past their max_time are not errors at all); "errors" are everything else. Wrong bytes must be 0.',
    '',
    ...(problems.length ? ['## Problems', '', ...problems] : []),
  ].join('\n');
}

export function writeResults(dir: string, results: SuiteResult[], level: Level, seed: number, when: Date, totalS: number): { json: string; md: string } {
  const base = datedBase(dir, when, level === 'full' ? '' : `-${level}`);
  const doc = { level, seed, date: when.toISOString(), seconds: Number(totalS.toFixed(1)), env: environment(), suites: results };
  return writeResultFiles(base, `${JSON.stringify(doc, null, 1)}\n`, markdown(results, level, seed, when, totalS));
}
