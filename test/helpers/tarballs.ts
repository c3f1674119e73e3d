// Test data generators shared by the flist builder, hub, FUSE and container tests.
import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip, gunzipSync, gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

export type FixtureType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** One tar member, as a test expects to read it back. */
export interface FixtureEntry {
  path: string; // relative, no leading slash, no trailing slash
  type: FixtureType;
  mode: number; // permission bits only (07777); 0 is not representable (tar-stream replaces it)
  uid: number;
  gid: number;
  uname: string; // '' = no name
  gname: string;
  mtime: number; // integer seconds
  content?: Buffer; // files only
  linkname?: string; // symlink target / hardlink source path
  devmajor?: number;
  devminor?: number;
}

export interface WriteTarOptions {
  gzip?: boolean;
  order?: 'given' | 'shuffled';
}

// ---------------------------------------------------------------------------
// Deterministic bytes

/** mulberry32: returns a function yielding uint32s. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const MIX_BLOCK = 4096;
const MIX_CHUNK = 64 * 1024; // multiple of MIX_BLOCK
const TEXT_LINE = 'the quick brown fox jumps over the lazy dog 0123456789 lorem ipsum dolor sit amet\n';

/**
 * Pseudo-random content in 64 KiB chunks: each 4 KiB block is random (AES-CTR keystream, 50%),
 * repeated text (40%) or zeros (10%). Same (size, seed) always gives the same bytes.
 */
