// Transaction log and rollback (disks-vms.md §3.4) over real stores: a primary redis-server and a
// separate log redis-server, our NBD server in this process, qemu-io / nbdcopy / fio as clients,
// `g8os vdisk rollback|snapshots|history|verify` through the real binary.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdServer } from '../src/nbd/server';
import { tlogWrap } from '../src/tlog/backend';
import { TlogStore } from '../src/tlog/store';
import { DEFAULT_SETTINGS } from '../src/tlog/writer';
import { createVdisk } from '../src/vdisk/catalog';
import { type Cluster, openCluster } from '../src/vdisk/cluster';
import { ClusterExports } from '../src/vdisk/exports';
import { hashReady } from '../src/vdisk/hash';
import { g8os } from './helpers/cli';
import { RawNbd } from './helpers/nbd';
import { startRedis, type RedisServer } from './helpers/redis';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SIZE = 4 * MiB;
let dir: string;
let primary: RedisServer;
let logRedis: RedisServer;
let cluster: Cluster;
let store: TlogStore;
let server: NbdServer;
let exportsP: ClusterExports;
let sock: string;
let env: NodeJS.ProcessEnv;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const uri = (id: string): string => `nbd+unix:///${id}?socket=${sock}`;

beforeAll(async () => {
  await hashReady();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-tlog-rb-'));
  [primary, logRedis] = await Promise.all([startRedis(), startRedis()]);
  cluster = openCluster(primary.url);
  store = new TlogStore(logRedis.url);
  exportsP = new ClusterExports(cluster, {
    wrap: tlogWrap(store, { ...DEFAULT_SETTINGS, flushSize: 16, flushTimeMs: 100, snapshotEvery: 200, retainSnapshots: 100, leaseTtlMs: 3000 }),
  });
  for (const [id, type] of [['b', 'boot'], ['d', 'db'], ['c', 'cache']] as const) await createVdisk(cluster, id, { type, size: SIZE });
  await exportsP.refresh();
  server = new NbdServer({ exports: exportsP });
  sock = path.join(dir, 'nbd.sock');
  await server.listen(sock);
  env = { G8OS_VDISK_STORAGE: primary.url, G8OS_TLOG_STORAGE: logRedis.url };
});
afterAll(async () => {
  await server?.close();
  await exportsP?.closeAll();
  await store?.close();
  await cluster?.close();
  await Promise.all([primary?.stop(), logRedis?.stop()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** waits until the server has closed the vdisk (its lease is gone) */
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

describe('rollback to each point of a write history', () => {
  for (const id of ['b', 'd']) {
    it(`${id === 'b' ? 'boot (dedup)' : 'db'}: every phase restored byte for byte, by seq and by time`, async () => {
      const points: { seq: number; time: string; sha: string }[] = [];
      // phase 0: the empty disk (the base snapshot is made at the first attach)
      points.push({ seq: 0, time: '', sha: await content(id) });
      const phases = [
        ['write -P 0x11 0 1M', 'write -P 0x22 2M 512k'],
        ['write -P 0x33 256k 300k', 'write -z 2M 64k', 'write -P 0x44 1000 5000'],
        ['discard 0 128k', 'write -P 0x55 3M 1M'],
        ['write -P 0x66 0 4M'],
        ['write -P 0x77 12345 100000', 'write -z 1M 1M'],
      ];
      for (let p = 0; p < phases.length; p++) {
        // many small writes, so the history spans several aggregations and snapshots
        const cmds = phases[p].flatMap((c) => ['-c', c]);
        for (let k = 0; k < 20; k++) cmds.push('-c', `write -P ${(p * 20 + k) % 250 + 1} ${k * 64 * 1024 + p * 4096} 4096`);
        await run('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', uri(id)]);
        await detached(id);
        const h = await store.head(id);
        const s = await content(id);
        points.push({ seq: h.lastSeq, time: new Date(Number(h.lastTs / 1_000_000n) + 1).toISOString(), sha: s });
        await new Promise((r) => setTimeout(r, 5));
      }
      const snaps = await vd(['snapshots', id]);
      expect(snaps.code, snaps.stderr).toBe(0);
      const kinds = snaps.stdout.trim().split('\n').map((l) => l.split('\t')[3]);
      expect(kinds[0]).toBe('base');
      expect(kinds.filter((k) => k === 'periodic').length).toBeGreaterThanOrEqual(2);
      const hist = await vd(['history', id]);
      expect(hist.stdout.trim().split('\n').length).toBeGreaterThan(10);
      expect((await vd(['verify', id])).stdout).toMatch(/chain intact/);

      // newest first, then back and forth; by seq for all, by time for some
      const order = [5, 2, 0, 4, 1, 3, 5];
      for (const k of order) {
        const r = await vd(['rollback', id, '--to', String(points[k].seq), '--json']);
        expect(r.code, r.stderr).toBe(0);
        const j = JSON.parse(r.stdout);
        expect(j.seq).toBe(points[k].seq);
        expect(await content(id), `phase ${k} by seq`).toBe(points[k].sha);
      }
      for (const k of [1, 4, 3]) {
        const r = await vd(['rollback', id, '--to', points[k].time]);
        expect(r.code, r.stderr).toBe(0);
        expect(await content(id), `phase ${k} by time`).toBe(points[k].sha);
      }
      // a rollback starts from the newest snapshot ≤ the target: it replays less than the history
      const last = JSON.parse((await vd(['rollback', id, '--to', String(points[5].seq), '--json'])).stdout);
      expect(last.fromSnapshot).toBeGreaterThan(0);
      expect(last.replayedRecords).toBeLessThan(points[5].seq);
      // the disk keeps working after rollbacks, and the log with it
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x99 0 64k', '-c', 'flush', uri(id)]);
      await detached(id);
      const after = await content(id);
      const h = await store.head(id);
      expect((await vd(['rollback', id, '--to', String(points[2].seq)])).code).toBe(0);
      expect(await content(id)).toBe(points[2].sha);
      expect((await vd(['rollback', id, '--to', String(h.lastSeq)])).code).toBe(0);
      expect(await content(id)).toBe(after);
      expect((await vd(['verify', id])).stdout).toMatch(/chain intact/);
    });
  }

  it('fio verify through the logged vdisk, then rollback to its end restores every byte', async () => {
    await run('fio', ['--name=v', '--ioengine=nbd', `--uri=${uri('d')}`, '--rw=randwrite', '--bs=4k', '--size=2M', '--iodepth=8',
      '--verify=crc32c', '--do_verify=1', '--output-format=json'], { cwd: dir });
    await detached('d');
    const s = await content('d');
    const h = await store.head('d');
    expect((await vd(['rollback', 'd', '--to', '1'])).code).toBe(0);
    expect(await content('d')).not.toBe(s);
    expect((await vd(['rollback', 'd', '--to', String(h.lastSeq)])).code).toBe(0);
    expect(await content('d')).toBe(s);
  });

  it('refusals are one line, exit 1, and leave the vdisk as it was', async () => {
    const before = await content('d');
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go('d'); // attached
    const r = await vd(['rollback', 'd', '--to', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/attached/);
    c.close();
    await detached('d');
    for (const [args, code, msg] of [
      [['rollback', 'd', '--to', '99999999'], 1, /past the end of the log/],
      [['rollback', 'd', '--to', '2026-01-01T00:00:00'], 2, /with a zone/],
      [['rollback', 'd', '--to', '2000-01-01T00:00:00Z'], 1, /before the oldest retained snapshot/],
      [['rollback', 'c', '--to', '1'], 1, /only boot and db/],
      [['rollback', 'nope', '--to', '1'], 1, /no vdisk "nope"/],
      [['verify', 'nope'], 1, /no log/],
    ] as [string[], number, RegExp][]) {
      const x = await vd(args);
      expect(x.code, args.join(' ')).toBe(code);
      expect(x.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(x.stderr).toMatch(msg);
    }
    expect(await content('d')).toBe(before);
  });
});
