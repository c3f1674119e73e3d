// g8ufs mount: time to "mount starts" vs flist size (busybox rootfs, the Debian python image of
// bench/images.ts, the real funk flist) against Node start-up; `find -ls` over the mount (cold and
// warm) vs the same tree on a tmpfs (funk: materialised from its metadata; python: the image's
// tarball extracted); sequential reads of a real image's files > 1 MB and of its whole tree, and
// 4 KiB random reads over those files, served from a hub on loopback (cold, warm = disk cache,
// hot = page cache) vs the same files extracted on a tmpfs (node image; python in --quick); peak
// RSS (VmHWM) of the mount process. Every mount runs in a child process.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { busyboxRootfsTar } from '../test/helpers/tarballs';
import { type Image, realImage } from './images';
import { RAW_GET, randomReads, seqRead } from './mount-reads';
import { type Bar, type Plot } from './plot';
import { log, onCleanup } from '../harness/cleanup';
import { type Daemon, startDaemon } from '../harness/daemon';
import { forceUnmount, isMounted, withTmpfs } from '../harness/mounts';
import { G8OS, MiB, REPO } from '../harness/paths';
import { procStatus } from '../harness/procs';
import { benchHub, type BenchResult, type Context, fmtSpread, measure, repeat, roundSpread, type Sample, spread, type Spread, type Table, type Target } from './lib';

const FUNK = process.env.G8OS_FUNK_FLIST ?? path.resolve(REPO, '..', 'shared', 'fixtures', 'real-flists', 'threefoldtech-funk-latest.flist');
const RAW_PARALLEL = 8;

interface Mounted {
  pid: number;
  /** spawn to "mount starts", seconds */
  startS: number;
  /** VmHWM (MiB) read just before stopping */
  stop(): Promise<number>;
}

/** `g8os mount src target …` in its own process group; resolves at "mount starts". */
async function mount(src: string, target: string, extra: string[]): Promise<Mounted> {
  fs.mkdirSync(target, { recursive: true });
  const t0 = process.hrtime.bigint();
  const unregister = onCleanup(() => forceUnmount(target));
  let d: Daemon;
  try {
    d = await startDaemon({ label: `g8os mount ${src}`, cmd: process.execPath, args: [G8OS, 'mount', src, target, ...extra], ready: 'mount starts' });
  } catch (e) {
    forceUnmount(target);
    unregister();
    throw e;
  }
  const startS = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    pid: d.pid,
    startS,
    async stop() {
      const hwm = procStatus(d.pid, 'VmHWM');
      await d.stop(30_000);
      const survived = isMounted(target);
      forceUnmount(target);
      unregister();
      if (survived) throw new Error(`the mount at ${target} survived its process`);
      return hwm;
    },
  };
}

const sh = (script: string): Promise<Sample> => measure('sh', ['-c', script]);
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

// ---------------------------------------------------------------------------
// 1. Mount time, 2. metadata walk

interface FlistEntry {
  path: string;
  type: string;
  size: number;
  target?: string;
}

function funkEntries(): FlistEntry[] {
  const r = spawnSync(process.execPath, [G8OS, 'flist', 'find', '--json', FUNK], { encoding: 'utf8', maxBuffer: 256 * MiB });
  if (r.status !== 0) throw new Error(`g8os flist find ${FUNK}: ${r.stderr}`);
  return JSON.parse(r.stdout) as FlistEntry[];
}

/** The flist's tree as plain files (sizes by truncate, so sparse), dirs and symlinks. */
function materialise(entries: FlistEntry[], root: string): void {
  for (const e of entries) {
    const p = path.join(root, e.path);
    if (e.type === 'dir') fs.mkdirSync(p, { recursive: true });
    else {
      fs.mkdirSync(path.dirname(p), { recursive: true });
      if (e.type === 'link') fs.symlinkSync(e.target ?? '', p);
      else {
        fs.writeFileSync(p, '');
        if (e.type === 'file' && e.size > 0) fs.truncateSync(p, e.size);
      }
    }
  }
}

