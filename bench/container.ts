// The headline: container start on real images. From spawning `node bin/g8os container run
// <flist-url> -- python3 -c 'print(1)'` to its first output line, cold (fresh agent, empty block
// cache) and warm, against
//   * `runc run` of the same rootfs already unpacked on disk (tmpfs), and
//   * the classic path: download the whole .tar.gz over HTTP from the same loopback (a static
//     server in the hub's network namespace), extract it with tar, then `runc run`;
// plus the share of the image's bytes a cold start fetched (block bytes the hub served, from its
// GET /api/stats counters, over the flist's total stored block bytes; Slacker found 6.4 %), and
// the docker-save image imported through the hub and run by its entrypoint. Agent, hub and
// static server run in a network namespace of their own (bench/container-start.ts).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon } from '../harness/daemon';
import type { Netns } from '../harness/netns';
import { Client } from '../src/agent/client';
import { agentIn, containerRun, inScratchNetns, type FirstLine, protocolRun, runcBundle, runcConfig, runcRun, why } from './container-start';
import { HELLO, type Image, realImages } from './images';
import { type Bar, type Plot } from './plot';
import { log, onCleanup } from '../harness/cleanup';
import { G8OS, MiB } from '../harness/paths';
import { freePort } from '../harness/ports';
import { benchHub, type BenchHub as Hub, type BenchResult, type Context, fmtSpread, measure, roundSpread, spread, type Spread, type Table, type Target } from './lib';

/** Full runs repeat the cold starts over a link of this rate (tc tbf on the namespace's loopback). */
const SHAPED_RATE = '100mbit';

/** Runs argv in the namespace; stdout, or an error with its stderr. */
function nsRun(ns: Netns, argv: string[], what: string): string {
  const a = ns.exec(argv);
  const r = spawnSync(a[0], a.slice(1), { encoding: 'utf8', maxBuffer: 512 * MiB });
  if (r.status !== 0) throw new Error(`${what}: exit ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(-1000)}`);
  return r.stdout;
}

interface BlockStats {
  get: number;
  bytes: number;
}

function hubStats(ns: Netns, hub: Hub): BlockStats {
  const s = JSON.parse(nsRun(ns, ['curl', '-sSf', `${hub.url}/api/stats`], 'GET /api/stats')) as { blocks: BlockStats };
  return { get: s.blocks.get, bytes: s.blocks.bytes };
}

