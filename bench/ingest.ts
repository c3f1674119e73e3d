// Ingest: `g8os flist create` from the real Debian images (bench/images.ts; python, and node in
// full runs) as .tar / .tar.gz vs GNU tar extracting the same file, both writing to a tmpfs with
// the input in the page cache, so that neither is disk-bound. Full runs add a generated 1 GiB
// archive to the memory table (no real image that large is at hand).
import fs from 'node:fs';
import path from 'node:path';
import { writeBigTarFile } from '../test/helpers/tarballs';
import { type Image, realImages } from './images';
import { log } from '../harness/cleanup';
import { withTmpfs } from '../harness/mounts';
import { G8OS, MiB } from '../harness/paths';
import { type BenchResult, type Context, cacheDir, cached, fmtSpread, measure, repeat, roundSpread, type Sample, spread, type Spread, type Table, warmFile } from './lib';
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

/** A real image as an ingest input (bench/images.ts). */
export function imageInput(img: Image): Input {
  return { tar: img.tar, tgz: img.tgz, bytes: img.info.tar_bytes, files: img.info.entries, label: `${img.name} image` };
}

interface CreateStats {
  blocks: number;
  uploaded_chunks: number;
  uploaded_bytes: number;
}


function create(file: string, dir: string, out: string): Promise<Sample> {
  return measure(process.execPath, [G8OS, 'flist', 'create', file, '-o', path.join(dir, out), '--store', `dir://${dir}/blocks`, '--json']);
}

function statsOf(s: Sample): CreateStats {
  return JSON.parse(s.stdout.trim().split('\n').pop()!) as CreateStats;
}

interface Row {
  inp: Input;
  kind: 'tar' | 'tar.gz';
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
  const kind: Row['kind'] = gz ? 'tar.gz' : 'tar';
  warmFile(file);
  const tar = await repeat(runs, (i) => {
    log(`ingest ${inp.label} ${kind}: GNU tar run ${i + 1}/${runs}`);
    return withTmpfs(tmpfsSize(inp), (dir) => {
      fs.mkdirSync(path.join(dir, 'x'));
      return measure('tar', [gz ? '-xzf' : '-xf', file, '-C', path.join(dir, 'x')]);
    });
  });
  const fresh: Sample[] = [];
  const again: Sample[] = [];
  await repeat(runs, (i) => {
    log(`ingest ${inp.label} ${kind}: g8os create run ${i + 1}/${runs} (fresh store, then same store)`);
    return withTmpfs(tmpfsSize(inp), async (dir) => {
      fresh.push(await create(file, dir, 'out.flist'));
      again.push(await create(file, dir, 'again.flist'));
    });
  });
  return [
    { inp, kind, label: `${inp.label} .${kind}`, tool: gz ? 'GNU tar -xzf' : 'GNU tar -xf', samples: tar },
    { inp, kind, label: `${inp.label} .${kind}`, tool: 'g8os create, fresh store', samples: fresh, written: fresh.map((s) => statsOf(s).uploaded_chunks) },
    { inp, kind, label: `${inp.label} .${kind}`, tool: 'g8os create, same store', samples: again, written: again.map((s) => statsOf(s).uploaded_chunks) },
  ];
}

