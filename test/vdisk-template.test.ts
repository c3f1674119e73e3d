// Template vdisks (disks-vms.md §3.3): a boot vdisk made from a template copies only the LBA;
// reads that miss come from the template cluster, are served and written back; a db vdisk
// fetches per block index. A template source that is down gives EIO within a bounded time.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdServer } from '../src/nbd/server';
import { createVdisk } from '../src/vdisk/catalog';
import { type Cluster, openCluster } from '../src/vdisk/cluster';
import { ClusterExports } from '../src/vdisk/exports';
import { hashReady } from '../src/vdisk/hash';
import { g8os } from './helpers/cli';
import { RawNbd } from './helpers/nbd';
import { startRedis, type RedisServer } from './helpers/redis';

const run = promisify(execFile);
const MiB = 1024 * 1024;
let dir: string;
let tplRedis: RedisServer;
let mainRedis: RedisServer;
let tpl: Cluster;
let main: Cluster;
const stops: (() => Promise<void>)[] = [];
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
let image: Buffer;

async function serveOn(cluster: Cluster, timeoutMs: number): Promise<string> {
  const exports = new ClusterExports(cluster, { timeoutMs });
  await exports.refresh();
  const server = new NbdServer({ exports });
  const sock = path.join(dir, `t${stops.length}.sock`);
  await server.listen(sock);
  stops.push(async () => {
    await server.close();
    await exports.closeAll();
  });
  return sock;
}

beforeAll(async () => {
  await hashReady();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-vdisk-tpl-'));
  tplRedis = await startRedis();
  mainRedis = await startRedis();
  tpl = openCluster(tplRedis.url, { timeoutMs: 2000 });
  main = openCluster(mainRedis.url, { timeoutMs: 2000 });
  // the template: a boot vdisk and a db vdisk holding the same image
  image = Buffer.concat([randomBytes(2 * MiB), Buffer.alloc(MiB), randomBytes(MiB)]);
  const img = path.join(dir, 'img.raw');
  fs.writeFileSync(img, image);
  await createVdisk(tpl, 'ubuntu', { type: 'boot', size: 4 * MiB });
  await createVdisk(tpl, 'ubuntu-db', { type: 'db', size: 4 * MiB });
  const s = await serveOn(tpl, 2000);
  for (const id of ['ubuntu', 'ubuntu-db']) await run('nbdcopy', [img, `nbd+unix:///${id}?socket=${s}`]);
  await stops.pop()!();
});

