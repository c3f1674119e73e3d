// Open: how long until one path of a big flist can be answered, as a whole CLI process (vs bare
// Node start-up) and in-process (openGen2 + stat + close), with a full walk for comparison.
import fs from 'node:fs';
import path from 'node:path';
import { extractDb } from '../src/flist/archive';
import { openGen2 } from '../src/flist/reader';
import { writeBigTarFile } from '../test/helpers/tarballs';
import { log } from '../harness/cleanup';
import { withTmpfs } from '../harness/mounts';
import { G8OS, MiB } from '../harness/paths';
import { type BenchResult, type Context, cacheDir, cached, dropCaches, fmtSpread, measure, repeat, roundSpread, type Sample, spread, type Spread, type Table, timeIt } from './lib';

const FUNK = '/work/shared/fixtures/real-flists/threefoldtech-funk-latest.flist';

/** An flist of `files` tiny files (bigTree layout dNNNN/sNN/fNNNNNNN), tar and flist both cached. */
async function tinyFlist(files: number): Promise<string> {
  const base = path.join(cacheDir(), `tiny-${files}f-s2`);
  const tar = await cached(`${base}.tar`, async (tmp) => {
    log(`generating ${path.basename(base)}.tar (cached for later runs)`);
    await writeBigTarFile(tmp, { files, totalBytes: files * 128, seed: 2 });
  });
  // Cached too: the flist's shape depends on the layout, not on builder speed. Delete the
  // cache dir after changing the writer.
  return cached(`${base}.flist`, async (tmp) => {
    log(`building ${path.basename(base)}.flist (cached for later runs)`);
    await withTmpfs(256 * MiB, (dir) =>
      measure(process.execPath, [G8OS, 'flist', 'create', tar, '-o', tmp, '--store', `dir://${dir}/blocks`, '--no-backend']));
  });
}

/** The deepest regular file (last of the deepest in walk order): what a lookup costs most for. */
async function deepestFile(flist: string): Promise<{ path: string; entries: number }> {
  const r = await openGen2(flist);
  try {
    let best = '';
    let depth = -1;
    let entries = 0;
    for (const e of r.walk()) {
      entries++;
      const d = e.path.split('/').length;
      if (e.kind === 'file' && d >= depth) {
        depth = d;
        best = e.path;
      }
    }
    return { path: best, entries };
  } finally {
    r.close();
  }
}

interface CliRow {
  label: string;
  cold: boolean;
  samples: Sample[];
}

async function cli(label: string, args: string[], runs: number, cold: boolean): Promise<CliRow> {
  log(`open: ${label}${cold ? ' (cold cache)' : ''}, ${runs} runs`);
  if (!cold) await measure(process.execPath, args); // warm the page cache; not counted
  const samples = await repeat(runs, () => {
    if (cold && !dropCaches()) throw new Error('cannot drop the page cache (needs root)');
    return measure(process.execPath, args);
  });
  return { label, cold, samples };
}

interface InProcess {
  name: string;
  entries: number;
  deep: string;
  openStat: Spread;
  unpack: Spread;
  walk: Spread;
}

async function inProcess(name: string, flist: string, runs: number, walkRuns: number): Promise<InProcess> {
  log(`open: in-process ${name}`);
  const { path: deep, entries } = await deepestFile(flist);
  const once = async (): Promise<void> => {
    const r = await openGen2(flist);
    try {
      if (!r.stat(deep)) throw new Error(`${deep} missing in ${flist}`);
    } finally {
      r.close();
    }
  };
  const openStat = await repeat(runs, () => timeIt(once));
  // Unpacking flistdb.sqlite3 from the tar.gz into a temp dir is part of every open.
  const unpack = await repeat(runs, () =>
    timeIt(async () => {
      const x = await extractDb(flist);
      if (x.tempDir) fs.rmSync(x.tempDir, { recursive: true, force: true });
    }));
  const walk = await repeat(walkRuns, async () => {
    const r = await openGen2(flist);
    try {
      return await timeIt(() => {
        let n = 0;
        for (const _ of r.walk()) n++;
        if (n !== entries) throw new Error(`walk gave ${n} entries, expected ${entries}`);
      });
    } finally {
      r.close();
    }
  });
  return { name, entries, deep, openStat: spread(openStat), unpack: spread(unpack), walk: spread(walk) };
}

