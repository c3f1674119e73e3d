// The shared block cache (src/fs/cache.ts) against a real hub: flists built with the library
// into the hub's store, blocks read back through the http store at the hub URL. The hub keeps
// no request log, so store GETs are counted by a decorator around the http store (Counting).
import { fork, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildFromTar } from '../src/flist/builder';
import { encodeGen3Block, gen3Ready } from '../src/flist/gen3';
import { openFlist } from '../src/flist/open';
import type { BlockRef, Entry, FlistReader } from '../src/flist/types';
import { writeFlist } from '../src/flist/writer';
import { BlockCache, BlockFetchError, type BlockCacheOptions } from '../src/fs/cache';
import { lockPath } from '../src/fs/cache-lock';
import { warm, type WarmProgress } from '../src/fs/warm';
import { openStore } from '../src/store';
import type { BlockStore } from '../src/store/types';
import { ROOT } from './helpers/cli';
import { startHub, type HubProcess } from './helpers/hub';
import { BLOCK, mixedBytes, randomBytes, T0, writeTar, type FixtureEntry } from './helpers/tarballs';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Counts GETs; optional delay, hang, or corruption of what the store returns. */
class Counting implements BlockStore {
  gets = 0;
  readonly byId = new Map<string, number>();
  /** ids in the order their GETs were issued */
  readonly order: string[] = [];
  delayMs = 0;
  hang = false;
  /** flip a byte of the next n answers */
  corruptNext = 0;
  readonly writable = false;

  constructor(private readonly inner: BlockStore) {}

  get url(): string {
    return this.inner.url;
  }

  async get(id: Buffer): Promise<Buffer | null> {
    this.gets++;
    const hex = id.toString('hex');
    this.order.push(hex);
    this.byId.set(hex, (this.byId.get(hex) ?? 0) + 1);
    if (this.hang) return new Promise(() => undefined);
    if (this.delayMs) await sleep(this.delayMs);
    const data = await this.inner.get(id);
    if (data && this.corruptNext > 0) {
      this.corruptNext--;
      const bad = Buffer.from(data);
      bad[bad.length >> 1] ^= 0x40;
      return bad;
    }
    return data;
  }

  put(): Promise<void> {
    throw new Error('read-only');
  }

  exists(ids: Buffer[]): Promise<boolean[]> {
    return this.inner.exists(ids);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A store in memory (gen-3 refs have 32-byte ids, which the http store does not take). */
class MemoryStore implements BlockStore {
  readonly url = 'memory://test';
  readonly writable = true;
  gets = 0;
  readonly map = new Map<string, Buffer>();
  async get(id: Buffer): Promise<Buffer | null> {
    this.gets++;
    return this.map.get(id.toString('hex')) ?? null;
  }
  async put(id: Buffer, data: Buffer): Promise<void> {
    this.map.set(id.toString('hex'), data);
  }
  async exists(ids: Buffer[]): Promise<boolean[]> {
    return ids.map((id) => this.map.has(id.toString('hex')));
  }
  async close(): Promise<void> {}
}

let tmp: string;
let hub: HubProcess;
let flistFile: string;
let reader: FlistReader;
const contents: Record<string, Buffer> = {
  'big.bin': randomBytes(6 * BLOCK + 4321, 11), // 7 blocks, incompressible
  'mixed.bin': mixedBytes(8 * BLOCK, 12), // 8 full blocks
  'etc/small.txt': Buffer.from('small file\n'),
};
const caches: BlockCache[] = [];
const logs: string[] = [];

const fileEntry = (p: string, content: Buffer): FixtureEntry => ({
  path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content,
});

/** Build an flist whose blocks are in the hub's own store; returns the flist file. */
async function buildInto(h: HubProcess, name: string, files: Record<string, Buffer>): Promise<string> {
  const store = await openStore(`dir://${h.data}/blocks`);
  try {
    const entries: FixtureEntry[] = [{ path: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0 }];
    for (const [p, c] of Object.entries(files)) entries.push(fileEntry(p, c));
    const { tree } = await buildFromTar(Readable.from(await writeTar(entries)), { store });
    const out = path.join(tmp, `${name}.flist`);
    await writeFlist(tree, out, { backend: JSON.stringify({ url: h.url }) });
    return out;
  } finally {
    await store.close();
  }
}

async function hubStore(h: HubProcess = hub): Promise<Counting> {
  return new Counting(await openStore(h.url));
}

function newCache(opts: Partial<BlockCacheOptions> & { store: BlockStore; dir: string }): BlockCache {
  const c = new BlockCache({ log: (l) => logs.push(l), ...opts });
  caches.push(c);
  return c;
}

const freshDir = (name: string): string => fs.mkdtempSync(path.join(tmp, `${name}-`));
const entry = (p: string): Entry => reader.stat(p)!;
const refs = (p: string): BlockRef[] => entry(p).blocks!;
const slice = (p: string, i: number): Buffer => contents[p].subarray(i * BLOCK, (i + 1) * BLOCK);
const hex = (r: BlockRef): string => r.id.toString('hex');

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-fs-cache-'));
  hub = await startHub();
  flistFile = await buildInto(hub, 'main', contents);
  reader = await openFlist(flistFile);
  expect(refs('big.bin')).toHaveLength(7);
  expect(refs('mixed.bin')).toHaveLength(8);
});

afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  reader?.close();
  await hub?.stop();
  if (hub) fs.rmSync(hub.data, { recursive: true, force: true });
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('reads', () => {
  it('reading one block fetches that block once; memory, then the cache directory, serve it again', async () => {
    const dir = freshDir('one');
    const store = await hubStore();
    const c = newCache({ dir, store });
    const ref = refs('big.bin')[3];
    expect((await c.block(ref, 'gen2')).equals(slice('big.bin', 3))).toBe(true);
    expect(store.gets).toBe(1);
    expect((await c.block(ref, 'gen2')).equals(slice('big.bin', 3))).toBe(true);
    expect(store.gets).toBe(1);
    expect(c.stats()).toMatchObject({ memoryHits: 1, misses: 1, fetched: 1, errors: 0 });
    await c.flush();
    // decoded plaintext at blocks/<id[0:2]>/<id[2:4]>/<id>, nothing else left behind
    const file = path.join(dir, 'blocks', hex(ref).slice(0, 2), hex(ref).slice(2, 4), hex(ref));
    expect(c.pathOf(hex(ref))).toBe(file);
    expect(fs.readFileSync(file).equals(slice('big.bin', 3))).toBe(true);
    expect(fs.readdirSync(path.dirname(file))).toEqual([hex(ref)]);
    expect(c.stats()).toMatchObject({ stored: 1, storedBytes: BLOCK, blocks: 1, bytes: BLOCK });

    // another mount (cache instance) on the same directory: from disk, no GET, and not hashed
    // again (the first one wrote it verified into the node's log)
    const store2 = await hubStore();
    const c2 = newCache({ dir, store: store2 });
    expect((await c2.block(ref, 'gen2')).equals(slice('big.bin', 3))).toBe(true);
    expect(store2.gets).toBe(0);
    expect(c2.stats()).toMatchObject({ diskHits: 1, verified: 0, trusted: 1, misses: 0 });
    // without the log's word (verify: 'always'), it is hashed
    const c3 = newCache({ dir, store: store2, verify: 'always' });
    expect((await c3.block(ref, 'gen2')).equals(slice('big.bin', 3))).toBe(true);
    expect(c3.stats()).toMatchObject({ diskHits: 1, verified: 1, trusted: 0 });
  });

  it('20 parallel reads of one block make one store GET', async () => {
    const store = await hubStore();
    const c = newCache({ dir: freshDir('par'), store });
    const ref = refs('mixed.bin')[5];
    const got = await Promise.all(Array.from({ length: 20 }, () => c.block(ref, 'gen2')));
    for (const b of got) expect(b.equals(slice('mixed.bin', 5))).toBe(true);
    expect(store.gets).toBe(1);
    expect(c.stats().coalesced).toBe(19);
  });

  it.each([2, 0])('reads every file of the flist byte for byte, small and last blocks included (%i workers)', async (workers) => {
    const store = await hubStore();
    const c = newCache({ dir: freshDir('all'), store, workers });
    for (const [p, want] of Object.entries(contents)) {
      const parts = await Promise.all(refs(p).map((r) => c.block(r, 'gen2')));
      expect(Buffer.concat(parts).equals(want)).toBe(true);
    }
    expect(store.gets).toBe(7 + 8 + 1);
  });

  it('serves gen-3 blocks (blake2b-256 keys) and verifies them from disk once per node', async () => {
    await gen3Ready();
    const store = new MemoryStore();
    const plain = randomBytes(300_000, 99);
    const { data, ref } = encodeGen3Block(plain);
    await store.put(ref.id, data);
    const dir = freshDir('gen3');
    const c = newCache({ dir, store });
    expect((await c.block(ref, 'gen3')).equals(plain)).toBe(true);
    await c.flush();
    const c2 = newCache({ dir, store });
    expect((await c2.block(ref, 'gen3')).equals(plain)).toBe(true);
    expect(store.gets).toBe(1);
    expect(c2.stats()).toMatchObject({ diskHits: 1, verified: 0, trusted: 1 });
    const c3 = newCache({ dir, store, verify: 'always' });
    expect((await c3.block(ref, 'gen3')).equals(plain)).toBe(true);
    expect(c3.stats()).toMatchObject({ diskHits: 1, verified: 1 });
  });

  it('demand reads overtake queued read-ahead', async () => {
    const store = await hubStore();
    store.delayMs = 150;
    const c = newCache({ dir: freshDir('prio'), store, concurrency: 2 });
    c.prefetch(refs('mixed.bin'), 'gen2'); // 8 blocks, at most 1 slot for background work
    await sleep(20);
    const b = await c.block(refs('big.bin')[0], 'gen2');
    expect(b.equals(slice('big.bin', 0))).toBe(true);
    // its GET went out next, not behind the eight queued ones (order, not time: the machine may be loaded)
    const at = store.order.indexOf(hex(refs('big.bin')[0]));
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThanOrEqual(2);
  });
});

