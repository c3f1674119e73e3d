// Verifies an flist against the tarball it was built from, member by member:
//
//   node dist/bench/verify-tarball.js <flist> <tarball> --store <url>
//
// The tarball (plain or gzip, sniffed by its first two bytes) is streamed once with
// tar-stream; each member's data is hashed (sha256) as it passes, never buffered whole.
// For every member the flist entry at the same path is checked: type, permission bits,
// uid/gid, mtime (seconds), symlink target, device numbers, size, and for regular files and
// hard links the sha256 of the bytes read back through fileContent(store, entry, 'gen2').
// In reverse, every path of the flist's walk() must be a member or an implied parent
// directory of one. Tar semantics: the last of duplicate members wins; names are normalised
// (leading "./" and "/" stripped, "." components and trailing "/" dropped).
//
// Last line: "verified N entries, M files (B bytes), K mismatches"; exit 1 on any mismatch.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { fileContent } from '../src/flist/content';
import { openGen2 } from '../src/flist/reader';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, type Entry } from '../src/flist/types';
import { openStore } from '../src/store';
import type { BlockStore } from '../src/store/types';

type Kind = 'dir' | 'file' | 'link' | 'char' | 'block' | 'fifo';

/** What the tarball says about one path (the last member for that path). */
interface Expected {
  path: string;
  member: number;
  tarType: string;
  kind: Kind;
  perm: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  target?: string;
  rdev?: { major: number; minor: number };
  /** regular files and hard links: sha256 of the content (hex) */
  sha?: string;
  /** hard links: the path the member linked to */
  linkTo?: string;
}

const TYPE_BITS: Record<Kind, number> = {
  dir: S_IFDIR, file: S_IFREG, link: S_IFLNK, char: S_IFCHR, block: S_IFBLK, fifo: S_IFIFO,
};

function usage(msg?: string): never {
  if (msg) process.stderr.write(`verify-tarball: ${msg}\n`);
  process.stderr.write('usage: node dist/bench/verify-tarball.js <flist> <tarball> --store <url> [--concurrency N]\n');
  process.exit(2);
}

function parseArgs(argv: string[]): { flist: string; tarball: string; store: string; concurrency: number } {
  const pos: string[] = [];
  let store: string | undefined;
  let concurrency = 8;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--store') store = argv[++i];
    else if (a.startsWith('--store=')) store = a.slice(8);
    else if (a === '--concurrency') concurrency = Number(argv[++i]);
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 2) usage('expected <flist> <tarball>');
  if (!store) usage('--store <url> is required');
  if (!(Number.isInteger(concurrency) && concurrency > 0)) usage('--concurrency must be a positive integer');
  return { flist: pos[0], tarball: pos[1], store, concurrency };
}

/** Member name → flist-relative path: strip leading "./" and "/", drop "." parts and trailing "/". */
export function normalise(name: string): string {
  return name.split('/').filter((c) => c !== '' && c !== '.').join('/');
}

export function openTarball(file: string): Readable {
  const fd = fs.openSync(file, 'r');
  const magic = Buffer.alloc(2);
  const n = fs.readSync(fd, magic, 0, 2, 0);
  fs.closeSync(fd);
  const raw = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  if (n === 2 && magic[0] === 0x1f && magic[1] === 0x8b) {
    const gunzip = zlib.createGunzip();
    raw.on('error', (e) => gunzip.destroy(e));
    return raw.pipe(gunzip);
  }
  return raw;
}

/** Bounded set of concurrent tasks; run() waits for a free slot before starting one. */
class Pool {
  private running = 0;
  private readonly waiters: Array<() => void> = [];
  private readonly all: Promise<void>[] = [];
  constructor(private readonly size: number) {}
  async run(task: () => Promise<void>): Promise<void> {
    while (this.running >= this.size) await new Promise<void>((r) => this.waiters.push(r));
    this.running++;
    const p = task().finally(() => {
      this.running--;
      this.waiters.shift()?.();
    });
    this.all.push(p);
  }
  async drain(): Promise<void> {
    await Promise.all(this.all);
  }
}

async function hashFlistFile(store: BlockStore, e: Entry): Promise<{ sha: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of fileContent(store, e, 'gen2')) {
    h.update(chunk);
    bytes += chunk.length;
  }
  return { sha: h.digest('hex'), bytes };
}

