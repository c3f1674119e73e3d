// One reader of the concurrency suite, in its own process (it reads a FUSE mount another process
// serves): reads its files chunk by chunk from the mount and compares each chunk with the same
// bytes of the reference tree (GNU tar's extraction of the source tarball). A failed read is
// reported with its time and retried at the same offset until it succeeds (or 120 s pass).
import fs from 'node:fs';

export interface ReaderJob {
  files: Array<{ mnt: string; ref: string; size: number }>;
  chunk: number;
}

export type ReaderMsg =
  | { type: 'progress'; bytes: number }
  | { type: 'err'; at: number; file: string; off: number; code: string }
  | { type: 'done'; reads: number; bytes: number; wrong: number; problems: string[]; fatal?: string };

const send = (m: ReaderMsg): Promise<void> => new Promise((resolve) => process.send!(m, undefined, {}, () => resolve()));
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(job: ReaderJob): Promise<void> {
  let reads = 0;
  let bytes = 0;
  let wrong = 0;
  let unreported = 0;
  const problems: string[] = [];
  const want = Buffer.alloc(job.chunk);
  const got = Buffer.alloc(job.chunk);
  for (const f of job.files) {
    const ref = fs.openSync(f.ref, 'r');
    let fd: number | undefined;
    let off = 0;
    let failingSince = 0;
    try {
      while (off < f.size || fd === undefined) {
        try {
          fd ??= fs.openSync(f.mnt, 'r');
          const n = Math.min(job.chunk, f.size - off);
          let k = 0;
          while (k < n) {
            const r = fs.readSync(fd, got, k, n - k, off + k);
            if (r === 0) break;
            k += r;
          }
          reads++;
          failingSince = 0;
          fs.readSync(ref, want, 0, n, off);
          if (k !== n || !want.subarray(0, n).equals(got.subarray(0, n))) {
            let d = n - k;
            for (let i = 0; i < k; i++) if (want[i] !== got[i]) d++;
            wrong += d;
            if (problems.length < 10) problems.push(`${f.mnt} offset ${off}: ${d} of ${n} bytes wrong (read ${k})`);
          }
          off += n;
          bytes += n;
          unreported += n;
          if (unreported >= 4 << 20) {
            await send({ type: 'progress', bytes: unreported });
            unreported = 0;
          } else if (reads % 8 === 0) await new Promise((r) => setImmediate(r));
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
          await send({ type: 'err', at: Date.now(), file: f.mnt, off, code });
          if (fd !== undefined && code !== 'EIO') {
            try {
              fs.closeSync(fd);
            } catch {
              // reopened below
            }
            fd = undefined;
          }
          failingSince ||= Date.now();
          if (Date.now() - failingSince > 120_000) {
            await send({ type: 'done', reads, bytes, wrong, problems, fatal: `${f.mnt} offset ${off}: still failing (${code}) after 120 s` });
            process.exit(1);
          }
          await pause(250);
        }
      }
    } finally {
      fs.closeSync(ref);
      if (fd !== undefined) fs.closeSync(fd);
    }
  }
  if (unreported) await send({ type: 'progress', bytes: unreported });
  await send({ type: 'done', reads, bytes, wrong, problems });
  process.exit(0);
}

process.once('message', (job: ReaderJob) => {
  main(job).catch(async (e: Error) => {
    await send({ type: 'done', reads: 0, bytes: 0, wrong: 0, problems: [], fatal: e.stack ?? e.message });
    process.exit(1);
  });
});
