// Vdisk storage over real stores (disks-vms.md §3.1-3.2): deduplicated boot vdisks with
// reference counts and a sweep, collision detection, a cluster of two redis-servers, the
// directory store, tmp vdisks, a redis-server killed mid-write, and a full disk. Clients are
// qemu-io / nbdcopy / a raw NBD client against our server running in this process.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isKind } from '../src/errors';
import { NbdServer } from '../src/nbd/server';
import { copyVdisk, createVdisk, deleteVdisk, openVdisk } from '../src/vdisk/catalog';
import { Cluster, openCluster } from '../src/vdisk/cluster';
import { ClusterExports } from '../src/vdisk/exports';
import { blake2b256, hashReady } from '../src/vdisk/hash';
import { RawNbd } from './helpers/nbd';
import { freePort, REDIS_SERVER, startRedis, type RedisServer } from './helpers/redis';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  await hashReady();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-vdisk-store-'));
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  fs.rmSync(dir, { recursive: true, force: true });
});

let n = 0;
async function serveCluster(cluster: Cluster): Promise<{ uri: (id: string) => string; sock: string; exports: ClusterExports; stop: () => Promise<void> }> {
  const exports = new ClusterExports(cluster);
  await exports.refresh();
  const server = new NbdServer({ exports });
  const sock = path.join(dir, `nbd-${n++}.sock`);
  await server.listen(sock);
  const stop = async (): Promise<void> => {
    await server.close();
    await exports.closeAll();
  };
  cleanups.push(stop);
  return { sock, exports, uri: (id) => `nbd+unix:///${id}?socket=${sock}`, stop };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('boot vdisks over redis-server: dedup, counts, sweep, collision', () => {
  let redis: RedisServer;
  let cluster: Cluster;
  let raw: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    cleanups.push(() => redis.stop());
    cluster = openCluster(redis.url);
    cleanups.push(() => cluster.close());
    raw = new Redis(redis.port);
    cleanups.push(() => void raw.disconnect());
  });
  const refs = async (data: Buffer): Promise<number> => Number((await raw.hget('dedup:refs', blake2b256(data))) ?? 0);
  const stored = async (data: Buffer): Promise<boolean> => (await raw.exists(blake2b256(data))) === 1;

  it('the same content is stored once and counted per reference; overwrite, copy, delete and sweep keep counts right', async () => {
    await createVdisk(cluster, 'a', { type: 'boot', size: 8 * MiB });
    await createVdisk(cluster, 'b', { type: 'boot', size: 8 * MiB });
    const s = await serveCluster(cluster);
    // 1 MiB of one 4 KiB pattern on each disk: 256 references to 1 block each
    for (const id of ['a', 'b']) await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x61 0 1M', '-c', 'flush', s.uri(id)]);
    const blk = Buffer.alloc(4096, 0x61);
    expect(await refs(blk)).toBe(512);
    // overwrite half of a with another pattern: counts move after the flush
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x62 0 512K', '-c', 'flush', s.uri('a')]);
    expect(await refs(blk)).toBe(384);
    expect(await refs(Buffer.alloc(4096, 0x62))).toBe(128);
    await s.stop();
    const dbsize = await raw.dbsize();
    await copyVdisk(cluster, 'a', 'c');
    expect(await refs(blk)).toBe(512);
    expect(await raw.dbsize()).toBe(dbsize + 1); // the copy's LBA: no content block was copied
    await deleteVdisk(cluster, 'a');
    await deleteVdisk(cluster, 'b');
    expect(await refs(blk)).toBe(128);
    expect(await cluster.sweep()).toBe(0); // every block still referenced by c
    await deleteVdisk(cluster, 'c');
    expect(await stored(blk)).toBe(true); // unreferenced but not yet swept
    expect(await cluster.sweep()).toBe(2);
    expect(await stored(blk)).toBe(false);
    expect(await stored(Buffer.alloc(4096, 0x62))).toBe(false);
  });

  it('a write whose hash is stored with other bytes is EIO, never a silent overwrite', async () => {
    await createVdisk(cluster, 'col', { type: 'boot', size: 4 * MiB });
    const victim = Buffer.alloc(4096, 0x33);
    const other = randomBytes(4096);
    await raw.set(blake2b256(victim), other); // a forged collision
    const disk = await openVdisk(cluster, 'col');
    try {
      const e = await disk.write(0, victim, false).then(() => null, (x: unknown) => x);
      expect(isKind(e, 'corrupt')).toBe(true);
      expect((await raw.getBuffer(blake2b256(victim)))!.equals(other)).toBe(true);
      await disk.write(4096, Buffer.alloc(4096, 0x34), true); // the disk goes on working
      expect((await disk.read(4096, 4096)).equals(Buffer.alloc(4096, 0x34))).toBe(true);
      expect((await disk.read(0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    } finally {
      await disk.close();
    }
    // and through NBD the client sees EIO
    const s = await serveCluster(cluster);
    const c = await RawNbd.connect(s.sock);
    await c.handshake();
    await c.go('col');
    c.request(1, 1, 8192, 4096, victim);
    expect((await c.reply())?.error).toBe(5);
    c.close();
  });

  it('a tmp vdisk is wiped when its last client disconnects', async () => {
    // the server learns of the disconnect a moment after the client exits
    const wiped = async (): Promise<void> => {
      for (let i = 0; i < 40 && (await raw.hlen('nondedup:scratch')) > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await raw.hlen('nondedup:scratch')).toBe(0);
    };
    await createVdisk(cluster, 'scratch', { type: 'tmp', size: 4 * MiB });
    const s = await serveCluster(cluster);
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x71 0 1M', s.uri('scratch')]);
    await wiped();
    const { stdout } = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0 0 1M', s.uri('scratch')]);
    expect(stdout).not.toMatch(/verification failed/);
    // while one client holds it, another sees the data
    const c = await RawNbd.connect(s.sock);
    await c.handshake();
    await c.go('scratch');
    c.request(1, 1, 0, 4096, Buffer.alloc(4096, 0x72));
    expect((await c.reply())?.error).toBe(0);
    await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x72 0 4k', s.uri('scratch')]);
    expect(await raw.hlen('nondedup:scratch')).toBe(1);
    c.close();
    await wiped();
  });
});

describe('a cluster of two redis-servers', () => {
  it('dedup blocks go to hash[0] mod 2, non-dedup blocks to index mod 2, and read back', async () => {
    const r1 = await startRedis();
    const r2 = await startRedis();
    cleanups.push(() => r1.stop(), () => r2.stop());
    const cluster = openCluster(`${r1.url},${r2.url}`);
    cleanups.push(() => cluster.close());
    await createVdisk(cluster, 'boot', { type: 'boot', size: 4 * MiB });
    await createVdisk(cluster, 'db', { type: 'db', size: 4 * MiB });
    const s = await serveCluster(cluster);
    const img = path.join(dir, 'cl.raw');
    fs.writeFileSync(img, randomBytes(4 * MiB));
    for (const id of ['boot', 'db']) {
      await run('nbdcopy', [img, s.uri(id)]);
      await run('nbdcopy', [s.uri(id), `${img}.${id}`]);
      expect(sha(fs.readFileSync(`${img}.${id}`))).toBe(sha(fs.readFileSync(img)));
    }
    const clients = [new Redis(r1.port), new Redis(r2.port)];
    try {
      for (const [i, c] of clients.entries()) {
        const keys = (await c.keysBuffer('*')).filter((k) => k.length === 32);
        expect(keys.length).toBeGreaterThan(400);
        for (const k of keys) expect(k[0] % 2).toBe(i);
        const fields = (await c.hkeys('nondedup:db')).map(Number);
        expect(fields.length).toBe(512);
        for (const f of fields) expect(f % 2).toBe(i);
      }
      expect(await clients[1].exists('vdisks', 'lba:boot')).toBe(0); // metadata on the first server
    } finally {
      for (const c of clients) c.disconnect();
    }
  });
});

describe('the directory store', () => {
  it('boot and db vdisks round-trip and survive a reopen', async () => {
    const root = path.join(dir, 'store');
    let cluster = openCluster(`dir://${root}`);
    await createVdisk(cluster, 'b', { type: 'boot', size: 4 * MiB });
    await createVdisk(cluster, 'd', { type: 'db', size: 4 * MiB, blockSize: 512 });
    let s = await serveCluster(cluster);
    const img = path.join(dir, 'dir.raw');
    fs.writeFileSync(img, Buffer.concat([randomBytes(1.5 * MiB), Buffer.alloc(MiB), randomBytes(1.5 * MiB)]));
    for (const id of ['b', 'd']) await run('nbdcopy', [img, s.uri(id)]);
    await s.stop();
    await cluster.close();
    cluster = openCluster(`dir://${root}`);
    s = await serveCluster(cluster);
    for (const id of ['b', 'd']) {
      await run('nbdcopy', [s.uri(id), `${img}.${id}`]);
      expect(sha(fs.readFileSync(`${img}.${id}`))).toBe(sha(fs.readFileSync(img)));
    }
    await s.stop();
    await deleteVdisk(cluster, 'b');
    expect(await cluster.sweep()).toBe(3 * 256);
    expect(fs.readdirSync(path.join(root, 'b')).flatMap((x) => fs.readdirSync(path.join(root, 'b', x)))).toEqual([]);
    await cluster.close();
  });

  it('a full disk gives ENOSPC to the writes that do not fit; flushed data stays readable', async () => {
    const mnt = path.join(dir, 'small');
    fs.mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]);
    expect(m.status, String(m.stderr)).toBe(0);
    cleanups.push(() => void spawnSync('umount', ['-l', mnt]));
    const cluster = openCluster(`dir://${mnt}`);
    await createVdisk(cluster, 'full', { type: 'cache', size: 16 * MiB });
    const s = await serveCluster(cluster);
    const c = await RawNbd.connect(s.sock);
    await c.handshake();
    await c.go('full');
    const first = randomBytes(MiB);
    c.request(1, 1, 0, MiB, first, 1);
    expect((await c.reply())?.error).toBe(0);
    const errors: number[] = [];
    for (let i = 1; i < 8; i++) {
      c.request(1, 10 + i, i * MiB, MiB, randomBytes(MiB));
      errors.push((await c.reply())!.error);
    }
    expect(errors).toContain(28);
    c.request(0, 2, 0, MiB);
    const r = await c.reply(() => MiB);
    expect(r?.data?.equals(first)).toBe(true);
    c.close();
    await s.stop();
    await cluster.close();
  });
});

