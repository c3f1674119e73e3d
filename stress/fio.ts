// Suite 2. fio with verify on the writable layer of a `g8os mount`: random read/write jobs that
// verify what they wrote (crc32c headers in every block), one of them rewriting a file that comes
// from the flist (copy-up), then a write pass, a remount, and fio's verify-only pass over the same
// files (the data must survive the remount). Then a content-verification pass on the lazy
// read-only layer: flists built from tarballs (every tar member type; a generated tree; a real
// Debian rootfs when one is cached or given with --image) are mounted --ro with an empty block
// cache and every file is read back and compared byte for byte with the tarball's member.
import fs from 'node:fs';
import path from 'node:path';
import { imagesDir } from '../bench/images';
import { everyTypeEntries, writeBigTarFile, writeTarFile } from '../test/helpers/tarballs';
import { compareTarball, mountSource } from './compare';
import { makeFixture } from './fixture';
import { log } from '../harness/cleanup';
import { withTmpfs } from '../harness/mounts';
import { MiB } from '../harness/paths';
import { run } from '../harness/procs';
import { flistCreate, mount } from './mount';
import { by, type Context, type SuiteResult, Tally } from './suite';

interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number; total_ios: number };
  write: { io_bytes: number; total_ios: number };
}

const VERIFY_FAILED = /verify(?: failed)?[^\n]*? at file (\S+) offset (\d+), length (\d+)/g;