describe('two mounts sharing a cache directory', () => {
  it('in one process: each block fetched once', async () => {
    const dir = freshDir('shared');
    const [s1, s2] = [await hubStore(), await hubStore()];
    s1.delayMs = s2.delayMs = 30;
    const c1 = newCache({ dir, store: s1 });
    const c2 = newCache({ dir, store: s2 });
    const all = refs('big.bin');
    const [a, b] = await Promise.all([Promise.all(all.map((r) => c1.block(r, 'gen2'))), Promise.all(all.map((r) => c2.block(r, 'gen2')))]);
    expect(Buffer.concat(a).equals(contents['big.bin'])).toBe(true);
    expect(Buffer.concat(b).equals(contents['big.bin'])).toBe(true);
    expect(s1.gets + s2.gets).toBe(all.length);
    expect(c1.stats().lockWaits + c2.stats().lockWaits).toBeGreaterThan(0);
  });

  it('in two processes (lock files): each block fetched once', async () => {
    const dir = freshDir('procs');
    const script = path.join(tmp, 'cache-child.js');
    fs.writeFileSync(
      script,
      `const crypto = require('crypto');
const { BlockCache } = require(${JSON.stringify(path.join(ROOT, 'dist/src/fs/cache.js'))});
const { openStore } = require(${JSON.stringify(path.join(ROOT, 'dist/src/store/index.js'))});
const { openFlist } = require(${JSON.stringify(path.join(ROOT, 'dist/src/flist/open.js'))});
process.on('message', async (m) => {
  const reader = await openFlist(m.flist);
  const inner = await openStore(m.hub);
  let gets = 0;
  const store = { url: inner.url, writable: false, exists: (ids) => inner.exists(ids), put: () => Promise.reject(new Error('ro')), close: () => inner.close(),
    get: async (id) => { gets++; await new Promise((r) => setTimeout(r, 40)); return inner.get(id); } };
  const cache = new BlockCache({ dir: m.dir, store, log: () => {} });
  const refs = reader.stat(m.path).blocks;
  const parts = await Promise.all(refs.map((r) => cache.block(r, reader.format)));
  await cache.close();
  process.send({ gets, sha: crypto.createHash('sha256').update(Buffer.concat(parts)).digest('hex'), stats: cache.stats() }, () => process.exit(0));
});
process.send('ready');
`,
    );
    const kids = [fork(script, [], { stdio: 'inherit' }), fork(script, [], { stdio: 'inherit' })];
    try {
      await Promise.all(kids.map((k) => new Promise((r) => k.once('message', r))));
      const answers = kids.map(
        (k) => new Promise<{ gets: number; sha: string; stats: { lockWaits: number } }>((resolve, reject) => {
          k.once('message', resolve);
          k.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
        }),
      );
      for (const k of kids) k.send({ dir, hub: hub.url, flist: flistFile, path: 'mixed.bin' });
      const [a, b] = await Promise.all(answers);
      const sha = crypto.createHash('sha256').update(contents['mixed.bin']).digest('hex');
      expect([a.sha, b.sha]).toEqual([sha, sha]);
      expect(a.gets + b.gets).toBe(8);
      expect(a.stats.lockWaits + b.stats.lockWaits).toBeGreaterThan(0);
      // no lock or temp file left behind
      const leftovers = spawnSync('find', [dir, '-name', '.*', '-type', 'f'], { encoding: 'utf8' }).stdout.trim();
      expect(leftovers).toBe('');
    } finally {
      for (const k of kids) if (k.exitCode === null) k.kill('SIGKILL');
    }
  });

  it('a stale lock (dead holder, or too old) is taken over; a live one is waited for, bounded', async () => {
    const dir = freshDir('locks');
    const store = await hubStore();
    const c = newCache({ dir, store, timeoutMs: 800 });
    const [r0, r1, r2] = refs('mixed.bin');
    const lockOf = (r: BlockRef): string => {
      const l = lockPath(c.pathOf(hex(r)));
      fs.mkdirSync(path.dirname(l), { recursive: true });
      return l;
    };
    // holder died: a process that has exited
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    fs.writeFileSync(lockOf(r0), `${dead} ${os.hostname()}\n`);
    let t0 = Date.now();
    expect((await c.block(r0, 'gen2')).equals(slice('mixed.bin', 0))).toBe(true);
    expect(Date.now() - t0).toBeLessThan(500);
    // holder alive but the lock is an hour old
    fs.writeFileSync(lockOf(r1), `${process.pid} ${os.hostname()}\n`);
    const old = new Date(Date.now() - 3600_000);
    fs.utimesSync(lockOf(r1), old, old);
    expect((await c.block(r1, 'gen2')).equals(slice('mixed.bin', 1))).toBe(true);
    // a live holder that never finishes: the read fails at the deadline, naming the block
    const holder = spawn('sleep', ['30']);
    try {
      fs.writeFileSync(lockOf(r2), `${holder.pid} ${os.hostname()}\n`);
      t0 = Date.now();
      await expect(c.block(r2, 'gen2')).rejects.toThrow(new RegExp(`block ${hex(r2)} .*another process`));
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(store.byId.get(hex(r2)) ?? 0).toBe(0);
      // the holder is gone: the next read (after the 1 s negative cache) takes over
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
      await sleep(1100);
      expect((await c.block(r2, 'gen2')).equals(slice('mixed.bin', 2))).toBe(true);
    } finally {
      holder.kill('SIGKILL');
    }
    await c.flush();
    expect(fs.existsSync(lockOf(r2))).toBe(false);
  });
});

