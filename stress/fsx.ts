// Suite 1, an fsx-style exerciser of our own on the writable layer of a `g8os mount` (kernel
// overlay over our FUSE read-only layer, served by a detached `g8os mount -d` process): random
// writes (many across the 512 KiB block boundaries of the flist's files), truncates that grow
// and shrink, renames (of files and of a directory from the flist), unlinks, reads, fsync,
// reopen and remounts, from files that exist in the flist (the copy-up path) and from new ones.
// Every operation is checked against an in-memory model right after it (existence and size of
// what it touched; the bytes of every read), and every file's whole content periodically and
// after each remount. The PRNG is seeded (printed; --seed repeats a run); on a mismatch the
// tail of the operation log is printed and the run stops there.
import fs from 'node:fs';
import path from 'node:path';
import { prng, randomBytes } from '../test/helpers/tarballs';
import { makeFixture, LOWER_SIZES } from './fixture';
import { log } from '../harness/cleanup';
import { fsType, withTmpfs } from '../harness/mounts';
import { MiB } from '../harness/paths';
import { mount, type Mount } from './mount';
import { BLOCK, by, type Context, diffBytes, firstDiff, type SuiteResult, Tally } from './suite';

const MAX_SIZE = 5 * MiB;
const LOG_TAIL = 40;

class Stop extends Error {}

