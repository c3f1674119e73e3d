// The read-only FUSE layer (g8ufs.md §4, §5, §9, §10, §11) on real mounts: each mount is
// served by a child process (dist/src/fs/serve-child.js) and checked from this process with
// fs calls and GNU tools.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import Fuse from 'fuse-native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendFor } from '../src/flist/backend';
import { buildFromDir, buildFromTar } from '../src/flist/builder';
import { hashReady } from '../src/flist/hash';
import { openFlist } from '../src/flist/open';
import { writeFlist } from '../src/flist/writer';
import { DirectBlocks } from '../src/fs/direct';
import { ReadOnlyFs } from '../src/fs/rofs';
import { bindCodec, type BlockSource } from '../src/fs/types';
import type { BlockRef } from '../src/flist/types';
import { openStore } from '../src/store';
import { FUNK } from './helpers/cli';
import { type FuseChild, forceUnmount, serveFlists } from './helpers/fuse-child';
import { BLOCK, T0, everyTypeEntries, writeTar, type FixtureEntry } from './helpers/tarballs';

const execFileP = promisify(execFile);
const run = async (cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> =>
  execFileP(cmd, args, { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 });
/** Like run, but resolves with the exit code instead of throwing. */
const runCode = (cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });

let tmp: string;
const children: FuseChild[] = [];
const mountpoints: string[] = [];

beforeAll(async () => {
  await hashReady();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-rofs-test-'));
});

