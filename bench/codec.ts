// Codec: the block codec's hot parts in-process on 512 KiB chunks, the native addon's XXTEA and
// Snappy decoder
// (src/flist/native/codec.c) against the typed-array XXTEA and snappy package they replace, side by side in one run
// with samples interleaved (JS, native, JS, …) so machine noise hits both alike. Inputs: real
// bytes (the node binary: code and data, compresses ~2-3x) and random bytes (incompressible).
import crypto from 'node:crypto';
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import snappy from 'snappy';
import { G8osError } from '../src/errors';
import { type CodecParts, decodeBlockWith, encodeBlockWith, type EncodedBlock, jsParts, nativeParts } from '../src/flist/codec';
import { blake2b128, hashReady } from '../src/flist/hash';
import { BLOCK_SIZE } from '../src/flist/types';
import { type BenchResult, type Context, fmtSpread, log, MiB, roundSpread, spread, type Spread, type Table, type Target } from './lib';

function chunksOf(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o + BLOCK_SIZE <= buf.length; o += BLOCK_SIZE) out.push(buf.subarray(o, o + BLOCK_SIZE));
  return out;
}

function realBytes(bytes: number): Buffer {
  const fd = fs.openSync(process.execPath, 'r');
  try {
    const b = Buffer.alloc(bytes);
    const n = fs.readSync(fd, b, 0, bytes, 0);
    return b.subarray(0, n - (n % BLOCK_SIZE));
  } finally {
    fs.closeSync(fd);
  }
}

// The snappy package's buffers are not counted as V8 external memory, so without a collection
// between samples the garbage piles up (measured: 9 GiB peak RSS over a full run).
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** MB/s (10^6 bytes per second) of one pass of fn over `bytes` input bytes. */
function rate(bytes: number, fn: () => void): number {
  gc();
  const t0 = process.hrtime.bigint();
  fn();
  return bytes / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9);
}

type Op = (p: CodecParts) => () => void;

