// Ingest: `g8os flist create` from a .tar / .tar.gz vs GNU tar extracting the same archive,
// both writing to a tmpfs with the input in the page cache, so that neither is disk-bound.
import fs from 'node:fs';
import path from 'node:path';
import { writeBigTarFile } from '../test/helpers/tarballs';
import {
  type BenchResult, type Context, cacheDir, cached, fmtSpread, log, MiB, measure, REPO, repeat, roundSpread,
  type Sample, spread, type Table, warmFile, withTmpfs,
} from './lib';
import { type Bar, type Plot } from './plot';

const FILES_PER_GIB = 20_000; // same file density at every size, so RSS compares like with like

export interface Input {
  tar: string;
  tgz?: string;
  bytes: number; // uncompressed tar size
  files: number;
  label: string;
}

/** The cached generated tarball (and .tar.gz) of `mib` MiB; shared with the hub bench. */
export async function input(mib: number, withGz: boolean): Promise<Input> {
  const files = Math.round((FILES_PER_GIB * mib) / 1024);
  const name = path.join(cacheDir(), `big-${mib}m-${files}f-s1`);
  const opts = { files, totalBytes: mib * MiB, seed: 1 };
  const make = (gzip: boolean) => async (tmp: string) => {
    log(`generating ${path.basename(name)}.tar${gzip ? '.gz' : ''} (cached for later runs)`);
    await writeBigTarFile(tmp, { ...opts, gzip });
  };
  const tar = await cached(`${name}.tar`, make(false));
  const tgz = withGz ? await cached(`${name}.tar.gz`, make(true)) : undefined;
  const label = mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`;
  return { tar, tgz, bytes: fs.statSync(tar).size, files, label };
}

interface CreateStats {
  blocks: number;
  uploaded_chunks: number;
  uploaded_bytes: number;
}

const G8OS = path.join(REPO, 'bin', 'g8os');

function create(file: string, dir: string, out: string): Promise<Sample> {
  return measure(process.execPath, [G8OS, 'flist', 'create', file, '-o', path.join(dir, out), '--store', `dir://${dir}/blocks`, '--json']);
}

function statsOf(s: Sample): CreateStats {
  return JSON.parse(s.stdout.trim().split('\n').pop()!) as CreateStats;
}

interface Row {
  label: string;
  tool: string;
  samples: Sample[];
  written?: number[];
}

function tmpfsSize(inp: Input): number {
  return 2 * inp.bytes + 512 * MiB; // extraction or blocks, plus the flist and slack
}

/** Baseline, fresh-store and same-store (dedup) runs for one archive. */
async function compare(inp: Input, file: string, gz: boolean, runs: number): Promise<Row[]> {
  const kind = gz ? 'tar.gz' : 'tar';
  warmFile(file);
  const tar = await repeat(runs, (i) => {
    log(`ingest ${kind}: GNU tar run ${i + 1}/${runs}`);
    return withTmpfs(tmpfsSize(inp), (dir) => {
      fs.mkdirSync(path.join(dir, 'x'));
      return measure('tar', [gz ? '-xzf' : '-xf', file, '-C', path.join(dir, 'x')]);
    });
  });
  const fresh: Sample[] = [];
  const again: Sample[] = [];
  await repeat(runs, (i) => {
    log(`ingest ${kind}: g8os create run ${i + 1}/${runs} (fresh store, then same store)`);
    return withTmpfs(tmpfsSize(inp), async (dir) => {
      fresh.push(await create(file, dir, 'out.flist'));
      again.push(await create(file, dir, 'again.flist'));
    });
  });
  return [
    { label: `${inp.label} ${kind}`, tool: gz ? 'GNU tar -xzf' : 'GNU tar -xf', samples: tar },
    { label: `${inp.label} ${kind}`, tool: 'g8os create, fresh store', samples: fresh, written: fresh.map((s) => statsOf(s).uploaded_chunks) },
    { label: `${inp.label} ${kind}`, tool: 'g8os create, same store', samples: again, written: again.map((s) => statsOf(s).uploaded_chunks) },
  ];
}

