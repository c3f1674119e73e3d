// Hub ingest: `g8os hub upload` of the real Debian images (bench/images.ts; python, and node in
// full runs) as .tar and .tar.gz to a hub on loopback (its data dir on a tmpfs) vs GNU tar
// extracting the same file into a tmpfs; the hub's peak RSS (and, full runs only, at a generated
// 1 GiB archive: it must not grow with the upload), the blocks a second upload writes (none), and
// how many blocks the node image shares with the python one already on the hub.
import fs from 'node:fs';
import path from 'node:path';
import { realImages } from './images';
import { imageInput, input, type Input } from './ingest';
import { type Bar, type Plot } from './plot';
import { log } from '../harness/cleanup';
import { withTmpfs } from '../harness/mounts';
import { G8OS, MiB } from '../harness/paths';
import { benchHub, type BenchHub, type BenchResult, type Context, fmtSpread, measure, repeat, roundSpread, type Sample, spread, type Table, warmFile } from './lib';



function countFiles(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile() && !e.name.startsWith('.')) n++;
  return n;
}

function upload(hub: BenchHub, file: string, name: string): Promise<Sample> {
  return measure(process.execPath, [G8OS, 'hub', 'upload', file, '--hub', hub.url, '--token', hub.token, '--name', name]);
}

/** "… N new blocks" from the CLI's summary line (stderr is not a TTY here). */
function newBlocks(s: Sample): number {
  const m = /(\d+) new blocks/.exec(s.stderr);
  if (!m) throw new Error(`no summary from g8os hub upload: ${s.stderr}`);
  return Number(m[1]);
}

interface HubRun {
  fresh: Sample;
  again: Sample;
  hubPeakMiB: number;
  hubIdleMiB: number;
  /** new blocks reported by the hub / block files that appeared, for the second upload */
  againReported: number;
  againFiles: number;
  firstReported: number;
}

function tmpfsSize(inp: Input): number {
  return 2 * inp.bytes + 512 * MiB;
}

/** One hub per run: fresh upload (peak RSS read right after), then the same file again. */
function hubRun(inp: Input, file: string, label: string): Promise<HubRun> {
  return withTmpfs(tmpfsSize(inp), async (dir) => {
    const hub = await benchHub(dir);
    try {
      const hubIdleMiB = hub.hub.memory('VmRSS');
      const fresh = await upload(hub, file, 'first');
      const hubPeakMiB = hub.hub.memory('VmHWM');
      const before = countFiles(hub.hub.blocksDir);
      log(`hub ingest ${label}: second upload`);
      const again = await upload(hub, file, 'again');
      return {
        fresh, again, hubPeakMiB, hubIdleMiB,
        firstReported: newBlocks(fresh), againReported: newBlocks(again), againFiles: countFiles(hub.hub.blocksDir) - before,
      };
    } finally {
      await hub.stop();
    }
  });
}

interface Row {
  tool: string;
  samples: Sample[];
  hubPeak?: number[];
  hubIdle?: number[];
  written?: number[];
}

async function compare(inp: Input, file: string, gz: boolean, runs: number): Promise<Row[]> {
  const kind = gz ? 'tar.gz' : 'tar';
  warmFile(file);
  const tar = await repeat(runs, (i) => {
    log(`hub ingest ${inp.label} ${kind}: GNU tar run ${i + 1}/${runs}`);
    return withTmpfs(tmpfsSize(inp), (dir) => {
      fs.mkdirSync(path.join(dir, 'x'));
      return measure('tar', [gz ? '-xzf' : '-xf', file, '-C', path.join(dir, 'x')]);
    });
  });
  const hubs = await repeat(runs, (i) => {
    log(`hub ingest ${inp.label} ${kind}: g8os hub upload run ${i + 1}/${runs}`);
    return hubRun(inp, file, `${inp.label} ${kind}`);
  });
  for (const h of hubs) {
    if (h.againFiles !== h.againReported) throw new Error(`second upload: hub reported ${h.againReported} new blocks, ${h.againFiles} block files appeared`);
  }
  return [
    { tool: gz ? 'GNU tar -xzf' : 'GNU tar -xf', samples: tar },
    { tool: 'g8os hub upload, fresh store', samples: hubs.map((h) => h.fresh), hubPeak: hubs.map((h) => h.hubPeakMiB), hubIdle: hubs.map((h) => h.hubIdleMiB), written: hubs.map((h) => h.firstReported) },
    { tool: 'g8os hub upload, again', samples: hubs.map((h) => h.again), written: hubs.map((h) => h.againReported) },
  ];
}

