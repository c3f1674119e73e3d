// Hub ingest: `g8os hub upload` of a .tar / .tar.gz to a hub on loopback (its data dir on a
// tmpfs) vs GNU tar extracting the same archive into a tmpfs; the hub's peak RSS at two input
// sizes (it must not grow with the upload), and the blocks a second upload writes (none).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { input, type Input } from './ingest';
import { type Bar, type Plot } from './plot';
import {
  type BenchResult, type Context, fmtSpread, freePort, log, MiB, measure, onCleanup, REPO, repeat, roundSpread,
  type Sample, spread, type Table, warmFile, withTmpfs,
} from './lib';

const G8OS = path.join(REPO, 'bin', 'g8os');


interface RunningHub {
  url: string;
  token: string;
  blocksDir: string;
  child: ChildProcess;
  /** VmHWM / VmRSS of the hub process, MiB */
  memory(field: 'VmHWM' | 'VmRSS'): number;
  stop(): Promise<void>;
}

/** A hub with everything (registry, blocks, the writer's temp files) under `dir`. */
export async function startHub(dir: string): Promise<RunningHub> {
  const data = path.join(dir, 'hub');
  const tmp = path.join(dir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const port = await freePort();
  const child = spawn(process.execPath, [G8OS, 'hub', '--listen', `127.0.0.1:${port}`, '--data', data], {
    env: { ...process.env, TMPDIR: tmp },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const unregister = onCleanup(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub did not start:\n${out}`)), 15_000);
    child.stdout!.on('data', () => out.includes('hub listening') && (clearTimeout(timer), resolve()));
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`hub exited with ${code}:\n${out}`))));
  });
  const add = spawnSync(process.execPath, [G8OS, 'hub', 'user', 'add', 'bench', '--data', data], { encoding: 'utf8' });
  if (add.status !== 0) throw new Error(`hub user add: ${add.stderr}`);
  return {
    url: `http://127.0.0.1:${port}`,
    token: add.stdout.trim().split('\n').pop()!,
    blocksDir: path.join(data, 'blocks'),
    child,
    memory(field) {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : NaN;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      unregister();
    },
  };
}

function countFiles(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile() && !e.name.startsWith('.')) n++;
  return n;
}

function upload(hub: RunningHub, file: string, name: string): Promise<Sample> {
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
    const hub = await startHub(dir);
    try {
      const hubIdleMiB = hub.memory('VmRSS');
      const fresh = await upload(hub, file, 'first');
      const hubPeakMiB = hub.memory('VmHWM');
      const before = countFiles(hub.blocksDir);
      log(`hub ingest ${label}: second upload`);
      const again = await upload(hub, file, 'again');
      return {
        fresh, again, hubPeakMiB, hubIdleMiB,
        firstReported: newBlocks(fresh), againReported: newBlocks(again), againFiles: countFiles(hub.blocksDir) - before,
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
  written?: number[];
}

async function compare(inp: Input, file: string, gz: boolean, runs: number): Promise<Row[]> {
  const kind = gz ? 'tar.gz' : 'tar';
  warmFile(file);
  const tar = await repeat(runs, (i) => {
    log(`hub ingest ${kind}: GNU tar run ${i + 1}/${runs}`);
    return withTmpfs(tmpfsSize(inp), (dir) => {
      fs.mkdirSync(path.join(dir, 'x'));
      return measure('tar', [gz ? '-xzf' : '-xf', file, '-C', path.join(dir, 'x')]);
    });
  });
  const hubs = await repeat(runs, (i) => {
    log(`hub ingest ${kind}: g8os hub upload run ${i + 1}/${runs}`);
    return hubRun(inp, file, kind);
  });
  for (const h of hubs) {
    if (h.againFiles !== h.againReported) throw new Error(`second upload: hub reported ${h.againReported} new blocks, ${h.againFiles} block files appeared`);
  }
  return [
    { tool: gz ? 'GNU tar -xzf' : 'GNU tar -xf', samples: tar },
    { tool: 'g8os hub upload, fresh store', samples: hubs.map((h) => h.fresh), hubPeak: hubs.map((h) => h.hubPeakMiB), written: hubs.map((h) => h.firstReported) },
    { tool: 'g8os hub upload, again', samples: hubs.map((h) => h.again), written: hubs.map((h) => h.againReported) },
  ];
}

const one = (xs: number[], digits = 0): string => {
  const s = spread(xs);
  return s.min === s.max ? s.median.toFixed(digits) : fmtSpread(s, digits);
};

export async function hubIngest(ctx: Context): Promise<BenchResult> {
  const runs = ctx.quick ? 1 : 3;
  const [mainMiB, smallMiB] = ctx.quick ? [256, 64] : [1024, 256];
  const big = await input(mainMiB, true);
  const small = await input(smallMiB, false);

  const data: Record<string, unknown> = {};
  const tables: Table[] = [];
  const perKind: Array<{ gz: boolean; rows: Row[] }> = [];
  for (const gz of [false, true]) perKind.push({ gz, rows: await compare(big, gz ? big.tgz! : big.tar, gz, runs) });

  const rows: Table['rows'] = [];
  const bars: Bar[] = [];
  for (const { gz, rows: rs } of perKind) {
    const kind = gz ? 'tar.gz' : 'tar';
    const base = spread(rs[0].samples.map((s) => s.wallS)).median;
    for (const r of rs) {
      const wall = spread(r.samples.map((s) => s.wallS));
      const mbps = spread(r.samples.map((s) => big.bytes / 1e6 / s.wallS));
      const ratio = base / wall.median;
      const client = r.tool.startsWith('GNU') ? undefined : r.samples.map((s) => s.rssMiB);
      bars.push({ label: `${kind}: ${r.tool.replace(/^GNU tar/, 'GNU tar')}`, median: mbps.median, min: mbps.min, max: mbps.max, baseline: !client });
      rows.push([
        `${big.label} ${kind}`, r.tool, fmtSpread(mbps, 0), fmtSpread(wall, 2), `${ratio.toFixed(2)}×`,
        r.hubPeak ? one(r.hubPeak) : '–', client ? one(client) : one(r.samples.map((s) => s.rssMiB)), r.written ? one(r.written) : '–',
      ]);
      data[`${big.label} ${kind} | ${r.tool}`] = {
        wall_s: roundSpread(wall), mb_per_s: roundSpread(mbps, 1), speed_vs_tar: Number(ratio.toFixed(3)),
        client_rss_mib: roundSpread(spread(r.samples.map((s) => s.rssMiB)), 1),
        ...(r.hubPeak ? { hub_peak_rss_mib: roundSpread(spread(r.hubPeak), 1) } : {}),
        ...(r.written ? { blocks_written: spread(r.written).median } : {}),
      };
    }
  }
  const speed: Table = {
    title: `Hub ingest over HTTP, ${big.label} (${big.files} files, ${(big.bytes / 1e6).toFixed(0)} MB uncompressed tar), ${runs} run${runs === 1 ? '' : 's'} each`,
    headers: ['input', 'tool', 'MB/s', 'wall s', 'speed vs tar', 'hub peak RSS MiB', 'client / tar peak RSS MiB', 'blocks written'],
    rows,
    notes: [
      'MB/s = uncompressed tar bytes (10^6) per wall second of the whole upload (CLI start to URL printed); median [min–max].',
      'Input in page cache; the hub (registry, blocks, temp files) and tar -x both on a tmpfs; hub and CLI on loopback.',
      '"again" = the same file uploaded a second time to the same hub (blocks written must be 0; checked against the block files on disk).',
    ],
  };
  ctx.print(speed);
  tables.push(speed);

  // Memory independence: the same generator at a quarter of the size.
  warmFile(small.tar);
  const smallRuns = await repeat(runs, (i) => {
    log(`hub ingest memory: ${small.label} run ${i + 1}/${runs}`);
    return hubRun(small, small.tar, `${small.label} tar`);
  });
  const bigTar = perKind[0].rows[1].hubPeak!;
  const mem: Table = {
    title: 'Hub peak RSS vs upload size (.tar, fresh store)',
    headers: ['input', 'files', 'MB', 'hub idle RSS MiB', 'hub peak RSS MiB'],
    rows: [
      [small.label, small.files, (small.bytes / 1e6).toFixed(0), one(smallRuns.map((r) => r.hubIdleMiB)), one(smallRuns.map((r) => r.hubPeakMiB))],
      [big.label, big.files, (big.bytes / 1e6).toFixed(0), '–', one(bigTar)],
    ],
    notes: ['Peak RSS = VmHWM of the hub process (worker threads included) read right after the upload. Target: independent of upload size.'],
  };
  ctx.print(mem);
  tables.push(mem);
  data.memory = {
    [small.label]: { bytes: small.bytes, hub_peak_rss_mib: roundSpread(spread(smallRuns.map((r) => r.hubPeakMiB)), 1), hub_idle_rss_mib: roundSpread(spread(smallRuns.map((r) => r.hubIdleMiB)), 1) },
    [big.label]: { bytes: big.bytes, hub_peak_rss_mib: roundSpread(spread(bigTar), 1) },
  };
  const plots: Plot[] = [{ name: 'hub-ingest', title: `Hub ingest of ${big.label} (${big.files} files): upload vs tar -x into tmpfs`, unit: 'MB/s (uncompressed tar bytes per wall second)', bars, digits: 0 }];
  return { name: 'hub', tables, data, plots };
}