const findLs = (dir: string): Promise<Sample> => sh(`find ${q(dir)} -ls > /dev/null`);

interface ReadRun {
  cold: number;
  hot: number;
  warm: number;
  randWarm: number;
  randHot: number;
  allCold: number;
  allWarm: number;
  hwmCold: number;
  hwmWarm: number;
  hwmRand: number;
  hwmAllCold: number;
  hwmAllWarm: number;
}

// ---------------------------------------------------------------------------

const one = (xs: number[], digits = 0): string => {
  const s = spread(xs);
  return s.min === s.max ? s.median.toFixed(digits) : fmtSpread(s, digits);
};
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;

export async function mountBench(ctx: Context): Promise<BenchResult> {
  if (!fs.existsSync(FUNK)) throw new Error(`no funk flist at ${FUNK} (set G8OS_FUNK_FLIST)`);
  const tables: Table[] = [];
  const data: Record<string, unknown> = {};
  const plots: Plot[] = [];
  const nMount = ctx.quick ? 3 : 10;
  const nWalk = ctx.quick ? 2 : 5;
  const nRead = ctx.quick ? 1 : 3;
  const nRandom = ctx.quick ? 5000 : 20000;
  const funkArgs = ['--ro', '--lazy-connect', '--storage-url', 'http://127.0.0.1:1'];

  // 1 + 2: busybox, python image and funk flists, everything on one tmpfs (backends, caches, native trees).
  const entries = funkEntries();
  // Without the Debian mirror the python image cannot be built: its rows are left out, with a note.
  let python: Image | undefined;
  let noPython = '';
  try {
    python = await realImage('python');
  } catch (e) {
    noPython = `python image unavailable: ${(e as Error).message.split('\n')[0]}`;
    log(`mount: ${noPython}`);
  }
  await withTmpfs(2048 * MiB + 2 * (python?.info.tar_bytes ?? 0), async (dir) => {
    // flists of the two small images: metadata only matters here (--lazy-connect, no store reached)
    const made = async (name: string, tar: string): Promise<{ name: string; flist: string; entries: number }> => {
      const flist = path.join(dir, `${name}.flist`);
      await measure(process.execPath, [G8OS, 'flist', 'create', tar, '-o', flist, '--store', `dir://${path.join(dir, 'store')}`, '--no-backend']);
      const r = spawnSync(process.execPath, [G8OS, 'flist', 'stats', flist, '--json'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`g8os flist stats ${flist}: ${r.stderr}`);
      const st = JSON.parse(r.stdout) as Record<'dirs' | 'files' | 'symlinks' | 'specials', number>;
      return { name, flist, entries: st.dirs + st.files + st.symlinks + st.specials };
    };
    const bbTar = path.join(dir, 'busybox.tar');
    await busyboxRootfsTar(bbTar);
    log('mount: flists of the busybox rootfs and the python image');
    const pyFlist = python ? await made('python image (Debian bookworm)', python.tar) : undefined;
    const flists = [await made('busybox rootfs', bbTar), ...(pyFlist ? [pyFlist] : []), { name: 'funk (real hub flist)', flist: FUNK, entries: entries.length }];
    const node = await repeat(nMount, () => measure(process.execPath, ['-e', '']));
    const nodeS = spread(node.map((s) => s.wallS));
    const rows: Array<Array<string | number>> = [['node -e "" (baseline)', '–', '–', fmtSpread(nodeS, 3), '1.00×', one(node.map((s) => s.rssMiB))]];
    const timeBars: Bar[] = [{ label: 'node -e "" (Node start-up)', ...nodeS, baseline: true }];
    const mountData: Array<Record<string, unknown>> = [];
    for (const [k, f] of flists.entries()) {
      const starts: number[] = [];
      const idleHwm: number[] = [];
      await repeat(nMount, async (i) => {
        log(`mount: ${f.name} mount ${i + 1}/${nMount}`);
        const m = await mount(f.flist, path.join(dir, `mt${k}-${i}`), [...funkArgs, '--backend', path.join(dir, `bt${k}-${i}`), '--cache', path.join(dir, 'cache-t')]);
        starts.push(m.startS);
        idleHwm.push(await m.stop());
      });
      const startS = spread(starts);
      const kb = fs.statSync(f.flist).size / 1024;
      timeBars.push({ label: `${f.name.replace(/ \(.*\)$/, '')}: ${f.entries.toLocaleString('en-US')} entries, ${kb.toFixed(0)} KiB flist`, ...startS });
      rows.push([`g8os mount ${f.name}`, f.entries, kb.toFixed(0), fmtSpread(startS, 3), ratio(startS.median, nodeS.median), one(idleHwm)]);
      mountData.push({ flist: f.name, entries: f.entries, flist_kib: Number(kb.toFixed(1)), mount_s: roundSpread(startS), mount_idle_hwm_mib: roundSpread(spread(idleHwm), 1) });
    }
    const t1: Table = {
      title: `Mount time vs flist size: spawn to "mount starts", ${nMount} runs each`,
      headers: ['what', 'entries', 'flist KiB', 'wall s', 'vs node -e ""', 'peak RSS MiB'],
      rows,
      notes: ['`g8os mount --ro --lazy-connect`; wall = spawn of the CLI to "mount starts" on its stdout; peak RSS = VmHWM of the mount process just before SIGTERM (idle, nothing read). median [min–max].', ...(noPython ? [noPython] : [])],
    };
    ctx.print(t1);
    tables.push(t1);
    data.mount_time = { node_s: roundSpread(nodeS), flists: mountData };
    plots.push({ name: 'mount-time', title: 'g8os mount: spawn to "mount starts" vs flist size', unit: 'seconds', bars: timeBars, digits: 2 });

    log('mount: materialising the funk tree on tmpfs, extracting the python image there');
    const funkNative = path.join(dir, 'native-funk');
    materialise(entries, funkNative);
    const pyNative = path.join(dir, 'native-python');
    if (python) {
      fs.mkdirSync(pyNative);
      execFileSync('tar', ['-xf', python.tar, '-C', pyNative, '--same-owner', '--numeric-owner']);
    }

    /** find -ls over the native tree (after one warm-up) and over fresh mounts of the flist, cold then warm. */
    const walk = async (key: string, flist: string, native: string): Promise<{ nat: Spread; cold: Spread; warm: Spread; hwm: number[] }> => {
      await findLs(native); // one warm-up: dentries of a just-made tree are hot anyway
      const nat = await repeat(nWalk, () => findLs(native));
      const cold: number[] = [];
      const warm: number[] = [];
      const walkHwm: number[] = [];
      await repeat(nWalk, async (i) => {
        log(`mount: find -ls over ${key}, run ${i + 1}/${nWalk}`);
        const m = await mount(flist, path.join(dir, `mw-${key}${i}`), [...funkArgs, '--backend', path.join(dir, `bw-${key}${i}`), '--cache', path.join(dir, `cache-w-${key}`)]);
        try {
          cold.push((await findLs(path.join(dir, `mw-${key}${i}`))).wallS);
          warm.push((await findLs(path.join(dir, `mw-${key}${i}`))).wallS);
        } finally {
          walkHwm.push(await m.stop());
        }
      });
      return { nat: spread(nat.map((x) => x.wallS)), cold: spread(cold), warm: spread(warm), hwm: walkHwm };
    };
    const trees = [
      { key: 'funk', what: `funk (${entries.length} entries): native tmpfs, same tree with sparse files`, w: await walk('funk', FUNK, funkNative), entries: entries.length },
      ...(pyFlist ? [{ key: 'python', what: `python (${pyFlist.entries} entries): native tmpfs, its tarball extracted`, w: await walk('python', pyFlist.flist, pyNative), entries: pyFlist.entries }] : []),
    ];
    const walkRows: Array<Array<string>> = [];
    const walkBars: Bar[] = [];
    for (const t of trees) {
      const { nat: natS, cold: coldS, warm: warmS, hwm } = t.w;
      walkRows.push(
        [t.what, fmtSpread(natS, 3), '1.00×', '–'],
        [`${t.key}: g8os mount, cold (fresh mount)`, fmtSpread(coldS, 3), ratio(coldS.median, natS.median), '–'],
        [`${t.key}: g8os mount, warm (second find)`, fmtSpread(warmS, 3), ratio(warmS.median, natS.median), one(hwm)],
      );
      walkBars.push(
        { label: `${t.key}: native tmpfs`, ...natS, baseline: true },
        { label: `${t.key}: g8os mount, cold`, ...coldS },
        { label: `${t.key}: g8os mount, warm`, ...warmS },
      );
      data[t.key === 'funk' ? 'walk' : `walk_${t.key}`] = {
        entries: t.entries, native_s: roundSpread(natS), cold_s: roundSpread(coldS), warm_s: roundSpread(warmS),
        warm_vs_native: Number((warmS.median / natS.median).toFixed(2)), cold_vs_native: Number((coldS.median / natS.median).toFixed(2)),
        mount_hwm_mib: roundSpread(spread(hwm), 1),
      };
    }
    const t2: Table = {
      title: `Metadata walk: find -ls > /dev/null, ${nWalk} runs each`,
      headers: ['tree', 'wall s', 'vs native', 'mount peak RSS MiB'],
      rows: walkRows,
      notes: [
        'Target (issue 12): warm within 2× of native. Funk\'s native tree is made from `g8os flist find --json` (dirs, files truncated to size, symlinks); the python image\'s is its own tarball extracted by tar. Wall includes sh start-up.',
        ...(noPython ? [noPython] : []),
      ],
    };
    ctx.print(t2);
    tables.push(t2);
    plots.push({ name: 'walk', title: `find -ls over the mounted flist vs the same tree on tmpfs (${trees.map((t) => `${t.key} ${t.entries.toLocaleString('en-US')}`).join(', ')} entries)`, unit: 'seconds', bars: walkBars, digits: 2 });
  });

  // 3: reads of the real image's files (node in full runs, python in --quick) through a hub on loopback.
  let img: Image | undefined;
  try {
    img = await realImage(ctx.quick ? 'python' : 'node');
  } catch (e) {
    log(`mount: no reads: image unavailable: ${(e as Error).message.split('\n')[0]}`);
  }
  if (img) await readsOf(ctx, img, { nRead, nRandom }, tables, data, plots);
  return { name: 'mount', tables, data, plots, targets: mountTargets(data) };
}

/** Sequential and random reads over the image's largest files and over its whole tree, mounted vs extracted on tmpfs. */
async function readsOf(ctx: Context, img: Image, n: { nRead: number; nRandom: number }, tables: Table[], data: Record<string, unknown>, plots: Plot[]): Promise<void> {
  const { nRead, nRandom } = n;
  await withTmpfs(4 * img.info.tar_bytes + 1024 * MiB, async (dir) => {
    const hub = await benchHub(path.join(dir, 'h'));
    try {
      log(`mount: uploading the ${img.name} image to the hub`);
      const up = await measure(process.execPath, [G8OS, 'hub', 'upload', img.tar, '--hub', hub.url, '--token', hub.token, '--name', img.name]);
      const url = up.stdout.trim().split('\n').pop()!;
      if (!/^https?:\/\//.test(url)) throw new Error(`hub upload printed no URL: ${up.stdout}${up.stderr}`);

      const native = path.join(dir, 'native');
      fs.mkdirSync(native);
      execFileSync('tar', ['-xf', img.tar, '-C', native, '--same-owner', '--numeric-owner']);

      // The files, their sizes and blocks, from the flist itself.
      const found = spawnSync(process.execPath, [G8OS, 'flist', 'find', '--json', url], { encoding: 'utf8', maxBuffer: 256 * MiB });
      if (found.status !== 0) throw new Error(`flist find ${url}: ${found.stderr}`);
      const files = (JSON.parse(found.stdout) as Array<FlistEntry & { blocks?: Array<{ id: string }> }>).filter((e) => e.type === 'file');
      const big = files.filter((e) => e.size > 1e6).sort((x, y) => y.size - x.size);
      const bigBytes = big.reduce((t, e) => t + e.size, 0);
      const allBytes = files.reduce((t, e) => t + e.size, 0);
      const bigList = path.join(dir, 'big.list');
      const bigTsv = path.join(dir, 'big.tsv');
      fs.writeFileSync(bigList, big.map((e) => e.path).join('\n'));
      fs.writeFileSync(bigTsv, big.map((e) => `${e.path}\t${e.size}`).join('\n'));
      const idsFile = path.join(dir, 'ids');
      fs.writeFileSync(idsFile, [...new Set(big.flatMap((e) => (e.blocks ?? []).map((b) => b.id)))].join('\n'));
      const largest = big.slice(0, 3).map((e) => `${path.basename(e.path)} ${(e.size / 1e6).toFixed(0)} MB`).join(', ');

      const nat = async (list: string, expect: number): Promise<number[]> => {
        const xs = await repeat(nRead + 1, async () => (await seqRead(native, list, expect)).mbs);
        return xs.slice(1); // first pass only warms
      };
      const natSeq = await nat(bigList, bigBytes);
      // The whole tree: native is the reference for the byte count (the flist's sizes must add up to it too).
      const natAllFirst = await seqRead(native, '-');
      if (natAllFirst.bytes !== allBytes) log(`mount: native tree has ${natAllFirst.bytes} file bytes, the flist ${allBytes}`);
      const natAll = await repeat(nRead, async () => (await seqRead(native, '-', natAllFirst.bytes)).mbs);
      const natRand = await repeat(nRead, () => randomReads(native, bigTsv, nRandom));
      const raw: number[] = [];
      let stored = 0;
      await repeat(nRead, async (i) => {
        log(`mount: raw hub GETs ${i + 1}/${nRead}`);
        const r = JSON.parse((await measure(process.execPath, ['-e', RAW_GET, hub.url, idsFile, String(RAW_PARALLEL)])).stdout) as { bytes: number; s: number };
        raw.push(bigBytes / 1e6 / r.s);
        stored = r.bytes;
      });

      const runs: ReadRun[] = [];
      await repeat(nRead, async (i) => {
        const target = (k: string): string => path.join(dir, `m${i}${k}`);
        const opts = (k: string, cache: string): string[] => ['--ro', '--cache', path.join(dir, cache), '--backend', path.join(dir, `b${i}${k}`)];
        /** A fresh mount process for fn; its VmHWM after. */
        const on = async <T>(k: string, cache: string, fn: (root: string) => Promise<T>): Promise<[T, number]> => {
          const m = await mount(url, target(k), opts(k, cache));
          let out: T | undefined;
          let hwm = NaN;
          try {
            out = await fn(target(k));
          } finally {
            hwm = await m.stop();
          }
          return [out, hwm];
        };
        const c1 = `cache${i}`;
        const c2 = `cache-all${i}`;
        log(`mount: reads run ${i + 1}/${nRead}: files > 1 MB cold + hot`);
        const [[cold, hot], hwmCold] = await on('a', c1, async (r) => [(await seqRead(r, bigList, bigBytes)).mbs, (await seqRead(r, bigList, bigBytes)).mbs]);
        log(`mount: reads run ${i + 1}/${nRead}: files > 1 MB warm (disk cache)`);
        const [warm, hwmWarm] = await on('b', c1, async (r) => (await seqRead(r, bigList, bigBytes)).mbs);
        log(`mount: reads run ${i + 1}/${nRead}: 4 KiB random`);
        const [[randWarm, randHot], hwmRand] = await on('c', c1, async (r) => [await randomReads(r, bigTsv, nRandom), await randomReads(r, bigTsv, nRandom)]);
        log(`mount: reads run ${i + 1}/${nRead}: whole tree cold, then warm`);
        const [allCold, hwmAllCold] = await on('d', c2, async (r) => (await seqRead(r, '-', natAllFirst.bytes)).mbs);
        const [allWarm, hwmAllWarm] = await on('e', c2, async (r) => (await seqRead(r, '-', natAllFirst.bytes)).mbs);
        for (const c of [c1, c2]) fs.rmSync(path.join(dir, c), { recursive: true, force: true });
        runs.push({ cold, hot, warm, randWarm, randHot, allCold, allWarm, hwmCold, hwmWarm, hwmRand, hwmAllCold, hwmAllWarm });
      });

      const col = (k: keyof ReadRun): number[] => runs.map((r) => r[k]);
      const rowOf = (base: number[], bytes: number) => (what: string, xs: number[], rss = '–'): Array<string> => {
        const s = spread(xs);
        return [what, fmtSpread(s, 0), (bytes / 1e6 / s.median).toFixed(2), ratio(s.median, spread(base).median), rss];
      };
      const bigRow = rowOf(natSeq, bigBytes);
      const allRow = rowOf(natAll, natAllFirst.bytes);
      const bigWhat = `${big.length} files > 1 MB, ${(bigBytes / 1e6).toFixed(0)} MB`;
      const allWhat = `all ${natAllFirst.files} files, ${(natAllFirst.bytes / 1e6).toFixed(0)} MB`;
      const runsS = `${nRead} run${nRead === 1 ? '' : 's'}`;
      const t3: Table = {
        title: `Sequential reads of the ${img.name} image's files (${img.info.entries} entries, ${(img.info.tar_bytes / 1e6).toFixed(0)} MB .tar), mounted from a hub on loopback vs extracted on tmpfs, ${runsS}`,
        headers: ['source', 'MB/s', 's', 'speed vs native', 'mount peak RSS MiB'],
        rows: [
          bigRow(`${bigWhat}: native tmpfs (page cache)`, natSeq),
          bigRow(`${bigWhat}: hub raw, ${RAW_PARALLEL} parallel GETs, no decode`, raw),
          bigRow(`${bigWhat}: g8os mount, cold (empty cache)`, col('cold'), one(col('hwmCold'))),
          bigRow(`${bigWhat}: g8os mount, warm (new mount, disk cache)`, col('warm'), one(col('hwmWarm'))),
          bigRow(`${bigWhat}: g8os mount, hot (same mount, page cache)`, col('hot')),
          allRow(`${allWhat}: native tmpfs (page cache)`, natAll),
          allRow(`${allWhat}: g8os mount, cold (empty cache)`, col('allCold'), one(col('hwmAllCold'))),
          allRow(`${allWhat}: g8os mount, warm (new mount, disk cache)`, col('allWarm'), one(col('hwmAllWarm'))),
        ],
        notes: [
          `Files > 1 MB, largest first (${largest}, …), read whole with 1 MiB reads by one python3 process, timed inside it; "all files" walks the tree (os.scandir, walk included in the time) and reads every regular file. Byte counts are checked against the flist / the native tree.`,
          `Native = the image's .tar extracted on tmpfs, read once before timing. Hub raw = file bytes over the time to GET the files' ${(stored / 1e6).toFixed(0)} MB of stored (compressed) blocks. Hub data and block cache on tmpfs; cold peak RSS covers the cold and hot pass of that mount.`,
          ...(ctx.quick ? ['--quick: python image (full runs read the node image).'] : []),
        ],
      };
      ctx.print(t3);
      tables.push(t3);
      const bar = (label: string, xs: number[], baseline = false): Bar => ({ label, ...spread(xs), baseline });
      plots.push({
        name: 'reads', title: `Sequential reads of the ${img.name} image: ${bigWhat} / ${allWhat}`, unit: 'MB/s', digits: 0,
        bars: [
          bar('> 1 MB: native tmpfs (page cache)', natSeq, true), bar('> 1 MB: hub raw GETs, no decode', raw, true),
          bar('> 1 MB: g8os mount, cold (hub on loopback)', col('cold')), bar('> 1 MB: g8os mount, warm (disk cache)', col('warm')),
          bar('> 1 MB: g8os mount, hot (page cache)', col('hot')),
          bar('all files: native tmpfs', natAll, true), bar('all files: g8os mount, cold', col('allCold')), bar('all files: g8os mount, warm', col('allWarm')),
        ],
      });

      const natR = spread(natRand);
      const rndRow = (what: string, xs: number[], rss = '–'): Array<string> => {
        const s = spread(xs);
        return [what, fmtSpread(s, 0), ratio(s.median, natR.median), rss];
      };
      const t4: Table = {
        title: `4 KiB random reads over the ${img.name} image's ${big.length} files > 1 MB (${nRandom} preads, python3), ${runsS}`,
        headers: ['source', 'ops/s', 'speed vs native', 'mount peak RSS MiB'],
        rows: [
          rndRow('native tmpfs', natRand),
          rndRow('g8os mount, warm (new mount, disk cache)', col('randWarm'), one(col('hwmRand'))),
          rndRow('g8os mount, hot (same offsets again)', col('randHot')),
        ],
        notes: ['Offsets 4 KiB-aligned, seeded, spread over the files in proportion to their size; files opened before timing.'],
      };
      ctx.print(t4);
      tables.push(t4);
      plots.push({
        name: 'random-reads', title: `4 KiB random reads over the ${img.name} image's files > 1 MB`, unit: 'reads/s', digits: 0,
        bars: [bar('native tmpfs', natRand, true), bar('g8os mount, warm (disk cache)', col('randWarm')), bar('g8os mount, hot (same offsets)', col('randHot'))],
      });
      const r = (xs: number[], d = 1): ReturnType<typeof roundSpread> => roundSpread(spread(xs), d);
      data.reads = {
        image: img.name, big_files: big.length, big_bytes: bigBytes, all_files: natAllFirst.files, all_bytes: natAllFirst.bytes,
        native_mb_s: r(natSeq), hub_raw_mb_s: r(raw), cold_mb_s: r(col('cold')), warm_mb_s: r(col('warm')), hot_mb_s: r(col('hot')),
        all_native_mb_s: r(natAll), all_cold_mb_s: r(col('allCold')), all_warm_mb_s: r(col('allWarm')),
        hwm_cold_mib: r(col('hwmCold')), hwm_warm_mib: r(col('hwmWarm')), hwm_random_mib: r(col('hwmRand')), hwm_all_cold_mib: r(col('hwmAllCold')), hwm_all_warm_mib: r(col('hwmAllWarm')),
        random_native_ops: r(natRand, 0), random_warm_ops: r(col('randWarm'), 0), random_hot_ops: r(col('randHot'), 0),
        upload_s: Number(up.wallS.toFixed(2)), stored_bytes: stored,
      };
    } finally {
      await hub.stop();
    }
  });
}

/** Issue 12's mount targets, from this run's data: cold sequential read rate, warm find -ls vs tmpfs. */
function mountTargets(data: Record<string, unknown>): Target[] {
  const reads = data.reads as { image: string; cold_mb_s: Spread; native_mb_s: Spread } | undefined;
  const out: Target[] = [{
    what: `mount: cold sequential read of the ${reads?.image ?? 'image'}'s files > 1 MB (hub on loopback, empty cache)`, target: '≥ 300 MB/s',
    measured: reads ? `${fmtSpread(reads.cold_mb_s, 0)} MB/s (native tmpfs ${reads.native_mb_s.median.toFixed(0)} MB/s)` : 'unavailable', met: reads ? reads.cold_mb_s.median >= 300 : null,
  }];
  for (const [key, what] of [['walk_python', 'python image'], ['walk', 'funk flist']] as const) {
    const w = data[key] as { entries: number; warm_s: Spread; native_s: Spread; warm_vs_native: number } | undefined;
    out.push({
      what: `mount: warm find -ls, ${what}${w ? ` (${w.entries} entries)` : ''}, vs the same tree on tmpfs`, target: '≤ 2×',
      measured: w ? `${w.warm_vs_native.toFixed(2)}× (${w.warm_s.median.toFixed(3)} vs ${w.native_s.median.toFixed(3)} s)` : 'unavailable', met: w ? w.warm_vs_native <= 2 : null,
    });
  }
  return out;
}
