import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { createBLAKE2b, type IHasher } from 'hash-wasm';
import { compressSync } from 'snappy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGen3Block, encodeGen3Block, gen3Ready, isGen3File, openGen3, type Gen3Reader } from '../src/flist/gen3';
import type { Entry } from '../src/flist/types';

const FIX = '/work/shared/fixtures/real-flists';
const HELLO = path.join(FIX, 'rfs-flserver-hello-world-latest.fl');
const ALPINE = path.join(FIX, 'rfs-tests-alpine-latest.fl');

let tmp: string;
let b256: IHasher;
const idOf = (b: Buffer): Buffer => Buffer.from(b256.init().update(b).digest('binary'));
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gen3-test-'));
  await gen3Ready();
  b256 = await createBLAKE2b(256);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function kinds(entries: Entry[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of entries) out[e.kind] = (out[e.kind] ?? 0) + 1;
  return out;
}

function withReader<T>(file: string, fn: (r: Gen3Reader) => T): T {
  const r = openGen3(file);
  try {
    return fn(r);
  } finally {
    r.close();
  }
}

/** The rfs schema (schema/schema.sql) with the given inode rows. */
type Row = [ino: number, parent: number, name: string, mode: number, rdev?: bigint];
function makeFl(name: string, rows: Row[], extra: [number, string][] = []): string {
  const file = path.join(tmp, name);
  const db = new Database(file);
  db.exec(`
    CREATE TABLE inode (ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER, name VARCHAR(255), size INTEGER,
      uid INTEGER, gid INTEGER, mode INTEGER, rdev INTEGER, ctime INTEGER, mtime INTEGER);
    CREATE INDEX parents ON inode (parent);
    CREATE INDEX names ON inode (name);
    CREATE TABLE extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
    CREATE TABLE block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
    CREATE INDEX block_ino ON block (ino);
    CREATE TABLE tag (key VARCHAR(10) PRIMARY KEY, value VARCHAR(255));
    CREATE TABLE route (start integer, end integer, url VARCHAR(2048));`);
  const ins = db.prepare('INSERT INTO inode VALUES (?, ?, ?, 0, 0, 0, ?, ?, 0, 0)');
  const insExtra = db.prepare('INSERT INTO extra VALUES (?, ?)');
  db.transaction(() => {
    for (const [ino, parent, n, mode, rdev] of rows) ins.run(ino, parent, n, mode, rdev ?? 0);
    for (const [ino, data] of extra) insExtra.run(ino, data);
  })();
  db.close();
  return file;
}