function speedTable(inputs: Input[], rows: Row[], runs: number, quick: boolean): { table: Table; data: Record<string, unknown>; plot: Plot } {
  const data: Record<string, unknown> = {};
  const tableRows: Table['rows'] = [];
  const bars: Bar[] = [];
  let baseline = NaN;
  for (const r of rows) {
    const inp = r.inp;
    const wall = spread(r.samples.map((s) => s.wallS));
    const rss = spread(r.samples.map((s) => s.rssMiB));
    const mbps = spread(r.samples.map((s) => inp.bytes / 1e6 / s.wallS));
    if (r.tool.startsWith('GNU tar')) baseline = wall.median;
    const ratio = baseline / wall.median;
    const written = r.written ? spread(r.written) : undefined;
    if (!r.tool.includes('same store')) bars.push({ label: `${r.label.replace(' image', '')}: ${r.tool.replace('g8os create, fresh store', 'g8os flist create')}`, median: mbps.median, min: mbps.min, max: mbps.max, baseline: r.tool.startsWith('GNU tar') });
    tableRows.push([
      r.label, r.tool, fmtSpread(mbps, 0), fmtSpread(wall, 2), `${ratio.toFixed(2)}×`, fmtSpread(rss, 0),
      written ? (written.min === written.max ? String(written.median) : fmtSpread(written, 0)) : '–',
    ]);
    data[`${r.label} | ${r.tool}`] = {
      bytes: inp.bytes, wall_s: roundSpread(wall), mb_per_s: roundSpread(mbps, 1), rss_mib: roundSpread(rss, 1), speed_vs_tar: Number(ratio.toFixed(3)),
      ...(written ? { blocks_written: written.median } : {}),
    };
  }
  return {
    table: {
      title: `Ingest of the real images (${inputs.map((i) => `${i.label}: ${i.files} entries, ${(i.bytes / 1e6).toFixed(0)} MB .tar`).join('; ')}), ${runs} run${runs === 1 ? '' : 's'} each`,
      headers: ['input', 'tool', 'MB/s', 'wall s', 'speed vs tar', 'peak RSS MiB', 'blocks written'],
      rows: tableRows,
      notes: [
        'Inputs: the Debian bookworm images of bench/images.ts (mmdebstrap). MB/s = uncompressed .tar bytes (10^6) per wall second, also for .tar.gz; median [min–max]. Input in page cache, output on tmpfs.',
        'speed vs tar = tar wall / ours wall (target ≥ 0.5×). Same store = second create into the store of the first (dedup).',
        ...(quick ? ['--quick: python image only.'] : []),
      ],
    },
    data,
    plot: { name: 'ingest', title: 'flist create from the real images vs tar -x into tmpfs', unit: 'MB/s (uncompressed .tar bytes per wall second)', bars, digits: 0 },
  };
}

export async function ingest(ctx: Context): Promise<BenchResult> {
  const runs = ctx.quick ? 1 : 3;
  const images = (await realImages(ctx.quick)).map(imageInput);
  const rows: Row[] = [];
  for (const img of images) rows.push(...(await compare(img, img.tar, false, runs)), ...(await compare(img, img.tgz!, true, runs)));
  const speed = speedTable(images, rows, runs, ctx.quick);
  ctx.print(speed.table);

  // Memory vs input size: the real images (.tar, fresh store), and in full runs a generated
  // 1 GiB archive, since no real image of that size is at hand.
  const mem: Array<{ inp: Input; s: Spread; tar: Spread; generated: boolean }> = images.map((inp) => ({
    inp,
    s: spread(rows.find((r) => r.inp === inp && r.kind === 'tar' && r.tool.includes('fresh'))!.samples.map((s) => s.rssMiB)),
    tar: spread(rows.find((r) => r.inp === inp && r.kind === 'tar' && r.tool.startsWith('GNU'))!.samples.map((s) => s.rssMiB)),
    generated: false,
  }));
  if (!ctx.quick) {
    const big = await input(1024, false);
    warmFile(big.tar);
    log(`ingest memory: g8os create of a generated ${big.label} archive`);
    const s = await withTmpfs(tmpfsSize(big), (dir) => create(big.tar, dir, 'out.flist'));
    mem.push({ inp: big, s: spread([s.rssMiB]), tar: spread([]), generated: true });
  }
  const memTable: Table = {
    title: 'Ingest memory vs input size (.tar, fresh store)',
    headers: ['input', 'entries', 'MB', 'g8os peak RSS MiB', 'GNU tar peak RSS MiB'],
    rows: mem.map((m) => [m.generated ? `generated ${m.inp.label} (${m.inp.files} files)` : `${m.inp.label} (real)`, m.inp.files, (m.inp.bytes / 1e6).toFixed(0), fmtSpread(m.s, 0), m.tar.n ? fmtSpread(m.tar, 0) : '–']),
    notes: [
      'Target: RSS independent of input size and under 300 MiB. Peak RSS covers the worker threads (one process).',
      ctx.quick
        ? '--quick: python image only (full runs add a generated 1 GiB archive).'
        : 'The generated archive (seeded random text, test/helpers/tarballs.ts) is kept only here: no real image of 1 GiB is at hand to show RSS does not grow with the input.',
    ],
  };
  ctx.print(memTable);
  return {
    name: 'ingest',
    tables: [speed.table, memTable],
    plots: [speed.plot],
    data: {
      ...speed.data,
      memory: Object.fromEntries(mem.map((m) => [m.generated ? `generated ${m.inp.label}` : m.inp.label, { files: m.inp.files, bytes: m.inp.bytes, rss_mib: roundSpread(m.s, 1) }])),
    },
  };
}
