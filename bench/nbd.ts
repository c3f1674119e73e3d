// NBD block I/O: fio 4 KiB random read/write IOPS and sequential 1 MiB MB/s through our server
// (a boot = deduplicated and a db vdisk over a local redis-server) vs nbdkit's file plugin vs
// the raw file, in one run. fio's nbd engine is the client (this kernel has no nbd module).
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type BenchResult, type Context, freePort, log, MiB, onCleanup, REPO } from './lib';

const run = promisify(execFile);
const BIN = path.join(REPO, 'bin/g8os');

async function waitFor(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not come up`);
}

interface Fio {
  iops: number;
  mbs: number;
}

async function fio(target: string[], rw: string, bs: string, size: number, seconds: number): Promise<Fio> {
  const { stdout } = await run('fio', ['--name=b', ...target, `--rw=${rw}`, `--bs=${bs}`, `--size=${size}`, '--time_based',
    `--runtime=${seconds}`, '--iodepth=8', '--randrepeat=0', '--output-format=json'], { maxBuffer: 64 * MiB });
  const j = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { read: { iops: number; bw_bytes: number }; write: { iops: number; bw_bytes: number } }[] };
  const side = rw.includes('read') ? j.jobs[0].read : j.jobs[0].write;
  return { iops: Math.round(side.iops), mbs: Number((side.bw_bytes / 1e6).toFixed(1)) };
}

export async function nbdBench(ctx: Context): Promise<BenchResult> {
  const size = ctx.quick ? 64 * MiB : 256 * MiB;
  const seconds = ctx.quick ? 3 : 10;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-bench-nbd-'));
  const stops: (() => void)[] = [];
  const unhook = onCleanup(() => {
    for (const s of stops.reverse()) s();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    const port = await freePort();
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    stops.push(() => redis.kill('SIGKILL'));
    const storage = `redis://127.0.0.1:${port}`;
    await waitFor(async () => run('redis-cli', ['-p', String(port), 'ping']).then(() => true, () => false), 'redis-server');
    for (const [id, type] of [['boot', 'boot'], ['db', 'db']]) {
      await run(process.execPath, [BIN, 'vdisk', 'create', id, '--type', type, '--size', String(size), '--storage', storage]);
    }
    const sock = path.join(dir, 'ours.sock');
    const ours = spawn(process.execPath, [BIN, 'nbd', 'serve', '--listen', sock, '--storage', storage], { stdio: 'ignore' });
    stops.push(() => ours.kill('SIGKILL'));
    const raw = path.join(dir, 'disk.raw');
    fs.writeFileSync(raw, Buffer.alloc(0));
    fs.truncateSync(raw, size);
    const kitSock = path.join(dir, 'kit.sock');
    const kit = spawn('nbdkit', ['-f', '--unix', kitSock, 'file', raw], { stdio: 'ignore' });
    stops.push(() => kit.kill('SIGKILL'));
    await waitFor(() => fs.existsSync(sock) && fs.existsSync(kitSock), 'the NBD servers');

    const targets: [string, string[]][] = [
      ['g8os boot (dedup, redis)', ['--ioengine=nbd', `--uri=nbd+unix:///boot?socket=${sock}`]],
      ['g8os db (redis)', ['--ioengine=nbd', `--uri=nbd+unix:///db?socket=${sock}`]],
      ['nbdkit file', ['--ioengine=nbd', `--uri=nbd+unix:///?socket=${kitSock}`]],
      ['raw file (libaio)', ['--ioengine=libaio', `--filename=${raw}`, '--direct=0']],
    ];
    const rows: (string | number)[][] = [];
    const data: Record<string, unknown> = { size_mib: size / MiB, seconds };
    for (const [name, t] of targets) {
      // fill first so reads hit stored blocks, not holes
      await fio(t, 'write', '1M', size, Math.max(2, Math.ceil(seconds / 2)));
      const sw = await fio(t, 'write', '1M', size, seconds);
      const sr = await fio(t, 'read', '1M', size, seconds);
      const rw = await fio(t, 'randwrite', '4k', size, seconds);
      const rr = await fio(t, 'randread', '4k', size, seconds);
      rows.push([name, rr.iops, rw.iops, sr.mbs, sw.mbs]);
      data[name] = { randread_iops: rr.iops, randwrite_iops: rw.iops, seqread_mbs: sr.mbs, seqwrite_mbs: sw.mbs };
      log(`nbd: ${name}: ${JSON.stringify(data[name])}`);
    }
    const hwm = fs.readFileSync(`/proc/${ours.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)?.[1];
    data.ours_peak_rss_mib = hwm ? Math.round(Number(hwm) / 1024) : null;
    const base = data['nbdkit file'] as { randread_iops: number; randwrite_iops: number; seqread_mbs: number; seqwrite_mbs: number };
    const db = data['g8os db (redis)'] as typeof base;
    data.db_vs_nbdkit = {
      randread: Number((db.randread_iops / base.randread_iops).toFixed(2)),
      randwrite: Number((db.randwrite_iops / base.randwrite_iops).toFixed(2)),
      seqread: Number((db.seqread_mbs / base.seqread_mbs).toFixed(2)),
      seqwrite: Number((db.seqwrite_mbs / base.seqwrite_mbs).toFixed(2)),
    };
    const table = {
      title: `NBD: fio iodepth 8, ${size / MiB} MiB, ${seconds} s per pattern`,
      headers: ['target', '4k randread IOPS', '4k randwrite IOPS', 'seq read MB/s (1M)', 'seq write MB/s (1M)'],
      rows,
      notes: [
        `our server peak RSS ${data.ours_peak_rss_mib} MiB; db/nbdkit ratios ${JSON.stringify(data.db_vs_nbdkit)}`,
        'raw file through the page cache (buffered libaio); nbdkit file plugin on the same file; ours stores in a local redis-server (no persistence)',
      ],
    };
    ctx.print(table);
    return { name: 'nbd', tables: [table], data };
  } finally {
    for (const s of stops.reverse()) s();
    stops.length = 0;
    fs.rmSync(dir, { recursive: true, force: true });
    unhook();
  }
}