/** Runs fio; every verify failure is counted as wrong bytes (its block length), other failures as errors. */
async function fio(t: Tally, label: string, args: string[], dir: string): Promise<void> {
  const out = path.join(dir, `fio-${label}.json`);
  const r = await run('fio', [...args, '--output-format=json', `--output=${out}`], { allowFail: true, timeoutMs: 30 * 60_000, cwd: dir });
  let jobs: FioJob[] = [];
  try {
    const text = fs.readFileSync(out, 'utf8');
    jobs = (JSON.parse(text.slice(text.indexOf('{'))) as { jobs: FioJob[] }).jobs;
  } catch (e) {
    t.error(`fio ${label}: no JSON output (${(e as Error).message}); exit ${r.code}: ${r.stderr.slice(-500)}`);
    return;
  }
  let failures = 0;
  for (const m of `${r.stderr}\n${r.stdout}`.matchAll(VERIFY_FAILED)) {
    failures++;
    t.wrong(Number(m[3]), `fio ${label}: verify failed at ${m[1]} offset ${m[2]}`);
  }
  let ios = 0;
  for (const j of jobs) {
    ios += j.read.total_ios + j.write.total_ios;
    t.bytesChecked += j.read.io_bytes;
    if (j.error && !failures) t.error(`fio ${label} job ${j.jobname}: error ${j.error}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  }
  if (r.code !== 0 && !failures && !jobs.some((j) => j.error)) t.error(`fio ${label}: exit ${r.code}: ${r.stderr.slice(-500)}`);
  t.ops += ios;
  log(`fio: ${label}: ${jobs.length} jobs, ${ios} I/Os, ${failures} verify failures`);
}

/** A cached Debian image tarball of bench/images.ts, if one was built. */
/** The python image bench/images.ts built, if it is in its cache (never built from here). */
function cachedImage(): string | undefined {
  try {
    const dir = imagesDir();
    const found = fs.readdirSync(dir).filter((f) => /^python.*\.tar\.gz$/.test(f) && !f.includes('docker')).sort();
    return found.length ? path.join(dir, found[found.length - 1]) : undefined;
  } catch {
    return undefined;
  }
}

export async function fioSuite(ctx: Context): Promise<SuiteResult> {
  const t = new Tally('fio');
  const t0 = Date.now();
  const jobs = by(ctx, 2, 4, 4);
  const size = by(ctx, 8, 64, 256) * MiB;
  const big = by(ctx, 4, 16, 64) * MiB;
  const parts: string[] = [];

  // --- fio on the rw layer
  await withTmpfs(jobs * size * 2 + 4 * big + 512 * MiB, async (dir) => {
    const fx = await makeFixture(path.join(dir, 'fixture'), big);
    const target = path.join(dir, 'mnt');
    const backend = path.join(dir, 'backend');
    const mountArgs = ['--cache', path.join(dir, 'cache'), '--storage-url', fx.store];
    let m = await mount(fx.flist, target, backend, mountArgs);
    try {
      const work = path.join(target, 'fio');
      const common = ['--ioengine=psync', '--verify=crc32c', '--verify_fatal=0', `--randseed=${ctx.seed}`, '--end_fsync=1'];
      await fio(t, 'randrw', [
        '--name=randrw', `--directory=${work}`, '--rw=randrw', '--bsrange=4k-64k', `--size=${size}`, `--numjobs=${jobs}`, ...common,
        // the file that came with the flist: overwritten in place (copy-up), verified
        '--name=copyup', `--filename=${path.join(work, 'big.bin')}`, '--rw=randwrite', '--bsrange=4k-1m', `--size=${big}`, '--numjobs=1', ...common,
      ], dir);
      const persist = ['--name=persist', `--directory=${work}`, '--rw=randwrite', '--bs=16k', `--size=${size / 2}`, `--numjobs=${jobs}`, ...common];
      await fio(t, 'write', [...persist, '--do_verify=0'], dir);
      await m.stop();
      m = await mount(fx.flist, target, backend, mountArgs);
      await fio(t, 'verify-after-remount', [...persist, '--verify_only'], dir);
    } finally {
      await m.stop().catch((e: Error) => t.error(e.message));
    }
  }, ctx.work);
  parts.push(`fio randrw/copy-up/remount verify (${jobs}×${size / MiB} MiB)`);

  // --- the lazy read-only layer, cold, against the tarballs
  const sets: Array<{ label: string; make?: (file: string) => Promise<void>; file?: string }> = [
    { label: 'every-type', make: (f) => writeTarFile(f, everyTypeEntries(), { gzip: true }) },
    { label: 'generated', make: (f) => writeBigTarFile(f, { files: by(ctx, 60, 400, 2000), totalBytes: by(ctx, 12, 64, 384) * MiB, seed: ctx.seed, gzip: true }).then(() => undefined) },
  ];
  const image = ctx.image ?? (ctx.level === 'ci' ? undefined : cachedImage());
  if (image) sets.push({ label: `image ${path.basename(image)}`, file: image });
  else if (ctx.level !== 'ci') log('fio: no Debian image cached (bench/images.ts) and no --image: the read-only pass uses generated trees only');
  let files = 0;
  for (const set of sets) {
    const bytes = set.file ? fs.statSync(set.file).size * 4 : by(ctx, 64, 256, 1024) * MiB;
    await withTmpfs(bytes * 3 + 256 * MiB, async (dir) => {
      const tarball = set.file ?? path.join(dir, 'src.tar.gz');
      if (set.make) await set.make(tarball);
      const store = `dir://${path.join(dir, 'blocks')}`;
      const flist = path.join(dir, 'src.flist');
      await flistCreate(tarball, flist, store);
      const target = path.join(dir, 'mnt');
      const m = await mount(flist, target, path.join(dir, 'backend'), ['--ro', '--cache', path.join(dir, 'cache'), '--storage-url', store]);
      try {
        const s = await compareTarball(tarball, mountSource(target), t, `ro ${set.label}`);
        files += s.files;
        log(`fio: read-only layer, ${set.label}: ${s.members} members, ${s.files} files, ${(s.bytes / 1e6).toFixed(1)} MB compared`);
      } finally {
        await m.stop().catch((e: Error) => t.error(e.message));
      }
    }, ctx.work);
  }
  parts.push(`ro layer cold read-back of ${files} files (${sets.map((s) => s.label).join(', ')})`);
  t.data = { jobs, size_mib: size / MiB, copyup_mib: big / MiB, ro_sets: sets.map((s) => s.label), ro_files: files };
  return t.result(parts.join('; '), (Date.now() - t0) / 1000);
}