describe('gen3 reader: hello-world fixture', () => {
  it('reproduces the README facts', () => {
    withReader(HELLO, (r) => {
      expect(r.format).toBe('gen3');
      expect(r.stats()).toEqual({ dirs: 7, files: 7, symlinks: 1, specials: 0, blocks: 2, bytes: 13441 });
      expect(r.metadata()).toEqual({});
      expect(r.routes()).toEqual([{ start: 0, end: 255, url: 'dir:///tmp/store0' }]);

      const root = r.stat('')!;
      expect(root).toMatchObject({ name: '', path: '', kind: 'dir', mode: 0o40775, uid: 1000, gid: 1000 });
      expect(root).toMatchObject({ uname: '1000', gname: '1000', size: 4096 });
      expect(r.stat('/')).toEqual(root);

      expect(r.stat('etc/mtab')).toMatchObject({ kind: 'link', target: '/proc/mounts', size: 12, mode: 0o120777 });
      const toml = r.stat('.startup.toml')!;
      expect(toml).toMatchObject({ kind: 'file', size: 185, mode: 0o100664 });
      expect(toml.blocks!.map((b) => b.id.toString('hex'))).toEqual([
        '3e92da69f51566b6cecae5c9d21c0ce16b3b181ff7d5e24cd693573f0f795b95',
      ]);
      expect(toml.blocks![0].key.toString('hex')).toBe(
        '55d2a3dbf06913a629f5d560ee746a2fbe97e30771395e44da2a9566adb9c407',
      );
      expect(r.stat('/hello')).toMatchObject({ kind: 'file', size: 13256, mtime: 1702677884 });
      expect(r.stat('hello')!.blocks).toHaveLength(1);
      expect(r.stat('.dockerenv')!.blocks).toEqual([]);
    });
  });

  it('lists in stored order and walks depth first', () => {
    withReader(HELLO, (r) => {
      expect(r.list('').map((e) => e.name)).toEqual(['.startup.toml', 'hello', '.dockerenv', 'etc', 'proc', 'dev', 'sys']);
      expect(r.list('/dev/').map((e) => e.path)).toEqual(['dev/console', 'dev/shm', 'dev/pts']);
      expect(r.list('hello')).toEqual([]);
      expect(r.list('nope')).toEqual([]);
      const all = [...r.walk()];
      expect(all.map((e) => e.path)).toEqual([
        '', '.startup.toml', 'hello', '.dockerenv', 'etc', 'etc/hosts', 'etc/mtab', 'etc/hostname',
        'etc/resolv.conf', 'proc', 'dev', 'dev/console', 'dev/shm', 'dev/pts', 'sys',
      ]);
      expect(kinds(all)).toEqual({ dir: 7, file: 7, link: 1 });
      for (const e of all) expect(r.stat(e.path)).toEqual(e);
    });
  });

  it('returns undefined for missing paths', () => {
    withReader(HELLO, (r) => {
      expect(r.stat('nope')).toBeUndefined();
      expect(r.stat('etc/nope')).toBeUndefined();
      expect(r.stat('hello/x')).toBeUndefined(); // through a file
      expect(r.stat('etc/mtab/x')).toBeUndefined(); // through a link
      expect(r.stat('etc/..')).toBeUndefined();
      expect(r.stat('ETC')).toBeUndefined();
    });
  });
});

describe('gen3 reader: alpine fixture', () => {
  it('reproduces the README facts', () => {
    withReader(ALPINE, (r) => {
      expect(r.stats()).toEqual({ dirs: 100, files: 92, symlinks: 335, specials: 0, blocks: 97, bytes: 7829519 });
      expect(r.metadata()).toEqual({});
      expect(r.routes()).toEqual([{ start: 0, end: 255, url: 'dir:///tmp/rfs-e2e-tests/store' }]);
      expect(r.stat('')).toMatchObject({ kind: 'dir', mode: 0o40755, uid: 0, gid: 0, uname: '0', gname: '0' });

      const all = [...r.walk()];
      expect(all).toHaveLength(527);
      expect(kinds(all)).toEqual({ dir: 100, file: 92, link: 335 });
      const files = all.filter((e) => e.kind === 'file');
      expect(files.filter((e) => e.blocks!.length > 0)).toHaveLength(86);
      expect(files.reduce((n, e) => n + e.blocks!.length, 0)).toBe(97);
      expect(files.reduce((n, e) => n + e.size, 0)).toBe(7829519);
      for (const e of files) for (const b of e.blocks!) expect([b.id.length, b.key.length]).toEqual([32, 32]);
      // Every link has its target in `extra`.
      expect(all.filter((e) => e.kind === 'link' && e.target!.length > 0)).toHaveLength(335);

      const seen = new Set<string>();
      for (const e of all) {
        if (e.path !== '') expect(seen.has(e.path.split('/').slice(0, -1).join('/'))).toBe(true);
        seen.add(e.path);
      }
    });
  });

  it('stats nested paths', () => {
    withReader(ALPINE, (r) => {
      expect(r.stat('bin/sh')).toMatchObject({ name: 'sh', kind: 'link', target: '/bin/busybox', size: 12 });
      expect(r.stat('var/tmp')).toMatchObject({ kind: 'dir', mode: 0o41777 });
      expect(r.stat('proc')).toMatchObject({ kind: 'dir', mode: 0o40555 });
      const key = 'alpine-devel@lists.alpinelinux.org-5e69ca50.rsa.pub';
      expect(r.stat(`usr/share/apk/keys/mips64/${key}`)).toMatchObject({
        name: key,
        path: `usr/share/apk/keys/mips64/${key}`,
        kind: 'link',
        target: `../${key}`,
        size: 54,
      });
      expect(r.stat(`usr/share/apk/keys/${key}`)).toMatchObject({ kind: 'file', size: 451 });
      const crypto3 = r.stat('usr/lib/libcrypto.so.3')!;
      expect(crypto3).toMatchObject({ size: 4494672, mode: 0o100755, mtime: 1739296292 });
      // Block order = insertion order; first and last of the 9.
      const ids = crypto3.blocks!.map((b) => b.id.toString('hex'));
      expect(ids).toHaveLength(9);
      expect(ids[0]).toBe('01ec05d9eb1aeb64fe812510eb249448f53498517939126dd5f62fc49c769d6b');
      expect(ids[8]).toBe('1ed8d0ef9a3af7b2023158fa17fa3e0bc8541f5db606feb48fffd36ce4a20a37');
      expect(r.list('').slice(0, 4).map((e) => e.name)).toEqual(['.startup.toml', '.dockerenv', 'sbin', 'srv']);
    });
  });
});