function speedTable(inp: Input, rows: Row[]): { table: Table; data: Record<string, unknown>; plot: Plot } {
  const data: Record<string, unknown> = {};
  const tableRows: Table['rows'] = [];
  const bars: Bar[] = [];
  let baseline = NaN;
  for (const r of rows) {
    const wall = spread(r.samples.map((s) => s.wallS));
    const rss = spread(r.samples.map((s) => s.rssMiB));
    const mbps = spread(r.samples.map((s) => inp.bytes / 1e6 / s.wallS));
    if (r.tool.startsWith('GNU tar')) baseline = wall.median;
    const ratio = baseline / wall.median;
    const written = r.written ? spread(r.written) : undefined;
    bars.push({ label: `${r.label.split(' ').pop()}: ${r.tool.replace('g8os create', 'g8os flist create')}`, median: mbps.median, min: mbps.min, max: mbps.max, baseline: r.tool.startsWith('GNU tar') });
    tableRows.push([
      r.label, r.tool, fmtSpread(mbps, 0), fmtSpread(wall, 2), `${ratio.toFixed(2)}×`, fmtSpread(rss, 0),
      written ? (written.min === written.max ? String(written.median) : fmtSpread(written, 0)) : '–',
    ]);
    data[`${r.label} | ${r.tool}`] = {
      wall_s: roundSpread(wall), mb_per_s: roundSpread(mbps, 1), rss_mib: roundSpread(rss, 1), speed_vs_tar: Number(ratio.toFixed(3)),
      ...(written ? { blocks_written: written.median } : {}),
    };
  }
  const runs = rows[0]?.samples.length ?? 0;
  return {
    table: {
      title: `Ingest ${inp.label} (${inp.files} files, ${(inp.bytes / 1e6).toFixed(0)} MB uncompressed tar), ${runs} run${runs === 1 ? '' : 's'} each`,
      headers: ['input', 'tool', 'MB/s', 'wall s', 'speed vs tar', 'peak RSS MiB', 'blocks written'],
      rows: tableRows,
      notes: [
        'MB/s = uncompressed tar bytes (10^6) per wall second; values are median [min–max]. Input in page cache, output on tmpfs.',
        'speed vs tar = tar wall / ours wall (target ≥ 0.5×). Same store = second create into the store of the first (dedup).',
      ],
    },
    data,
    plot: { name: 'ingest', title: `flist create from ${inp.label} (${inp.files} files) vs tar -x into tmpfs`, unit: 'MB/s (uncompressed tar bytes per wall second)', bars, digits: 0 },
  };
}

export async function ingest(ctx: Context): Promise<BenchResult> {
  const runs = ctx.quick ? 1 : 3;
  const [mainMiB, smallMiB] = ctx.quick ? [256, 64] : [1024, 256];
  const big = await input(mainMiB, true);
  const small = await input(smallMiB, false);

  const rows = [...(await compare(big, big.tar, false, runs)), ...(await compare(big, big.tgz!, true, runs))];
  const speed = speedTable(big, rows);
  ctx.print(speed.table);

  // Memory independence: the same generator at a quarter of the size.
  warmFile(small.tar);
  const smallRuns = await repeat(runs, (i) => {
    log(`ingest memory: g8os create ${small.label} run ${i + 1}/${runs}`);
    return withTmpfs(tmpfsSize(small), (dir) => create(small.tar, dir, 'out.flist'));
  });
  const bigFresh = rows.find((r) => r.label.endsWith(' tar') && r.tool.includes('fresh'))!.samples;
  const bigTar = rows.find((r) => r.label.endsWith(' tar') && r.tool.startsWith('GNU'))!.samples;
  const mem = [
    { inp: small, s: spread(smallRuns.map((s) => s.rssMiB)) },
    { inp: big, s: spread(bigFresh.map((s) => s.rssMiB)), tar: spread(bigTar.map((s) => s.rssMiB)) },
  ];
  const memTable: Table = {
    title: 'Ingest memory vs input size (.tar, fresh store)',
    headers: ['input', 'files', 'MB', 'g8os peak RSS MiB', 'GNU tar peak RSS MiB'],
    rows: mem.map((m) => [m.inp.label, m.inp.files, (m.inp.bytes / 1e6).toFixed(0), fmtSpread(m.s, 0), m.tar ? fmtSpread(m.tar, 0) : '–']),
    notes: ['Target: RSS independent of input size and under 300 MiB. Peak RSS covers the worker threads (one process).'],
  };
  ctx.print(memTable);
  return {
    name: 'ingest',
    tables: [speed.table, memTable],
    plots: [speed.plot],
    data: {
      ...speed.data,
      memory: Object.fromEntries(mem.map((m) => [m.inp.label, { files: m.inp.files, bytes: m.inp.bytes, rss_mib: roundSpread(m.s, 1) }])),
    },
  };
}
