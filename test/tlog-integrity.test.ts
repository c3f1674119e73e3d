// The log's durability and integrity over real redis-servers: the log server SIGKILLed in the
// middle of a write stream (a FLUSH waits for it, nothing acknowledged is lost), a corrupted
// aggregation named by `g8os vdisk verify`, retention (compaction) and snapshot files.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../harness/daemon';
import { NbdServer } from '../src/nbd/server';
import { tlogWrap } from '../src/tlog/backend';
import { key, TlogStore } from '../src/tlog/store';
import { DEFAULT_SETTINGS } from '../src/tlog/writer';
import { createVdisk } from '../src/vdisk/catalog';
import { type Cluster, openCluster } from '../src/vdisk/cluster';
import { ClusterExports } from '../src/vdisk/exports';
import { hashReady } from '../src/vdisk/hash';
import { g8os } from './helpers/cli';
import { RawNbd } from './helpers/nbd';
import { freePort, REDIS_SERVER, startRedis, type RedisServer } from './helpers/redis';

const run = promisify(execFile);
const MiB = 1024 * 1024;
let dir: string;
let primary: RedisServer;
let logPort: number;
let logDaemon: Daemon | undefined;
let cluster: Cluster;
let store: TlogStore;
let server: NbdServer;
let exportsP: ClusterExports;
let sock: string;
let env: NodeJS.ProcessEnv;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const uri = (id: string): string => `nbd+unix:///${id}?socket=${sock}`;

/** the log server persists every write before answering (appendfsync always) */
async function startLog(): Promise<void> {
  const ldir = path.join(dir, 'log');
  fs.mkdirSync(ldir, { recursive: true });
  logDaemon = await startDaemon({
    label: 'log redis', cmd: REDIS_SERVER, ready: { port: logPort }, timeoutMs: 10_000, graceMs: 2000,
    args: ['--port', String(logPort), '--bind', '127.0.0.1', '--dir', ldir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no'],
  });
}

beforeAll(async () => {
  await hashReady();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-tlog-int-'));
  primary = await startRedis();
  logPort = await freePort();
  await startLog();
  const logUrl = `redis://127.0.0.1:${logPort}`;
  cluster = openCluster(primary.url);
  store = new TlogStore(logUrl);
  exportsP = new ClusterExports(cluster, {
    wrap: tlogWrap(store, { ...DEFAULT_SETTINGS, flushSize: 4, flushTimeMs: 50, snapshotEvery: 12, retainSnapshots: 100, leaseTtlMs: 3000, ackTimeoutMs: 20_000 }),
  });
  await createVdisk(cluster, 'x', { type: 'db', size: 4 * MiB });
  await exportsP.refresh();
  server = new NbdServer({ exports: exportsP });
  sock = path.join(dir, 'nbd.sock');
  await server.listen(sock);
  env = { G8OS_VDISK_STORAGE: primary.url, G8OS_TLOG_STORAGE: logUrl };
});
afterAll(async () => {
  await server?.close();
  await exportsP?.closeAll();
  await store?.close();
  await cluster?.close();
  await logDaemon?.stop();
  await primary?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function detached(id: string): Promise<void> {
  for (let i = 0; i < 200 && (await store.holder(id)); i++) await new Promise((r) => setTimeout(r, 25));
  expect(await store.holder(id)).toBeNull();
}
async function content(id: string): Promise<string> {
  const out = path.join(dir, `read-${id}-${Date.now()}.raw`);
  await run('nbdcopy', [uri(id), out]);
  const s = sha(fs.readFileSync(out));
  fs.rmSync(out);
  await detached(id);
  return s;
}
const vd = (args: string[]) => g8os(['vdisk', ...args], { env });

describe('log server killed mid-stream', () => {
  it('FLUSH waits for the restarted log server; nothing acknowledged is lost; rollback to the end is the disk', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go('x');
    const blocks = Array.from({ length: 30 }, () => randomBytes(4096));
    const write = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) c.request(1, i + 1, i * 8192, 4096, blocks[i]);
      for (let i = from; i < to; i++) expect((await c.reply())!.error).toBe(0);
    };
    await write(0, 10);
    c.request(3, 1000, 0, 0);
    expect((await c.reply())!.error).toBe(0); // 10 writes acknowledged durable
    await logDaemon!.kill();
    await write(10, 30); // the primary takes them; the log keeps them unacknowledged
    const t0 = Date.now();
    c.request(3, 1001, 0, 0);
    await new Promise((res) => setTimeout(res, 700));
    expect((c as unknown as { have: number }).have, 'FLUSH answered while the log server was down').toBe(0);
    await startLog().catch(async () => startLog());
    const r = await c.reply();
    expect(r!.cookie).toBe(1001);
    expect(r!.error).toBe(0);
    expect(Date.now() - t0).toBeGreaterThan(300); // it waited for the log server
    c.request(2, 1002, 0, 0);
    c.close();
    await detached('x');
    const h = await store.head('x');
    expect(h.lastSeq).toBe(30);
    const disk = await content('x');
    expect((await vd(['rollback', 'x', '--to', '10'])).code).toBe(0);
    const out = path.join(dir, 'ten.raw');
    await run('nbdcopy', [uri('x'), out]);
    await detached('x');
    const ten = fs.readFileSync(out);
    for (let i = 0; i < 30; i++) expect(ten.subarray(i * 8192, i * 8192 + 4096).equals(i < 10 ? blocks[i] : Buffer.alloc(4096)), `block ${i}`).toBe(true);
    expect((await vd(['rollback', 'x', '--to', '30'])).code).toBe(0);
    expect(await content('x')).toBe(disk);
  }, 60_000);
});