describe('isGen3File', () => {
  it('tells the generations apart', () => {
    expect(isGen3File(HELLO)).toBe(true);
    expect(isGen3File(ALPINE)).toBe(true);
    expect(isGen3File(path.join(FIX, 'threefoldtech-funk-latest.flist'))).toBe(false);
    expect(isGen3File(path.join(FIX, 'README.md'))).toBe(false);
    expect(isGen3File(path.join(tmp, 'does-not-exist.fl'))).toBe(false);
    const other = path.join(tmp, 'other.sqlite');
    const db = new Database(other);
    db.exec('CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB)');
    db.close();
    expect(isGen3File(other)).toBe(false);
  });
});

describe('gen3 reader: bad input', () => {
  const openErr = (file: string): string => {
    try {
      openGen3(file).close();
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('expected openGen3 to throw');
  };

  it('rejects non-sqlite, empty, missing and table-less files with one-line errors', () => {
    const text = path.join(tmp, 'text.fl');
    fs.writeFileSync(text, 'hello, this is not a database\n'.repeat(100));
    const empty = path.join(tmp, 'empty.fl');
    fs.writeFileSync(empty, '');
    const bare = path.join(tmp, 'bare.fl');
    const db = new Database(bare);
    db.exec('CREATE TABLE something (x)');
    db.close();
    const noExtra = makeFl('noextra.fl', [[1, 0, '/', 0o40755]]);
    const d2 = new Database(noExtra);
    d2.exec('DROP TABLE extra');
    d2.close();

    const cases: [string, RegExp][] = [
      [text, /not a database/],
      [empty, /missing table "inode"/],
      [bare, /missing table "inode"/],
      [noExtra, /missing table "extra"/],
      [path.join(tmp, 'nope.fl'), /no such file/],
      [path.join(FIX, 'threefoldtech-funk-latest.flist'), /not a database/],
    ];
    for (const [file, re] of cases) {
      const msg = openErr(file);
      expect(msg).toMatch(re);
      expect(msg.startsWith(`${file}: `)).toBe(true);
      expect(msg).not.toContain('\n');
    }
  });

  it('rejects a missing or non-directory root', () => {
    expect(openErr(makeFl('noroot.fl', [[2, 0, 'x', 0o40755]]))).toMatch(/no root inode 1/);
    expect(openErr(makeFl('fileroot.fl', [[1, 0, '/', 0o100644]]))).toMatch(/root inode 1 is not a directory/);
  });

  it('detects a parent cycle through the root', () => {
    const f = makeFl('cycle.fl', [
      [1, 3, '/', 0o40755],
      [2, 1, 'a', 0o40755],
      [3, 2, 'b', 0o40755],
    ]);
    expect(openErr(f)).toMatch(/^.*cycle\.fl: bad gen-3 flist: root inode 1 has parent 3, expected 0$/);
  });

  it('detects the root listed as a child (inode 0 trick)', () => {
    // Root parent is 0 as required, but an inode 0 exists below the root: walking down would loop.
    const f = makeFl('zero.fl', [
      [0, 2, 'z', 0o40755],
      [1, 0, 'r', 0o40755],
      [2, 1, 'a', 0o40755],
    ]);
    withReader(f, (r) => {
      expect(() => [...r.walk()]).toThrow(/parent link loop/);
      expect(r.stat('a/z/r')).toBeUndefined();
    });
  });

  it('ignores orphan cycles, bad names and duplicates; terminates', () => {
    const f = makeFl('orphans.fl', [
      [1, 0, '/', 0o40755],
      [2, 1, 'd', 0o40755],
      [3, 2, 'x', 0o100644],
      [4, 2, 'x', 0o120777], // duplicate name: first (ino 3) wins
      [5, 2, '..', 0o40755],
      [6, 2, 'a/b', 0o100644],
      [7, 8, 'p', 0o40755], // 7 <-> 8: a loop not reachable from the root
      [8, 7, 'q', 0o40755],
    ]);
    withReader(f, (r) => {
      expect([...r.walk()].map((e) => e.path)).toEqual(['', 'd', 'd/x']);
      expect(r.list('d').map((e) => [e.name, e.kind])).toEqual([['x', 'file']]);
      expect(r.stat('d/x')!.kind).toBe('file');
      expect(r.stat('d/..')).toBeUndefined();
    });
  });

  it('bounds the walk depth', () => {
    const rows: Row[] = [[1, 0, '/', 0o40755]];
    for (let i = 2; i <= 4100; i++) rows.push([i, i - 1, 'd', 0o40755]);
    withReader(makeFl('deep.fl', rows), (r) => {
      expect(() => [...r.walk()]).toThrow(/deeper than 4096/);
      expect(r.stat(Array(4097).fill('d').join('/'))).toBeUndefined();
      expect(r.stat(Array(4000).fill('d').join('/'))).toMatchObject({ kind: 'dir' });
    });
  });
});

describe('gen3 reader: specials', () => {
  it('maps mode bits and decodes rdev with the kernel makedev layout', () => {
    const makedev = (maj: bigint, min: bigint): bigint =>
      (min & 0xffn) | ((maj & 0xfffn) << 8n) | ((min & ~0xffn) << 12n) | ((maj & ~0xfffn) << 32n);
    const rows: Row[] = [
      [1, 0, '/', 0o40755],
      [2, 1, 'sda1', 0o60660, makedev(8n, 1n)],
      [3, 1, 'big', 0o20600, makedev(0x12345n, 0xabcdefn)],
      [4, 1, 'fifo', 0o10644],
      [5, 1, 'sock', 0o140755],
      [6, 1, 'weird', 0o644],
    ];
    withReader(makeFl('special.fl', rows), (r) => {
      expect(r.stat('sda1')).toMatchObject({ kind: 'special', special: 'block', rdev: { major: 8, minor: 1 }, size: 0 });
      expect(r.stat('big')).toMatchObject({ special: 'char', rdev: { major: 0x12345, minor: 0xabcdef } });
      expect(r.stat('fifo')).toMatchObject({ special: 'fifo', mode: 0o10644 });
      expect(r.stat('fifo')!.rdev).toBeUndefined();
      expect(r.stat('sock')).toMatchObject({ special: 'socket' });
      expect(r.stat('weird')).toMatchObject({ kind: 'special', special: 'unknown' });
      expect(r.stats()).toMatchObject({ dirs: 1, files: 0, symlinks: 0, specials: 5 });
    });
  });
});

describe('gen3 block codec', () => {
  // Computed independently with Python (hashlib.blake2b digest_size=32, cryptography AESGCM,
  // hand-built snappy literal) following rfs src/store/bs.rs.
  const plain = Buffer.from('some random data to store');
  const kat = {
    key: 'b83d15e3b4175fe39f3e86c7b3ed233167c37d779970e6137e7a8d1ddf865fae',
    cipher: '7508d3d12088d6cc278f83f68c9199e36c733bf3a0727d15014e0e986fface81e714cc33e977ef6f4f2f51',
    id: 'd9a070eafd4626be8b079980dbc0a2ed7c3355cd600b70ad6408467281af5ab7',
  };
  const katRef = () => ({ id: Buffer.from(kat.id, 'hex'), key: Buffer.from(kat.key, 'hex') });

  it('matches the known answer both ways', () => {
    expect(decodeGen3Block(Buffer.from(kat.cipher, 'hex'), katRef())).toEqual(plain);
    const { data, ref } = encodeGen3Block(plain);
    expect(data.toString('hex')).toBe(kat.cipher);
    expect(ref.id.toString('hex')).toBe(kat.id);
    expect(ref.key.toString('hex')).toBe(kat.key);
  });

  it('round-trips a full 512 KiB chunk and an empty one', () => {
    const chunk = Buffer.concat([crypto.randomBytes(256 * 1024), Buffer.alloc(256 * 1024, 7)]);
    const { data, ref } = encodeGen3Block(chunk);
    expect(data.length).toBeLessThan(chunk.length); // snappy did something
    expect(decodeGen3Block(data, ref).equals(chunk)).toBe(true);
    const e = encodeGen3Block(Buffer.alloc(0));
    expect(decodeGen3Block(e.data, e.ref)).toEqual(Buffer.alloc(0));
  });

  it('detects corruption', () => {
    const cipher = Buffer.from(kat.cipher, 'hex');
    const prefix = `corrupt block ${kat.id}: `;
    const flipped = Buffer.from(cipher);
    flipped[3] ^= 1;
    expect(() => decodeGen3Block(flipped, katRef())).toThrow(prefix + 'blake2b-256 of the stored bytes does not match the id');
    expect(() => decodeGen3Block(cipher.subarray(0, 10), katRef())).toThrow(/shorter than the GCM tag/);
    expect(() => decodeGen3Block(cipher, { ...katRef(), key: Buffer.alloc(16) })).toThrow(/key is 16 bytes/);

    // Id matches the (tampered) bytes, so only GCM can catch it.
    const forged = Buffer.from(cipher);
    forged[forged.length - 1] ^= 0x80;
    const key = Buffer.from(kat.key, 'hex');
    expect(() => decodeGen3Block(forged, { id: idOf(forged), key })).toThrow(/AES-256-GCM authentication failed/);

    // Authentic encryption under a key that is not the hash of the plaintext.
    const c = crypto.createCipheriv('aes-256-gcm', key, key.subarray(0, 12));
    const other = Buffer.concat([c.update(compressSync(Buffer.from('other data'))), c.final(), c.getAuthTag()]);
    expect(() => decodeGen3Block(other, { id: idOf(other), key })).toThrow(
      /corrupt block [0-9a-f]{64}: blake2b-256 of the plaintext does not match the key/,
    );

    // Authentic encryption of bytes that are not snappy, and of a forged 4 GiB length header.
    for (const [body, re] of [
      [Buffer.from([0x05, 0xff, 0xff]), /snappy/],
      [Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]), /bad snappy length header/],
    ] as [Buffer, RegExp][]) {
      const enc = crypto.createCipheriv('aes-256-gcm', key, key.subarray(0, 12));
      const data = Buffer.concat([enc.update(body), enc.final(), enc.getAuthTag()]);
      expect(() => decodeGen3Block(data, { id: idOf(data), key })).toThrow(re);
    }
  });
});