afterAll(async () => {
  for (const s of stops.reverse()) await s();
  await tpl?.close();
  await main?.close();
  await tplRedis?.stop();
  await mainRedis?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const contentKeys = async (port: number): Promise<number> => {
  const r = new Redis(port);
  try {
    return (await r.keysBuffer('*')).filter((k) => k.length === 32).length;
  } finally {
    r.disconnect();
  }
};

describe('template vdisks', () => {
  it('boot from a template: LBA copied, blocks fetched on read, written back, then served locally', async () => {
    await createVdisk(main, 'vm1', { type: 'boot', size: 4 * MiB, template: { source: tplRedis.url, vdisk: 'ubuntu' } });
    expect(await contentKeys(mainRedis.port)).toBe(0); // only the LBA was copied
    await createVdisk(main, 'vmdb', { type: 'db', size: 4 * MiB, template: { source: tplRedis.url, vdisk: 'ubuntu-db' } });
    const sock = await serveOn(main, 2000);
    const out = path.join(dir, 'out.raw');
    await run('nbdcopy', [`nbd+unix:///vm1?socket=${sock}`, out]);
    expect(sha(fs.readFileSync(out))).toBe(sha(image));
    // written back asynchronously: 3 MiB of non-zero 4 KiB blocks
    for (let i = 0; i < 50 && (await contentKeys(mainRedis.port)) < 768; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await contentKeys(mainRedis.port)).toBe(768);
    // a write goes to our cluster only; the template is untouched
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x99 0 64k', `nbd+unix:///vm1?socket=${sock}`]);
    const r = new Redis(tplRedis.port);
    expect(await r.dbsize()).toBeGreaterThan(0);
    const tplKeys = await contentKeys(tplRedis.port);
    expect(tplKeys).toBe(768);
    r.disconnect();
    // db: per index, zeroed blocks are not refetched
    await run('qemu-io', ['-f', 'raw', '-c', 'write -z 0 8k', `nbd+unix:///vmdb?socket=${sock}`]);
    fs.rmSync(out);
    await run('nbdcopy', [`nbd+unix:///vmdb?socket=${sock}`, out]);
    const want = Buffer.from(image);
    want.fill(0, 0, 8192);
    expect(sha(fs.readFileSync(out))).toBe(sha(want));
  });

  it('a template source that is down: EIO within the bound, blocks already fetched still served', async () => {
    await createVdisk(main, 'vm2', { type: 'boot', size: 4 * MiB, template: { source: tplRedis.url, vdisk: 'ubuntu' } });
    await createVdisk(main, 'vm3', { type: 'db', size: 4 * MiB, template: { source: tplRedis.url, vdisk: 'ubuntu-db' } });
    const sock = await serveOn(main, 2000);
    await tplRedis.stop();
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go('vm3');
    const t0 = Date.now();
    c.request(0, 1, 3 * MiB, 4096); // never fetched before
    expect((await c.reply(() => 4096))?.error).toBe(5);
    expect(Date.now() - t0).toBeLessThan(10_000);
    c.close();
    // vm2 shares vm1's hashes, which were written back: served without the template
    const d = await RawNbd.connect(sock);
    await d.handshake();
    await d.go('vm2');
    d.request(0, 1, 0, 2 * MiB);
    const r = await d.reply(() => 2 * MiB);
    expect(r?.error).toBe(0);
    expect(r?.data?.equals(image.subarray(0, 2 * MiB))).toBe(true);
    d.close();
  });

  it('a template source that accepts and never answers: EIO after the timeout, never a hang', async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((c) => held.push(c));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      await createVdisk(main, 'vm4', { type: 'db', size: 4 * MiB, template: { source: `redis://127.0.0.1:${port}`, vdisk: 'ubuntu-db' } });
      const sock = await serveOn(main, 1500);
      const c = await RawNbd.connect(sock);
      await c.handshake();
      await c.go('vm4');
      const t0 = Date.now();
      c.request(0, 1, 0, 4096);
      expect((await c.reply(() => 4096, ))?.error).toBe(5);
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(1000);
      expect(took).toBeLessThan(8000);
      c.close();
    } finally {
      for (const h of held) h.destroy();
      silent.close();
    }
  });

  it('a db vdisk from a raw image inside an flist (as published on the hub) reads the image', async () => {
    const tree = path.join(dir, 'tree');
    fs.mkdirSync(path.join(tree, 'images'), { recursive: true });
    const img = Buffer.concat([randomBytes(MiB + 5000), Buffer.alloc(MiB), randomBytes(700 * 1024)]);
    fs.writeFileSync(path.join(tree, 'images', 'disk.raw'), img);
    const flist = path.join(dir, 'disk.flist');
    const made = await g8os(['flist', 'create', tree, '-o', flist, '--store', `dir://${path.join(dir, 'blocks')}`]);
    expect(made.code, made.stderr).toBe(0);
    await createVdisk(main, 'fromflist', { type: 'db', size: 4 * MiB, template: { source: `flist:${flist}`, vdisk: 'images/disk.raw' } });
    await createVdisk(main, 'nofile', { type: 'db', size: 4 * MiB, template: { source: `flist:${flist}`, vdisk: 'images/none.raw' } });
    const sock = await serveOn(main, 5000);
    const out = path.join(dir, 'fromflist.raw');
    await run('nbdcopy', [`nbd+unix:///fromflist?socket=${sock}`, out]);
    expect(sha(fs.readFileSync(out))).toBe(sha(Buffer.concat([img, Buffer.alloc(4 * MiB - img.length)])));
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go('nofile');
    c.request(0, 1, 0, 4096);
    expect((await c.reply(() => 4096))?.error).toBe(5);
    c.close();
    // a boot vdisk cannot take an flist template (it has no LBA): refused at create
    await expect(createVdisk(main, 'bootflist', { type: 'boot', size: 4 * MiB, template: { source: `flist:${flist}`, vdisk: 'images/disk.raw' } })).rejects.toThrow(/db vdisks/);
  });
});
