// The generation-2 format end to end: known answers, the real fixture, tarball → flist →
// bytes round trips, the CLI verbs, and bad input.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/cli/util';
import { errnoName, exitCode, G8osError, httpStatus, kindOf } from '../src/errors';
import { FlistError } from '../src/flist/archive';
import { BuildError, buildFromTar } from '../src/flist/builder';
import { CapnpError, Message } from '../src/flist/capnp';
import { decodeBlock, encodeBlock } from '../src/flist/codec';
import { fileContent, MissingBlockError } from '../src/flist/content';
import { blake2b128, dirKey, hashReady } from '../src/flist/hash';
import { openGen2, ROOT_KEY } from '../src/flist/reader';
import { decodeAci, decodeDir, encodeAci, encodeDir } from '../src/flist/schema';
import { S_IFMT, type Entry } from '../src/flist/types';
import { aciKey, writeFlist } from '../src/flist/writer';
import { xxteaDecrypt, xxteaEncrypt } from '../src/flist/xxtea';
import { openStore } from '../src/store';
import type { BlockStore } from '../src/store/types';
import { FUNK, g8os } from './helpers/cli';
import { startRedis } from './helpers/redis';
import { badTarballs, everyTypeEntries, writeTar, type FixtureEntry } from './helpers/tarballs';