describe('redis-server killed mid-write, then back', () => {
  let child: ChildProcess | undefined;
  const rdir = (): string => path.join(dir, 'aof');
  async function startPersistent(port: number): Promise<void> {
    fs.mkdirSync(rdir(), { recursive: true });
    child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', rdir(), '--save', '',
      '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no'], { stdio: 'ignore' });
    const c = new Redis(port, { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: null });
    c.on('error', () => undefined); // refused until it is up
    try {
      for (let i = 0; i < 100; i++) {
        const ok = await c.ping().then(() => true, () => false);
        if (ok) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('redis did not start');
    } finally {
      c.disconnect();
    }
  }
  afterEach(() => {
    child?.kill('SIGKILL');
  });

  it('every write acknowledged before a FLUSH is there after the restart; failed writes are EIO, not hangs', async () => {
    const port = await freePort();
    await startPersistent(port);
    const cluster = openCluster(`redis://127.0.0.1:${port}`, { timeoutMs: 3000 });
    cleanups.push(() => cluster.close());
    await createVdisk(cluster, 'boot', { type: 'boot', size: 64 * MiB });
    const s = await serveCluster(cluster);
    const c = await RawNbd.connect(s.sock);
    await c.handshake();
    await c.go('boot');
    const safe = randomBytes(2 * MiB);
    c.request(1, 1, 0, safe.length, safe);
    expect((await c.reply())?.error).toBe(0);
    c.request(3, 2, 0, 0);
    expect((await c.reply())?.error).toBe(0); // FLUSH acknowledged
    // a stream of writes, and the store dies under it
    for (let i = 0; i < 16; i++) c.request(1, 100 + i, 4 * MiB + i * MiB, MiB, randomBytes(MiB));
    await new Promise((r) => setTimeout(r, 20));
    child!.kill('SIGKILL');
    const t0 = Date.now();
    const codes = [];
    for (let i = 0; i < 16; i++) codes.push((await c.reply(() => 0, ))!.error);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(codes.every((x) => x === 0 || x === 5)).toBe(true);
    c.request(3, 3, 0, 0);
    expect((await c.reply())?.error).toBe(5); // a FLUSH cannot succeed with the store down
    await startPersistent(port);
    // the same connection works again once the store is back
    c.request(1, 4, 40 * MiB, 4096, Buffer.alloc(4096, 0x44));
    expect((await c.reply())?.error).toBe(0);
    c.request(3, 5, 0, 0);
    expect((await c.reply())?.error).toBe(0);
    c.close();
    await s.stop();
    // a fresh server over the restarted store sees the flushed data
    const fresh = openCluster(`redis://127.0.0.1:${port}`, { timeoutMs: 3000 });
    cleanups.push(() => fresh.close());
    const disk = await openVdisk(fresh, 'boot');
    expect((await disk.read(0, safe.length)).equals(safe)).toBe(true);
    expect((await disk.read(40 * MiB, 4096)).equals(Buffer.alloc(4096, 0x44))).toBe(true);
    await disk.close();
  }, 60_000);
});