export async function codecBench(ctx: Context): Promise<BenchResult> {
  await hashReady();
  if (!nativeParts) throw new G8osError('unavailable', 'native codec absent (dist/native/codec.node): run scripts/setup.sh');
  const native = nativeParts;
  const runs = ctx.quick ? 3 : 7;
  const mib = ctx.quick ? 16 : 64;
  const inputs = [
    { label: 'real (node binary)', chunks: chunksOf(realBytes(mib * MiB)) },
    { label: 'random', chunks: chunksOf(crypto.randomBytes(mib * MiB)) },
  ];
  const rows: Table['rows'] = [];
  const data: Record<string, unknown> = {};
  const rssBefore = process.memoryUsage().rss;
  for (const inp of inputs) {
    const bytes = inp.chunks.length * BLOCK_SIZE;
    const blocks: EncodedBlock[] = inp.chunks.map((c) => encodeBlockWith(native, c));
    const compressed = inp.chunks.map((c) => snappy.compressSync(c));
    const ciphers = compressed.map((c, i) => native.xxtea.encrypt(c, blocks[i].key));
    const cBytes = compressed.reduce((a, c) => a + c.length, 0);
    const ops: Array<{ name: string; bytes: number; op: Op }> = [
      { name: 'XXTEA encrypt (snappy output)', bytes: cBytes, op: (p) => () => compressed.forEach((c, i) => p.xxtea.encrypt(c, blocks[i].key)) },
      { name: 'XXTEA decrypt', bytes: cBytes, op: (p) => () => ciphers.forEach((c, i) => p.xxtea.decrypt(c, blocks[i].key)) },
      { name: 'snappy uncompress', bytes, op: (p) => () => compressed.forEach((c) => p.uncompress(c)) },
      { name: 'block encode (hash, snappy, XXTEA, hash)', bytes, op: (p) => () => inp.chunks.forEach((c) => encodeBlockWith(p, c)) },
      { name: 'block decode (hash, XXTEA, snappy, verify)', bytes, op: (p) => () => blocks.forEach((b) => decodeBlockWith(p, b.cipher, b)) },
    ];
    for (const o of ops) {
      log(`codec ${inp.label}: ${o.name}`);
      const js: number[] = [];
      const nat: number[] = [];
      o.op(jsParts)(); // warm-up (JIT)
      o.op(native)();
      for (let i = 0; i < runs; i++) {
        js.push(rate(o.bytes, o.op(jsParts)));
        nat.push(rate(o.bytes, o.op(native)));
      }
      const sj = spread(js);
      const sn = spread(nat);
      rows.push([inp.label, o.name, (o.bytes / 1e6).toFixed(1), fmtSpread(sj, 0), fmtSpread(sn, 0), `${(sn.median / sj.median).toFixed(2)}×`]);
      data[`${inp.label} / ${o.name}`] = { js_mb_s: roundSpread(sj, 1), native_mb_s: roundSpread(sn, 1) };
    }
    // Context for the rest of the block time (the same code in both columns).
    const h = spread(Array.from({ length: runs }, () => rate(bytes, () => inp.chunks.forEach((c) => blake2b128(c)))));
    const z = spread(Array.from({ length: runs }, () => rate(bytes, () => inp.chunks.forEach((c) => snappy.compressSync(c)))));
    rows.push([inp.label, 'blake2b-128 (hash-wasm, both)', (bytes / 1e6).toFixed(1), fmtSpread(h, 0), '–', '–']);
    rows.push([inp.label, 'snappy compress (snappy package, both)', (bytes / 1e6).toFixed(1), fmtSpread(z, 0), '–', '–']);
    data[`${inp.label} / blake2b-128`] = { mb_s: roundSpread(h, 1) };
    data[`${inp.label} / snappy compress`] = { mb_s: roundSpread(z, 1) };
  }
  // Memory: RSS growth over repeated decodes of the same chunks, the addon first (it frees what
  // it allocates, so it does not raise the floor the package is then measured from).
  const mem = inputs[0].chunks.map((c) => snappy.compressSync(c));
  const growth = (u: (src: Buffer) => Buffer): number => {
    gc();
    const base = process.memoryUsage().rss;
    for (let r = 0; r < passes; r++) mem.forEach((c) => u(c));
    gc();
    return (process.memoryUsage().rss - base) / MiB;
  };
  const passes = ctx.quick ? 10 : 20;
  const gNative = growth(native.uncompress);
  const gJs = growth(jsParts.uncompress);
  const decoded = (passes * inputs[0].chunks.length * BLOCK_SIZE) / MiB;
  const memTable: Table = {
    title: `RSS growth after decoding ${decoded.toFixed(0)} MiB (${passes} passes over the real chunks), after a full GC`,
    headers: ['snappy decoder', 'RSS growth MiB'],
    rows: [['native addon', gNative.toFixed(0)], ['snappy package (uncompressSync)', gJs.toFixed(0)]],
    notes: ['The package\'s sync calls do not free their output here (glibc; Brooooooklyn/snappy#323, open): a long-running reader on it grows without bound. compressSync (ingest) has the same problem and is still used: its output decides block ids.'],
  };
  data.rss_growth_mib = { native: Number(gNative.toFixed(1)), snappy_package: Number(gJs.toFixed(1)), decoded_mib: Number(decoded.toFixed(0)) };
  const peak = process.resourceUsage().maxRSS / 1024;
  const table: Table = {
    title: `Block codec on 512 KiB chunks, MB/s median [min–max] of ${runs} interleaved runs`,
    headers: ['input', 'operation', 'MB per run', 'JS MB/s', 'native MB/s', 'native/JS'],
    rows,
    notes: [
      'MB = 10^6 bytes of the operation\'s input (snappy output for XXTEA rows, plaintext for block rows).',
      `In-process, one thread, a full GC before each sample (not timed); peak RSS of the bench process ${peak.toFixed(0)} MiB (inputs held in memory; ${(rssBefore / MiB).toFixed(0)} MiB before).`,
      'XXTEA is a serial chain (every word depends on the one before it), so even in C it is latency-bound.',
    ],
  };
  ctx.print(table);
  ctx.print(memTable);
  data.peak_rss_mib = Number(peak.toFixed(1));
  const dec = data[`${inputs[0].label} / block decode (hash, XXTEA, snappy, verify)`] as { js_mb_s: Spread; native_mb_s: Spread };
  const ratio = dec.native_mb_s.median / dec.js_mb_s.median;
  const targets: Target[] = [{
    what: 'codec: block decode, native addon vs the typed-array JS code (real chunks)', target: 'native faster (> 1×)',
    measured: `${ratio.toFixed(2)}× (${dec.native_mb_s.median.toFixed(0)} vs ${dec.js_mb_s.median.toFixed(0)} MB/s)`, met: ratio > 1,
  }];
  return { name: 'codec', tables: [table, memTable], data, targets };
}
