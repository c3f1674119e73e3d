// Sanity tests of the tarball generators, checked against GNU tar.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BLOCK, BUSYBOX_APPLETS, LONG_NAME, LONG_PAX_PATH, LONG_USTAR_PATH, Y2030,
  badTarballs, bigTree, busyboxRootfsTar, everyTypeEntries, readTar, writeBigTarFile, writeTar, writeTarFile,
  type BadTarballName, type FixtureEntry,
} from './helpers/tarballs';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'g8os-tarballs-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const isRoot = process.getuid?.() === 0;

function gnuTar(args: string[]): { rc: number; stdout: string; stderr: string; raw: Buffer } {
  const r = spawnSync('tar', args, { env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' }, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { rc: r.status ?? -1, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), raw: r.stdout };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// "-rwsr-xr-x" (type char + 9 permission chars) -> permission bits
function lsMode(s: string): number {
  const bits = [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1];
  let m = 0;
  for (let i = 0; i < 9; i++) {
    const c = s[i + 1];
    if (c === '-') continue;
    if (c === 's' || c === 'S') m |= i === 2 ? 0o4000 : 0o2000;
    else if (c === 't' || c === 'T') m |= 0o1000;
    if (c !== 'S' && c !== 'T') m |= bits[i];
  }
  return m;
}

// Linux dev_t -> [major, minor]
const devNumbers = (rdev: number): number[] => [(rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00)];

const TYPE_CHAR: Record<FixtureEntry['type'], string> = {
  file: '-', dir: 'd', symlink: 'l', hardlink: 'h', char: 'c', block: 'b', fifo: 'p',
};

interface Listed { type: string; mode: number; owner: string; group: string; size: string; time: string; rest: string }

// Parses `tar -tv --full-time` lines.
function parseListing(out: string): Listed[] {
  return out.split('\n').filter(Boolean).map((line) => {
    const m = /^(\S{10}) ([^/ ]+)\/(\S+)\s+(\d+(?:,\d+)?) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$/.exec(line);
    if (!m) throw new Error(`unparsed tar line: ${line}`);
    return { type: m[1][0], mode: lsMode(m[1]), owner: m[2], group: m[3], size: m[4], time: m[5], rest: m[6] };
  });
}

function expectedRest(e: FixtureEntry): string {
  if (e.type === 'symlink') return `${e.path} -> ${e.linkname}`;
  if (e.type === 'hardlink') return `${e.path} link to ${e.linkname}`;
  return e.path;
}

function expectListingMatches(listing: Listed[], entries: FixtureEntry[], numeric: boolean): void {
  expect(listing).toHaveLength(entries.length);
  const byRest = new Map(listing.map((l) => [l.rest, l]));
  for (const e of entries) {
    const l = byRest.get(expectedRest(e));
    expect(l, e.path).toBeDefined();
    expect(l!.type, e.path).toBe(TYPE_CHAR[e.type]);
    expect(l!.mode.toString(8), e.path).toBe(e.mode.toString(8));
    expect(l!.owner, e.path).toBe(numeric || !e.uname ? String(e.uid) : e.uname);
    expect(l!.group, e.path).toBe(numeric || !e.gname ? String(e.gid) : e.gname);
    const size = e.type === 'char' || e.type === 'block' ? `${e.devmajor},${e.devminor}` : String(e.content?.length ?? 0);
    expect(l!.size, e.path).toBe(size);
    expect(l!.time, e.path).toBe(new Date(e.mtime * 1000).toISOString().slice(0, 19).replace('T', ' '));
  }
}

describe('everyTypeEntries', () => {
  const entries = everyTypeEntries();
  const paths = new Set(entries.map((e) => e.path));

  it('covers every type, size, mode, owner and name case', () => {
    expect(new Set(entries.map((e) => e.type))).toEqual(new Set(['file', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo']));
    const sizes = entries.filter((e) => e.type === 'file').map((e) => e.content!.length);
    for (const s of [0, 1, 12, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17]) expect(sizes).toContain(s);
    expect(sizes.some((s) => s > 5_000_000)).toBe(true);
    const dirModes = entries.filter((e) => e.type === 'dir').map((e) => e.mode);
    for (const m of [0o755, 0o700, 0o1777, 0o2755]) expect(dirModes).toContain(m);
    const fileModes = entries.filter((e) => e.type === 'file').map((e) => e.mode);
    for (const m of [0o4755, 0o2755, 0o600, 0o644, 0o755]) expect(fileModes).toContain(m);
    expect(entries.some((e) => e.uid === 33 && e.uname === 'www-data')).toBe(true);
    expect(entries.some((e) => e.uid === 1000 && e.uname === 'user')).toBe(true);
    expect(entries.some((e) => e.uname === '' && e.uid !== 0)).toBe(true);
    expect(entries.some((e) => e.type === 'block' && e.devmajor === 259 && e.devminor === 300)).toBe(true);
    expect(entries.map((e) => e.mtime)).toEqual(expect.arrayContaining([0, Y2030]));
    expect(paths.has('names/ünïcødé ✓.txt')).toBe(true);
    expect(LONG_USTAR_PATH.length).toBeGreaterThan(100);
    expect(LONG_PAX_PATH.length).toBeGreaterThan(255);
    expect(LONG_NAME.split('/').pop()!.length).toBeGreaterThan(100);
    // implied parents: some file's parent dir is not a member
    expect(entries.some((e) => e.path.includes('/') && !paths.has(e.path.slice(0, e.path.lastIndexOf('/'))))).toBe(true);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get('files/dup-a.bin')!.content!.equals(byPath.get('files/dup-b.bin')!.content!)).toBe(true);
  });

  it('is deterministic', async () => {
    const a = await writeTar(everyTypeEntries());
    const b = await writeTar(everyTypeEntries());
    expect(sha(a)).toBe(sha(b));
  });

  it('GNU tar -tv lists every entry with type, mode, owner, size/device, mtime and long names', async () => {
    const file = join(tmp, 'every.tar');
    await writeTarFile(file, entries);
    const named = gnuTar(['-tvf', file, '--full-time', '--quoting-style=literal']);
    expect(named.stderr).toBe('');
    expect(named.rc).toBe(0);
    expectListingMatches(parseListing(named.stdout), entries, false);
    const numeric = gnuTar(['-tvf', file, '--full-time', '--quoting-style=literal', '--numeric-owner']);
    expect(numeric.rc).toBe(0);
    expectListingMatches(parseListing(numeric.stdout), entries, true);
  });

  it('gzip + shuffled order lists the same entries', async () => {
    const file = join(tmp, 'every-shuffled.tar.gz');
    await writeTarFile(file, entries, { gzip: true, order: 'shuffled' });
    const r = gnuTar(['-tvzf', file, '--full-time', '--quoting-style=literal']);
    expect(r.rc).toBe(0);
    const listing = parseListing(r.stdout);
    expectListingMatches(listing, entries, false);
    expect(listing.map((l) => l.rest)).not.toEqual(entries.map(expectedRest));
  });

  it('tar-stream reads back exactly the fixture (readTar)', async () => {
    // compare content by hash: deep-equal on multi-MiB Buffers is very slow
    const norm = (list: FixtureEntry[]) => list.map((e) => ({ ...e, content: e.content && sha(e.content) }));
    const byPath = (a: FixtureEntry, b: FixtureEntry): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
    expect(norm(await readTar(await writeTar(entries)))).toEqual(norm(entries));
    const shuffled = await readTar(await writeTar(entries, { gzip: true, order: 'shuffled' }));
    expect(norm(shuffled.sort(byPath))).toEqual(norm(entries.slice().sort(byPath)));
  });

  it('GNU tar -xpf extracts contents, modes, links, fifo, devices, owners and mtimes', async () => {
    const file = join(tmp, 'every-x.tar');
    await writeTarFile(file, entries);
    const dest = join(tmp, 'every-x');
    mkdirSync(dest);
    const r = gnuTar(['-xpf', file, '-C', dest, ...(isRoot ? [] : ['--exclude=dev/*'])]);
    expect(r.rc, r.stderr).toBe(0);
    for (const e of entries) {
      if (!isRoot && (e.type === 'char' || e.type === 'block')) continue;
      const p = join(dest, e.path);
      const st = lstatSync(p);
      const kind = st.isFile() ? (e.type === 'hardlink' ? 'hardlink' : 'file') : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink'
        : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : '?';
      expect(kind, e.path).toBe(e.type);
      if (e.type !== 'symlink') expect((st.mode & 0o7777).toString(8), e.path).toBe(e.mode.toString(8));
      if (isRoot) expect([st.uid, st.gid], e.path).toEqual([e.uid, e.gid]);
      if (e.type === 'file') {
        expect(sha(readFileSync(p)), e.path).toBe(sha(e.content!));
        expect(Math.floor(st.mtimeMs / 1000), e.path).toBe(e.mtime);
      }
      if (e.type === 'symlink') expect(readlinkSync(p)).toBe(e.linkname);
      if (e.type === 'hardlink') expect(st.ino).toBe(lstatSync(join(dest, e.linkname!)).ino);
      if (e.type === 'char' || e.type === 'block') expect(devNumbers(st.rdev), e.path).toEqual([e.devmajor, e.devminor]);
    }
    expect(lstatSync(join(dest, 'implied/a/b')).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, 'links/long-target'), 'utf8')).toBe('pax path\n'); // resolves via the PAX linkpath
  });
});

describe('bigTree', () => {
  it('yields exactly files/totalBytes, deterministically, with small, large and duplicate files', async () => {
    const opts = { files: 700, totalBytes: 30_000_000, seed: 7 };
    const sizes: number[] = [];
    const hashes: string[] = [];
    let dirs = 0;
    for await (const e of bigTree(opts)) {
      if (e.type === 'dir') {
        dirs++;
        continue;
      }
      const content = Buffer.concat([...e.chunks()]);
      expect(content.length).toBe(e.size);
      sizes.push(e.size);
      hashes.push(sha(content));
    }
    expect(sizes).toHaveLength(700);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(30_000_000);
    expect(dirs).toBeGreaterThan(10);
    expect(sizes.filter((s) => s < 65536).length).toBeGreaterThan(600);
    expect(Math.max(...sizes)).toBeGreaterThan(1_000_000);
    expect(new Set(hashes.filter((_, i) => sizes[i] > 0)).size).toBeLessThan(sizes.filter((s) => s > 0).length); // dedup candidates

    let i = 0;
    for await (const e of bigTree(opts)) if (e.type === 'file') expect(sha(Buffer.concat([...e.chunks()]))).toBe(hashes[i++]);
  });

  it('writeBigTarFile streams a tar GNU tar accepts (plain and gzip)', async () => {
    const opts = { files: 300, totalBytes: 20_000_000, seed: 3 };
    const file = join(tmp, 'big.tar');
    const stats = await writeBigTarFile(file, opts);
    expect(stats.files).toBe(300);
    expect(stats.bytes).toBe(20_000_000);
    const r = gnuTar(['-tvf', file, '--full-time']);
    expect(r.rc, r.stderr).toBe(0);
    const listing = parseListing(r.stdout);
    expect(listing.filter((l) => l.type === '-')).toHaveLength(300);
    expect(listing.filter((l) => l.type === 'd')).toHaveLength(stats.dirs);
    expect(listing.reduce((a, l) => a + Number(l.size), 0)).toBe(20_000_000);

    const gz = join(tmp, 'big.tar.gz');
    await writeBigTarFile(gz, { ...opts, gzip: true });
    expect(sha(gunzipSync(readFileSync(gz)))).toBe(sha(readFileSync(file)));
  });
});

describe('badTarballs', () => {
  const bad = badTarballs();
  const write = (name: BadTarballName): string => {
    const p = join(tmp, `bad-${name}`);
    writeFileSync(p, bad[name]);
    return p;
  };
  const extractInto = (name: BadTarballName): { dir: string; rc: number; stderr: string } => {
    const dir = join(tmp, `x-${name}`, 'a', 'b');
    mkdirSync(dir, { recursive: true });
    const r = gnuTar(['-xf', write(name), '-C', dir]);
    return { dir, rc: r.rc, stderr: r.stderr };
  };

  it('is deterministic and complete', () => {
    const again = badTarballs();
    expect(Object.keys(bad).sort()).toEqual(Object.keys(again).sort());
    for (const k of Object.keys(bad) as BadTarballName[]) expect(bad[k].equals(again[k]), k).toBe(true);
    expect(Object.keys(bad)).toHaveLength(12);
  });

  it.each([
    ['truncatedTar', /Unexpected EOF/],
    ['truncatedGzip', /unexpected end of file/],
    ['corruptGzip', /crc error|invalid compressed data|format violated/],
    ['notATar', /does not look like a tar archive/],
    ['emptyFile', /does not look like a tar archive/],
    ['hugePaxHeader', /Unexpected EOF/],
    ['badChecksum', /Skipping to next header/],
  ] as const)('%s: GNU tar -tf fails', (name, msg) => {
    const r = gnuTar(['-tf', write(name)]);
    expect(r.rc).not.toBe(0);
    expect(r.stderr).toMatch(msg);
  });

  it('gzip cases fail in zlib too', () => {
    expect(() => gunzipSync(bad.truncatedGzip)).toThrow();
    expect(() => gunzipSync(bad.corruptGzip)).toThrow();
  });

  it('badChecksum: the member before the bad header is still listed', () => {
    expect(gnuTar(['-tf', write('badChecksum')]).stdout).toBe('ok.txt\n');
  });

  it('dotDotMember: listed, but GNU tar refuses to extract', () => {
    expect(gnuTar(['-tf', write('dotDotMember')]).stdout).toBe('../../etc/evil\na/../../b\n');
    const { dir, rc, stderr } = extractInto('dotDotMember');
    expect(rc).not.toBe(0);
    expect(stderr).toMatch(/Member name contains '\.\.'/);
    expect(existsSync(join(dir, '..', '..', 'etc'))).toBe(false);
    expect(existsSync(join(dir, '..', '..', 'b'))).toBe(false);
  });

  it('absoluteMember: GNU tar strips the leading slash', () => {
    expect(gnuTar(['-tf', write('absoluteMember')]).stdout).toBe('/etc/passwd2\n');
    const { dir, rc, stderr } = extractInto('absoluteMember');
    expect(rc).toBe(0);
    expect(stderr).toMatch(/Removing leading `\/'/);
    expect(readFileSync(join(dir, 'etc/passwd2'), 'utf8')).toBe('evil::0:0::/:/bin/sh\n');
  });

  it('nulInName: PAX path holds a NUL; GNU tar silently truncates it to "a"', () => {
    expect(bad.nulInName.includes(Buffer.from('path=a\0b\n'))).toBe(true);
    const r = gnuTar(['-tf', write('nulInName')]);
    expect(r.rc).toBe(0);
    expect(r.stdout).toBe('a\n');
  });

  it('invalidUtf8Name: GNU tar lists the raw bytes 0xff 0xfe', () => {
    const r = gnuTar(['-tf', write('invalidUtf8Name'), '--quoting-style=literal']);
    expect(r.rc).toBe(0);
    expect(r.raw.equals(Buffer.from([0xff, 0xfe, 0x0a]))).toBe(true);
  });

  it('duplicateMembers: listed twice, last one wins on extract', () => {
    expect(gnuTar(['-tf', write('duplicateMembers')]).stdout).toBe('dup.txt\ndup.txt\n');
    const { dir, rc } = extractInto('duplicateMembers');
    expect(rc).toBe(0);
    expect(readFileSync(join(dir, 'dup.txt'), 'utf8')).toBe('second\n');
  });
});

describe('busyboxRootfsTar', () => {
  it('builds a rootfs with bin/sh -> busybox that runs', async () => {
    const file = join(tmp, 'rootfs.tar');
    await busyboxRootfsTar(file);
    const r = gnuTar(['-tvf', file, '--full-time']);
    expect(r.rc, r.stderr).toBe(0);
    const listing = parseListing(r.stdout);
    const rest = listing.map((l) => l.rest);
    for (const a of BUSYBOX_APPLETS) expect(rest).toContain(`bin/${a} -> busybox`);
    for (const d of ['dev', 'proc', 'sys', 'tmp', 'root', 'etc', 'var']) expect(rest).toContain(d);
    expect(listing.find((l) => l.rest === 'tmp')!.mode).toBe(0o1777);
    expect(rest).toEqual(expect.arrayContaining(['bin/busybox', 'etc/passwd', 'etc/group', 'etc/hostname']));

    const applets = spawnSync('/bin/busybox', ['--list']).stdout.toString().split('\n');
    for (const a of BUSYBOX_APPLETS) expect(applets, a).toContain(a);

    const dest = join(tmp, 'rootfs');
    mkdirSync(dest);
    expect(gnuTar(['-xf', file, '-C', dest]).rc).toBe(0);
    const sh = spawnSync(join(dest, 'bin/sh'), ['-c', 'echo ok; cat "$0"', join(dest, 'etc/hostname')]);
    expect(sh.stdout.toString()).toBe('ok\nbusybox\n');
  });
});