describe('integrity, retention, snapshot files', () => {
  it('a corrupted aggregation is detected and named; put back, the chain is intact', async () => {
    expect((await vd(['verify', 'x'])).code).toBe(0);
    const raw = store.redis;
    const orig = (await raw.hgetBuffer(key('x', 'agg'), '3'))!;
    const bad = Buffer.from(orig);
    bad[bad.length - 100] ^= 0x01; // one bit of one record's data
    await raw.hset(key('x', 'agg'), '3', bad);
    const r = await vd(['verify', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/aggregation x#3 is corrupted/);
    // a rollback that would read it fails truthfully and changes nothing
    const before = await content('x');
    const rb = await vd(['rollback', 'x', '--to', '11']);
    expect(rb.code).toBe(1);
    expect(rb.stderr).toMatch(/x#3/);
    expect(await content('x')).toBe(before);
    await raw.hset(key('x', 'agg'), '3', orig);
    expect((await vd(['verify', 'x'])).code).toBe(0);
  });

  it('compaction keeps the newest snapshots, drops the log before them; older targets are refused', async () => {
    const before = await content('x');
    const hist0 = (await vd(['history', 'x'])).stdout.trim().split('\n');
    const r = await vd(['compact', 'x', '--retain', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/dropped [1-9]\d* snapshots, [1-9]\d* aggregations/);
    const hist = (await vd(['history', 'x'])).stdout.trim().split('\n').filter(Boolean);
    expect(hist.length).toBeLessThan(hist0.length);
    expect((await vd(['verify', 'x'])).stdout).toMatch(/chain intact/);
    const snaps = (await vd(['snapshots', 'x'])).stdout.trim().split('\n');
    expect(snaps).toHaveLength(1);
    const old = await vd(['rollback', 'x', '--to', '5']);
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/before the oldest retained snapshot/);
    expect(await content('x')).toBe(before);
    const head = await store.head('x');
    expect((await vd(['rollback', 'x', '--to', String(head.lastSeq)])).code).toBe(0);
    expect(await content('x')).toBe(before);
  });

  it('snapshot export (gzip + AES-256-GCM) and import into a new vdisk; bad key and existing file refused', async () => {
    const keyFile = path.join(dir, 'key');
    fs.writeFileSync(keyFile, randomBytes(32).toString('hex'));
    const seq = (await vd(['snapshots', 'x', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l).seq as number).pop()!;
    const file = path.join(dir, 'x.snap');
    const e = await vd(['snapshot-export', 'x', String(seq), file, '--key', keyFile]);
    expect(e.code, e.stderr).toBe(0);
    expect(fs.readFileSync(file).subarray(0, 4).toString()).toBe('G8SE');
    const again = await vd(['snapshot-export', 'x', String(seq), file]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists already/);
    const wrong = path.join(dir, 'wrong');
    fs.writeFileSync(wrong, randomBytes(32));
    const w = await vd(['snapshot-import', file, 'z', '--key', wrong]);
    expect(w.code).toBe(1);
    expect(w.stderr.trim().split('\n')).toHaveLength(1);
    expect(w.stderr).toMatch(/cannot be decrypted/);
    expect((await vd(['list'])).stdout).not.toMatch(/^z\t/m);
    const i = await vd(['snapshot-import', file, 'y', '--key', keyFile]);
    expect(i.code, i.stderr).toBe(0);
    await exportsP.refresh();
    // the state at the snapshot = the disk at that seq
    expect((await vd(['rollback', 'x', '--to', String(seq)])).code).toBe(0);
    expect(await content('y')).toBe(await content('x'));
    expect((await vd(['snapshots', 'y'])).stdout).toMatch(/\timport\n/);
  });
});