describe('size bound', () => {
  it('evicts least recently used blocks above maxBytes, never pinned ones', async () => {
    const dir = freshDir('lru');
    const store = await hubStore();
    const c = newCache({ dir, store, maxBytes: 3 * BLOCK });
    const all = refs('mixed.bin');
    const onDisk = (): number[] => all.map((r, i) => (fs.existsSync(c.pathOf(hex(r))) ? i : -1)).filter((i) => i >= 0);
    c.pin([all[0]]);
    for (let i = 0; i < all.length; i++) {
      expect((await c.block(all[i], 'gen2')).equals(slice('mixed.bin', i))).toBe(true);
      await c.flush();
    }
    expect(onDisk()).toEqual([0, 6, 7]);
    expect(c.stats()).toMatchObject({ evictions: 5, evictedBytes: 5 * BLOCK, bytes: 3 * BLOCK, blocks: 3, pinned: 1 });
    // unpinned, block 0 is the least recently used: the next new block pushes it out
    c.unpin([all[0]]);
    await c.block(all[1], 'gen2'); // from memory: no disk change
    await c.flush();
    expect(onDisk()).toEqual([0, 6, 7]);
    const c2 = newCache({ dir, store, maxBytes: 3 * BLOCK, memoryBytes: 0 });
    await c2.flush(); // the start-up scan
    expect(c2.stats()).toMatchObject({ blocks: 3, bytes: 3 * BLOCK });
    await c2.block(all[1], 'gen2');
    await c2.flush();
    expect(onDisk()).toEqual([1, 6, 7]);
    // a block pinned twice stays until unpinned twice
    c2.pin([all[6]]);
    c2.pin([all[6]]);
    c2.unpin([all[6]]);
    for (const i of [2, 3]) {
      await c2.block(all[i], 'gen2');
      await c2.flush();
    }
    expect(onDisk()).toContain(6);
    expect(onDisk()).toHaveLength(3);
  });

  it('recency survives a restart through file mtimes', async () => {
    const dir = freshDir('mtime');
    const store = await hubStore();
    const c = newCache({ dir, store });
    const all = refs('mixed.bin').slice(0, 4);
    for (const r of all) await c.block(r, 'gen2');
    await c.flush();
    // block 0 used last (as another process's touch would leave it)
    const now = new Date();
    fs.utimesSync(c.pathOf(hex(all[0])), now, now);
    for (let i = 1; i < 4; i++) fs.utimesSync(c.pathOf(hex(all[i])), new Date(Date.now() - (10 - i) * 1000), new Date(Date.now() - (10 - i) * 1000));
    const c2 = newCache({ dir, store, maxBytes: 2 * BLOCK });
    await c2.flush();
    expect(all.map((r) => fs.existsSync(c.pathOf(hex(r))))).toEqual([true, false, false, true]);
  });
});