afterAll(async () => {
  for (const c of children) await c.stop().catch(() => undefined);
  for (const m of mountpoints) forceUnmount(m);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** tar → flist (backend metadata naming its own dir:// store). */
async function buildFlist(name: string, entries: FixtureEntry[]): Promise<string> {
  const storeUrl = `dir://${path.join(tmp, `${name}-blocks`)}`;
  const store = await openStore(storeUrl);
  try {
    const { tree } = await buildFromTar(Readable.from([await writeTar(entries)]), { store });
    const flist = path.join(tmp, `${name}.flist`);
    await writeFlist(tree, flist, { backend: backendFor(storeUrl) });
    return flist;
  } finally {
    await store.close();
  }
}

async function mount(name: string, layers: Array<{ flist: string; store?: string }>): Promise<FuseChild> {
  const mountpoint = path.join(tmp, `mnt-${name}`);
  mountpoints.push(mountpoint);
  const c = await serveFlists({ mountpoint, layers, name: `g8ufs-test-${name}` });
  children.push(c);
  return c;
}

/** `find -printf` of a mount, one object per entry keyed by relative path ("" = root). */
async function findTree(mnt: string): Promise<Map<string, { mode: string; uid: number; gid: number; size: number; mtime: number; type: string; target: string }>> {
  const { stdout } = await run('find', [mnt, '-printf', '%P\\t%m\\t%U\\t%G\\t%s\\t%T@\\t%y\\t%l\\n']);
  const out = new Map();
  for (const line of stdout.split('\n')) {
    if (!line) continue;
    const [p, mode, uid, gid, size, mtime, type, target] = line.split('\t');
    out.set(p, { mode, uid: Number(uid), gid: Number(gid), size: Number(size), mtime: Math.floor(Number(mtime)), type, target });
  }
  return out;
}

const TYPE_CHAR: Record<FixtureEntry['type'], string> = { file: 'f', hardlink: 'f', dir: 'd', symlink: 'l', char: 'c', block: 'b', fifo: 'p' };

describe('every file type (tarball → flist → dir:// store → FUSE)', () => {
  const entries = everyTypeEntries();
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const content = (e: FixtureEntry): Buffer => (e.type === 'hardlink' ? byPath.get(e.linkname!)!.content! : e.content!);
  let flist: string;
  let c: FuseChild;
  let mnt: string;

  beforeAll(async () => {
    flist = await buildFlist('every', entries);
    c = await mount('every', [{ flist }]);
    mnt = c.mountpoint;
  });

  it('a read fetches only the block it touches', async () => {
    // let read-ahead started by earlier tests finish, so it is not counted here
    let before = await c.stats();
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const now = await c.stats();
      if (now.fetched === before.fetched) break;
      before = now;
    }
    const fh = await fs.promises.open(path.join(mnt, 'files/mixed-5MiB.bin'), 'r');
    try {
      const buf = Buffer.alloc(1);
      await fh.read(buf, 0, 1, 3 * BLOCK + 5);
      expect(buf[0]).toBe(byPath.get('files/mixed-5MiB.bin')!.content![3 * BLOCK + 5]);
    } finally {
      await fh.close();
    }
    // the kernel sends RELEASE after close() returns: wait for it (bounded) before counting opens
    let after = await c.stats();
    for (let i = 0; i < 40 && after.stats.openFiles !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = await c.stats();
    }
    expect(after.fetched - before.fetched).toBe(1);
    expect(after.stats.openFiles).toBe(0);
  });

  it('type, mode, owner, size, mtime and link target of every entry equal the tarball', async () => {
    const tree = await findTree(mnt);
    const implied = new Set<string>();
    for (const e of entries) for (let p = path.dirname(e.path); p !== '.'; p = path.dirname(p)) if (!byPath.has(p)) implied.add(p);
    expect(new Set(tree.keys())).toEqual(new Set(['', ...byPath.keys(), ...implied]));
    for (const e of entries) {
      const size = e.type === 'dir' ? 4096 : e.type === 'symlink' ? Buffer.byteLength(e.linkname!) : e.type === 'file' || e.type === 'hardlink' ? content(e).length : 0;
      expect(tree.get(e.path), e.path).toEqual({
        mode: (e.type === 'symlink' ? 0o777 : e.mode).toString(8),
        uid: e.uid,
        gid: e.gid,
        size,
        mtime: e.mtime,
        type: TYPE_CHAR[e.type],
        target: e.type === 'symlink' ? e.linkname : '',
      });
    }
    for (const p of implied) expect(tree.get(p), p).toMatchObject({ mode: '755', uid: 0, gid: 0, size: 4096, type: 'd' });
  });

  it('file bytes equal the tarball, read whole and at block edges', async () => {
    for (const e of entries) {
      if (e.type !== 'file' && e.type !== 'hardlink') continue;
      expect((await fs.promises.readFile(path.join(mnt, e.path))).equals(content(e)), e.path).toBe(true);
    }
    const multi = byPath.get('files/multi-block.bin')!.content!;
    const fh = await fs.promises.open(path.join(mnt, 'files/multi-block.bin'), 'r');
    try {
      for (const [off, len] of [[BLOCK - 3, 6], [2 * BLOCK - 1, BLOCK + 2], [multi.length - 5, 100], [multi.length, 10]]) {
        const buf = Buffer.alloc(len);
        const { bytesRead } = await fh.read(buf, 0, len, off);
        expect(buf.subarray(0, bytesRead).equals(multi.subarray(off, off + len)), `${off}+${len}`).toBe(true);
      }
    } finally {
      await fh.close();
    }
  });

  it('device nodes carry their numbers (kernel makedev: minor > 255, major > 255)', async () => {
    const { stdout } = await run('stat', ['-c', '%n %F %t %T', ...['null', 'ttyS0', 'nvme0n1p300'].map((n) => path.join(mnt, 'dev', n))]);
    expect(stdout.split('\n').filter(Boolean).map((l) => l.slice(path.join(mnt, 'dev').length + 1))).toEqual([
      'null character special file 1 3',
      'ttyS0 character special file 4 40',
      'nvme0n1p300 block special file 103 12c',
    ]);
    const ls = (await run('ls', ['-ln', path.join(mnt, 'dev')])).stdout;
    expect(ls).toMatch(/^crw-rw-rw- +1 +0 +0 +1, +3 .* null$/m);
    expect(ls).toMatch(/^crw-rw---- +1 +0 +20 +4, +64 .* ttyS0$/m);
    expect(ls).toMatch(/^brw-rw---- +1 +0 +6 +259, +300 .* nvme0n1p300$/m);
    expect((await run('stat', ['-c', '%F', path.join(mnt, 'run/fifo')])).stdout.trim()).toBe('fifo');
  });

  it('statfs: 4 KiB blocks of content, entry count, nothing free, names up to 255', async () => {
    const r = await openFlist(flist);
    let files = 0;
    let bytes = 0;
    for (const e of r.walk()) {
      files++;
      if (e.kind === 'file') bytes += e.size;
    }
    r.close();
    const { stdout } = await run('stat', ['-f', '-c', '%s %S %b %f %a %c %d %l', mnt]);
    expect(stdout.trim()).toBe(`4096 4096 ${Math.ceil(bytes / 4096)} 0 0 ${files} 0 255`);
  });

  it('directories: nlink 2 + sub-directories, size 4096; ". and .." listed', async () => {
    const st = await fs.promises.stat(path.join(mnt, 'home'));
    expect(st.nlink).toBe(3);
    expect((await fs.promises.stat(path.join(mnt, 'files'))).nlink).toBe(2);
    expect((await run('ls', ['-a', path.join(mnt, 'home')])).stdout.split('\n').filter(Boolean)).toEqual(['.', '..', 'user']);
  });

  it('inode numbers are unique per path, stable, root = 1', async () => {
    const paths = ['', ...byPath.keys()];
    const first = await Promise.all(paths.map((p) => fs.promises.lstat(path.join(mnt, p), { bigint: true })));
    const inos = first.map((s) => s.ino);
    expect(new Set(inos).size).toBe(paths.length);
    expect(inos[0]).toBe(1n);
    const again = await Promise.all(paths.map((p) => fs.promises.lstat(path.join(mnt, p), { bigint: true })));
    expect(again.map((s) => s.ino)).toEqual(inos);
    // readdir's d_ino agrees with stat's
    const { stdout } = await run('ls', ['-1ai', path.join(mnt, 'files')]);
    for (const line of stdout.split('\n').filter(Boolean)) {
      const [ino, name] = line.trim().split(/\s+/, 2);
      if (name === '..') continue;
      expect(BigInt(ino), name).toBe((await fs.promises.lstat(path.join(mnt, 'files', name), { bigint: true })).ino);
    }
  });

  it('every write is refused with EROFS', async () => {
    const p = (s: string): string => path.join(mnt, s);
    const refused: Array<() => Promise<unknown>> = [
      () => fs.promises.writeFile(p('files/new.txt'), 'x'),
      () => fs.promises.open(p('files/hello.txt'), 'r+'),
      () => fs.promises.appendFile(p('files/hello.txt'), 'x'),
      () => fs.promises.truncate(p('files/hello.txt'), 0),
      () => fs.promises.mkdir(p('newdir')),
      () => fs.promises.rmdir(p('tmp')),
      () => fs.promises.unlink(p('files/hello.txt')),
      () => fs.promises.rename(p('files/hello.txt'), p('files/moved.txt')),
      () => fs.promises.symlink('x', p('files/newlink')),
      () => fs.promises.link(p('files/hello.txt'), p('files/newhard')),
      () => fs.promises.chmod(p('files/hello.txt'), 0o777),
      () => fs.promises.chown(p('files/hello.txt'), 1, 1),
      () => fs.promises.utimes(p('files/hello.txt'), 1, 1),
    ];
    for (const [i, op] of refused.entries()) await expect(op(), String(i)).rejects.toMatchObject({ code: 'EROFS' });
    const set = await runCode('setfattr', ['-n', 'user.x', '-v', '1', p('files/hello.txt')]);
    expect(set.code).not.toBe(0);
    expect(set.stderr).toMatch(/Read-only file system/);
    const mk = await runCode('mkfifo', [p('run/newfifo')]);
    expect(mk.stderr).toMatch(/Read-only file system/);
    // still readable afterwards
    expect(await fs.promises.readFile(p('files/hello.txt'), 'utf8')).toBe('hello world\n');
  });

  it('xattrs: none listed, no tool complains; a named one is "not supported" (ENOSYS once, then the kernel answers)', async () => {
    for (const p of ['files/hello.txt', 'files', 'links/absolute', '']) {
      const dump = await runCode('getfattr', ['-h', '-d', '-m', '-', path.join(mnt, p)]);
      expect(dump, p).toMatchObject({ code: 0, stdout: '', stderr: '' });
    }
    const one = await runCode('getfattr', ['-n', 'user.nope', path.join(mnt, 'files/hello.txt')]);
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/Operation not supported/);
    const ls = await runCode('ls', ['-laR', mnt]);
    expect(ls.code).toBe(0);
    expect(ls.stderr).toBe('');
  });

  it('unmounts cleanly on SIGTERM', async () => {
    const extra = await mount('every-sigterm', [{ flist }]);
    expect(fs.readdirSync(extra.mountpoint)).toContain('files');
    extra.child.kill('SIGTERM');
    const code = await new Promise((resolve) => extra.child.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(extra.mountpoint);
  });
});

/** Records what the filesystem asks of its block source; chosen blocks fail or never answer. */
class RecordingBlocks implements BlockSource {
  readonly calls: string[] = [];
  readonly pins = new Map<string, number>();
  readonly fail = new Set<string>();
  readonly hang = new Set<string>();

  constructor(private readonly inner: BlockSource) {}

  block(ref: BlockRef): Promise<Buffer> {
    const id = ref.id.toString('hex');
    this.calls.push(`block ${id}`);
    if (this.fail.has(id)) return Promise.reject(new Error(`block ${id} is gone`));
    if (this.hang.has(id)) return new Promise(() => undefined);
    return this.inner.block(ref);
  }

  /** Recorded as the block it reads from. */
  async range(ref: BlockRef, start: number, end: number): Promise<Buffer> {
    return (await this.block(ref)).subarray(start, end);
  }

  prefetch(refs: BlockRef[]): void {
    this.calls.push(`prefetch ${refs.map((r) => r.id.toString('hex')).join(' ')}`);
  }

  pin(refs: BlockRef[]): void {
    for (const r of refs) this.pins.set(r.id.toString('hex'), (this.pins.get(r.id.toString('hex')) ?? 0) + 1);
  }

  unpin(refs: BlockRef[]): void {
    for (const r of refs) {
      const id = r.id.toString('hex');
      const n = (this.pins.get(id) ?? 0) - 1;
      if (n > 0) this.pins.set(id, n);
      else this.pins.delete(id);
    }
  }
}

describe('the FUSE operations in-process (no mount): blocks, read-ahead, pins, errors', () => {
  const entries = everyTypeEntries().filter((e) => ['files', 'files/multi-block.bin', 'files/hello.txt', 'links', 'links/absolute'].includes(e.path));
  const multi = entries.find((e) => e.path === 'files/multi-block.bin')!.content!;
  let rofs: ReadOnlyFs;
  let blocks: RecordingBlocks;
  let ids: string[];
  let close: () => Promise<void>;
  const logged: string[] = [];
  // fuse-native style callbacks → promises of the callback's arguments
  const call = <R extends unknown[]>(fn: ((...a: never[]) => void) | undefined, ...args: unknown[]): Promise<R> =>
    new Promise((resolve) => (fn as (...a: unknown[]) => void)(...args, (...res: unknown[]) => resolve(res as R)));
  const read = async (fh: number, pos: number, len: number): Promise<number | Buffer> => {
    const buf = Buffer.alloc(len);
    const [n] = await call<[number]>(rofs.ops.read, '/files/multi-block.bin', fh, buf, len, pos);
    return n < 0 ? n : buf.subarray(0, n);
  };
  const open = async (p = '/files/multi-block.bin', flags = 0): Promise<number> => {
    const [err, fh] = await call<[number, number]>(rofs.ops.open, p, flags);
    if (err) throw new Error(`open ${p}: ${err}`);
    return fh;
  };

  beforeAll(async () => {
    const flist = await buildFlist('ops', entries);
    const reader = await openFlist(flist);
    const store = await openStore(`dir://${path.join(tmp, 'ops-blocks')}`);
    blocks = new RecordingBlocks(bindCodec(new DirectBlocks(store, 1), reader.format));
    ids = reader.stat('files/multi-block.bin')!.blocks!.map((b) => b.id.toString('hex'));
    rofs = new ReadOnlyFs([{ reader, blocks }], { mountpoint: path.join(tmp, 'never-mounted'), readTimeoutMs: 300, log: (l) => logged.push(l) });
    close = async () => {
      reader.close();
      await store.close();
    };
  });
  afterAll(async () => close?.());

  it('open: write flags → EROFS, directories → EISDIR, missing → ENOENT; an open file\'s blocks are pinned until release', async () => {
    const O_WRONLY = 1;
    const O_RDWR = 2;
    const O_TRUNC = 0o1000;
    const O_APPEND = 0o2000;
    for (const f of [O_WRONLY, O_RDWR, O_TRUNC, O_APPEND]) expect(await call(rofs.ops.open, '/files/hello.txt', f)).toEqual([Fuse.EROFS]);
    expect(await call(rofs.ops.open, '/files', 0)).toEqual([Fuse.EISDIR]);
    expect(await call(rofs.ops.open, '/nope', 0)).toEqual([Fuse.ENOENT]);
    const a = await open();
    const b = await open();
    expect(a).not.toBe(b);
    expect(Object.fromEntries(blocks.pins)).toEqual(Object.fromEntries(ids.map((id) => [id, 2])));
    await call(rofs.ops.release, '/files/multi-block.bin', a);
    expect([...blocks.pins.values()]).toEqual([1, 1, 1, 1]);
    await call(rofs.ops.release, '/files/multi-block.bin', b);
    expect(blocks.pins.size).toBe(0);
    expect(rofs.stats().openFiles).toBe(0);
  });

  it('a read asks for exactly the blocks it touches; a sequential reader gets the next two hinted once per block', async () => {
    const fh = await open();
    blocks.calls.length = 0;
    expect(await read(fh, 1000 + 2 * BLOCK, 10)).toEqual(multi.subarray(1000 + 2 * BLOCK, 1010 + 2 * BLOCK));
    expect(blocks.calls).toEqual([`block ${ids[2]}`]); // a random read: no hint
    await call(rofs.ops.release, '', fh);

    const seq = await open();
    blocks.calls.length = 0;
    const chunks: Buffer[] = [];
    for (let pos = 0; pos < multi.length; pos += 128 * 1024) chunks.push((await read(seq, pos, 128 * 1024)) as Buffer);
    expect(Buffer.concat(chunks).equals(multi)).toBe(true);
    expect(blocks.calls.filter((c) => c.startsWith('prefetch'))).toEqual([
      `prefetch ${ids[1]} ${ids[2]}`, `prefetch ${ids[2]} ${ids[3]}`, `prefetch ${ids[3]}`,
    ]);
    // a read across a block edge needs both blocks
    blocks.calls.length = 0;
    expect(await read(seq, BLOCK - 2, 4)).toEqual(multi.subarray(BLOCK - 2, BLOCK + 2));
    expect(blocks.calls).toEqual([`block ${ids[0]}`, `block ${ids[1]}`]);
    expect(await read(seq, multi.length, 10)).toEqual(Buffer.alloc(0));
    await call(rofs.ops.release, '', seq);
  });

  it('a block that fails or never comes → EIO for that read only, logged; other reads go on', async () => {
    const fh = await open();
    const errorsBefore = rofs.stats().readErrors;
    blocks.fail.add(ids[1]);
    blocks.hang.add(ids[3]);
    try {
      expect(await read(fh, BLOCK + 1, 100)).toBe(Fuse.EIO);
      expect(await read(fh, BLOCK - 10, 20)).toBe(Fuse.EIO); // blocks 0 and 1
      expect(await read(fh, 0, 100)).toEqual(multi.subarray(0, 100));
      const t0 = Date.now();
      expect(await read(fh, 3 * BLOCK, 5)).toBe(Fuse.EIO);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(rofs.stats().readErrors - errorsBefore).toBe(3);
      expect(logged.filter((l) => /read of \/files\/multi-block.bin failed \(block 1\): block [0-9a-f]+ is gone/.test(l))).toHaveLength(2);
      expect(logged.join('\n')).toMatch(/read of \/files\/multi-block.bin failed \(block 3\): no answer within 300 ms/);
    } finally {
      blocks.fail.clear();
      blocks.hang.clear();
      await call(rofs.ops.release, '', fh);
    }
  });

  it('metadata answers: access, readlink, getattr of missing paths, xattrs, writes', async () => {
    expect(await call(rofs.ops.access, '/files/hello.txt', 4)).toEqual([0]);
    expect(await call(rofs.ops.access, '/files/hello.txt', 2)).toEqual([Fuse.EROFS]);
    expect(await call(rofs.ops.access, '/nope', 0)).toEqual([Fuse.ENOENT]);
    expect(await call(rofs.ops.readlink, '/links/absolute')).toEqual([0, '/etc/hostname']);
    expect(await call(rofs.ops.readlink, '/files/hello.txt')).toEqual([Fuse.EINVAL]);
    expect(await call(rofs.ops.getattr, '/files/hello.txt/below-a-file')).toEqual([Fuse.ENOENT]);
    expect(rofs.ops.getxattr).toBeUndefined(); // ENOSYS from libfuse: the kernel stops asking
    expect(await call(rofs.ops.listxattr, '/files/hello.txt')).toEqual([0, []]);
    const spec = new ReadOnlyFs(rofs.layers, { mountpoint: path.join(tmp, 'never-mounted'), xattrs: 'enodata' });
    expect(await call(spec.ops.getxattr, '/files/hello.txt', 'user.x', 0)).toEqual([Fuse.ENODATA]);
    expect(await call(rofs.ops.mkdir, '/x', 0o755)).toEqual([Fuse.EROFS]);
    expect(await call(rofs.ops.write, '/files/hello.txt', 1, Buffer.alloc(1), 1, 0)).toEqual([Fuse.EROFS]);
    const [err, st] = await call<[number, { mode: number; nlink: number; ino: number }]>(rofs.ops.getattr, '/');
    expect([err, st.ino, st.nlink]).toEqual([0, 1, 4]); // 2 + files/ and links/
  });
});

describe('a socket (only a directory build can hold one)', () => {
  it('is listed as a socket', async () => {
    const src = path.join(tmp, 'sock-src');
    fs.mkdirSync(src);
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(path.join(src, 'control.sock'), resolve));
    const storeUrl = `dir://${path.join(tmp, 'sock-blocks')}`;
    const store = await openStore(storeUrl);
    const { tree } = await buildFromDir(src, { store });
    await store.close();
    await new Promise((resolve) => srv.close(resolve));
    const flist = path.join(tmp, 'sock.flist');
    await writeFlist(tree, flist, { backend: backendFor(storeUrl) });
    const m = (await mount('sock', [{ flist }])).mountpoint;
    expect((await run('stat', ['-c', '%F %s', path.join(m, 'control.sock')])).stdout.trim()).toBe('socket 0');
    expect((await run('find', [m, '-type', 's', '-printf', '%P\\n'])).stdout).toBe('control.sock\n');
  });
});

describe('owners the flist only names (uid/gid -1)', () => {
  it('resolves names in the flist\'s own /etc/passwd and /etc/group, then the host\'s, else 1000', async () => {
    const f = (p: string, text: string): FixtureEntry => ({ path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from(text) });
    const storeUrl = `dir://${path.join(tmp, 'owners-blocks')}`;
    const store = await openStore(storeUrl);
    const { tree } = await buildFromTar(Readable.from([await writeTar([
      f('etc/passwd', 'alice:x:4321:4322::/home/alice:/bin/sh\ndaemon:x:555:555::/:/bin/false\n'),
      f('etc/group', 'alicegrp:x:4322:\n'),
      f('owned/alice', 'a'), f('owned/daemon', 'd'), f('owned/nobody-knows', 'n'), f('owned/numeric', 'x'),
    ])]), { store });
    await store.close();
    const named = (p: string, uname: string, gname: string): void => Object.assign(tree.get(p)!.entry, { uid: -1, gid: -1, uname, gname });
    named('owned/alice', 'alice', 'alicegrp');
    named('owned/daemon', 'daemon', 'daemon'); // user in the flist (555), group only on the host
    named('owned/nobody-knows', 'no-such-user-g8os', 'no-such-group-g8os');
    const flist = path.join(tmp, 'owners.flist');
    await writeFlist(tree, flist, { backend: backendFor(storeUrl) });
    const hostDaemonGid = Number(/^daemon:[^:]*:(\d+):/m.exec(fs.readFileSync('/etc/group', 'utf8'))![1]);

    const m = (await mount('owners', [{ flist }])).mountpoint;
    const ids = (p: string): number[] => {
      const st = fs.statSync(path.join(m, p));
      return [st.uid, st.gid];
    };
    expect(ids('owned/alice')).toEqual([4321, 4322]);
    expect(ids('owned/daemon')).toEqual([555, hostDaemonGid]);
    expect(ids('owned/nobody-knows')).toEqual([1000, 1000]);
    expect(ids('owned/numeric')).toEqual([0, 0]);
  });
});

describe('layering (g8ufs.md §4.1: the last flist is on top)', () => {
  const dir = (p: string, mode = 0o755, uid = 0): FixtureEntry => ({ path: p, type: 'dir', mode, uid, gid: uid, uname: '', gname: '', mtime: T0 });
  const file = (p: string, text: string): FixtureEntry => ({ path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from(text) });
  let l0: string;
  let l1: string;
  let l2: string;

  beforeAll(async () => {
    l0 = await buildFlist('layer0', [
      dir('a'), file('a/x.txt', 'x from L0'), file('a/only0.txt', 'only0'),
      dir('d'), file('d/inner.txt', 'inner0'),
      file('shared.txt', 'shared L0'),
      file('f', 'f is a file in L0'),
      dir('keep'), file('keep/k0', 'k0'),
      dir('m'), file('m/m0', 'm0'),
    ]);
    l1 = await buildFlist('layer1', [
      dir('a', 0o700, 1000), file('a/x.txt', 'x from L1'), file('a/only1.txt', 'only1'),
      file('d', 'd is a file in L1'),
      file('shared.txt', 'shared L1'),
      dir('f'), file('f/inside', 'f is a dir in L1'),
      file('m', 'm is a file in L1'),
    ]);
    l2 = await buildFlist('layer2', [
      dir('a', 0o711, 33), file('a/only2.txt', 'only2'),
      file('shared.txt', 'shared L2'),
      dir('m'), file('m/m2', 'm2'),
    ]);
  });

  const ls = (p: string): string[] => fs.readdirSync(p).sort();
  const cat = (p: string): string => fs.readFileSync(p, 'utf8');

  it('two flists: files from the top, directory listings merged, attributes of the top directory', async () => {
    const m = (await mount('two', [{ flist: l0 }, { flist: l1 }])).mountpoint;
    expect(ls(m)).toEqual(['a', 'd', 'f', 'keep', 'm', 'shared.txt']);
    expect(ls(path.join(m, 'a'))).toEqual(['only0.txt', 'only1.txt', 'x.txt']);
    expect(cat(path.join(m, 'a/x.txt'))).toBe('x from L1');
    expect(cat(path.join(m, 'a/only0.txt'))).toBe('only0'); // blocks from the lower flist's store
    expect(cat(path.join(m, 'shared.txt'))).toBe('shared L1');
    const a = fs.statSync(path.join(m, 'a'));
    expect([a.mode & 0o7777, a.uid]).toEqual([0o700, 1000]);
    // a directory below and a file above is a file; a file below and a directory above is a directory
    expect(fs.statSync(path.join(m, 'd')).isFile()).toBe(true);
    expect(cat(path.join(m, 'd'))).toBe('d is a file in L1');
    expect(() => fs.statSync(path.join(m, 'd/inner.txt'))).toThrow(/ENOTDIR/);
    expect(ls(path.join(m, 'f'))).toEqual(['inside']);
    expect(cat(path.join(m, 'keep/k0'))).toBe('k0');
    // nlink counts merged sub-directories (a, f, keep are directories at the root)
    expect(fs.statSync(m).nlink).toBe(5);
    const inos = ['a', 'a/x.txt', 'a/only0.txt', 'a/only1.txt', 'd', 'f', 'f/inside', 'keep', 'keep/k0', 'm', 'shared.txt'].map((p) => fs.lstatSync(path.join(m, p)).ino);
    expect(new Set(inos).size).toBe(inos.length);
  });

  it('three flists: the top one wins; a file in the middle cuts off the directory below it', async () => {
    const m = (await mount('three', [{ flist: l0 }, { flist: l1 }, { flist: l2 }])).mountpoint;
    expect(cat(path.join(m, 'shared.txt'))).toBe('shared L2');
    expect(ls(path.join(m, 'a'))).toEqual(['only0.txt', 'only1.txt', 'only2.txt', 'x.txt']);
    expect(cat(path.join(m, 'a/x.txt'))).toBe('x from L1');
    const a = fs.statSync(path.join(m, 'a'));
    expect([a.mode & 0o7777, a.uid]).toEqual([0o711, 33]);
    // m: dir (L0) / file (L1) / dir (L2) → L2's directory only, as overlayfs would show it
    expect(ls(path.join(m, 'm'))).toEqual(['m2']);
    expect(cat(path.join(m, 'd'))).toBe('d is a file in L1');
    const { stdout } = await run('find', [m, '-type', 'f', '-printf', '%P\\n']);
    expect(stdout.split('\n').filter(Boolean).sort()).toEqual(
      ['a/only0.txt', 'a/only1.txt', 'a/only2.txt', 'a/x.txt', 'd', 'f/inside', 'keep/k0', 'm/m2', 'shared.txt'],
    );
  });
});

describe('the real funk flist with its blocks unreachable', () => {
  let closedPort: number;
  beforeAll(async () => {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    closedPort = (srv.address() as net.AddressInfo).port;
    await new Promise((resolve) => srv.close(resolve));
  });

  it('lists the whole tree with the flist\'s metadata; reads fail with EIO, fast', async () => {
    const c = await mount('funk', [{ flist: FUNK, store: 'dir:///nonexistent' }]);
    const m = c.mountpoint;
    const count = async (t: string): Promise<number> => (await run('find', [m, '-type', t])).stdout.split('\n').filter(Boolean).length;
    expect(await count('d')).toBe(6881);
    expect(await count('f')).toBe(30370);
    expect(await count('l')).toBe(830);

    // every entry's metadata equals the flist's
    const tree = await findTree(m);
    const r = await openFlist(FUNK);
    let n = 0;
    try {
      for (const e of r.walk()) {
        n++;
        const got = tree.get(e.path);
        const want = {
          mode: (e.mode & 0o7777).toString(8), uid: e.uid, gid: e.gid,
          size: e.kind === 'dir' ? 4096 : e.size, mtime: e.mtime,
          type: { dir: 'd', file: 'f', link: 'l', special: '?' }[e.kind], target: e.target ?? '',
        };
        if (!got || JSON.stringify(got) !== JSON.stringify(want)) expect(got, e.path).toEqual(want);
      }
    } finally {
      r.close();
    }
    expect(tree.size).toBe(n);
    expect((await run('stat', ['-f', '-c', '%b %c', m])).stdout.trim()).toBe(`${Math.ceil(956_239_538 / 4096)} ${n}`);

    const t0 = Date.now();
    await expect(fs.promises.readFile(path.join(m, 'init.sh'))).rejects.toMatchObject({ code: 'EIO' });
    expect(Date.now() - t0).toBeLessThan(2000);
    // the mount stays healthy
    expect(fs.readdirSync(path.join(m, 'etc')).length).toBeGreaterThan(10);
    await expect(fs.promises.readFile(path.join(m, '.startup.toml'))).rejects.toMatchObject({ code: 'EIO' });
    expect(c.stderr()).toMatch(/read of \/init.sh failed \(block 0\): block [0-9a-f]{32} .* missing from dir:\/\/\/nonexistent/);
    expect((await c.stats()).stats.readErrors).toBeGreaterThanOrEqual(2);
  });

  it('a store that refuses connections: EIO after the store\'s retries, metadata keeps answering meanwhile', async () => {
    const c = await mount('funk-http', [{ flist: FUNK, store: `http://127.0.0.1:${closedPort}` }]);
    const m = c.mountpoint;
    const t0 = Date.now();
    const reading = fs.promises.readFile(path.join(m, 'init.sh')).then(
      () => 'read',
      (e: NodeJS.ErrnoException) => e.code,
    );
    // while the read waits on the store, other requests are served
    await new Promise((resolve) => setTimeout(resolve, 200));
    const t1 = Date.now();
    expect(fs.readdirSync(path.join(m, 'usr/bin')).length).toBeGreaterThan(100);
    expect(Date.now() - t1).toBeLessThan(1000);
    expect(await reading).toBe('EIO');
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});