const one = (xs: number[], digits = 0): string => {
  const s = spread(xs);
  return s.min === s.max ? s.median.toFixed(digits) : fmtSpread(s, digits);
};

/** One hub: python's .tar, then node's: how many of node's blocks the hub already had. */
async function crossImage(py: Input, nd: Input): Promise<{ pyBlocks: number; ndNew: number; ndAgainS: Sample }> {
  warmFile(py.tar);
  warmFile(nd.tar);
  return withTmpfs(2 * (py.bytes + nd.bytes) + 512 * MiB, async (dir) => {
    const hub = await benchHub(dir);
    try {
      log('hub ingest: python image, then the node image into the same hub');
      const a = await upload(hub, py.tar, 'python');
      const before = countFiles(hub.hub.blocksDir);
      const b = await upload(hub, nd.tar, 'node');
      const ndNew = newBlocks(b);
      if (countFiles(hub.hub.blocksDir) - before !== ndNew) throw new Error(`node after python: hub reported ${ndNew} new blocks, ${countFiles(hub.hub.blocksDir) - before} block files appeared`);
      return { pyBlocks: newBlocks(a), ndNew, ndAgainS: b };
    } finally {
      await hub.stop();
    }
  });
}

export async function hubIngest(ctx: Context): Promise<BenchResult> {
  const runs = ctx.quick ? 1 : 3;
  const images = (await realImages(ctx.quick)).map(imageInput);

  const data: Record<string, unknown> = {};
  const tables: Table[] = [];
  const perKind: Array<{ inp: Input; gz: boolean; rows: Row[] }> = [];
  for (const inp of images) for (const gz of [false, true]) perKind.push({ inp, gz, rows: await compare(inp, gz ? inp.tgz! : inp.tar, gz, runs) });

  const rows: Table['rows'] = [];
  const bars: Bar[] = [];
  for (const { inp, gz, rows: rs } of perKind) {
    const kind = gz ? 'tar.gz' : 'tar';
    const base = spread(rs[0].samples.map((s) => s.wallS)).median;
    for (const r of rs) {
      const wall = spread(r.samples.map((s) => s.wallS));
      const mbps = spread(r.samples.map((s) => inp.bytes / 1e6 / s.wallS));
      const ratio = base / wall.median;
      const ours = !r.tool.startsWith('GNU');
      if (!r.tool.endsWith('again')) bars.push({ label: `${inp.label.replace(' image', '')} .${kind}: ${r.tool.replace(', fresh store', '')}`, median: mbps.median, min: mbps.min, max: mbps.max, baseline: !ours });
      rows.push([
        `${inp.label} .${kind}`, r.tool, fmtSpread(mbps, 0), fmtSpread(wall, 2), `${ratio.toFixed(2)}×`,
        r.hubPeak ? one(r.hubPeak) : '–', one(r.samples.map((s) => s.rssMiB)), r.written ? one(r.written) : '–',
      ]);
      data[`${inp.label} ${kind} | ${r.tool}`] = {
        bytes: inp.bytes, wall_s: roundSpread(wall), mb_per_s: roundSpread(mbps, 1), speed_vs_tar: Number(ratio.toFixed(3)),
        client_rss_mib: roundSpread(spread(r.samples.map((s) => s.rssMiB)), 1),
        ...(r.hubPeak ? { hub_peak_rss_mib: roundSpread(spread(r.hubPeak), 1) } : {}),
        ...(r.written ? { blocks_written: spread(r.written).median } : {}),
      };
    }
  }
  const speed: Table = {
    title: `Hub ingest over HTTP of the real images (${images.map((i) => `${i.label}: ${i.files} entries, ${(i.bytes / 1e6).toFixed(0)} MB .tar`).join('; ')}), ${runs} run${runs === 1 ? '' : 's'} each`,
    headers: ['input', 'tool', 'MB/s', 'wall s', 'speed vs tar', 'hub peak RSS MiB', 'client / tar peak RSS MiB', 'blocks written'],
    rows,
    notes: [
      'Inputs: the Debian bookworm images of bench/images.ts (mmdebstrap). MB/s = uncompressed .tar bytes (10^6) per wall second of the whole upload (CLI start to URL printed), also for .tar.gz; median [min–max].',
      'Baseline: GNU tar -xf / -xzf of the same file into a tmpfs. Input in page cache; the hub (registry, blocks, temp files) on a tmpfs; hub and CLI on loopback.',
      '"again" = the same file uploaded a second time to the same hub (blocks written must be 0; checked against the block files on disk).',
      ...(ctx.quick ? ['--quick: python image only.'] : []),
    ],
  };
  ctx.print(speed);
  tables.push(speed);

  // Dedup across images: node after python into one hub.
  const py = images.find((i) => i.label.startsWith('python'));
  const nd = images.find((i) => i.label.startsWith('node'));
  if (py && nd) {
    const x = await crossImage(py, nd);
    const ndAlone = spread(perKind.find((k) => k.inp === nd && !k.gz)!.rows[1].written!).median;
    const shared = ndAlone - x.ndNew;
    const t: Table = {
      title: 'Dedup across images: the node image uploaded to a hub that already has the python image (.tar)',
      headers: ['upload', 'blocks in its flist', 'new blocks written', 'shared with what the hub had', 'wall s'],
      rows: [
        [`${py.label} (first, fresh hub)`, x.pyBlocks, x.pyBlocks, '0', '–'],
        [`${nd.label} (second)`, ndAlone, x.ndNew, `${shared} (${((100 * shared) / ndAlone).toFixed(1)} %)`, x.ndAgainS.wallS.toFixed(2)],
      ],
      notes: ['Blocks in its flist = new blocks of the same file uploaded to a fresh hub (table above). Blocks are content-addressed 512 KiB chunks of each file: files both images ship byte-identical (libc, coreutils, perl-base, …) are stored once.'],
    };
    ctx.print(t);
    tables.push(t);
    data.cross_image = { python_blocks: x.pyBlocks, node_blocks: ndAlone, node_new_after_python: x.ndNew, shared, shared_pct: Number(((100 * shared) / ndAlone).toFixed(2)), node_after_python_s: Number(x.ndAgainS.wallS.toFixed(2)) };
  }

  // Memory vs upload size: the real images are 216–269 MB; a generated 1 GiB archive (full runs
  // only) shows whether the hub's RSS grows with the upload — no real image of that size is at hand.
  const memRows: Table['rows'] = [];
  const mem: Record<string, unknown> = {};
  for (const { inp, gz, rows: rs } of perKind) {
    if (gz) continue;
    memRows.push([`${inp.label} .tar (real)`, inp.files, (inp.bytes / 1e6).toFixed(0), one(rs[1].hubIdle!), one(rs[1].hubPeak!)]);
    mem[inp.label] = { bytes: inp.bytes, hub_peak_rss_mib: roundSpread(spread(rs[1].hubPeak!), 1), hub_idle_rss_mib: roundSpread(spread(rs[1].hubIdle!), 1) };
  }
  if (!ctx.quick) {
    const big = await input(1024, false);
    warmFile(big.tar);
    log(`hub ingest memory: generated ${big.label} .tar`);
    const r = await hubRun(big, big.tar, `generated ${big.label} tar`);
    memRows.push([`generated ${big.label} .tar (${big.files} files)`, big.files, (big.bytes / 1e6).toFixed(0), one([r.hubIdleMiB]), one([r.hubPeakMiB])]);
    mem[`generated ${big.label}`] = { bytes: big.bytes, hub_peak_rss_mib: Number(r.hubPeakMiB.toFixed(1)), hub_idle_rss_mib: Number(r.hubIdleMiB.toFixed(1)), mb_per_s: Number((big.bytes / 1e6 / r.fresh.wallS).toFixed(1)), again_blocks_written: r.againReported };
  }
  const memT: Table = {
    title: 'Hub peak RSS vs upload size (.tar, fresh hub)',
    headers: ['input', 'entries', 'MB', 'hub idle RSS MiB', 'hub peak RSS MiB'],
    rows: memRows,
    notes: [
      'Peak RSS = VmHWM of the hub process (worker threads included) read right after the upload. Target: independent of upload size.',
      ctx.quick
        ? '--quick: python image only (full runs add a generated 1 GiB archive).'
        : 'The generated archive (20,000 files of seeded random text, test/helpers/tarballs.ts) is kept only here: no real image of 1 GiB is at hand to show that RSS does not grow with the upload.',
    ],
  };
  ctx.print(memT);
  tables.push(memT);
  data.memory = mem;
  const plots: Plot[] = [{ name: 'hub-ingest', title: `Hub upload of the real images vs tar -x into tmpfs`, unit: 'MB/s (uncompressed .tar bytes per wall second)', bars, digits: 0 }];
  return { name: 'hub', tables, data, plots };
}