describe('corrupt cached files', () => {
  async function cachedBlock(dir: string, i: number): Promise<string> {
    const c = newCache({ dir, store: await hubStore() });
    await c.block(refs('big.bin')[i], 'gen2');
    await c.flush();
    return c.pathOf(hex(refs('big.bin')[i]));
  }

  it('a flipped byte is detected, the file deleted and the block fetched again', async () => {
    const dir = freshDir('flip');
    const file = await cachedBlock(dir, 2);
    const fd = fs.openSync(file, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 1000);
    b[0] ^= 1;
    fs.writeSync(fd, b, 0, 1, 1000);
    fs.closeSync(fd);
    const store = await hubStore();
    const c = newCache({ dir, store });
    expect((await c.block(refs('big.bin')[2], 'gen2')).equals(slice('big.bin', 2))).toBe(true);
    expect(store.gets).toBe(1);
    expect(c.stats()).toMatchObject({ corrupt: 1, errors: 0 });
    expect(logs.some((l) => l.includes(file) && l.includes('does not hash to the block key'))).toBe(true);
    await c.flush();
    expect(fs.readFileSync(file).equals(slice('big.bin', 2))).toBe(true);
  });

  it('a truncated or emptied file is detected and refetched', async () => {
    const dir = freshDir('trunc');
    for (const size of [1000, 0]) {
      const file = await cachedBlock(dir, 4);
      fs.truncateSync(file, size);
      const store = await hubStore();
      const c = newCache({ dir, store });
      expect((await c.block(refs('big.bin')[4], 'gen2')).equals(slice('big.bin', 4))).toBe(true);
      expect(store.gets).toBe(1);
      expect(c.stats().corrupt).toBe(1);
    }
  });

  it('a file changed under a running cache is verified again before use', async () => {
    const dir = freshDir('change');
    const store = await hubStore();
    const c = newCache({ dir, store, memoryBytes: 0 });
    const ref = refs('big.bin')[1];
    await c.block(ref, 'gen2');
    await c.flush();
    await c.block(ref, 'gen2'); // trusted: verified when written
    expect(c.stats()).toMatchObject({ diskHits: 1, verified: 0 });
    const file = c.pathOf(hex(ref));
    await sleep(5);
    const bad = fs.readFileSync(file);
    bad[7] ^= 0xff;
    fs.writeFileSync(file, bad);
    expect((await c.block(ref, 'gen2')).equals(slice('big.bin', 1))).toBe(true);
    expect(c.stats()).toMatchObject({ corrupt: 1, fetched: 2 });
  });

  it('range reads of a verified block read just that range; a changed file goes back through verification', async () => {
    const dir = freshDir('range');
    const store = await hubStore();
    const c = newCache({ dir, store, memoryBytes: 0 });
    const ref = refs('big.bin')[3];
    const want = slice('big.bin', 3);
    // not yet verified here: the whole block is fetched and verified first
    expect((await c.range(ref, 'gen2', 100, 4196)).equals(want.subarray(100, 4196))).toBe(true);
    await c.flush();
    const before = c.stats();
    expect((await c.range(ref, 'gen2', 200_000, 204_096)).equals(want.subarray(200_000, 204_096))).toBe(true);
    expect(c.stats()).toMatchObject({ diskHits: before.diskHits + 1, fetched: before.fetched, verified: before.verified });
    // changed on disk (new mtime): not trusted any more, so verified again, found corrupt, refetched
    const file = c.pathOf(hex(ref));
    await sleep(5);
    const bad = fs.readFileSync(file);
    bad[300_000] ^= 0xff;
    fs.writeFileSync(file, bad);
    expect((await c.range(ref, 'gen2', 299_000, 301_000)).equals(want.subarray(299_000, 301_000))).toBe(true);
    expect(c.stats()).toMatchObject({ corrupt: 1, fetched: before.fetched + 1 });
  });

  it("verify: 'always' hashes every disk read (catches a flip that kept the mtime)", async () => {
    const dir = freshDir('always');
    const store = await hubStore();
    const c = newCache({ dir, store, memoryBytes: 0, verify: 'always' });
    const ref = refs('big.bin')[5];
    await c.block(ref, 'gen2');
    await c.flush();
    const file = c.pathOf(hex(ref));
    const st = fs.statSync(file);
    const bad = fs.readFileSync(file);
    bad[9] ^= 0xff;
    fs.writeFileSync(file, bad);
    fs.utimesSync(file, st.atime, st.mtime);
    expect((await c.block(ref, 'gen2')).equals(slice('big.bin', 5))).toBe(true);
    expect(c.stats().corrupt).toBe(1);
  });
});