function oct(n: number): string {
  return `0${n.toString(8).padStart(4, '0')}`;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const reader = await openGen2(args.flist);
  const store = await openStore(args.store);
  const mismatches: string[] = [];
  const bad = (path: string, what: string): void => {
    mismatches.push(`/${path}: ${what}`);
    if (mismatches.length <= 50) process.stdout.write(`MISMATCH /${path}: ${what}\n`);
  };

  try {
    // The flist side: every entry by path (metadata only, a few hundred bytes each).
    const flist = new Map<string, Entry>();
    for (const e of reader.walk()) {
      if (flist.has(e.path)) bad(e.path, 'appears twice in the flist walk');
      flist.set(e.path, e);
    }

    // Content hashes of flist files, started as their first member passes (one per path).
    const flistSha = new Map<string, Promise<{ sha: string; bytes: number } | Error>>();
    const pool = new Pool(args.concurrency);
    const startFlistHash = async (path: string): Promise<void> => {
      if (flistSha.has(path)) return;
      const e = flist.get(path);
      if (!e || e.kind !== 'file') return;
      let resolve!: (v: { sha: string; bytes: number } | Error) => void;
      flistSha.set(path, new Promise((r) => (resolve = r)));
      await pool.run(() => hashFlistFile(store, e).then(resolve, (err: Error) => resolve(err)));
    };

    // The tar side: stream once, keep the last member per path (tar semantics).
    const expected = new Map<string, Expected>();
    const extract = tar.extract();
    const source = openTarball(args.tarball);
    source.on('error', (e) => extract.destroy(e));
    source.pipe(extract);
    let members = 0;
    let unsupported = 0;
    for await (const m of extract) {
      const h = m.header;
      members++;
      const pax = (h.pax ?? {}) as Record<string, string>;
      const path = normalise(h.name);
      const num = (paxKey: string, v: number | undefined): number => (pax[paxKey] !== undefined ? Number(pax[paxKey]) : v ?? 0);
      const base = {
        path, member: members, tarType: String(h.type), perm: (h.mode ?? 0) & 0o7777,
        uid: num('uid', h.uid), gid: num('gid', h.gid),
        mtime: pax.mtime !== undefined ? Math.floor(Number(pax.mtime)) : Math.floor((h.mtime?.getTime() ?? 0) / 1000),
        size: 0,
      };
      let rec: Expected | undefined;
      switch (h.type) {
        case 'file':
        case 'contiguous-file': {
          await startFlistHash(path); // waits for a free slot: backpressure on the tar stream
          const sha = createHash('sha256');
          let size = 0;
          for await (const chunk of m as AsyncIterable<Buffer>) {
            sha.update(chunk);
            size += chunk.length;
          }
          if (size !== h.size) bad(path, `tar member ${members} delivered ${size} bytes, header says ${h.size}`);
          rec = { ...base, kind: 'file', size, sha: sha.digest('hex') };
          break;
        }
        case 'link': {
          const to = normalise(h.linkname ?? '');
          const t = expected.get(to);
          if (!t || t.kind !== 'file') {
            bad(path, `tar member ${members} is a hard link to ${to}, which is not an earlier regular file`);
          } else {
            await startFlistHash(path); // waits for a free slot: backpressure on the tar stream
            rec = { ...base, kind: 'file', size: t.size, sha: t.sha, linkTo: to };
          }
          break;
        }
        case 'symlink':
          rec = { ...base, kind: 'link', target: h.linkname ?? '', size: Buffer.byteLength(h.linkname ?? '') };
          break;
        case 'directory':
          rec = { ...base, kind: 'dir', size: 4096 };
          break;
        case 'character-device':
        case 'block-device':
          rec = {
            ...base, kind: h.type === 'character-device' ? 'char' : 'block',
            rdev: { major: h.devmajor ?? 0, minor: h.devminor ?? 0 },
          };
          break;
        case 'fifo':
          rec = { ...base, kind: 'fifo' };
          break;
        default:
          unsupported++;
          bad(path, `tar member ${members} has type ${h.type}, which a flist cannot hold (not compared)`);
      }
      if (h.type !== 'file' && h.type !== 'contiguous-file') m.resume();
      if (!rec) continue;
      // A later non-directory member replaces a directory together with what was below it.
      if (rec.kind !== 'dir' && expected.get(path)?.kind === 'dir') {
        for (const k of [...expected.keys()]) if (k.startsWith(`${path}/`)) expected.delete(k);
      }
      expected.delete(path); // re-insert so iteration order follows the winning member
      expected.set(path, rec);
    }

    // Forward: every (winning) member against its flist entry.
    let entries = 0;
    let files = 0;
    let bytes = 0;
    for (const x of expected.values()) {
      entries++;
      const e = flist.get(x.path);
      if (!e) {
        bad(x.path, `tar ${x.tarType} (member ${x.member}) is missing from the flist`);
        continue;
      }
      const kind: Kind | string = e.kind === 'special' ? e.special ?? 'unknown' : e.kind;
      if (kind !== x.kind) {
        bad(x.path, `type: tar ${x.kind}, flist ${kind}`);
        continue;
      }
      if ((e.mode & S_IFMT) !== TYPE_BITS[x.kind]) bad(x.path, `file-type bits: flist mode ${e.mode.toString(8)}, expected ${TYPE_BITS[x.kind].toString(8)}`);
      if ((e.mode & 0o7777) !== x.perm) bad(x.path, `permissions: tar ${oct(x.perm)}, flist ${oct(e.mode & 0o7777)}`);
      if (e.uid !== x.uid || e.gid !== x.gid) bad(x.path, `owner: tar ${x.uid}:${x.gid}, flist ${e.uid}:${e.gid}`);
      if (e.mtime !== x.mtime) bad(x.path, `mtime: tar ${x.mtime}, flist ${e.mtime}`);
      if (x.kind === 'link' && e.target !== x.target) bad(x.path, `symlink target: tar ${JSON.stringify(x.target)}, flist ${JSON.stringify(e.target)}`);
      if (x.kind === 'char' || x.kind === 'block') {
        const a = x.rdev!;
        const b = e.rdev;
        if (!b || a.major !== b.major || a.minor !== b.minor) bad(x.path, `device: tar ${a.major},${a.minor}, flist ${b ? `${b.major},${b.minor}` : 'none'}`);
      }
      if (x.kind !== 'dir' && e.size !== x.size) bad(x.path, `size: tar ${x.size}, flist ${e.size}`);
      if (x.kind === 'file') {
        files++;
        bytes += x.size;
        if (!flistSha.has(x.path)) await startFlistHash(x.path);
        const got = await flistSha.get(x.path)!;
        if (got instanceof Error) bad(x.path, `reading content back failed: ${got.message}`);
        else if (got.sha !== x.sha) {
          bad(x.path, `content: tar sha256 ${x.sha} (${x.size} bytes${x.linkTo ? `, hard link to /${x.linkTo}` : ''}), flist sha256 ${got.sha} (${got.bytes} bytes)`);
        }
      }
    }
    await pool.drain();

    // Reverse: every flist path is a member or an implied parent directory of one.
    const implied = new Set<string>(['']);
    for (const p of expected.keys()) {
      const parts = p.split('/');
      for (let i = 1; i < parts.length; i++) implied.add(parts.slice(0, i).join('/'));
    }
    for (const e of flist.values()) {
      if (expected.has(e.path)) continue;
      if (implied.has(e.path)) {
        entries++;
        if (e.kind !== 'dir') bad(e.path, `implied parent directory is a ${e.kind} in the flist`);
        continue;
      }
      bad(e.path, `flist ${e.kind} is not in the tarball (neither a member nor an implied parent)`);
    }
    for (const p of implied) if (!expected.has(p) && !flist.has(p)) bad(p, 'implied parent directory is missing from the flist');

    if (mismatches.length > 50) process.stdout.write(`... ${mismatches.length - 50} more mismatches not shown\n`);
    process.stderr.write(`${members} tar members (${members - expected.size - unsupported} superseded or dropped), ${flist.size} flist entries\n`);
    process.stdout.write(`verified ${entries} entries, ${files} files (${bytes} bytes), ${mismatches.length} mismatches\n`);
    return mismatches.length ? 1 : 0;
  } finally {
    await store.close();
    reader.close();
  }
}

// a script, and a library for stress/compare.ts
if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: Error) => {
      process.stderr.write(`verify-tarball: ${e.stack ?? e.message}\n`);
      process.exitCode = 2;
    },
  );
}