let tmp: string;
beforeAll(async () => {
  await hashReady();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-flist-test-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('known answers (flist-format.md §4, §8.4, §12)', () => {
  it('directory keys are blake2b-128 of the relative path', () => {
    expect(dirKey('')).toBe('cae66941d9efbd404e4d88758ea67670');
    expect(dirKey('bin')).toBe('9385d23818077a26310b147ebd80bb7b');
    expect(dirKey('etc')).toBe('9308da158ed557db704826796bca9f68');
    expect(dirKey('usr')).toBe('577f16f80745b1ed8114271d9f365991');
    expect(dirKey('usr/bin')).toBe('46c939da162118cf47886fe40f8b5600');
    expect(blake2b128(Buffer.alloc(524288)).toString('hex')).toBe('ee248c578df8ada5c3490485892f89fd');
  });

  it('XXTEA matches the public test vector and round-trips', () => {
    const key = Buffer.alloc(16);
    Buffer.from('1234567890').copy(key);
    const plain = Buffer.from('Hello World! 你好，中国！');
    const cipher = xxteaEncrypt(plain, key);
    expect(cipher.toString('base64')).toBe('QncB1C0rHQoZ1eRiPM4dsZtRi9pNrp7sqvX76cFXvrrIHXL6');
    expect(xxteaDecrypt(cipher, key)).toEqual(plain);
    // a key with NUL bytes inside is used whole, never truncated
    const nulKey = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    expect(xxteaDecrypt(xxteaEncrypt(plain, nulKey), nulKey)).toEqual(plain);
    expect(xxteaDecrypt(cipher, nulKey)).toBeNull();
  });

  it('the chunk codec reproduces the spec vector for "hello world\\n"', () => {
    const b = encodeBlock(Buffer.from('hello world\n'));
    expect(b.key.toString('hex')).toBe('c0cdb4699cdaa9eea4c563a934f1d52b');
    expect(b.cipher.toString('hex')).toBe('893f00077aad00982c3024bda3cbe527b9e1ecb0');
    expect(b.id.toString('hex')).toBe('a5147f6e7cac3a7076f942cb5e00d896');
    expect(decodeBlock(b.cipher, b).toString()).toBe('hello world\n');
  });

  it('a corrupt or mismatched block is an error, never wrong bytes', () => {
    const b = encodeBlock(Buffer.from('some content that is long enough '.repeat(40)));
    const flipped = Buffer.from(b.cipher);
    flipped[10] ^= 1;
    expect(() => decodeBlock(flipped, b)).toThrow(/corrupt block .*do not hash to the block id/);
    // right id but wrong key: the length check or the key hash catches it
    const other = encodeBlock(Buffer.from('other'));
    expect(() => decodeBlock(b.cipher, { id: b.id, key: other.key })).toThrow(/corrupt block/);
  });

  it('ACI values are byte-identical to the real fixture root ACI', () => {
    const raw = encodeAci({ uname: 'root', gname: 'root', mode: 0o755, uid: 0, gid: 0 });
    expect(raw.length).toBe(80);
    expect(raw.subarray(0, 16).toString('hex')).toBe('000000000900000000000000' + '03000300');
    expect(raw.subarray(16, 40).toString('hex')).toBe('ed01000000000000' + 'ff'.repeat(16));
    expect(decodeAci(raw)).toEqual({ uname: 'root', gname: 'root', mode: 0o755, uid: 0, gid: 0 });
    const unknown = decodeAci(encodeAci({ uname: 'x', gname: 'y', mode: 0o644, uid: -1, gid: -1 }));
    expect([unknown.uid, unknown.gid]).toEqual([-1, -1]);
  });

  it('the ACI key recipe does not collide on modes that upstream confused', () => {
    const k = (mode: number): string => aciKey({ uname: 'root', gname: 'root', mode, uid: 0, gid: 0 });
    expect(new Set([k(0o644), k(0o744), k(0o444), k(0o700), k(0o600)]).size).toBe(5);
  });
});

describe('the real threefoldtech-funk flist', () => {
  it('g8os flist stats --json prints exactly the README counts', async () => {
    const r = await g8os(['flist', 'stats', FUNK, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      dirs: 6881, files: 30370, symlinks: 830, specials: 0, blocks: 30851, bytes: 956239538,
    });
  });

  it('reads the root, selected entries, large multi-segment directories and every ACI', async () => {
    const r = await openGen2(FUNK);
    try {
      expect(r.list('/').map((e) => e.name).join(' ')).toBe(
        'app bin dev etc home lib libexec media mnt opt proc root run sbin srv sys tmp usr var .dockerenv .startup.toml init init.sh',
      );
      const root = r.stat('/')!;
      expect([root.mode & 0o7777, root.uid, root.gid, root.mtime, root.ctime]).toEqual([0o755, 0, 0, 0, 0]);
      expect(r.stat('root')!.mode & 0o7777).toBe(0o700);
      expect(r.stat('tmp')!.mode & 0o7777).toBe(0o1777);
      expect(r.stat('bin')!.size).toBe(4096); // the stored 5234 is meaningless
      const startup = r.stat('.startup.toml')!;
      expect([startup.size, startup.mode & 0o7777, startup.mtime]).toEqual([741, 0o644, 1637086813]);
      expect(startup.blocks!.map((b) => [b.id.toString('hex'), b.key.toString('hex')])).toEqual([
        ['5284b29eb0ce46b9d61351426a7f7c31', '3f173d6126179a757883da87bf92202c'],
      ]);
      expect(r.stat('.dockerenv')!.blocks).toEqual([]);
      const usrBin = r.list('usr/bin');
      expect(usrBin.length).toBe(361);
      expect(usrBin[0].name).toBe('__pycache__');
      expect(r.stat('usr/bin/2to3')).toMatchObject({ kind: 'link', target: '2to3-3.7', size: 8 });
      expect(r.stat('usr/bin/[')).toMatchObject({ kind: 'link', target: '/bin/busybox', size: 12 });
      const lib = r.stat('usr/lib/python3.7/config-3.7m-x86_64-linux-gnu/libpython3.7m.a')!;
      expect([lib.size, lib.blocks!.length]).toEqual([45937690, 88]);
      // 23-segment value with 516 children, and a value with double-far pointers
      expect(r.list('usr/lib/python3.7/__pycache__').length).toBe(516);
      expect(r.list('app/api/funkwhale_api/common').length).toBeGreaterThan(0);
      expect(r.metadata()).toEqual({});

      const db = r.rawDb();
      const acis = db.prepare('SELECT key, value FROM entries WHERE length(key) = 16').all() as Array<{ key: string; value: Buffer }>;
      expect(acis.length).toBe(14);
      const byKey = Object.fromEntries(acis.map((a) => [a.key, decodeAci(a.value)]));
      expect(byKey['263035641a9e2fb7']).toEqual({ uname: 'root', gname: 'www-data', mode: 0o755, uid: 0, gid: 33 });
      expect(byKey['d2cf75f463e3d79c']).toEqual({ uname: 'systemd-timesync', gname: 'systemd-journal', mode: 0o750, uid: 100, gid: 101 });
      expect(byKey['12902c8523c61727']).toEqual({ uname: '70', gname: '70', mode: 0o750, uid: 70, gid: 70 });
    } finally {
      r.close();
    }
  });

  it('every directory row decodes, is reachable, links back to its parent, and re-encodes to an equal value', async () => {
    const r = await openGen2(FUNK);
    try {
      const rows = r.rawDb().prepare('SELECT key, value FROM entries WHERE length(key) = 32').all() as Array<{ key: string; value: Buffer }>;
      expect(rows.length).toBe(6881);
      let dirsWalked = 0;
      for (const e of r.walk()) if (e.kind === 'dir') dirsWalked++;
      expect(dirsWalked).toBe(6881);
      for (const row of rows) {
        const d = decodeDir(row.value);
        expect(dirKey(d.location)).toBe(row.key);
        const parentLoc = d.location.includes('/') ? d.location.slice(0, d.location.lastIndexOf('/')) : '';
        expect(d.parent).toBe(row.key === ROOT_KEY ? ROOT_KEY : dirKey(parentLoc));
        // our single-segment re-encoding decodes to the same directory
        expect(decodeDir(encodeDir(d))).toEqual(d);
      }
    } finally {
      r.close();
    }
  });
});

/** Builds an flist from tar bytes into a dir:// store; returns its path and the store. */
async function buildTar(tarBytes: Buffer, name: string, storeUrl?: string): Promise<{ flist: string; store: BlockStore; stats: Awaited<ReturnType<typeof buildFromTar>>['stats'] }> {
  const store = await openStore(storeUrl ?? `dir://${path.join(tmp, `${name}-blocks`)}`);
  const { tree, stats } = await buildFromTar(Readable.from([tarBytes]), { store });
  const flist = path.join(tmp, `${name}.flist`);
  await writeFlist(tree, flist);
  return { flist, store, stats };
}

async function readAll(store: BlockStore, e: Entry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of fileContent(store, e, 'gen2')) parts.push(c);
  return Buffer.concat(parts);
}

const KIND: Record<FixtureEntry['type'], string> = {
  file: 'file', hardlink: 'file', dir: 'dir', symlink: 'link', char: 'special', block: 'special', fifo: 'special',
};

function expectSameEntry(got: Entry | undefined, want: FixtureEntry): void {
  expect(got, want.path).toBeDefined();
  const e = got!;
  expect(e.kind, want.path).toBe(KIND[want.type]);
  expect(e.mode & 0o7777, want.path).toBe(want.type === 'symlink' ? 0o777 : want.mode);
  expect([e.uid, e.gid], want.path).toEqual([want.uid, want.gid]);
  expect(e.uname, want.path).toBe(want.uname || String(want.uid));
  expect(e.gname, want.path).toBe(want.gname || String(want.gid));
  expect(e.mtime, want.path).toBe(want.mtime);
  if (want.type === 'symlink') expect(e.target, want.path).toBe(want.linkname);
  if (want.type === 'char' || want.type === 'block') {
    expect(e.special).toBe(want.type);
    expect(e.rdev, want.path).toEqual({ major: want.devmajor, minor: want.devminor });
  }
  if (want.type === 'fifo') expect(e.special).toBe('fifo');
}

describe('tarball → flist → bytes', () => {
  for (const gzip of [false, true]) {
    it(`every file type round-trips from a ${gzip ? 'tar.gz' : 'tar'} (bytes, mode, owner, mtime, link targets, devices)`, async () => {
      const entries = everyTypeEntries();
      const { flist, store, stats } = await buildTar(await writeTar(entries, { gzip }), `every-${gzip}`);
      const r = await openGen2(flist);
      try {
        const byPath = new Map(entries.map((e) => [e.path, e]));
        for (const want of entries) {
          const got = r.stat(want.path);
          expectSameEntry(got, want);
          if (want.type === 'file') expect((await readAll(store, got!)).equals(want.content!), want.path).toBe(true);
        }
        // the hard link is its own file with the same blocks
        const hl = r.stat('files/hello-hardlink.txt')!;
        expect(hl.blocks).toEqual(r.stat('files/hello.txt')!.blocks);
        expect((await readAll(store, hl)).toString()).toBe('hello world\n');
        // identical contents share blocks; empty files have none
        expect(r.stat('files/dup-a.bin')!.blocks).toEqual(r.stat('files/dup-b.bin')!.blocks);
        expect(r.stat('files/empty')!.blocks).toEqual([]);
        expect(r.stat('files/multi-block.bin')!.blocks!.length).toBe(4);
        // implied parents exist as 0755 root directories
        for (const p of ['implied', 'implied/a', 'implied/a/b']) {
          expect(r.stat(p)).toMatchObject({ kind: 'dir', uid: 0, gid: 0 });
          expect(r.stat(p)!.mode & 0o7777).toBe(0o755);
        }
        // every walked path is a tar member or an implied parent
        for (const e of r.walk()) if (e.path && !byPath.has(e.path)) expect(e.kind, e.path).toBe('dir');
        expect(stats.regular).toBe(entries.filter((e) => e.type === 'file' || e.type === 'hardlink').length);
        expect(stats.hardlinks).toBe(1);
        expect(stats.fullsize).toBe(r.stats().bytes);
      } finally {
        r.close();
        await store.close();
      }
    });
  }

  it('writes directories in the reference order (sub-directories first, byte order) with consistent keys', async () => {
    const { flist, store } = await buildTar(await writeTar(everyTypeEntries().filter((e) => e.type !== 'hardlink'), { order: 'shuffled' }), 'order');
    await store.close();
    const r = await openGen2(flist);
    try {
      const rows = r.rawDb().prepare('SELECT key, value FROM entries WHERE length(key) = 32').all() as Array<{ key: string; value: Buffer }>;
      for (const row of rows) {
        const d = decodeDir(row.value);
        expect(dirKey(d.location)).toBe(row.key);
        const names = d.contents.map((c) => c.name);
        const dirs = d.contents.filter((c) => c.kind === 'dir').map((c) => c.name);
        const rest = d.contents.filter((c) => c.kind !== 'dir').map((c) => c.name);
        const sorted = (a: string[]): string[] => [...a].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        expect(names).toEqual([...sorted(dirs), ...sorted(rest)]);
        for (const c of d.contents) if (c.kind === 'dir') expect(c.subKey).toBe(dirKey(d.location ? `${d.location}/${c.name}` : c.name));
        for (const c of d.contents) if (c.kind === 'file') expect(c.blocks!.length).toBe(Math.ceil(c.size / 524288));
      }
      expect(decodeDir(r.rawDb().prepare('SELECT value FROM entries WHERE key = ?').pluck().get(ROOT_KEY) as Buffer).parent).toBe(ROOT_KEY);
      // tar.gz members "./" then "./flistdb.sqlite3"
      const tarBytes = zlib.gunzipSync(fs.readFileSync(flist));
      expect(tarBytes.subarray(0, 100).toString('latin1').replace(/\0+$/, '')).toBe('./');
      expect(tarBytes.subarray(512, 612).toString('latin1').replace(/\0+$/, '')).toBe('./flistdb.sqlite3');
    } finally {
      r.close();
    }
  });

  it('a second build of the same tarball writes no new blocks', async () => {
    const bytes = await writeTar(everyTypeEntries());
    const url = `dir://${path.join(tmp, 'dedup-blocks')}`;
    const first = await buildTar(bytes, 'dedup1', url);
    await first.store.close();
    expect(first.stats.uploaded_chunks).toBeGreaterThan(0);
    expect(first.stats.uploaded_chunks).toBeLessThan(first.stats.blocks); // dup-a/dup-b and the hard link share
    const second = await buildTar(bytes, 'dedup2', url);
    await second.store.close();
    expect(second.stats.uploaded_chunks).toBe(0);
    expect(second.stats.uploaded_bytes).toBe(0);
  });
});

describe('g8os flist CLI', () => {
  let src: string;
  let flist: string;
  let store: string;
  beforeAll(async () => {
    src = path.join(tmp, 'cli-src');
    fs.mkdirSync(path.join(src, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(src, 'etc/hostname'), 'node1\n');
    fs.writeFileSync(path.join(src, 'big.bin'), Buffer.alloc(1_200_000, 7));
    fs.symlinkSync('etc/hostname', path.join(src, 'hn'));
    fs.linkSync(path.join(src, 'etc/hostname'), path.join(src, 'hardlink'));
    fs.chmodSync(path.join(src, 'etc'), 0o750);
    flist = path.join(tmp, 'cli.flist');
    store = `dir://${path.join(tmp, 'cli-blocks')}`;
    const r = await g8os(['flist', 'create', src, '-o', flist, '--store', store, '--meta', 'color=blue']);
    expect(r.stderr).toMatch(/3 files, 2 dirs, 1 symlinks, 0 specials, 1\.1 MiB .* 5 blocks, 3 new/);
    expect(r.code).toBe(0);
  });

  it('ls, find, stat and stats describe the directory that was packed', async () => {
    const ls = await g8os(['flist', 'ls', flist, '/', '--json']);
    expect(JSON.parse(ls.stdout).map((e: { name: string }) => e.name)).toEqual(['etc', 'big.bin', 'hardlink', 'hn']);
    const plain = await g8os(['flist', 'ls', flist]);
    expect(plain.stdout).toMatch(/^drwxr-x--- .* etc$/m);
    expect(plain.stdout).toMatch(/^lrwxrwxrwx .* hn -> etc\/hostname$/m);
    const find = await g8os(['flist', 'find', flist]);
    expect(find.stdout.trim().split('\n')).toEqual(['/', '/etc', '/big.bin', '/hardlink', '/hn', '/etc/hostname']);
    const stat = await g8os(['flist', 'stat', flist, 'etc/hostname', '--json']);
    const st = JSON.parse(stat.stdout);
    expect(st).toMatchObject({ path: '/etc/hostname', type: 'file', size: 6, uid: 0 });
    expect(st.mtime).toBe(Math.floor(fs.statSync(path.join(src, 'etc/hostname')).mtimeMs / 1000));
    const stats = await g8os(['flist', 'stats', flist, '--json']);
    expect(JSON.parse(stats.stdout)).toEqual({ dirs: 2, files: 3, symlinks: 1, specials: 0, blocks: 5, bytes: 1_200_012 });
  });

  it('cat streams the bytes back (store from --store or the backend metadata)', async () => {
    const a = await g8os(['flist', 'cat', flist, 'big.bin']);
    expect(a.code).toBe(0);
    expect(a.out.equals(Buffer.alloc(1_200_000, 7))).toBe(true);
    const b = await g8os(['flist', 'cat', flist, '/etc/hostname', '--store', store]);
    expect(b.stdout).toBe('node1\n');
  });

  it('cat follows symlinks inside the flist, and refuses directories and loops clearly', async () => {
    expect((await g8os(['flist', 'cat', flist, 'hn'])).stdout).toBe('node1\n');
    const dir = await g8os(['flist', 'cat', flist, 'etc']);
    expect([dir.code, dir.stderr]).toEqual([2, 'g8os: etc: not a regular file (dir)\n']);
    const loopSrc = path.join(tmp, 'loop-src');
    fs.mkdirSync(path.join(loopSrc, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(loopSrc, 'real'), 'real\n');
    fs.symlinkSync('/real', path.join(loopSrc, 'sub/abs')); // absolute: from the flist root, not the host's
    fs.symlinkSync('../sub/../real', path.join(loopSrc, 'sub/rel'));
    fs.symlinkSync('a', path.join(loopSrc, 'b'));
    fs.symlinkSync('b', path.join(loopSrc, 'a'));
    const out = path.join(tmp, 'loops.flist');
    expect((await g8os(['flist', 'create', loopSrc, '-o', out, '--store', store])).code).toBe(0);
    expect((await g8os(['flist', 'cat', out, 'sub/abs'])).stdout).toBe('real\n');
    expect((await g8os(['flist', 'cat', out, 'sub/rel'])).stdout).toBe('real\n');
    const loop = await g8os(['flist', 'cat', out, 'a']);
    expect([loop.code, loop.stderr]).toEqual([1, 'g8os: a: too many levels of symbolic links\n']);
  });

  it('metadata reads, sets and deletes keys, rewriting the flist atomically', async () => {
    const m = await g8os(['flist', 'metadata', flist, '--json']);
    const meta = JSON.parse(m.stdout);
    expect(meta.color).toBe('blue');
    expect(JSON.parse(meta.backend)).toMatchObject({ url: store });
    expect((await g8os(['flist', 'metadata', flist, 'entrypoint', '["/bin/sh"]'])).code).toBe(0);
    expect((await g8os(['flist', 'metadata', flist, 'entrypoint'])).stdout).toBe('["/bin/sh"]\n');
    expect((await g8os(['flist', 'metadata', flist, 'color', '-'])).code).toBe(0);
    const missing = await g8os(['flist', 'metadata', flist, 'color']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('g8os: cli.flist has no metadata key "color"\n'.replace('cli.flist', flist));
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('check finds every block, then reports a missing and a corrupt one', async () => {
    const copyDir = path.join(tmp, 'check-blocks');
    fs.cpSync(store.slice('dir://'.length), copyDir, { recursive: true });
    const ok = await g8os(['flist', 'check', flist, '--store', `dir://${copyDir}`, '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ blocks: 3, ok: 3, missing: 0, corrupt: 0 });
    // two of this flist's own blocks (the store also holds other tests' blocks)
    const all = JSON.parse((await g8os(['flist', 'find', flist, '--json'])).stdout) as Array<{ blocks?: Array<{ id: string }> }>;
    const ids = [...new Set(all.flatMap((e) => (e.blocks ?? []).map((b) => b.id)))];
    const files = ids.map((id) => `${id.slice(0, 2)}/${id.slice(2, 4)}/${id}`);
    fs.rmSync(path.join(copyDir, files[0]));
    const f1 = path.join(copyDir, files[1]);
    const bytes = fs.readFileSync(f1);
    bytes[0] ^= 0xff;
    fs.writeFileSync(f1, bytes);
    const bad = await g8os(['flist', 'check', flist, '--store', `dir://${copyDir}`]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('3 blocks: 1 ok, 1 missing, 1 corrupt\n');
    expect(bad.stderr).toMatch(/is missing from dir:\/\//);
    expect(bad.stderr).toMatch(/corrupt block/);
  });

  it('merge keeps the first flist on collisions and adds the rest', async () => {
    const other = path.join(tmp, 'merge-src');
    fs.mkdirSync(path.join(other, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(other, 'etc/hostname'), 'other\n');
    fs.writeFileSync(path.join(other, 'etc/extra'), 'extra\n');
    fs.writeFileSync(path.join(other, 'hn'), 'a file where the first has a symlink\n');
    const b = path.join(tmp, 'merge-b.flist');
    expect((await g8os(['flist', 'create', other, '-o', b, '--store', store])).code).toBe(0);
    const merged = path.join(tmp, 'merged.flist');
    const r = await g8os(['flist', 'merge', '-o', merged, flist, b]);
    expect(r.stderr).toBe('');
    expect((await g8os(['flist', 'cat', merged, 'etc/hostname'])).stdout).toBe('node1\n');
    expect((await g8os(['flist', 'cat', merged, 'etc/extra'])).stdout).toBe('extra\n');
    expect(JSON.parse((await g8os(['flist', 'stat', merged, 'hn', '--json'])).stdout).type).toBe('link');
  });

  it('--help works everywhere and bad usage is one line with exit 2', async () => {
    for (const args of [['--help'], ['flist', '--help'], ['flist', 'create', '--help'], ['flist', 'stats', '--help']]) {
      const r = await g8os(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: g8os/);
    }
    const missing = await g8os(['flist', 'create', src]);
    expect(missing.code).toBe(2);
    const nofile = await g8os(['flist', 'stats', path.join(tmp, 'nope.flist')]);
    expect(nofile.code).toBe(1);
    expect(nofile.stderr).toMatch(/^g8os: cannot open flist .*nope\.flist: ENOENT\n$/);
    const nopath = await g8os(['flist', 'stat', flist, 'no/such']);
    expect(nopath.stderr).toBe('g8os: no/such: no such file or directory in ' + flist + '\n');
  });

  it('builds into a real redis-server and reads the bytes back from it', async () => {
    const redis = await startRedis();
    try {
      const url = `${redis.url}/blocks`;
      const out = path.join(tmp, 'redis.flist');
      const r = await g8os(['flist', 'create', src, '-o', out, '--store', url, '--json']);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ regular: 3, blocks: 5, uploaded_chunks: 3 });
      expect((await g8os(['flist', 'cat', out, 'big.bin'])).out.equals(Buffer.alloc(1_200_000, 7))).toBe(true);
      expect((await g8os(['flist', 'check', out])).stdout).toBe('3 blocks: 3 ok, 0 missing, 0 corrupt\n');
    } finally {
      await redis.stop();
    }
  });

  it('a directory with device nodes, a fifo, a socket and hard links keeps them all', async () => {
    const dir = path.join(tmp, 'specials-src');
    fs.mkdirSync(dir);
    const { execFileSync } = await import('node:child_process');
    execFileSync('mknod', ['-m', '0640', path.join(dir, 'null'), 'c', '1', '3']);
    execFileSync('mknod', ['-m', '0660', path.join(dir, 'disk'), 'b', '259', '300']);
    execFileSync('mkfifo', ['-m', '0620', path.join(dir, 'fifo')]);
    const net = await import('node:net');
    const server = net.createServer().listen(path.join(dir, 'sock'));
    await new Promise((res) => server.once('listening', res));
    fs.writeFileSync(path.join(dir, 'a'), 'shared\n');
    fs.linkSync(path.join(dir, 'a'), path.join(dir, 'b'));
    fs.chownSync(path.join(dir, 'a'), 1234, 5678);
    // names come from the tree's own user database, not the host's
    fs.mkdirSync(path.join(dir, 'etc'));
    fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nalice:x:1234:5678::/home/alice:/bin/sh\n');
    fs.writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:\nstaff:x:5678:\n');
    try {
      const out = path.join(tmp, 'specials.flist');
      const r = await g8os(['flist', 'create', dir, '-o', out, '--store', store, '--json']);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ special: 4, regular: 4, hardlinks: 1, uploaded_chunks: 3 });
      const ls = JSON.parse((await g8os(['flist', 'ls', out, '--json'])).stdout) as Array<Record<string, unknown>>;
      const by = Object.fromEntries(ls.map((e) => [e.name, e]));
      expect(by.null).toMatchObject({ type: 'char', rdev: '1,3', mode: '0640' });
      expect(by.disk).toMatchObject({ type: 'block', rdev: '259,300', mode: '0660' });
      expect(by.fifo).toMatchObject({ type: 'fifo', mode: '0620' });
      expect(by.sock).toMatchObject({ type: 'socket' });
      expect(by.b).toMatchObject({ type: 'file', uid: 1234, gid: 5678, uname: 'alice', gname: 'staff', size: 7 });
      expect((await g8os(['flist', 'cat', out, 'b'])).stdout).toBe('shared\n');
    } finally {
      server.close();
    }
  });

  it('a flist URL that cannot be fetched is one clear line', async () => {
    const { freePort } = await import('./helpers/redis');
    const url = `http://127.0.0.1:${await freePort()}/alice/x.flist`;
    const r = await g8os(['flist', 'stats', url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`g8os: cannot download flist ${url}: ECONNREFUSED\n`);
    const set = await g8os(['flist', 'metadata', url, 'k', 'v']);
    expect(set.code).toBe(2);
    expect(set.stderr).toMatch(/cannot change the metadata of a remote flist/);
  });

  it('reads a generation-3 .fl file with the same verbs', async () => {
    const fl = path.join(path.dirname(FUNK), 'rfs-flserver-hello-world-latest.fl');
    const s = await g8os(['flist', 'stats', fl, '--json']);
    expect(JSON.parse(s.stdout)).toMatchObject({ dirs: 7, files: 7, symlinks: 1, bytes: 13441, blocks: 2 });
    expect((await g8os(['flist', 'stat', fl, 'etc/mtab', '--json'])).stdout).toMatch(/"target":"\/proc\/mounts"/);
  });
});

describe('bad input', () => {
  const bad = badTarballs();
  const create = async (name: string, bytes: Buffer): Promise<{ code: number | null; stderr: string; out: string }> => {
    const input = path.join(tmp, `bad-${name}.tar`);
    fs.writeFileSync(input, bytes);
    const out = path.join(tmp, `bad-${name}.flist`);
    const r = await g8os(['flist', 'create', input, '-o', out, '--store', `dir://${path.join(tmp, 'bad-blocks')}`], { timeoutMs: 30_000 });
    return { code: r.code, stderr: r.stderr, out };
  };

  const refused: Array<[keyof typeof bad, RegExp]> = [
    ['truncatedTar', /truncated tar archive/],
    ['truncatedGzip', /truncated gzip stream/],
    ['corruptGzip', /corrupt gzip data|invalid tar header|truncated/],
    ['notATar', /not a tar archive/],
    ['emptyFile', /archive is empty/],
    ['dotDotMember', /"\.\.\/\.\.\/etc\/evil" escapes the root/],
    ['nulInName', /contains a NUL byte/],
    ['invalidUtf8Name', /is not valid UTF-8/],
    ['hugePaxHeader', /tar header is too large/],
    ['badChecksum', /not a tar archive|invalid tar header/],
  ];
  for (const [name, message] of refused) {
    it(`${name}: one-line error, non-zero exit, no flist left behind`, async () => {
      const r = await create(name, bad[name]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n').length).toBe(1);
      expect(r.stderr.startsWith('g8os: ')).toBe(true);
      expect(fs.existsSync(r.out)).toBe(false);
      expect(fs.readdirSync(tmp).filter((f) => f.startsWith(`bad-${name}.flist.tmp`))).toEqual([]);
    });
  }

  it('an absolute member path is kept inside the root', async () => {
    const r = await create('absolute', bad.absoluteMember);
    expect(r.code).toBe(0);
    const find = await g8os(['flist', 'find', r.out]);
    expect(find.stdout.trim().split('\n')).toEqual(['/', '/etc', '/etc/passwd2']);
  });

  it('duplicate members: the last one wins, as with tar', async () => {
    const r = await create('duplicate', bad.duplicateMembers);
    expect(r.code).toBe(0);
    expect((await g8os(['flist', 'cat', r.out, 'dup.txt'])).stdout).toBe('second\n');
    expect((await g8os(['flist', 'find', r.out])).stdout.trim().split('\n')).toEqual(['/', '/dup.txt']);
  });

  it('a decompression bomb is refused by its headers under --max-size', async () => {
    const bomb = await writeTar([{ path: 'zeros', type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: 0, content: Buffer.alloc(8 << 20) }], { gzip: true });
    expect(bomb.length).toBeLessThan(64 * 1024);
    const input = path.join(tmp, 'bomb.tar.gz');
    fs.writeFileSync(input, bomb);
    const out = path.join(tmp, 'bomb.flist');
    const r = await g8os(['flist', 'create', input, '-o', out, '--store', `dir://${path.join(tmp, 'bad-blocks')}`, '--max-size', '1000000']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('g8os: archive expands to more than 1000000 bytes (the limit)\n');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('times outside the 32-bit range are clamped with a warning, never wrapped', async () => {
    const tarStream = (await import('tar-stream')).default;
    const pack = tarStream.pack();
    pack.entry({ name: 'old', mtime: new Date(0), pax: { mtime: '-86400' } }, 'old\n');
    pack.entry({ name: 'future', mtime: new Date(0), pax: { mtime: '4294967301' } }, 'future\n');
    pack.finalize();
    const parts: Buffer[] = [];
    for await (const c of pack) parts.push(c as Buffer);
    const input = path.join(tmp, 'times.tar');
    fs.writeFileSync(input, Buffer.concat(parts));
    const out = path.join(tmp, 'times.flist');
    const r = await g8os(['flist', 'create', input, '-o', out, '--store', `dir://${path.join(tmp, 'bad-blocks')}`]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: old: time -86400 is outside 1970\.\.2106, stored as 1970-01-01/);
    expect(r.stderr).toMatch(/warning: future: time 4294967301 is outside 1970\.\.2106, stored as 2106-02-07/);
    expect(JSON.parse((await g8os(['flist', 'stat', out, 'old', '--json'])).stdout).mtime).toBe(0);
    expect(JSON.parse((await g8os(['flist', 'stat', out, 'future', '--json'])).stdout).mtime).toBe(0xffffffff);
  });

  it('a bomb of padding between members hits the size cap too, and an empty gzipped tar is fine', async () => {
    const small = await writeTar([{ path: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', mtime: 0, content: Buffer.from('a') }]);
    const padded = zlib.gzipSync(Buffer.concat([small.subarray(0, 1024), Buffer.alloc(100 << 20)]));
    const input = path.join(tmp, 'padding.tar.gz');
    fs.writeFileSync(input, padded);
    const r = await g8os(['flist', 'create', input, '-o', path.join(tmp, 'padding.flist'), '--store', `dir://${path.join(tmp, 'bad-blocks')}`, '--max-size', '1000']);
    expect(r.stderr).toBe('g8os: archive expands to more than 1000 bytes (the limit)\n');
    expect(fs.existsSync(path.join(tmp, 'padding.flist'))).toBe(false);
    const empty = path.join(tmp, 'empty.tar.gz');
    fs.writeFileSync(empty, zlib.gzipSync(Buffer.alloc(1024)));
    const e = await g8os(['flist', 'create', empty, '-o', path.join(tmp, 'empty.flist'), '--store', `dir://${path.join(tmp, 'bad-blocks')}`, '--json']);
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout)).toMatchObject({ directory: 1, regular: 0 });
  });

  it('an existing flist is not overwritten when a build fails', async () => {
    const out = path.join(tmp, 'keep.flist');
    fs.writeFileSync(out, 'precious');
    const input = path.join(tmp, 'trunc.tar');
    fs.writeFileSync(input, bad.truncatedTar);
    const r = await g8os(['flist', 'create', input, '-o', out, '--store', `dir://${path.join(tmp, 'bad-blocks')}`]);
    expect(r.code).toBe(1);
    expect(fs.readFileSync(out, 'utf8')).toBe('precious');
  });

  describe('corrupt flists', () => {
    const pack = async (name: string, fill: (db: Database.Database) => void): Promise<string> => {
      const dir = fs.mkdtempSync(path.join(tmp, `corrupt-${name}-`));
      const db = new Database(path.join(dir, 'flistdb.sqlite3'));
      db.exec('CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB); CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT);');
      fill(db);
      db.close();
      const { packFlist } = await import('../src/flist/archive');
      const out = path.join(tmp, `corrupt-${name}.flist`);
      await packFlist(path.join(dir, 'flistdb.sqlite3'), out);
      return out;
    };
    const rootWith = (contents: Parameters<typeof encodeDir>[0]['contents']): Buffer =>
      encodeDir({ name: '', location: '', parent: ROOT_KEY, size: 4096, aclkey: '', mtime: 0, ctime: 0, contents });

    it('not sqlite inside the tar.gz', async () => {
      const dir = fs.mkdtempSync(path.join(tmp, 'notsqlite-'));
      fs.writeFileSync(path.join(dir, 'flistdb.sqlite3'), 'this is not a database'.repeat(100));
      const { packFlist } = await import('../src/flist/archive');
      const out = path.join(tmp, 'notsqlite.flist');
      await packFlist(path.join(dir, 'flistdb.sqlite3'), out);
      const r = await g8os(['flist', 'stats', out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^g8os: corrupt flist .*notsqlite\.flist: file is not a database\n$/);
    });

    it('a tar.gz without flistdb.sqlite3, and a truncated flist', async () => {
      const input = path.join(tmp, 'plain.tar.gz');
      fs.writeFileSync(input, await writeTar([{ path: 'x', type: 'file', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', mtime: 0, content: Buffer.from('x') }], { gzip: true }));
      expect((await g8os(['flist', 'stats', input])).stderr).toMatch(/has no flistdb\.sqlite3 member/);
      const cut = path.join(tmp, 'cut.flist');
      fs.writeFileSync(cut, fs.readFileSync(FUNK).subarray(0, 100_000));
      const r = await g8os(['flist', 'stats', cut]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^g8os: corrupt flist .*cut\.flist: truncated gzip stream\n$/);
    });

    it('a directory key that points nowhere', async () => {
      const out = await pack('dangling', (db) => {
        db.prepare('INSERT INTO entries VALUES (?, ?)').run(ROOT_KEY, rootWith([
          { name: 'gone', size: 0, kind: 'dir', aclkey: '', mtime: 0, ctime: 0, subKey: dirKey('gone') },
        ]));
      });
      expect((await g8os(['flist', 'ls', out])).code).toBe(0); // the listing itself is fine
      const r = await g8os(['flist', 'ls', out, 'gone']);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`g8os: corrupt flist ${out}: directory key ${dirKey('gone')} points nowhere\n`);
    });

    it('a root row missing entirely', async () => {
      const out = await pack('noroot', () => undefined);
      const r = await g8os(['flist', 'stats', out]);
      expect(r.stderr).toBe(`g8os: corrupt flist ${out}: directory key ${ROOT_KEY} points nowhere\n`);
    });

    it('capnp pointer loops and out-of-bounds pointers are errors, not hangs', async () => {
      // A struct whose first pointer points at the struct's own pointer word, over and over.
      const loop = Buffer.alloc(8 + 8 * 3);
      loop.writeUInt32LE(0, 0);
      loop.writeUInt32LE(3, 4);
      loop.writeUInt32LE(0, 8); // root: struct at word 1, 0 data words, 2 pointers
      loop.writeUInt32LE(2 << 16, 12);
      loop.writeUInt32LE(((-2 << 2) | 0) >>> 0, 16); // ptr0 → struct starting at word 0 (the root pointer's target again)
      loop.writeUInt32LE(2 << 16, 20);
      const outOfBounds = rootWith([]);
      outOfBounds.writeUInt32LE(0x7ffffff0, 8); // root pointer far past the segment
      for (const [name, value] of [['loop', loop], ['oob', outOfBounds]] as const) {
        const out = await pack(name, (db) => db.prepare('INSERT INTO entries VALUES (?, ?)').run(ROOT_KEY, value));
        const r = await g8os(['flist', 'stats', out], { timeoutMs: 20_000 });
        expect(r.code, name).toBe(1);
        expect(r.stderr, name).toMatch(new RegExp(`^g8os: corrupt flist .*: directory ${ROOT_KEY}: capnp: `));
      }
    });

    it('a sub-directory that loops back to the root', async () => {
      const out = await pack('cycle', (db) => {
        db.prepare('INSERT INTO entries VALUES (?, ?)').run(ROOT_KEY, rootWith([
          { name: 'again', size: 0, kind: 'dir', aclkey: '', mtime: 0, ctime: 0, subKey: ROOT_KEY },
        ]));
      });
      const r = await g8os(['flist', 'find', out], { timeoutMs: 20_000 });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/directory again loops back/);
    });
  });
});

describe('error kinds (src/errors.ts): what callers branch on instead of message text', () => {
  const caught = async (fn: () => Promise<unknown> | unknown): Promise<unknown> => {
    try {
      await fn();
    } catch (e) {
      return e;
    }
    throw new Error('expected a throw');
  };

  it('build errors: invalid input, too_large for caps; messages unchanged', async () => {
    const tarBytes = await writeTar(everyTypeEntries());
    const store = await openStore(`dir://${path.join(tmp, 'kinds-blocks')}`);
    const many = await caught(() => buildFromTar(Readable.from([tarBytes]), { store, maxEntries: 1 }));
    expect(many).toBeInstanceOf(BuildError);
    expect([kindOf(many), exitCode(many), httpStatus(many)]).toEqual(['too_large', 1, 413]);
    expect((many as Error).message).toBe('archive has more than 1 members');
    const big = await caught(() => buildFromTar(Readable.from([tarBytes]), { store, maxExpandedBytes: 10_000 }));
    expect(kindOf(big)).toBe('too_large');
    expect((big as Error).message).toMatch(/^archive expands to more than 10000 bytes \(the limit\)$/);
    const junk = await caught(() => buildFromTar(Readable.from([Buffer.alloc(4096, 7)]), { store }));
    expect(junk).toBeInstanceOf(BuildError);
    expect(kindOf(junk)).toBe('invalid');
  });

  it('flist errors: not_found, invalid, corrupt; capnp corrupt; missing block not_found (EIO to a reader)', async () => {
    const gone = await caught(() => openGen2(path.join(tmp, 'no-such.flist')));
    expect(gone).toBeInstanceOf(FlistError);
    expect(kindOf(gone)).toBe('not_found');
    expect((gone as Error).message).toMatch(/^cannot open flist .*no-such\.flist: ENOENT$/);
    const text = path.join(tmp, 'kinds-text.flist');
    fs.writeFileSync(text, 'not an flist at all');
    expect(kindOf(await caught(() => openGen2(text)))).toBe('invalid');
    const { flist, store } = await buildTar(await writeTar(everyTypeEntries()), 'kinds');
    const cut = path.join(tmp, 'kinds-cut.flist');
    fs.writeFileSync(cut, fs.readFileSync(flist).subarray(0, 200));
    const truncated = await caught(() => openGen2(cut));
    expect([truncated instanceof FlistError, kindOf(truncated)]).toEqual([true, 'corrupt']);
    const capnp = await caught(() => new Message(Buffer.alloc(3)));
    expect([capnp instanceof CapnpError, kindOf(capnp), (capnp as Error).message]).toEqual([true, 'corrupt', 'capnp: message shorter than its segment table']);
    // the same flist read against an empty store: every block is missing
    const empty = await openStore(`dir://${path.join(tmp, 'kinds-empty-blocks')}`);
    const r = await openGen2(flist);
    try {
      const e = [...r.walk()].find((x) => x.kind === 'file' && (x.blocks?.length ?? 0) > 0)!;
      const missing = await caught(() => readAll(empty, e));
      expect(missing).toBeInstanceOf(MissingBlockError);
      expect([kindOf(missing), errnoName(missing)]).toEqual(['not_found', 'EIO']);
      expect((await readAll(store, e)).length).toBe(e.size);
    } finally {
      r.close();
    }
  });

  it('usage errors exit 2, everything else 1', () => {
    const u = new UsageError('bad flag');
    expect([u instanceof G8osError, kindOf(u), exitCode(u), u.name, u.message]).toEqual([true, 'usage', 2, 'UsageError', 'bad flag']);
    expect(exitCode(new FlistError('x'))).toBe(1);
  });
});