/** Publishes a tarball (upload) or an image (import); the flist URL the CLI prints last. */
function publish(ns: Netns, hub: Hub, verb: 'upload' | 'import', file: string, name: string): { url: string; seconds: number } {
  const t0 = process.hrtime.bigint();
  const out = nsRun(ns, [process.execPath, G8OS, 'hub', verb, file, '--hub', hub.url, '--token', hub.token, '--name', name], `g8os hub ${verb} ${path.basename(file)}`);
  const url = out.trim().split('\n').pop() ?? '';
  if (!/^https?:\/\//.test(url)) throw new Error(`g8os hub ${verb} printed no URL: ${out}`);
  return { url, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

interface FlistSize {
  /** stored (compressed, encrypted) bytes of the flist's distinct blocks, as the hub serves them */
  blockBytes: number;
  blocks: number;
  /** file content bytes (uncompressed) */
  contentBytes: number;
  /** the .flist file itself */
  flistBytes: number;
}

/** Sizes of what a full fetch of the flist would transfer, from its block list and the hub's store. */
function flistSize(ns: Netns, hubData: string, url: string): FlistSize {
  const entries = JSON.parse(nsRun(ns, [process.execPath, G8OS, 'flist', 'find', '--json', url], 'g8os flist find')) as Array<{ type: string; size: number; blocks?: Array<{ id: string }> }>;
  const ids = new Set<string>();
  let contentBytes = 0;
  for (const e of entries) {
    if (e.type === 'file') contentBytes += e.size;
    for (const b of e.blocks ?? []) ids.add(b.id);
  }
  let blockBytes = 0;
  for (const id of ids) blockBytes += fs.statSync(path.join(hubData, 'blocks', id.slice(0, 2), id.slice(2, 4), id)).size;
  const flistBytes = Number(nsRun(ns, ['curl', '-sSf', '-o', '/dev/null', '-w', '%{size_download}', url], 'GET the .flist'));
  return { blockBytes, blocks: ids.size, contentBytes, flistBytes };
}

const STATIC_SERVER = `
const http = require('http'), fs = require('fs');
const [file, port] = process.argv.slice(1);
http.createServer((req, res) => {
  if (req.url !== '/image.tar.gz') { res.statusCode = 404; res.end(); return; }
  res.writeHead(200, { 'Content-Type': 'application/gzip', 'Content-Length': fs.statSync(file).size });
  fs.createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
}).listen(Number(port), '127.0.0.1', () => console.log('static listening'));
`;

interface Classic {
  downloadS: number;
  extractS: number;
  run: FirstLine;
  /** download + extract + spawn of runc to its first line */
  firstS: number;
  curlRss: number;
  tarRss: number;
}

/** curl the whole .tar.gz, tar -xzf it, runc run: each step waits for the one before (as a pull does). */
async function classicPath(ns: Netns, url: string, dir: string, args: string[], expect: string, id: string): Promise<Classic> {
  fs.rmSync(dir, { recursive: true, force: true });
  runcConfig(dir, args); // the bundle's config is there already; only the image is pulled
  fs.mkdirSync(path.join(dir, 'rootfs'));
  const unregister = onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  try {
    const file = path.join(dir, 'image.tar.gz');
    const [curl, ...curlArgs] = ns.exec(['curl', '-sSf', '-o', file, url]);
    const dl = await measure(curl, curlArgs);
    const x = await measure('tar', ['-xzf', file, '-C', path.join(dir, 'rootfs'), '--same-owner', '--numeric-owner']);
    const run = await runcRun(dir, id, expect);
    return { downloadS: dl.wallS, extractS: x.wallS, run, firstS: dl.wallS + x.wallS + run.firstS, curlRss: dl.rssMiB, tarRss: x.rssMiB };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    unregister();
  }
}

interface ImageRuns {
  image: Image;
  flist: string;
  uploadS: number;
  size: FlistSize;
  runc: FirstLine[];
  classic: Classic[];
  cold: FirstLine[];
  coldFetched: BlockStats[];
  coldHwm: number[];
  warm: FirstLine[];
  warmHwm: number;
  /** the same starts through an open client: corex.create + dispatch to its result, no CLI */
  protoCold: Array<FirstLine & { createS: number; dispatchS: number }>;
  protoColdFetched: BlockStats[];
  protoWarm: Array<FirstLine & { createS: number; dispatchS: number }>;
  errors: string[];
  /** the same cold starts and classic pulls with the namespace's loopback shaped (tc tbf) */
  shaped?: { rate: string; classic: Classic[]; cold: FirstLine[]; coldFetched: BlockStats[]; error?: string };
  docker?: {
    flist: string;
    importS: number;
    size: FlistSize;
    cold: FirstLine[];
    coldFetched: BlockStats[];
    warm: FirstLine[];
    error?: string;
  };
}

/** One image: publish, runc bundle, then per round runc / classic / cold, then the warm runs. */
async function imageRuns(ns: Netns, hub: Hub, hubData: string, staticUrl: string, image: Image, dir: string, n: number, shapeRate?: string): Promise<ImageRuns> {
  const { argv, expect } = HELLO[image.name];
  log(`container: ${image.name}: g8os hub upload of the .tar.gz`);
  const up = publish(ns, hub, 'upload', image.tgz, image.name);
  const size = flistSize(ns, hubData, up.url);
  const r: ImageRuns = { image, flist: up.url, uploadS: up.seconds, size, runc: [], classic: [], cold: [], coldFetched: [], coldHwm: [], warm: [], warmHwm: NaN, protoCold: [], protoColdFetched: [], protoWarm: [], errors: [] };
  const bundle = path.join(dir, `bundle-${image.name}`);
  runcBundle(image.tar, bundle, argv);
  const tag = `g8b-${process.pid}-${image.name}`;
  await runcRun(bundle, `${tag}-warmup`, expect); // page cache and runc's own first start
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      r.errors.push(`${what}: ${why(e)}`);
      log(`container: ${image.name}: ${what} failed: ${why(e)}`);
    }
  };
  const coldRun = async (flist: string, label: string, runArgv: string[], times: FirstLine[], fetched: BlockStats[], hwm?: number[], viaProtocol = false): Promise<void> => {
    const a = await agentIn(ns, path.join(dir, `a-${label}`), path.join(dir, `cache-${label}`));
    const client = viaProtocol ? await new Client(a.socket).open() : undefined;
    try {
      const before = hubStats(ns, hub);
      times.push(client ? await protocolRun(client, flist, runArgv, expect) : await containerRun(a, flist, runArgv, expect));
      const after = hubStats(ns, hub);
      fetched.push({ get: after.get - before.get, bytes: after.bytes - before.bytes });
      hwm?.push(a.memory('VmHWM'));
    } finally {
      client?.close();
      await a.stop();
      fs.rmSync(path.join(dir, `cache-${label}`), { recursive: true, force: true });
      fs.rmSync(path.join(dir, `a-${label}`), { recursive: true, force: true });
    }
  };
  for (let i = 0; i < n; i++) {
    log(`container: ${image.name} round ${i + 1}/${n}: runc run, download+extract+run, g8os cold`);
    await attempt('runc run', async () => void r.runc.push(await runcRun(bundle, `${tag}-r${i}`, expect)));
    await attempt('download+extract+run', async () => void r.classic.push(await classicPath(ns, staticUrl, path.join(dir, 'pull'), argv, expect, `${tag}-p${i}`)));
    await attempt('g8os cold', () => coldRun(up.url, `${image.name}-cold${i}`, argv, r.cold, r.coldFetched, r.coldHwm));
    await attempt('g8os cold via the protocol', () => coldRun(up.url, `${image.name}-pcold${i}`, argv, r.protoCold, r.protoColdFetched, undefined, true));
  }
  let dockerFlist = '';
  if (image.docker) {
    try {
      log(`container: ${image.name}: g8os hub import of the docker save tarball`);
      const imp = publish(ns, hub, 'import', image.docker, `${image.name}-docker`);
      dockerFlist = imp.url;
      r.docker = { flist: imp.url, importS: imp.seconds, size: flistSize(ns, hubData, imp.url), cold: [], coldFetched: [], warm: [] };
      for (let i = 0; i < n; i++) {
        log(`container: ${image.name}: docker image by its entrypoint, cold ${i + 1}/${n}`);
        await coldRun(imp.url, `${image.name}-dcold${i}`, [], r.docker.cold, r.docker.coldFetched);
      }
    } catch (e) {
      if (r.docker) r.docker.error = why(e);
      r.errors.push(`docker image: ${why(e)}`);
      log(`container: ${image.name}: docker image failed: ${why(e)}`);
    }
  }
  await attempt('g8os warm', async () => {
    const a = await agentIn(ns, path.join(dir, `a-${image.name}-warm`), path.join(dir, `cache-${image.name}-warm`));
    try {
      log(`container: ${image.name}: filling the warm cache`);
      await containerRun(a, up.url, argv, expect);
      if (dockerFlist) await containerRun(a, dockerFlist, [], expect).catch(() => undefined);
      const client = await new Client(a.socket).open();
      try {
        await protocolRun(client, up.url, argv, expect);
        for (let i = 0; i < n; i++) {
          log(`container: ${image.name}: runc run, g8os warm via the protocol and the CLI ${i + 1}/${n}`);
          await attempt('runc run', async () => void r.runc.push(await runcRun(bundle, `${tag}-w${i}`, expect)));
          r.protoWarm.push(await protocolRun(client, up.url, argv, expect));
        }
      } finally {
        client.close();
      }
      for (let i = 0; i < n; i++) {
        log(`container: ${image.name}: g8os warm ${i + 1}/${n}${dockerFlist ? ' (and the docker image)' : ''}`);
        r.warm.push(await containerRun(a, up.url, argv, expect));
        if (dockerFlist && r.docker && !r.docker.error) r.docker.warm.push(await containerRun(a, dockerFlist, [], expect));
      }
      r.warmHwm = a.memory('VmHWM');
    } finally {
      await a.stop();
    }
  });
  if (shapeRate) {
    const shaped: NonNullable<ImageRuns['shaped']> = { rate: shapeRate, classic: [], cold: [], coldFetched: [] };
    r.shaped = shaped;
    try {
      nsRun(ns, ['tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', shapeRate, 'burst', '256kb', 'latency', '100ms'], 'tc qdisc add');
      try {
        for (let i = 0; i < n; i++) {
          log(`container: ${image.name}, loopback shaped to ${shapeRate}/s, round ${i + 1}/${n}: download+extract+run, g8os cold`);
          shaped.classic.push(await classicPath(ns, staticUrl, path.join(dir, 'pull'), argv, expect, `${tag}-sp${i}`));
          await coldRun(up.url, `${image.name}-scold${i}`, argv, shaped.cold, shaped.coldFetched);
        }
      } finally {
        nsRun(ns, ['tc', 'qdisc', 'del', 'dev', 'lo', 'root'], 'tc qdisc del');
      }
    } catch (e) {
      shaped.error = why(e);
      log(`container: ${image.name}: shaped runs failed: ${shaped.error}`);
    }
  }
  return r;
}

// ---------------------------------------------------------------------------

const MB = (b: number): string => (b / 1e6).toFixed(1);
const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(1)} %`;
const split2 = (xs: Array<{ createS: number; dispatchS: number }>): string =>
  (xs.length ? `${fmtSpread(spread(xs.map((x) => x.createS)), 3)} / ${fmtSpread(spread(xs.map((x) => x.dispatchS)), 3)}` : '–');
const firstS = (xs: Array<{ firstS: number }>): Spread => spread(xs.map((x) => x.firstS));
const one = (xs: number[], digits = 0): string => {
  const s = spread(xs.filter((x) => !Number.isNaN(x)));
  if (!s.n) return '–';
  return s.min === s.max ? s.median.toFixed(digits) : fmtSpread(s, digits);
};

export async function containerBench(ctx: Context): Promise<BenchResult> {
  if (process.getuid?.() !== 0) throw new Error('the container bench needs root (network namespace, containers, runc)');
  const n = ctx.quick ? 3 : 5;
  const images = await realImages(ctx.quick);
  const tables: Table[] = [];
  const plots: Plot[] = [];
  const data: Record<string, unknown> = { runs: n };
  const all: ImageRuns[] = [];
  const targets: Target[] = [];
  // hub blocks (≈ a third of each tar), runc rootfs, one pull at a time, per-run caches
  const need = images.reduce((s, i) => s + 2 * i.info.tar_bytes + 2 * i.info.tgz_bytes + (i.docker ? i.info.tar_bytes : 0), 0) + 1024 * MiB;
  await inScratchNetns('container', need, async (dir, ns) => {
    const hubDir = path.join(dir, 'h');
    const hub = await benchHub(hubDir, ns);
    try {
      for (const image of images) {
        // the classic path's source: the same .tar.gz, on the same tmpfs as the hub's blocks
        const tgz = path.join(dir, `${image.name}.tar.gz`);
        fs.copyFileSync(image.tgz, tgz);
        const port = await freePort();
        const srv = await startDaemon({ label: 'static server', cmd: process.execPath, args: ['-e', STATIC_SERVER, tgz, String(port)], netns: ns.name, ready: 'static listening', timeoutMs: 15_000 });
        try {
          const shape = ctx.quick || image.name !== 'python' ? undefined : SHAPED_RATE;
          all.push(await imageRuns(ns, hub, path.join(hubDir, 'hub'), `http://127.0.0.1:${port}/image.tar.gz`, image, dir, n, shape));
        } finally {
          await srv.stop(5_000);
          fs.rmSync(tgz, { force: true });
        }
      }
    } finally {
      await hub.stop();
    }
  });

  for (const r of all) {
    const { image } = r;
    const hello = HELLO[image.name].argv;
    const cmd = `${hello.slice(0, 2).join(' ')} '${hello.slice(2).join(' ')}'`;
    const runcS = firstS(r.runc);
    const classicS = firstS(r.classic);
    const row = (what: string, xs: Array<{ firstS: number }>, rss: string, fetched = '–'): string[] => {
      if (!xs.length) return [what, 'unavailable (see below)', '–', '–', fetched, rss];
      const s = firstS(xs);
      return [what, fmtSpread(s, 3), r.runc.length ? `${(s.median / runcS.median).toFixed(1)}×` : '–', r.classic.length ? `${(s.median / classicS.median).toFixed(2)}×` : '–', fetched, rss];
    };
    const fetchedMB = (xs: BlockStats[]): string => (xs.length ? one(xs.map((f) => f.bytes / 1e6), 1) : '–');
    const rows = [
      row('runc run, rootfs already unpacked on tmpfs (baseline)', r.runc, '–', '0'),
      row('download .tar.gz + tar -xzf + runc run (classic pull)', r.classic, `curl ${one(r.classic.map((c) => c.curlRss))}, tar ${one(r.classic.map((c) => c.tarRss))}`, MB(image.info.tgz_bytes)),
      row('g8os container run <hub flist>, cold (fresh agent, empty cache)', r.cold, one(r.coldHwm), fetchedMB(r.coldFetched)),
      row('g8os container run <hub flist>, warm (block cache filled)', r.warm, one([r.warmHwm]), '0'),
      row('via the protocol (corex.create + dispatch to result, no CLI), cold', r.protoCold, '–', fetchedMB(r.protoColdFetched)),
      row('via the protocol (corex.create + dispatch to result, no CLI), warm', r.protoWarm, '–', '0'),
    ];
    if (r.shaped && (r.shaped.classic.length || r.shaped.cold.length)) {
      const sh = r.shaped;
      const shRow = (what: string, xs: Array<{ firstS: number }>, fetched: string): string[] => {
        if (!xs.length) return [what, 'unavailable (see below)', '–', '–', fetched, '–'];
        const s = firstS(xs);
        return [what, fmtSpread(s, 3), r.runc.length ? `${(s.median / runcS.median).toFixed(1)}×` : '–', sh.classic.length ? `${(s.median / firstS(sh.classic).median).toFixed(2)}×` : '–', fetched, '–'];
      };
      rows.push(shRow(`${sh.rate}/s link: download + extract + runc run (classic pull)`, sh.classic, MB(image.info.tgz_bytes)));
      rows.push(shRow(`${sh.rate}/s link: g8os container run, cold`, sh.cold, fetchedMB(sh.coldFetched)));
    }
    if (r.docker) {
      rows.push(row('docker save image via g8os hub import, entrypoint, cold', r.docker.cold, '–', fetchedMB(r.docker.coldFetched)));
      rows.push(row('docker save image via g8os hub import, entrypoint, warm', r.docker.warm, '–', '0'));
    }
    const fetched = spread(r.coldFetched.map((f) => f.bytes));
    const gets = spread(r.coldFetched.map((f) => f.get));
    const split = (k: 'downloadS' | 'extractS'): string => fmtSpread(spread(r.classic.map((c) => c[k])), 2);
    const t: Table = {
      title: `Container start, ${image.name} image (${MB(image.info.tar_bytes)} MB tar, ${MB(image.info.tgz_bytes)} MB tar.gz, ${image.info.entries} entries): spawn to the first line of \`${cmd}\`, ${n} runs each`,
      headers: ['what', 's to first line', 'vs runc', 'vs classic pull', 'MB fetched', 'peak RSS MiB'],
      rows,
      notes: [
        `Cold start fetched ${fmtSpread(spread(r.coldFetched.map((f) => f.bytes / 1e6)), 1)} MB in ${one(r.coldFetched.map((f) => f.get))} block GETs = **${r.coldFetched.length ? pct(fetched.median, r.size.blockBytes) : '–'} of the flist's ${MB(r.size.blockBytes)} MB of blocks** (${r.size.blocks} blocks; content ${MB(r.size.contentBytes)} MB; Slacker: 6.4 %), ${r.coldFetched.length ? pct(fetched.median, image.info.tgz_bytes) : '–'} of the .tar.gz the classic path downloads; plus the .flist itself, ${MB(r.size.flistBytes)} MB.`,
        `Classic pull split: download ${split('downloadS')} s, extract ${split('extractS')} s, then runc run. Upload of the .tar.gz to the hub (once): ${r.uploadS.toFixed(1)} s${r.docker ? `; hub import of the ${MB(image.info.docker_bytes ?? 0)} MB docker save tarball: ${r.docker.importS.toFixed(1)} s` : ''}.`,
        'Wall from spawning the CLI (`node bin/g8os container run <url> -- …`, Node start-up included; the agent is already running) or `runc run` to the first output line. Agent, hub and the static server of the .tar.gz in their own network namespace on loopback, all data on one tmpfs; the runc bundle config is prepared before the classic pull is timed. Peak RSS: the agent\'s VmHWM (g8os rows), curl and tar (classic). median [min–max].',
        ...(r.shaped ? [`"${r.shaped.rate}/s link" rows: the namespace's loopback shaped with \`tc qdisc add dev lo root tbf rate ${r.shaped.rate}\` (hub, static server and agent all behind it); their "vs classic pull" compares with the classic pull on the same link${r.shaped.error ? `; unavailable: ${r.shaped.error}` : ''}.`] : []),
        '"via the protocol" rows: one open TypeScript client, corex.create (default nic) then core.system in it to its result, which comes when the command has exited; the agent was started before timing (cold: fresh agent and empty block cache each run).',
        ...(r.protoCold.length || r.protoWarm.length ? [`Via the protocol, corex.create / dispatch to result: cold ${split2(r.protoCold)}; warm ${split2(r.protoWarm)} (s).`] : []),
        ...r.errors.map((e) => `unavailable: ${e}`),
      ],
    };
    targets.push(...startTargets(r, runcS, fetched.median));
    ctx.print(t);
    tables.push(t);
    const bar = (label: string, xs: Array<{ firstS: number }>, baseline = false): Bar => ({ label, ...firstS(xs), baseline });
    plots.push({
      name: `container-${image.name}`, unit: 'seconds to the first output line', digits: 2,
      title: `Container start, ${image.name} image (${MB(image.info.tar_bytes)} MB): ${cmd}`,
      bars: [
        bar('runc run, rootfs already unpacked', r.runc, true), bar('download .tar.gz + extract + runc run', r.classic, true),
        bar('g8os container run, cold (empty cache)', r.cold), bar('g8os container run, warm', r.warm),
        bar('via the protocol, cold (no CLI)', r.protoCold), bar('via the protocol, warm (no CLI)', r.protoWarm),
        ...(r.docker ? [bar('docker save image via hub import, cold', r.docker.cold), bar('docker save image via hub import, warm', r.docker.warm)] : []),
        ...(r.shaped?.classic.length ? [bar(`${r.shaped.rate}/s link: download + extract + run`, r.shaped.classic, true)] : []),
        ...(r.shaped?.cold.length ? [bar(`${r.shaped.rate}/s link: g8os container run, cold`, r.shaped.cold)] : []),
      ],
      note: `Cold start fetched ${r.coldFetched.length ? pct(fetched.median, r.size.blockBytes) : '–'} of the image's block bytes (Slacker: 6.4 %). Loopback network; median of ${n}, whiskers min–max.`,
    });
    const mbBar = (label: string, bytes: number, baseline = false): Bar => ({ label, median: bytes / 1e6, baseline });
    plots.push({
      name: `container-${image.name}-bytes`, unit: 'MB transferred', digits: 1,
      title: `Bytes transferred to start the ${image.name} image`,
      bars: [
        mbBar('classic pull: the whole .tar.gz', image.info.tgz_bytes, true),
        mbBar('the flist\'s blocks, all of them', r.size.blockBytes, true),
        { label: 'g8os cold start: blocks fetched', median: fetched.median / 1e6, min: fetched.min / 1e6, max: fetched.max / 1e6 },
        mbBar('g8os cold start: the .flist file', r.size.flistBytes),
      ],
    });
    const fl = (xs: Array<{ firstS: number }>): unknown => (xs.length ? roundSpread(firstS(xs)) : null);
    data[image.name] = {
      image: { tar_bytes: image.info.tar_bytes, tgz_bytes: image.info.tgz_bytes, entries: image.info.entries, versions: image.info.versions },
      flist: { block_bytes: r.size.blockBytes, blocks: r.size.blocks, content_bytes: r.size.contentBytes, flist_bytes: r.size.flistBytes, upload_s: Number(r.uploadS.toFixed(2)) },
      runc_first_s: fl(r.runc),
      classic_first_s: fl(r.classic),
      classic_download_s: roundSpread(spread(r.classic.map((c) => c.downloadS))),
      classic_extract_s: roundSpread(spread(r.classic.map((c) => c.extractS))),
      cold_first_s: fl(r.cold),
      warm_first_s: fl(r.warm),
      protocol_cold_s: fl(r.protoCold),
      protocol_cold_create_s: r.protoCold.length ? roundSpread(spread(r.protoCold.map((x) => x.createS))) : null,
      protocol_cold_fetched_bytes: r.protoColdFetched.length ? roundSpread(spread(r.protoColdFetched.map((f) => f.bytes)), 0) : null,
      protocol_warm_s: fl(r.protoWarm),
      protocol_warm_create_s: r.protoWarm.length ? roundSpread(spread(r.protoWarm.map((x) => x.createS))) : null,
      protocol_warm_dispatch_s: r.protoWarm.length ? roundSpread(spread(r.protoWarm.map((x) => x.dispatchS))) : null,
      cold_fetched_bytes: roundSpread(fetched, 0),
      cold_block_gets: roundSpread(gets, 0),
      cold_fetched_fraction: r.coldFetched.length ? Number((fetched.median / r.size.blockBytes).toFixed(4)) : null,
      cold_agent_hwm_mib: roundSpread(spread(r.coldHwm), 1),
      warm_agent_hwm_mib: Number.isNaN(r.warmHwm) ? null : Number(r.warmHwm.toFixed(1)),
      ...(r.runc.length && r.cold.length ? { cold_vs_runc: Number((firstS(r.cold).median / runcS.median).toFixed(2)), cold_vs_classic: Number((firstS(r.cold).median / classicS.median).toFixed(3)) } : {}),
      ...(r.runc.length && r.warm.length ? { warm_vs_runc: Number((firstS(r.warm).median / runcS.median).toFixed(2)), warm_vs_classic: Number((firstS(r.warm).median / classicS.median).toFixed(3)) } : {}),
      ...(r.docker
        ? {
          docker: {
            import_s: Number(r.docker.importS.toFixed(2)), block_bytes: r.docker.size.blockBytes, cold_first_s: fl(r.docker.cold), warm_first_s: fl(r.docker.warm),
            cold_fetched_bytes: roundSpread(spread(r.docker.coldFetched.map((f) => f.bytes)), 0), ...(r.docker.error ? { error: r.docker.error } : {}),
          },
        }
        : {}),
      ...(r.shaped
        ? {
          shaped: {
            rate: r.shaped.rate, classic_first_s: fl(r.shaped.classic), classic_download_s: roundSpread(spread(r.shaped.classic.map((c) => c.downloadS))),
            cold_first_s: fl(r.shaped.cold), cold_fetched_bytes: roundSpread(spread(r.shaped.coldFetched.map((f) => f.bytes)), 0),
            ...(r.shaped.error ? { error: r.shaped.error } : {}),
          },
        }
        : {}),
      ...(r.errors.length ? { errors: r.errors } : {}),
    };
  }
  return { name: 'container', tables, data, plots, targets };
}