export async function fsxSuite(ctx: Context): Promise<SuiteResult> {
  const t = new Tally('fsx');
  const nOps = by(ctx, 600, 4000, 40000);
  const remounts = by(ctx, 1, 2, 6);
  const t0 = Date.now();
  const seed = ctx.seed;
  log(`fsx: ${nOps} operations, seed ${seed} (repeat with --seed ${seed})`);
  await withTmpfs(512 * MiB, async (dir) => {
    const fx = await makeFixture(path.join(dir, 'fixture'), 1 * MiB);
    const target = path.join(dir, 'mnt');
    const backend = path.join(dir, 'backend');
    const mountArgs = ['--cache', path.join(dir, 'cache'), '--storage-url', fx.store];
    let m: Mount | undefined = await mount(fx.flist, target, backend, mountArgs);
    if (fsType(target) !== 'overlay' || !fsType(path.join(backend, 'ro'))?.startsWith('fuse')) {
      throw new Error(`${target}: expected an overlay over a FUSE layer, found ${fsType(target)} over ${fsType(path.join(backend, 'ro'))}`);
    }
    const rand = prng(seed);
    const r = (n: number): number => rand() % n;
    const full = (p: string): string => path.join(target, p);

    // The model: every file the exerciser plays with, plus the untouched ones (keep/ is renamed as a whole).
    const model = new Map<string, Buffer>();
    LOWER_SIZES.forEach((_, i) => model.set(`lower/f${i}`, Buffer.from(fx.files.get(`lower/f${i}`)!)));
    const pool = [...model.keys(), 'new/n0', 'new/n1', 'new/n2', 'new/sub/n3', 'lower/n4'];
    fs.mkdirSync(full('new/sub'), { recursive: true });
    let keepDir = 'keep';
    const keep = [...fx.files.keys()].filter((p) => p.startsWith('keep/')).map((p) => p.slice(5));
    const fds = new Map<string, number>();
    const opLog: string[] = [];
    let op = 0;
    const note = (s: string): void => {
      opLog.push(`#${op} ${s}`);
      if (opLog.length > LOG_TAIL) opLog.shift();
    };
    const fail = (msg: string, wrong = 0): never => {
      if (wrong) t.wrong(wrong, `op #${op}: ${msg}`);
      else t.error(`op #${op}: ${msg}`);
      process.stderr.write(`fsx: seed ${seed}; the last ${opLog.length} operations:\n${opLog.map((l) => `  ${l}`).join('\n')}\n`);
      throw new Stop(msg);
    };

    const close = (p: string): void => {
      const fd = fds.get(p);
      if (fd !== undefined) {
        fs.closeSync(fd);
        fds.delete(p);
      }
    };
    const closeAll = (): void => [...fds.keys()].forEach(close);
    const fdOf = (p: string): number => {
      let fd = fds.get(p);
      if (fd === undefined) {
        fd = fs.openSync(full(p), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
        fds.set(p, fd);
        if (!model.has(p)) model.set(p, Buffer.alloc(0));
      }
      return fd;
    };

    /** Existence and size of p as the model says. */
    const checkMeta = (p: string): void => {
      let size: number | undefined;
      try {
        size = fs.statSync(full(p)).size;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      const want = model.get(p)?.length;
      if (size !== want) fail(`${p}: size ${size ?? 'absent'}, model ${want ?? 'absent'}`, Math.abs((size ?? 0) - (want ?? 0)) || 1);
    };

    const readAt = (p: string, off: number, len: number): Buffer => {
      const buf = Buffer.alloc(len);
      let got = 0;
      const fd = fdOf(p);
      while (got < len) {
        const k = fs.readSync(fd, buf, got, len - got, off + got);
        if (k === 0) break;
        got += k;
      }
      t.bytesChecked += got;
      return buf.subarray(0, got);
    };
    const checkRange = (p: string, off: number, len: number): void => {
      const want = model.get(p)!.subarray(off, off + len);
      const got = readAt(p, off, len);
      const d = diffBytes(want, got);
      if (d) fail(`${p}: read ${off}+${len}: ${d} bytes differ from the model, first at offset ${off + firstDiff(want, got)} (got ${got.length} bytes, model ${want.length})`, d);
    };
    const checkFile = (p: string): void => {
      checkMeta(p);
      if (model.has(p)) checkRange(p, 0, model.get(p)!.length + 1);
    };
    const checkKeep = (): void => {
      for (const k of keep) {
        const want = fx.files.get(`keep/${k}`)!;
        const got = fs.readFileSync(full(`${keepDir}/${k}`));
        t.bytesChecked += got.length;
        const d = diffBytes(want, got);
        if (d) fail(`${keepDir}/${k} (untouched file of the flist): ${d} bytes differ`, d);
      }
    };
    const checkAll = (why: string): void => {
      note(`check all (${why})`);
      for (const p of pool) checkFile(p);
      for (const dirName of ['lower', 'new', 'new/sub']) {
        const want = pool.filter((p) => path.dirname(p) === dirName && model.has(p)).map((p) => path.basename(p));
        if (dirName === 'new') want.push('sub');
        const got = fs.readdirSync(full(dirName)).sort();
        if (JSON.stringify(got) !== JSON.stringify(want.sort())) fail(`readdir ${dirName}: ${JSON.stringify(got)}, model ${JSON.stringify(want)}`);
      }
      checkKeep();
    };

    const pick = <T>(xs: T[]): T => xs[r(xs.length)];
    const existing = (): string[] => pool.filter((p) => model.has(p));
    /** Offsets that like block boundaries: a multiple of 512 KiB ± a little, or anywhere. */
    const offset = (size: number): number => {
      const k = r(10);
      if (k < 4) return Math.max(0, (1 + r(4)) * BLOCK + r(8193) - 4096);
      if (k < 5) return size; // append
      return r(Math.max(1, Math.min(MAX_SIZE - 1, size + 64 * 1024)));
    };
    const length = (): number => (r(10) === 0 ? 1 + r(1536 * 1024) : 1 + r(r(2) ? 4096 : 65536));

    const OPS: Array<[number, () => void]> = [
      [28, () => { // write
        const p = pick(pool);
        const cur = model.get(p)?.length ?? 0;
        const off = Math.min(offset(cur), MAX_SIZE - 1);
        const len = Math.min(length(), MAX_SIZE - off);
        const data = randomBytes(len, (seed * 7919 + op) >>> 0);
        note(`write ${p} off=${off} len=${len} (size ${cur}${model.has(p) ? '' : ', new'})`);
        const fd = fdOf(p);
        let done = 0;
        while (done < len) done += fs.writeSync(fd, data, done, len - done, off + done);
        const old = model.get(p)!;
        const next = Buffer.alloc(Math.max(old.length, off + len));
        old.copy(next);
        data.copy(next, off);
        model.set(p, next);
        checkMeta(p);
        if (r(2)) checkRange(p, Math.max(0, off - 100), len + 200);
      }],
      [22, () => { // read
        const ps = existing();
        if (!ps.length) return;
        const p = pick(ps);
        const size = model.get(p)!.length;
        const off = r(3) === 0 ? offset(size) : r(size + 1);
        const len = length();
        note(`read ${p} off=${off} len=${len} (size ${size})`);
        checkRange(p, off, len);
      }],
      [10, () => { // truncate
        const ps = existing();
        if (!ps.length) return;
        const p = pick(ps);
        const cur = model.get(p)!.length;
        const k = r(5);
        const size = Math.min(MAX_SIZE, k === 0 ? 0 : k === 1 ? r(cur + 1) : k === 2 ? cur + 1 + r(2 * BLOCK) : Math.max(0, (1 + r(4)) * BLOCK + r(33) - 16));
        note(`truncate ${p} ${cur} -> ${size}`);
        fs.ftruncateSync(fdOf(p), size);
        const old = model.get(p)!;
        const next = Buffer.alloc(size);
        old.copy(next, 0, 0, Math.min(size, old.length));
        model.set(p, next);
        checkMeta(p);
        if (size > 0) checkRange(p, Math.max(0, Math.min(cur, size) - 50), 100 + Math.abs(size - cur));
      }],
      [6, () => { // rename, maybe over an existing file
        const ps = existing();
        if (!ps.length) return;
        const a = pick(ps);
        const b = pick(pool.filter((p) => p !== a));
        note(`rename ${a} -> ${b}${model.has(b) ? ' (replaces it)' : ''}`);
        close(a);
        close(b);
        fs.renameSync(full(a), full(b));
        model.set(b, model.get(a)!);
        model.delete(a);
        checkMeta(a);
        checkMeta(b);
      }],
      [3, () => { // unlink
        const ps = existing();
        if (!ps.length) return;
        const p = pick(ps);
        note(`unlink ${p}`);
        close(p);
        fs.unlinkSync(full(p));
        model.delete(p);
        checkMeta(p);
      }],
      [8, () => { // fsync
        const ps = existing();
        if (!ps.length) return;
        const p = pick(ps);
        note(`fsync ${p}`);
        fs.fsyncSync(fdOf(p));
        checkMeta(p);
      }],
      [10, () => { // reopen: close, open again, whole content
        const ps = existing();
        if (!ps.length) return;
        const p = pick(ps);
        note(`reopen ${p}`);
        close(p);
        fdOf(p);
        checkFile(p);
      }],
      [1, () => { // rename a directory that comes from the flist (redirect_dir)
        const next = keepDir === 'keep' ? 'keep2' : 'keep';
        note(`rename dir ${keepDir} -> ${next}`);
        fs.renameSync(full(keepDir), full(next));
        keepDir = next;
        checkKeep();
      }],
    ];
    const total = OPS.reduce((a, [w]) => a + w, 0);
    const choose = (): (() => void) => {
      let k = r(total);
      for (const [w, fn] of OPS) {
        if (k < w) return fn;
        k -= w;
      }
      return OPS[0][1];
    };

    const remountAt = new Set(Array.from({ length: remounts }, (_, i) => Math.floor(((i + 1) * nOps) / (remounts + 1))));
    try {
      checkAll('start');
      for (op = 1; op <= nOps; op++) {
        try {
          choose()();
        } catch (e) {
          if (e instanceof Stop) throw e;
          fail(`${opLog[opLog.length - 1] ?? ''}: ${(e as Error).message}`);
        }
        t.ops++;
        if (process.env.G8OS_STRESS_CORRUPT && op === Math.floor(nOps / 2)) {
          // self-test of the checker: one byte changed behind the model's back must be caught
          const p = existing().find((q) => model.get(q)!.length > 0);
          if (p) {
            const fd = fs.openSync(full(p), 'r+');
            const b = Buffer.alloc(1);
            fs.readSync(fd, b, 0, 1, 0);
            b[0] ^= 0xff;
            fs.writeSync(fd, b, 0, 1, 0);
            fs.closeSync(fd);
            note(`SELF-TEST: flipped byte 0 of ${p} behind the model's back`);
          }
        }
        if (op % 250 === 0) checkAll('periodic');
        if (remountAt.has(op)) {
          note('remount (rw layer kept)');
          closeAll();
          await m!.stop();
          m = undefined;
          m = await mount(fx.flist, target, backend, mountArgs);
          checkAll('after remount');
        }
        if (op % 1000 === 0) log(`fsx: ${op}/${nOps} operations`);
      }
      checkAll('end');
    } catch (e) {
      if (!(e instanceof Stop)) t.error(`${(e as Error).message}`);
    } finally {
      closeAll();
      if (m) await m.stop().catch((e: Error) => t.error(e.message));
    }
    t.data = { seed, ops_planned: nOps, remounts, files_at_end: model.size };
  }, ctx.work);
  return t.result(`seeded random file ops on the overlay rw layer, ${remounts} remount${remounts === 1 ? '' : 's'}`, (Date.now() - t0) / 1000);
}