export function* mixedChunks(size: number, seed: number): Generator<Buffer> {
  const rand = prng(seed ^ 0x9e3779b9);
  const key = createHash('sha256').update(`g8os-fixture:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  for (let off = 0; off < size; off += MIX_CHUNK) {
    const n = Math.min(MIX_CHUNK, size - off);
    const buf = cipher.update(Buffer.alloc(n));
    for (let b = 0; b < n; b += MIX_BLOCK) {
      const kind = rand() % 10;
      const end = Math.min(b + MIX_BLOCK, n);
      if (kind === 9) buf.fill(0, b, end);
      else if (kind >= 5) buf.fill(TEXT_LINE, b, end);
    }
    yield buf;
  }
}

export function mixedBytes(size: number, seed: number): Buffer {
  return Buffer.concat([...mixedChunks(size, seed)], size);
}

/** Fully random (incompressible) bytes. */
export function randomBytes(size: number, seed: number): Buffer {
  const key = createHash('sha256').update(`g8os-random:${seed}`).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

// ---------------------------------------------------------------------------
// The every-type fixture tree

export const BLOCK = 524288; // 512 KiB
export const T0 = 1_700_000_000; // 2023-11-14T22:13:20Z
export const Y2030 = 1_893_456_000; // 2030-01-01T00:00:00Z

type Owner = Pick<FixtureEntry, 'uid' | 'gid' | 'uname' | 'gname'>;
const ROOT: Owner = { uid: 0, gid: 0, uname: 'root', gname: 'root' };
const USER: Owner = { uid: 1000, gid: 1000, uname: 'user', gname: 'user' };
const WWW: Owner = { uid: 33, gid: 33, uname: 'www-data', gname: 'www-data' };
const ANON: Owner = { uid: 4242, gid: 4243, uname: '', gname: '' };

export const LONG_USTAR_PATH = 'long/' + 'dir-with-a-fairly-long-name-0123456789/'.repeat(3) + 'file-in-a-long-path.txt';
export const LONG_PAX_PATH =
  'long/' + Array.from({ length: 9 }, (_, i) => `segment-${i}-abcdefghijklmnopqrstuvwxyz/`).join('') + 'deep-file.txt';
export const LONG_NAME = 'long/long-name-' + 'x'.repeat(110) + '.txt';

let bigCache: Record<string, Buffer> | undefined;
function bigContents(): Record<string, Buffer> {
  bigCache ??= {
    minus1: randomBytes(BLOCK - 1, 1),
    block: randomBytes(BLOCK, 2),
    plus1: randomBytes(BLOCK + 1, 3),
    multi: mixedBytes(3 * BLOCK + 17, 4),
    mixed: mixedBytes(5 * 1024 * 1024 + 1234, 5),
    dup: mixedBytes(100_000, 6),
  };
  return bigCache;
}

/** Deterministic tree with every member type; see the list below. Fresh objects and buffers on every call. */
export function everyTypeEntries(): FixtureEntry[] {
  const big = bigContents();
  const dir = (path: string, mode: number, o = ROOT, mtime = T0): FixtureEntry => ({ path, type: 'dir', mode, ...o, mtime });
  const file = (path: string, content: string | Buffer, mode = 0o644, o = ROOT, mtime = T0): FixtureEntry => ({
    path, type: 'file', mode, ...o, mtime, content: Buffer.from(content),
  });
  const sym = (path: string, linkname: string, mtime = T0): FixtureEntry => ({ path, type: 'symlink', mode: 0o777, ...ROOT, mtime, linkname });
  const dev = (path: string, type: 'char' | 'block', devmajor: number, devminor: number, mode: number, gid: number, gname: string): FixtureEntry => ({
    path, type, mode, uid: 0, gid, uname: 'root', gname, mtime: T0, devmajor, devminor,
  });

  return [
    dir('bin', 0o755),
    file('bin/run.sh', '#!/bin/sh\necho run\n', 0o755),
    dir('etc', 0o755),
    file('etc/hostname', 'g8os-fixture\n'),
    file('etc/secret', 's3cr3t\n', 0o600),
    dir('home', 0o755),
    dir('home/user', 0o700, USER),
    file('home/user/.profile', 'export PATH=/usr/bin:/bin\n', 0o644, USER),
    dir('tmp', 0o1777),
    dir('srv', 0o755),
    dir('srv/www', 0o2755, WWW),
    file('srv/www/index.html', '<h1>hi</h1>\n', 0o644, WWW, 1_600_000_000),
    dir('usr', 0o755),
    dir('usr/bin', 0o755),
    file('usr/bin/setuid-tool', '#!/bin/sh\necho setuid\n', 0o4755),
    file('usr/bin/setgid-tool', '#!/bin/sh\necho setgid\n', 0o2755, { uid: 0, gid: 50, uname: 'root', gname: 'staff' }),
    dir('opt', 0o755),
    dir('opt/anon', 0o750, ANON),
    file('opt/anon/data', 'owned by a uid with no name\n', 0o640, ANON),
    dir('files', 0o755),
    file('files/empty', '', 0o644, ROOT, 0),
    file('files/one', 'x', 0o644, ROOT, Y2030),
    file('files/hello.txt', 'hello world\n'),
    file('files/block-minus-1.bin', big.minus1),
    file('files/block.bin', big.block),
    file('files/block-plus-1.bin', big.plus1),
    file('files/multi-block.bin', big.multi),
    file('files/mixed-5MiB.bin', big.mixed),
    file('files/dup-a.bin', big.dup),
    file('files/dup-b.bin', big.dup),
    { path: 'files/hello-hardlink.txt', type: 'hardlink', mode: 0o644, ...ROOT, mtime: T0, linkname: 'files/hello.txt' },
    dir('links', 0o755),
    sym('links/absolute', '/etc/hostname'),
    sym('links/relative', '../files/hello.txt'),
    sym('links/dangling', '../does/not/exist'),
    sym('links/to-dir', '../files'),
    sym('links/long-target', '../' + LONG_PAX_PATH), // > 100 chars: PAX linkpath
    dir('dev', 0o755),
    dev('dev/null', 'char', 1, 3, 0o666, 0, 'root'),
    dev('dev/ttyS0', 'char', 4, 64, 0o660, 20, 'dialout'),
    dev('dev/nvme0n1p300', 'block', 259, 300, 0o660, 6, 'disk'),
    dir('run', 0o755),
    { path: 'run/fifo', type: 'fifo', mode: 0o620, ...ROOT, mtime: T0 },
    dir('names', 0o755),
    file('names/with space.txt', 'spaces\n'),
    file('names/ünïcødé ✓.txt', 'unicode\n'), // non-ASCII: PAX path
    // parent dirs of these are not members (implied)
    file(LONG_USTAR_PATH, 'ustar prefix+name\n'), // 146 chars: fits ustar prefix/name split
    file(LONG_PAX_PATH, 'pax path\n'), // > 255 chars: PAX path
    file(LONG_NAME, 'long name\n'), // one component > 100 chars: PAX path
    file('implied/a/b/c.txt', 'implied parents\n'),
  ];
}

// ---------------------------------------------------------------------------
// Writing tarballs with tar-stream

const TAR_TYPE = {
  file: 'file', dir: 'directory', symlink: 'symlink', hardlink: 'link',
  char: 'character-device', block: 'block-device', fifo: 'fifo',
} as const;

type PackHeader = Parameters<tar.Pack['entry']>[0];

function toHeader(e: Omit<FixtureEntry, 'content'>, size = 0): PackHeader {
  return {
    name: e.path,
    type: TAR_TYPE[e.type],
    size,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    uname: e.uname,
    gname: e.gname,
    mtime: new Date(e.mtime * 1000),
    linkname: e.linkname ?? '',
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
  };
}

function shuffled<T>(items: T[], seed = 42): T[] {
  const out = items.slice();
  const rand = prng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = rand() % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Tar (optionally gzipped) of the entries. 'shuffled' is a fixed permutation: children before parents, hardlink maybe before its target. */
export async function writeTar(entries: FixtureEntry[], opts: WriteTarOptions = {}): Promise<Buffer> {
  const list = opts.order === 'shuffled' ? shuffled(entries) : entries;
  const pack = tar.pack();
  for (const e of list) {
    if (e.type === 'file') {
      const content = e.content ?? Buffer.alloc(0);
      pack.entry(toHeader(e, content.length), content);
    } else {
      pack.entry(toHeader(e));
    }
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  const buf = Buffer.concat(chunks);
  return opts.gzip ? gzipSync(buf) : buf;
}

export async function writeTarFile(path: string, entries: FixtureEntry[], opts: WriteTarOptions = {}): Promise<void> {
  await writeFile(path, await writeTar(entries, opts));
}

const FIXTURE_TYPE: Record<string, FixtureType> = {
  file: 'file', 'contiguous-file': 'file', directory: 'dir', symlink: 'symlink', link: 'hardlink',
  'character-device': 'char', 'block-device': 'block', fifo: 'fifo',
};

/** Reads a tar (gunzips if gzip magic) back into FixtureEntry[] with tar-stream, in archive order. */
export async function readTar(buf: Buffer): Promise<FixtureEntry[]> {
  if (buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipSync(buf);
  const extract = tar.extract();
  const out: FixtureEntry[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const type = FIXTURE_TYPE[h.type ?? 'file'];
      if (!type) throw new Error(`readTar: unsupported member type ${h.type}`);
      const e: FixtureEntry = {
        path: h.name.replace(/\/+$/, ''),
        type,
        mode: (h.mode ?? 0) & 0o7777,
        uid: h.uid ?? 0,
        gid: h.gid ?? 0,
        uname: h.uname ?? '',
        gname: h.gname ?? '',
        mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
      };
      if (type === 'file') e.content = Buffer.concat(chunks);
      if (type === 'symlink' || type === 'hardlink') e.linkname = h.linkname ?? '';
      if (type === 'char' || type === 'block') {
        e.devmajor = h.devmajor ?? 0;
        e.devminor = h.devminor ?? 0;
      }
      out.push(e);
    }
  })();
  extract.end(buf);
  await done;
  return out;
}

// ---------------------------------------------------------------------------
// Big trees for benchmarks (streamed, never fully in memory)

export interface BigTreeOptions {
  files: number;
  totalBytes: number; // exact sum of file sizes
  seed?: number;
}

/** A member of bigTree(); chunks() regenerates the content deterministically (callable any number of times). */
export interface BigTreeEntry extends Omit<FixtureEntry, 'content'> {
  size: number;
  chunks(): Generator<Buffer>;
}

/** File sizes and content seeds: ~99% small (log-uniform 0..64 KiB, <=30% of bytes), ~1% large take the rest; ~5% of small files duplicate an earlier one. */
function bigTreePlan(opts: BigTreeOptions): { sizes: Float64Array; seeds: Uint32Array } {
  const n = opts.files;
  const seed = opts.seed ?? 1;
  const rand = prng(seed);
  const sizes = new Float64Array(n);
  const seeds = new Uint32Array(n);
  const nLarge = n === 0 ? 0 : Math.max(1, Math.floor(n / 100));
  const isLarge = new Uint8Array(n);
  for (let k = 0; k < nLarge; k++) isLarge[Math.floor(((k + 0.5) * n) / nLarge)] = 1;

  let smallSum = 0;
  let lastSmall = -1;
  for (let i = 0; i < n; i++) {
    seeds[i] = (Math.imul(seed, 0x01000193) ^ (i + 1) * 0x9e3779b1) >>> 0;
    if (isLarge[i]) continue;
    if (lastSmall >= 0 && rand() % 20 === 0) {
      const j = rand() % (lastSmall + 1); // duplicate an earlier small file (same size and bytes)
      if (!isLarge[j]) {
        sizes[i] = sizes[j];
        seeds[i] = seeds[j];
      }
    } else {
      sizes[i] = Math.floor(Math.exp((rand() / 2 ** 32) * Math.log(65536))) - 1;
    }
    smallSum += sizes[i];
    lastSmall = i;
  }
  const smallBudget = nLarge === n ? 0 : Math.floor(opts.totalBytes * 0.3);
  if (smallSum > smallBudget) {
    const f = smallBudget / smallSum;
    smallSum = 0;
    for (let i = 0; i < n; i++) {
      if (!isLarge[i]) {
        sizes[i] = Math.floor(sizes[i] * f);
        smallSum += sizes[i];
      }
    }
  }
  const weights: number[] = [];
  for (let k = 0; k < nLarge; k++) weights.push(0.5 + rand() / 2 ** 32);
  const wsum = weights.reduce((a, b) => a + b, 0);
  let remaining = Math.max(0, opts.totalBytes - smallSum);
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (!isLarge[i]) continue;
    const s = k === nLarge - 1 ? remaining : Math.floor(((opts.totalBytes - smallSum) * weights[k]) / wsum);
    sizes[i] = s;
    remaining -= s;
    k++;
  }
  return { sizes, seeds };
}

const FILES_PER_DIR = 64;
const EXTS = ['.txt', '.bin', '.so', '.json', '.py', '.html', '', '.gz'];
const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** Realistic tree of opts.files files (plus dirs dNNNN/sNN/) totalling opts.totalBytes bytes. */
export async function* bigTree(opts: BigTreeOptions): AsyncGenerator<BigTreeEntry> {
  const { sizes, seeds } = bigTreePlan(opts);
  const noChunks = function* (): Generator<Buffer> {};
  let mtime = T0;
  for (let i = 0; i < opts.files; i++) {
    const d = Math.floor(i / FILES_PER_DIR);
    const top = `d${pad(Math.floor(d / 16), 4)}`;
    const sub = `${top}/s${pad(d % 16, 2)}`;
    if (i % FILES_PER_DIR === 0) {
      if (d % 16 === 0) yield { path: top, type: 'dir', mode: 0o755, ...ROOT, mtime, size: 0, chunks: noChunks };
      yield { path: sub, type: 'dir', mode: 0o755, ...ROOT, mtime, size: 0, chunks: noChunks };
    }
    const size = sizes[i];
    const cseed = seeds[i];
    yield {
      path: `${sub}/f${pad(i, 7)}${EXTS[i % EXTS.length]}`,
      type: 'file',
      mode: i % 7 === 0 ? 0o755 : 0o644,
      ...ROOT,
      mtime: mtime++,
      size,
      chunks: () => mixedChunks(size, cseed),
    };
  }
}

/** Streams bigTree(opts) into a tar (or .tar.gz) file with backpressure. */
export async function writeBigTarFile(
  path: string,
  opts: BigTreeOptions & { gzip?: boolean },
): Promise<{ files: number; dirs: number; bytes: number }> {
  const pack = tar.pack();
  const out = createWriteStream(path);
  const done = opts.gzip ? pipeline(pack, createGzip({ level: 1 }), out) : pipeline(pack, out);
  done.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile
  const stats = { files: 0, dirs: 0, bytes: 0 };
  try {
    for await (const e of bigTree(opts)) {
      let sink!: ReturnType<tar.Pack['entry']>;
      const entryDone = new Promise<void>((resolve, reject) => {
        sink = pack.entry(toHeader(e, e.size), (err) => (err ? reject(err) : resolve()));
      });
      entryDone.catch(() => undefined);
      if (e.type === 'file') {
        for (const chunk of e.chunks()) {
          if (!sink.write(chunk)) await once(sink as unknown as NodeJS.EventEmitter, 'drain');
        }
        sink.end(undefined);
        stats.files++;
        stats.bytes += e.size;
      } else {
        stats.dirs++;
      }
      await entryDone;
    }
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
  }
  await done;
  return stats;
}

// ---------------------------------------------------------------------------
// Hand-written raw tar pieces for bad inputs.
//
// ustar header, 512 bytes (offset, length):
//   name 0,100  mode 100,8  uid 108,8  gid 116,8  size 124,12  mtime 136,12  chksum 148,8
//   typeflag 156,1  linkname 157,100  magic 257,6 "ustar\0"  version 263,2 "00"
//   uname 265,32  gname 297,32  devmajor 329,8  devminor 337,8  prefix 345,155  pad 500,12
// Numbers are zero-padded octal followed by NUL. chksum = sum of all 512 bytes with the chksum
// field counted as 8 spaces, stored as 6 octal digits + NUL + space.
// Member data follows the header, zero-padded to a multiple of 512; the archive ends with 2 zero blocks.

interface RawHeader {
  name: string | Buffer;
  size?: number;
  typeflag?: string; // '0' file, '5' dir, 'x' PAX extended header, ...
  mode?: number;
  mtime?: number;
  checksumDelta?: number; // added to the correct checksum (non-zero = bad header)
}

function octal(buf: Buffer, off: number, len: number, value: number): void {
  buf.write(value.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
}

export function rawHeader(h: RawHeader): Buffer {
  const b = Buffer.alloc(512);
  const name = typeof h.name === 'string' ? Buffer.from(h.name) : h.name;
  if (name.length > 100) throw new Error('rawHeader: name > 100 bytes');
  name.copy(b, 0);
  octal(b, 100, 8, h.mode ?? 0o644);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, h.size ?? 0);
  octal(b, 136, 12, h.mtime ?? T0);
  b.write(h.typeflag ?? '0', 156, 1, 'latin1');
  b.write('ustar\0' + '00', 257, 8, 'latin1');
  b.write('root', 265, 'latin1');
  b.write('root', 297, 'latin1');
  octal(b, 329, 8, 0);
  octal(b, 337, 8, 0);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write((sum + (h.checksumDelta ?? 0)).toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

function pad512(data: Buffer): Buffer {
  const rem = data.length % 512;
  return rem === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rem)]);
}

function rawMember(name: string | Buffer, content: string | Buffer): Buffer {
  const data = Buffer.from(content);
  return Buffer.concat([rawHeader({ name, size: data.length }), pad512(data)]);
}

/** PAX records "<len> <key>=<value>\n", len counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len++;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

const END = Buffer.alloc(1024);

export type BadTarballName =
  | 'truncatedTar' | 'truncatedGzip' | 'corruptGzip' | 'notATar' | 'emptyFile' | 'dotDotMember'
  | 'absoluteMember' | 'nulInName' | 'invalidUtf8Name' | 'duplicateMembers' | 'hugePaxHeader' | 'badChecksum';

/** Malformed or hostile archives, all built by hand (deterministic, synchronous). */
export function badTarballs(): Record<BadTarballName, Buffer> {
  const okTxt = rawMember('ok.txt', 'ok\n');
  const data = randomBytes(10_000, 7);
  const fullTar = Buffer.concat([okTxt, rawMember('data.bin', data), END]);
  const bigTar = Buffer.concat([okTxt, rawMember('data.bin', randomBytes(200_000, 8)), END]);
  const gz = gzipSync(bigTar);
  const corrupt = Buffer.from(gz);
  const mid = Math.floor(corrupt.length / 2);
  for (const i of [mid, mid + 1, mid + 7, mid + 100]) corrupt[i] ^= 0xff;

  const paxNul = paxRecord('path', Buffer.from('a\0b'));
  const hugePax = paxRecord('path', Buffer.from('huge.txt'));

  return {
    // ok.txt, then data.bin (10000 bytes) cut after 4000 data bytes; no end blocks
    truncatedTar: fullTar.subarray(0, 1024 + 512 + 4000),
    // gzip of [ok.txt, data.bin (200000 random bytes)] cut to its first half
    truncatedGzip: gz.subarray(0, Math.floor(gz.length / 2)),
    // the same gzip with 4 bytes XOR 0xff in the middle of the deflate stream
    corruptGzip: corrupt,
    // 2 KiB of text and random bytes
    notATar: Buffer.concat([Buffer.from('This is not a tar archive.\n'.repeat(20)), randomBytes(2048 - 540, 9)]),
    emptyFile: Buffer.alloc(0),
    // members "../../etc/evil" and "a/../../b"
    dotDotMember: Buffer.concat([rawMember('../../etc/evil', 'evil\n'), rawMember('a/../../b', 'b\n'), END]),
    // member "/etc/passwd2"
    absoluteMember: Buffer.concat([rawMember('/etc/passwd2', 'evil::0:0::/:/bin/sh\n'), END]),
    // PAX 'x' header with record "path=a\0b", then a file whose ustar name is "placeholder.txt"
    nulInName: Buffer.concat([
      rawHeader({ name: 'PaxHeaders/nul', typeflag: 'x', size: paxNul.length }),
      pad512(paxNul),
      rawMember('placeholder.txt', 'nul\n'),
      END,
    ]),
    // a file whose name is the two bytes 0xff 0xfe
    invalidUtf8Name: Buffer.concat([rawMember(Buffer.from([0xff, 0xfe]), 'bad name\n'), END]),
    // dup.txt "first\n" then dup.txt "second\n" (last wins)
    duplicateMembers: Buffer.concat([rawMember('dup.txt', 'first\n'), rawMember('dup.txt', 'second\n'), END]),
    // PAX 'x' header claiming 64 MiB; only one 512-byte data block (a path record) then 2 zero blocks
    hugePaxHeader: Buffer.concat([
      rawHeader({ name: 'PaxHeaders/huge', typeflag: 'x', size: 64 * 1024 * 1024 }),
      pad512(hugePax),
      END,
    ]),
    // ok.txt, then bad-checksum.txt ("bad\n") whose checksum is off by one
    badChecksum: Buffer.concat([okTxt, rawHeader({ name: 'bad-checksum.txt', size: 4, checksumDelta: 1 }), pad512(Buffer.from('bad\n')), END]),
  };
}

// ---------------------------------------------------------------------------
// Minimal busybox rootfs

export const BUSYBOX_APPLETS = [
  'sh', 'echo', 'ls', 'cat', 'sleep', 'env', 'id', 'ps', 'mount', 'hostname', 'wget', 'nc',
  'httpd', 'ip', 'ifconfig', 'ping', 'true', 'false', 'uname',
];

/** True if the ELF file has a PT_INTERP program header (i.e. is dynamically linked). */
function elfHasInterp(elf: Buffer): boolean {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new Error('busybox: not a 64-bit little-endian ELF');
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) if (elf.readUInt32LE(phoff + i * phentsize) === 3) return true;
  return false;
}

/** Writes a minimal rootfs tarball: static /bin/busybox, applet symlinks, etc files, standard dirs. */
export async function busyboxRootfsTar(path: string, opts: { gzip?: boolean } = {}): Promise<void> {
  const src = '/bin/busybox';
  if (!existsSync(src)) throw new Error(`${src} not found: apt-get install busybox-static`);
  const busybox = readFileSync(src);
  if (elfHasInterp(busybox)) throw new Error(`${src} is dynamically linked: apt-get install busybox-static`);

  const dir = (p: string, mode = 0o755): FixtureEntry => ({ path: p, type: 'dir', mode, ...ROOT, mtime: T0 });
  const file = (p: string, content: string | Buffer, mode = 0o644): FixtureEntry => ({
    path: p, type: 'file', mode, ...ROOT, mtime: T0, content: Buffer.from(content),
  });
  const entries: FixtureEntry[] = [
    dir('bin'),
    file('bin/busybox', busybox, 0o755),
    ...BUSYBOX_APPLETS.map((a): FixtureEntry => ({ path: `bin/${a}`, type: 'symlink', mode: 0o777, ...ROOT, mtime: T0, linkname: 'busybox' })),
    dir('dev'),
    dir('proc', 0o555),
    dir('sys', 0o555),
    dir('tmp', 0o1777),
    dir('root', 0o700),
    dir('etc'),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n'),
    file('etc/group', 'root:x:0:\nnogroup:x:65534:\n'),
    file('etc/hostname', 'busybox\n'),
    dir('var'),
  ];
  await writeTarFile(path, entries, { gzip: opts.gzip });
}
