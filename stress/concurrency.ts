// Suite 3. Eight readers (separate processes) over one cold flist — mounted read-only from a hub
// on loopback with an empty block cache — while the hub is SIGKILLed and restarted on the same
// data dir and port a few times, each outage started when the readers have read a given share of
// the tree. Every chunk read is compared with GNU tar's extraction of the source tarball. A read
// that fails during an outage (or within a short grace after it: the mount's store retries take
// ~2 s) is an expected error and is retried until it succeeds; a failure at any other time is an
// unexpected one.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { writeBigTarFile } from '../test/helpers/tarballs';
import { log, onCleanup, sleep } from '../harness/cleanup';
import { startHub } from '../harness/hub';
import { withTmpfs } from '../harness/mounts';
import { G8OS, MiB } from '../harness/paths';
import { run } from '../harness/procs';
import { mount } from './mount';
import { by, type Context, type SuiteResult, Tally } from './suite';
import type { ReaderJob, ReaderMsg } from './reader';

const READERS = 8;
const GRACE_MS = 5000;

const USER = 'stress';

export async function concurrencySuite(ctx: Context): Promise<SuiteResult> {
  const t = new Tally('concurrency');
  const t0 = Date.now();
  const files = by(ctx, 80, 300, 1500);
  const total = by(ctx, 48, 160, 1024) * MiB;
  // [share of the tree read, outage ms]: short outages are bridged by the mount's retries (a
  // fetch gets 3 tries with back-off, ~7 s); the long ones outlast them, so reads fail with EIO.
  const plan: Array<[number, number]> = by(ctx, [[0.2, 3000], [0.5, 10_000]], [[0.15, 3000], [0.35, 12_000], [0.6, 2000], [0.75, 12_000]], [
    [0.1, 3000], [0.2, 12_000], [0.35, 1000], [0.45, 5000], [0.55, 15_000], [0.7, 2000], [0.85, 12_000],
  ]);
  const windows: Array<{ down: number; up: number }> = [];
  await withTmpfs(total * 5 + 512 * MiB, async (dir) => {
    const tarball = path.join(dir, 'tree.tar');
    await writeBigTarFile(tarball, { files, totalBytes: total, seed: ctx.seed });
    const ref = path.join(dir, 'ref');
    fs.mkdirSync(ref);
    await run('tar', ['-xf', tarball, '-C', ref]);
    const hub = await startHub({ dir });
    const token = hub.token(USER);
    try {
      const up = await run(process.execPath, [G8OS, 'hub', 'upload', tarball, '--hub', hub.url, '--token', token, '--name', 'tree']);
      const url = up.stdout.trim().split('\n').pop()!;
      if (!/^https?:\/\//.test(url)) throw new Error(`hub upload printed no URL: ${up.stdout}${up.stderr}`);
      const target = path.join(dir, 'mnt');
      const m = await mount(url, target, path.join(dir, 'backend'), ['--ro', '--cache', path.join(dir, 'cache')]);
      const readers: ChildProcess[] = [];
      const unregister = onCleanup(() => readers.forEach((c) => c.kill('SIGKILL')));
      try {
        // Files biggest first, dealt round-robin: every reader gets a similar share.
        const all: Array<{ rel: string; size: number }> = [];
        for (const e of fs.readdirSync(ref, { recursive: true, withFileTypes: true })) {
          if (!e.isFile()) continue;
          const abs = path.join(e.parentPath, e.name);
          all.push({ rel: path.relative(ref, abs), size: fs.statSync(abs).size });
        }
        all.sort((a, b) => b.size - a.size || a.rel.localeCompare(b.rel));
        const jobs: ReaderJob[] = Array.from({ length: READERS }, () => ({ files: [], chunk: 128 * 1024 }));
        all.forEach((f, i) => jobs[i % READERS].files.push({ mnt: path.join(target, f.rel), ref: path.join(ref, f.rel), size: f.size }));
        const totalBytes = all.reduce((a, f) => a + f.size, 0);

        let read = 0;
        const errs: Array<{ at: number; file: string; off: number; code: string }> = [];
        const done = jobs.map(
          (job) =>
            new Promise<Extract<ReaderMsg, { type: 'done' }>>((resolve) => {
              const c = fork(path.join(__dirname, 'reader.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
              readers.push(c);
              let result: Extract<ReaderMsg, { type: 'done' }> | undefined;
              c.on('message', (msg: ReaderMsg) => {
                if (msg.type === 'progress') read += msg.bytes;
                else if (msg.type === 'err') errs.push(msg);
                else result = msg;
              });
              c.once('exit', (code, sig) => resolve(result ?? { type: 'done', reads: 0, bytes: 0, wrong: 0, problems: [], fatal: `reader exited (${code ?? sig}) without a result` }));
              c.send(job);
            }),
        );
        let finished = false;
        const all8 = Promise.all(done).finally(() => (finished = true));

        // The outages, each when the readers have read the planned share of the tree.
        for (const [share, outageMs] of plan) {
          while (!finished && read < share * totalBytes) await sleep(20);
          if (finished) {
            log(`concurrency: the readers finished before ${Math.round(share * 100)} % was reached; no more outages`);
            break;
          }
          const down = Date.now();
          await hub.kill();
          log(`concurrency: hub killed at ${((100 * read) / totalBytes).toFixed(0)} % read`);
          await sleep(outageMs);
          await hub.restart();
          windows.push({ down, up: Date.now() });
          log(`concurrency: hub back after ${((Date.now() - down) / 1000).toFixed(1)} s`);
        }
        const results = await all8;
        for (const r of results) {
          t.ops += r.reads;
          t.bytesChecked += r.bytes;
          if (r.wrong) t.wrong(r.wrong, r.problems.join('; '));
          if (r.fatal) t.error(r.fatal);
        }
        if (t.bytesChecked !== totalBytes) t.error(`the readers read ${t.bytesChecked} bytes of ${totalBytes}`);
        for (const e of errs) {
          if (windows.some((w) => e.at >= w.down && e.at <= w.up + GRACE_MS)) t.expectedErrors++;
          else t.error(`${e.code} reading ${e.file} at offset ${e.off}, ${new Date(e.at).toISOString()}, outside every outage`);
        }
        t.data = {
          files: all.length, bytes: totalBytes, readers: READERS, outages: windows.length,
          outages_s: windows.map((w) => Number(((w.up - w.down) / 1000).toFixed(1))), read_errors: errs.length,
          codes: [...new Set(errs.map((e) => e.code))],
        };
      } finally {
        readers.forEach((c) => c.kill('SIGKILL'));
        unregister();
        await m.stop().catch((e: Error) => t.error(e.message));
      }
    } finally {
      await hub.stop();
    }
  }, ctx.work);
  return t.result(`${READERS} readers, one cold flist from a hub on loopback, hub SIGKILLed + restarted ${windows.length}×`, (Date.now() - t0) / 1000);
}