describe('store failures', () => {
  it('a block the store does not have fails at once, naming it and the store', async () => {
    const store = await hubStore();
    const c = newCache({ dir: freshDir('missing'), store });
    const ref = { id: crypto.randomBytes(16), key: crypto.randomBytes(16) };
    const t0 = Date.now();
    await expect(c.block(ref, 'gen2')).rejects.toThrow(`cannot fetch block ${hex(ref)} from ${hub.url}/: the store does not have it`);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(store.gets).toBe(1);
    expect(c.stats().errors).toBe(1);
    expect(logs).toContain(`block cache: cannot fetch block ${hex(ref)} from ${hub.url}/: the store does not have it`);
  });

  it('a corrupt store copy is refused and refetched; if it stays corrupt the read fails and nothing is cached', async () => {
    const dir = freshDir('badstore');
    const store = await hubStore();
    const c = newCache({ dir, store });
    store.corruptNext = 1;
    expect((await c.block(refs('big.bin')[0], 'gen2')).equals(slice('big.bin', 0))).toBe(true);
    expect(c.stats()).toMatchObject({ badFetches: 1, fetched: 2, errors: 0 });
    store.corruptNext = 100;
    const ref = refs('big.bin')[1];
    await expect(c.block(ref, 'gen2')).rejects.toThrow(/cannot fetch block .*: corrupt block: stored bytes do not hash to the block id \(3 tries\)/);
    expect(c.stats().badFetches).toBe(4);
    await c.flush();
    expect(fs.existsSync(c.pathOf(hex(ref)))).toBe(false);
  });

  it('a hung store: the read fails at the deadline', async () => {
    const store = await hubStore();
    store.hang = true;
    const c = newCache({ dir: freshDir('hang'), store, timeoutMs: 800 });
    const ref = refs('big.bin')[6];
    const t0 = Date.now();
    await expect(c.block(ref, 'gen2')).rejects.toThrow(`cannot fetch block ${hex(ref)} from ${hub.url}/: timed out after 800 ms`);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('hub stopped: reads of missing blocks fail in seconds, cached ones still work; hub back: reads work again', async () => {
    const h = await startHub();
    try {
      const f = await buildInto(h, 'outage', { 'data.bin': randomBytes(3 * BLOCK, 21) });
      const r = await openFlist(f);
      const want = randomBytes(3 * BLOCK, 21);
      try {
        const [b0, b1, b2] = r.stat('data.bin')!.blocks!;
        const dir = freshDir('outage');
        const store = await hubStore(h);
        const c = newCache({ dir, store });
        expect((await c.block(b0, 'gen2')).equals(want.subarray(0, BLOCK))).toBe(true);
        await c.flush();
        await h.stop();

        let t0 = Date.now();
        const err = await c.block(b1, 'gen2').then(() => undefined, (e: unknown) => e as BlockFetchError);
        const took = Date.now() - t0;
        expect(err).toBeInstanceOf(BlockFetchError);
        expect(err!.message).toContain(`cannot fetch block ${hex(b1)} from ${h.url}/:`);
        expect(err!.message).toMatch(/ECONNREFUSED/);
        expect(took).toBeLessThan(15_000);
        // the short negative cache: an immediate retry fails without another fetch
        const gets = store.gets;
        t0 = Date.now();
        await expect(c.block(b1, 'gen2')).rejects.toThrow(hex(b1));
        expect(Date.now() - t0).toBeLessThan(100);
        expect(store.gets).toBe(gets);
        // cached blocks still served, by this cache and by a new one on the same directory
        expect((await c.block(b0, 'gen2')).equals(want.subarray(0, BLOCK))).toBe(true);
        const c2 = newCache({ dir, store: await hubStore(h) });
        expect((await c2.block(b0, 'gen2')).equals(want.subarray(0, BLOCK))).toBe(true);

        // same port, same data
        const again = await startHub({ data: h.data, port: h.port });
        try {
          await sleep(1100);
          expect((await c.block(b1, 'gen2')).equals(want.subarray(BLOCK, 2 * BLOCK))).toBe(true);
          expect((await c.block(b2, 'gen2')).equals(want.subarray(2 * BLOCK))).toBe(true);
        } finally {
          await again.stop();
        }
        process.stdout.write(`hub down: read failed after ${took} ms\n`);
      } finally {
        r.close();
      }
    } finally {
      await h.stop();
      fs.rmSync(h.data, { recursive: true, force: true });
    }
  });
});

describe('read-ahead and warming', () => {
  it('prefetch fetches in the background; later reads are memory hits; failures are only counted', async () => {
    const store = await hubStore();
    const c = newCache({ dir: freshDir('ahead'), store });
    const all = refs('mixed.bin');
    const bogus = { id: crypto.randomBytes(16), key: crypto.randomBytes(16) };
    c.prefetch([...all, bogus], 'gen2');
    c.prefetch(all, 'gen2'); // duplicates are ignored
    for (let i = 0; i < 200 && c.stats().prefetched + c.stats().prefetchErrors < 9; i++) await sleep(25);
    expect(c.stats()).toMatchObject({ prefetched: 8, prefetchErrors: 1 });
    const parts = await Promise.all(all.map((r) => c.block(r, 'gen2')));
    expect(Buffer.concat(parts).equals(contents['mixed.bin'])).toBe(true);
    expect(store.gets).toBe(9);
    expect(c.stats().memoryHits).toBe(8);
  });

  it('warm() fetches every block of every file once, with progress; again: nothing fetched', async () => {
    const dir = freshDir('warm');
    const store = await hubStore();
    const c = newCache({ dir, store });
    const seen: WarmProgress[] = [];
    const r = await warm(c, reader, { onProgress: (p) => seen.push(p), concurrency: 4 });
    expect(r).toMatchObject({ files: 3, blocks: 16, totalBlocks: 16, failed: 0, errors: [], aborted: false });
    expect(r.bytes).toBe(r.totalBytes);
    expect(r.totalBytes).toBe(Object.values(contents).reduce((n, b) => n + b.length, 0));
    expect(seen[0]).toMatchObject({ blocks: 0, totalBlocks: 16 });
    expect(seen).toHaveLength(17);
    expect(store.gets).toBe(16);
    await c.flush();
    expect(c.stats()).toMatchObject({ blocks: 16, memoryBytes: 0 }); // bulk warming does not fill memory
    const store2 = await hubStore();
    const c2 = newCache({ dir, store: store2 });
    expect(await warm(c2, reader)).toMatchObject({ blocks: 16, failed: 0 });
    expect(store2.gets).toBe(0);
  });

  it('warm() with paths fetches only those files (directories: their subtrees)', async () => {
    const store = await hubStore();
    const c = newCache({ dir: freshDir('warm-paths'), store });
    expect(await warm(c, reader, { paths: ['/etc'] })).toMatchObject({ files: 1, totalBlocks: 1 });
    expect(await warm(c, reader, { paths: ['big.bin', 'etc/small.txt'] })).toMatchObject({ files: 2, totalBlocks: 8 });
    expect(store.gets).toBe(8);
    await expect(warm(c, reader, { paths: ['nope'] })).rejects.toThrow('nope: no such file or directory in the flist');
  });
});

describe('cache disk full', () => {
  let mnt: string | undefined;
  beforeAll(() => {
    const dir = path.join(tmp, 'tiny');
    fs.mkdirSync(dir);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
    if (r.status === 0) mnt = dir;
    else process.stdout.write(`skipping the ENOSPC test: mount tmpfs failed: ${r.stderr}\n`);
  });
  afterAll(() => {
    if (mnt) spawnSync('umount', ['-l', mnt]);
  });

  it('ENOSPC: the verified bytes are still returned, write errors counted', async (ctx) => {
    if (!mnt) ctx.skip();
    const store = await hubStore();
    const c = newCache({ dir: mnt!, store });
    const parts = await Promise.all(refs('big.bin').map((r) => c.block(r, 'gen2')));
    expect(Buffer.concat(parts).equals(contents['big.bin'])).toBe(true);
    await c.flush();
    const s = c.stats();
    expect(s.writeErrors).toBeGreaterThanOrEqual(4);
    expect(s.stored + s.writeErrors).toBe(7);
    expect(s.errors).toBe(0);
    expect(logs.some((l) => l.includes('ENOSPC') && l.includes('served from memory'))).toBe(true);
    // still readable, byte for byte (from memory, the disk or the store again)
    const again = await Promise.all(refs('big.bin').map((r) => c.block(r, 'gen2')));
    expect(Buffer.concat(again).equals(contents['big.bin'])).toBe(true);
    // no temp files left on the full disk
    expect(spawnSync('find', [mnt!, '-name', '*.tmp'], { encoding: 'utf8' }).stdout).toBe('');
    // Another process's view (a second cache on the same full directory, the node's verified
    // log short or missing): the same bytes, whatever it trusts.
    await c.close();
    const c2 = newCache({ dir: mnt!, store: await hubStore() });
    const third = await Promise.all(refs('big.bin').map((r) => c2.block(r, 'gen2')));
    expect(Buffer.concat(third).equals(contents['big.bin'])).toBe(true);
    expect(c2.stats().errors).toBe(0);
    await c2.close();
    // a stored block flipped in place on the full disk is caught, not served
    const stored = spawnSync('find', [path.join(mnt!, 'blocks'), '-type', 'f', '-regex', '.*/[0-9a-f]+'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
    expect(stored.length).toBeGreaterThan(0);
    if (stored.length) {
      const fd = fs.openSync(stored[0], 'r+');
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, 10);
      fs.writeSync(fd, Buffer.from([b[0] ^ 0xff]), 0, 1, 10);
      fs.closeSync(fd);
      const c3 = newCache({ dir: mnt!, store: await hubStore() });
      const fourth = await Promise.all(refs('big.bin').map((r) => c3.block(r, 'gen2')));
      expect(Buffer.concat(fourth).equals(contents['big.bin'])).toBe(true);
      expect(c3.stats().corrupt).toBe(1);
    }
  });
});