export async function open(ctx: Context): Promise<BenchResult> {
  const files = ctx.quick ? 20_000 : 100_000;
  const runs = ctx.quick ? 5 : 10;
  const coldRuns = ctx.quick ? 1 : 3;
  const tiny = await tinyFlist(files);
  const tinyName = `${files / 1000}k tiny files`;

  // In-process first: it also finds the deep paths the CLI rows use.
  const ip = [await inProcess(tinyName, tiny, runs, 3)];
  if (fs.existsSync(FUNK)) ip.push(await inProcess('funk (real hub flist)', FUNK, runs, 3));
  else log(`open: ${FUNK} not found, skipped`);
  const ipTable: Table = {
    title: `Open in-process (openGen2 + stat(deep path) + close), ${runs} runs`,
    headers: ['flist', 'entries', 'flist MB', 'open+stat ms', 'of which unpack db ms', 'full walk ms', 'walk entries/s'],
    rows: ip.map((r) => [
      r.name, r.entries, (fs.statSync(r.name === tinyName ? tiny : FUNK).size / 1e6).toFixed(2),
      fmtSpread(r.openStat, 1, 1000), fmtSpread(r.unpack, 1, 1000), fmtSpread(r.walk, 0, 1000), Math.round(r.entries / r.walk.median),
    ]),
    notes: [
      'Values are median [min–max]. "unpack db" = extracting flistdb.sqlite3 from the tar.gz into a temp dir, alone;',
      `full walk = walk() over an already open flist (3 runs). Deep paths: ${ip.map((r) => `/${r.deep}`).join(', ')}.`,
    ],
  };
  ctx.print(ipTable);

  const rows: CliRow[] = [
    await cli("node -e ''", ['-e', ''], runs, false),
    await cli('g8os --version', [G8OS, '--version'], runs, false),
    await cli(`g8os flist stat (${tinyName})`, [G8OS, 'flist', 'stat', tiny, ip[0].deep], runs, false),
  ];
  if (ip[1]) rows.push(await cli('g8os flist stat (funk)', [G8OS, 'flist', 'stat', FUNK, ip[1].deep], runs, false));
  rows.push(
    await cli("node -e ''", ['-e', ''], coldRuns, true),
    await cli(`g8os flist stat (${tinyName})`, [G8OS, 'flist', 'stat', tiny, ip[0].deep], coldRuns, true),
  );
  const base = (cold: boolean): number => spread(rows.find((r) => r.cold === cold)!.samples.map((s) => s.wallS)).median;
  const cliTable: Table = {
    title: 'Open as a whole CLI process (wall time of the process)',
    headers: ['command', 'cache', 'runs', 'wall ms', 'minus node start-up ms', 'peak RSS MiB'],
    rows: rows.map((r) => {
      const wall = spread(r.samples.map((s) => s.wallS));
      return [
        r.label, r.cold ? 'cold' : 'warm', wall.n, fmtSpread(wall, 1, 1000),
        r.label.startsWith('node') ? '–' : ((wall.median - base(r.cold)) * 1000).toFixed(1), fmtSpread(spread(r.samples.map((s) => s.rssMiB)), 0),
      ];
    }),
    notes: ['Values are median [min–max]. Cold = page cache dropped before each run (node, modules and the flist all read from disk).'],
  };
  ctx.print(cliTable);

  const ms = (s: Spread): Spread => roundSpread({ ...s, median: s.median * 1000, min: s.min * 1000, max: s.max * 1000 }, 1);
  return {
    name: 'open',
    tables: [ipTable, cliTable],
    data: {
      in_process: Object.fromEntries(ip.map((r) => [r.name, {
        entries: r.entries, deep: r.deep, open_stat_ms: ms(r.openStat), unpack_ms: ms(r.unpack), walk_ms: ms(r.walk),
      }])),
      cli: Object.fromEntries(rows.map((r) => [`${r.label} (${r.cold ? 'cold' : 'warm'})`, {
        wall_ms: ms(spread(r.samples.map((s) => s.wallS))), rss_mib: roundSpread(spread(r.samples.map((s) => s.rssMiB)), 1),
      }])),
    },
  };
}