/** Issue 12's start targets for one image: warm ≤ runc + 100 ms (protocol, and the CLI for reference), cold ≤ 0.5 s and ≤ 5 % of the block bytes. */
function startTargets(r: ImageRuns, runcS: Spread, cliColdFetched: number): Target[] {
  const name = r.image.name;
  const runcMs = runcS.median * 1000;
  const ms = (xs: Array<{ firstS: number }>): string => `${fmtSpread(firstS(xs), 0, 1000)} ms`;
  const warm = (what: string, xs: Array<{ firstS: number }>): Target => ({
    what: `container (${name}): warm start ${what} vs runc run of the unpacked rootfs`, target: '≤ runc + 100 ms',
    measured: xs.length && r.runc.length ? `${ms(xs)} vs runc ${ms(r.runc)} (+${(firstS(xs).median * 1000 - runcMs).toFixed(0)} ms)` : 'unavailable',
    met: xs.length && r.runc.length ? firstS(xs).median * 1000 <= runcMs + 100 : null,
  });
  const fetched = r.protoColdFetched.length ? spread(r.protoColdFetched.map((f) => f.bytes)).median : cliColdFetched;
  const haveFetched = r.protoColdFetched.length > 0 || r.coldFetched.length > 0;
  return [
    warm('via the protocol (no CLI)', r.protoWarm),
    warm('with the CLI (node start-up included)', r.warm),
    {
      what: `container (${name}): cold start via the protocol, hub on loopback`, target: '≤ 0.5 s',
      measured: r.protoCold.length ? ms(r.protoCold) : 'unavailable', met: r.protoCold.length ? firstS(r.protoCold).median <= 0.5 : null,
    },
    {
      what: `container (${name}): image bytes a cold start fetched (hub /api/stats)`, target: '≤ 5 % (judged on the stored blocks)',
      measured: haveFetched ? `${pct(fetched, r.size.blockBytes)} of the flist's stored blocks (${MB(fetched)} of ${MB(r.size.blockBytes)} MB); ${pct(fetched, r.image.info.tar_bytes)} of the ${MB(r.image.info.tar_bytes)} MB image .tar` : 'unavailable',
      met: haveFetched ? fetched / r.size.blockBytes <= 0.05 : null,
    },
  ];
}
