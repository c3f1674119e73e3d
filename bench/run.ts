// `npm run bench [-- --quick] [-- --only images,codec,ingest,open,hub,mount,agent,container,nbd,vm,tlog,gw]`: runs the selected benchmarks in order,
// prints each table when ready and writes bench/results/<date>[-quick].{json,md} at the end.
import { agentBench } from './agent';
import { codecBench } from './codec';
import { containerBench } from './container';
import { imagesBench } from './images';
import { log, setLabel } from '../harness/cleanup';
import { type BenchResult, type Context, markdownTable, targetsTable, writeResults } from './lib';
import { hubIngest } from './hub-ingest';
import { ingest } from './ingest';
import { mountBench } from './mount';
import { nbdBench } from './nbd';
import { gwBench } from './gw';
import { open } from './open';
import { tlogBench } from './tlog';
import { vmBench } from './vm';

const BENCHES: Record<string, (ctx: Context) => Promise<BenchResult>> = {
  images: imagesBench, codec: codecBench, ingest, open, hub: hubIngest, mount: mountBench, agent: agentBench, container: containerBench, nbd: nbdBench, vm: vmBench, tlog: tlogBench, gw: gwBench,
};

function usage(msg?: string): never {
  if (msg) process.stderr.write(`bench: ${msg}\n`);
  process.stderr.write(`usage: node dist/bench/run.js [--quick] [--only ${Object.keys(BENCHES).join(',')}]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): { quick: boolean; only: string[] } {
  let quick = false;
  let only = Object.keys(BENCHES);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!v) usage('--only needs a list');
      only = v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const n of only) if (!BENCHES[n]) usage(`unknown benchmark ${JSON.stringify(n)}`);
    } else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${JSON.stringify(a)}`);
  }
  return { quick, only };
}

async function main(): Promise<void> {
  setLabel('bench');
  const { quick, only } = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) log('not root: tmpfs mounts and page cache drops will fail');
  const ctx: Context = { quick, print: (t) => process.stdout.write(`\n${markdownTable(t)}`) };
  const results: BenchResult[] = [];
  const started = Date.now();
  let failed = false;
  for (const name of only) {
    const t0 = Date.now();
    try {
      results.push(await BENCHES[name](ctx));
      log(`${name} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    } catch (e) {
      failed = true;
      log(`${name} failed: ${(e as Error).stack ?? e}`);
    }
  }
  const targets = results.flatMap((r) => r.targets ?? []);
  if (targets.length) {
    const t = targetsTable(targets, 'Issue 12 targets, this run');
    ctx.print(t);
    results.unshift({ name: 'targets', tables: [t], data: { targets } });
  }
  if (results.length) {
    const files = writeResults(results, quick);
    log(`wrote ${files.json} and ${files.md}`);
  }
  log(`total ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (failed) process.exitCode = 1;
}

void main();
