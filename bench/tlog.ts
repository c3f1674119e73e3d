// Transaction log (src/tlog): fio 4 KiB random-write IOPS on a db vdisk through `g8os nbd serve`
// without and with --tlog (a second redis-server as the log server), in one run; and rollback
// time as the history grows, with periodic snapshots vs with only the base snapshot.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRedis, type RedisServer } from '../harness/redis';
import { tlogWrap } from '../src/tlog/backend';
import { rollback } from '../src/tlog/rollback';
import { TlogStore } from '../src/tlog/store';
import { DEFAULT_SETTINGS } from '../src/tlog/writer';
import { createVdisk, openVdisk } from '../src/vdisk/catalog';
import { openCluster } from '../src/vdisk/cluster';
import { hashReady } from '../src/vdisk/hash';
import { type BenchResult, type Context, log, MiB, onCleanup, REPO } from './lib';

const run = promisify(execFile);
const BIN = path.join(REPO, 'bin/g8os');

async function fioIops(uri: string, size: number, seconds: number): Promise<number> {
  const { stdout } = await run('fio', ['--name=b', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', `--size=${size}`, '--time_based',
    `--runtime=${seconds}`, '--iodepth=8', '--randrepeat=0', '--output-format=json'], { maxBuffer: 64 * MiB });
  const j = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { write: { iops: number } }[] };
  return Math.round(j.jobs[0].write.iops);
}

async function waitFile(f: string): Promise<void> {
  for (let i = 0; i < 200 && !fs.existsSync(f); i++) await new Promise((r) => setTimeout(r, 50));
  if (!fs.existsSync(f)) throw new Error(`${f} did not appear`);
}

export async function tlogBench(ctx: Context): Promise<BenchResult> {
  await hashReady();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-bench-tlog-'));
  const stops: (() => Promise<void> | void)[] = [];
  const unhook = onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  try {
    const primary: RedisServer = await startRedis();
    stops.push(() => primary.stop());
    const logRedis: RedisServer = await startRedis();
    stops.push(() => logRedis.stop());
    const size = 64 * MiB;
    const seconds = ctx.quick ? 3 : 10;
    // --- write IOPS with and without the log
    const rowsW: (string | number)[][] = [];
    const iops: Record<string, number> = {};
    for (const [name, extra] of [['without log', []], ['with log (flush-size 25)', ['--tlog', logRedis.url]]] as [string, string[]][]) {
      const id = name.startsWith('with ') ? 'logged' : 'plain';
      await run(process.execPath, [BIN, 'vdisk', 'create', id, '--type', 'db', '--size', String(size), '--storage', primary.url]);
      const sock = path.join(dir, `${id}.sock`);
      const srv = spawn(process.execPath, [BIN, 'nbd', 'serve', '--listen', sock, '--storage', primary.url, '--vdisk', id, ...extra], { stdio: 'ignore' });
      try {
        await waitFile(sock);
        const uri = `nbd+unix:///${id}?socket=${sock}`;
        await fioIops(uri, size, Math.max(1, Math.ceil(seconds / 3))); // warm
        iops[name] = await fioIops(uri, size, seconds);
        const hwm = fs.readFileSync(`/proc/${srv.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)?.[1];
        rowsW.push([name, iops[name], hwm ? Math.round(Number(hwm) / 1024) : '?']);
        log(`tlog: ${name}: ${iops[name]} IOPS`);
      } finally {
        srv.kill('SIGTERM');
        await new Promise((r) => srv.once('exit', r));
      }
    }
    const ratio = Number((iops['with log (flush-size 25)'] / iops['without log']).toFixed(2));
    const tW = {
      title: `tlog: fio 4k randwrite, iodepth 8, ${size / MiB} MiB db vdisk, ${seconds} s`,
      headers: ['server', 'write IOPS', 'server peak RSS MiB'], rows: rowsW,
      notes: [`with/without = ${ratio}; primary and log are local redis-servers without persistence`],
    };
    ctx.print(tW);

    // --- rollback time vs history length
    const cluster = openCluster(primary.url);
    const store = new TlogStore(logRedis.url);
    stops.push(async () => {
      await store.close();
      await cluster.close();
    });
    const lengths = ctx.quick ? [2000, 8000, 32000] : [4000, 16000, 64000];
    const blocks = 1024; // a 4 MiB working set overwritten again and again
    const rowsR: (string | number)[][] = [];
    const data: Record<string, unknown> = { write_iops: iops, write_ratio: ratio };
    const rb: Record<string, Record<number, number>> = {};
    for (const [mode, every] of [['snapshots every 1000 seq', 1000], ['base snapshot only', 1e12]] as [string, number][]) {
      rb[mode] = {};
      for (const len of lengths) {
        const id = `h${len}-${every}`;
        await createVdisk(cluster, id, { type: 'db', size: blocks * 4096 });
        const wrap = tlogWrap(store, { ...DEFAULT_SETTINGS, flushSize: 64, flushTimeMs: 50, snapshotEvery: every, retainSnapshots: 1000 });
        const disk = await openVdisk(cluster, id, { wrap });
        const payload = randomBytes(4096 * 64);
        for (let i = 0; i < len; i += 64) {
          await Promise.all(Array.from({ length: 64 }, (_, k) => disk.write(((i + k) * 7919 % blocks) * 4096, payload.subarray(k * 4096, (k + 1) * 4096), false)));
        }
        await disk.close();
        const head = await store.head(id);
        const t0 = process.hrtime.bigint();
        const r = await rollback(cluster, store, id, { seq: head.lastSeq - 10 });
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        rb[mode][len] = Math.round(ms);
        log(`tlog: rollback ${mode}, ${len} writes: ${ms.toFixed(0)} ms (replayed ${r.replayedRecords} records from snapshot ${r.fromSnapshot})`);
      }
      rowsR.push([mode, ...lengths.map((l) => rb[mode][l])]);
    }
    data.rollback_ms = rb;
    const tR = {
      title: `tlog: rollback time (ms) vs history length, ${blocks} × 4 KiB blocks overwritten`,
      headers: ['log', ...lengths.map((l) => `${l} writes`)], rows: rowsR,
      notes: ['rollback to head-10: newest snapshot ≤ target + replay, then staged and swapped into the primary'],
    };
    ctx.print(tR);
    return { name: 'tlog', tables: [tW, tR], data };
  } finally {
    for (const s of stops.reverse()) await s();
    fs.rmSync(dir, { recursive: true, force: true });
    unhook();
  }
}
