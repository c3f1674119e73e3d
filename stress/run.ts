// `npm run stress [-- --quick | --ci] [-- --only fsx,fio,…] [-- --seed N]`: the reliability
// suites. Each reports operations, bytes checked, errors and wrong bytes (which must be 0);
// the table is printed and written to stress/results/<date>[-quick].{json,md} (--ci writes
// only with --results <dir>). Exit 1 when any suite found a wrong byte or an unexpected error.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentSuite } from './agent';
import { concurrencySuite } from './concurrency';
import { fioSuite } from './fio';
import { fsxSuite } from './fsx';
import { hubSuite } from './hub';
import { log, runCleanups, setLabel } from '../harness/cleanup';
import { REPO } from '../harness/paths';
import { markdown, writeResults } from './report';
import { type Context, type Level, type SuiteResult } from './suite';

const SUITES: Record<string, (ctx: Context) => Promise<SuiteResult>> = {
  fsx: fsxSuite,
  fio: fioSuite,
  concurrency: concurrencySuite,
  hub: hubSuite,
  agent: agentSuite,
};

function usage(msg?: string): never {
  if (msg) process.stderr.write(`stress: ${msg}\n`);
  process.stderr.write(`usage: node dist/stress/run.js [--quick | --ci] [--seed N] [--only ${Object.keys(SUITES).join(',')}] [--image rootfs.tar[.gz]] [--results DIR]\n`);
  process.exit(2);
}

interface Args {
  level: Level;
  seed: number;
  only: string[];
  image?: string;
  results?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { level: 'full', seed: crypto.randomInt(1, 2 ** 31), only: Object.keys(SUITES) };
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].split(/=(.*)/s, 2);
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') usage(`${k} needs a value`);
      return v;
    };
    if (k === '--quick') a.level = 'quick';
    else if (k === '--ci') a.level = 'ci';
    else if (k === '--seed') {
      a.seed = Number(value());
      if (!Number.isInteger(a.seed) || a.seed < 0) usage('--seed must be a non-negative integer');
    } else if (k === '--only') {
      a.only = value().split(',').map((s) => s.trim()).filter(Boolean);
      for (const n of a.only) if (!SUITES[n]) usage(`unknown suite ${JSON.stringify(n)}`);
    } else if (k === '--image') a.image = path.resolve(value());
    else if (k === '--results') a.results = path.resolve(value());
    else if (k === '-h' || k === '--help') usage();
    else usage(`unknown argument ${JSON.stringify(argv[i])}`);
  }
  return a;
}

async function main(): Promise<number> {
  setLabel('stress');
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) log('not root: FUSE and overlay mounts, tmpfs and network namespaces need root');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-stress-'));
  const ctx: Context = { level: args.level, seed: args.seed, image: args.image, work };
  log(`${args.level} run, seed ${args.seed}, suites ${args.only.join(', ')}`);
  const results: SuiteResult[] = [];
  const started = Date.now();
  const when = new Date();
  try {
    for (const name of args.only) {
      const t0 = Date.now();
      try {
        results.push(await SUITES[name](ctx));
      } catch (e) {
        log(`${name} failed: ${(e as Error).stack ?? e}`);
        results.push({
          name, what: 'did not complete', ops: 0, bytesChecked: 0, expectedErrors: 0, errors: 1, wrongBytes: 0,
          seconds: (Date.now() - t0) / 1000, problems: [`error: ${(e as Error).message.split('\n')[0]}`], data: {},
        });
      }
      const r = results[results.length - 1];
      log(`${name}: ${r.ops} ops, ${r.errors} errors, ${r.wrongBytes} wrong bytes, ${r.seconds.toFixed(1)} s`);
    }
  } finally {
    runCleanups();
    fs.rmSync(work, { recursive: true, force: true });
  }
  const totalS = (Date.now() - started) / 1000;
  process.stdout.write(`\n${markdown(results, args.level, args.seed, when, totalS)}\n`);
  const dir = args.results ?? (args.level === 'ci' ? undefined : path.join(REPO, 'stress', 'results'));
  if (dir) {
    const files = writeResults(dir, results, args.level, args.seed, when, totalS);
    log(`wrote ${files.json} and ${files.md}`);
  }
  // One line for machines (the CI test reads it).
  process.stdout.write(`STRESS ${JSON.stringify(results.map(({ name, ops, errors, expectedErrors, wrongBytes, seconds }) => ({ name, ops, errors, expectedErrors, wrongBytes, seconds })))}\n`);
  const bad = results.filter((r) => r.errors > 0 || r.wrongBytes > 0);
  log(`total ${totalS.toFixed(0)} s; ${bad.length ? `FAILED: ${bad.map((r) => r.name).join(', ')}` : 'no errors, no wrong bytes'}`);
  return bad.length ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    log(e.stack ?? e.message);
    process.exitCode = 2;
  },
);
