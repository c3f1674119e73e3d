// Generation-3 flists (rfs "FungiList", `.fl`): a bare SQLite file (spec Appendix A), and the
// chunk codec its block refs need.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import Database from 'better-sqlite3';
import { createBLAKE2b, type IHasher } from 'hash-wasm';
import { compressSync } from 'snappy';
import { G8osError, invalid, kindOf, notFound } from '../errors';
import { CorruptBlockError, snappyUncompress } from './codec';
import {
  relPath,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  type BlockRef,
  validName,
  type Entry,
  type FlistReader,
  type FlistStats,
  type SpecialType,
} from './types';

const ROOT_INO = 1;
/** Deeper than any real tree (PATH_MAX allows ~2048 levels); bounds work on hostile files. */
const MAX_DEPTH = 4096;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

export interface Gen3Route {
  start: number;
  end: number;
  url: string;
}

interface InodeRow {
  ino: number;
  parent: number | null;
  name: string | null;
  size: number | null;
  uid: number | null;
  gid: number | null;
  mode: number | null;
  ctime: number | null;
  mtime: number | null;
  major: number;
  minor: number;
  target: unknown;
}

// major/minor decoded in SQL (64-bit ints) with glibc/kernel makedev layout; JS numbers would
// lose the high bits.
const SELECT_INODE = `SELECT i.ino, i.parent, i.name, i.size, i.uid, i.gid, i.mode, i.ctime, i.mtime,
  ((coalesce(i.rdev, 0) >> 8) & 4095) | ((coalesce(i.rdev, 0) >> 32) & 4294963200) AS major,
  (coalesce(i.rdev, 0) & 255) | ((coalesce(i.rdev, 0) >> 12) & 4294967040) AS minor,
  e.data AS target
  FROM inode i LEFT JOIN extra e ON e.ino = i.ino`;

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ');
}

export class Gen3Reader implements FlistReader {
  readonly format = 'gen3' as const;
  private readonly db: Database.Database;
  private readonly root: InodeRow;
  private readonly q: {
    byIno: Database.Statement<[number], InodeRow>;
    child: Database.Statement<[number, string], InodeRow>;
    children: Database.Statement<[number], InodeRow>;
    blocks: Database.Statement<[number], { id: unknown; key: unknown }>;
    counts: Database.Statement<[], Omit<FlistStats, 'specials'> & { total: number }>;
    tags?: Database.Statement<[], { key: unknown; value: unknown }>;
    routes?: Database.Statement<[], { start: number; end: number; url: unknown }>;
  };

  constructor(readonly file: string) {
    let db: Database.Database | undefined;
    try {
      if (!fs.existsSync(file)) throw notFound('no such file');
      db = new Database(file, { readonly: true, fileMustExist: true });
      const tables = new Set(
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[],
      );
      for (const t of ['inode', 'extra', 'block']) if (!tables.has(t)) throw invalid(`missing table "${t}"`);
      this.q = {
        byIno: db.prepare(`${SELECT_INODE} WHERE i.ino = ?`),
        // First row wins for duplicate names, as in list().
        child: db.prepare(`${SELECT_INODE} WHERE i.parent = ? AND i.name = ? ORDER BY i.ino LIMIT 1`),
        children: db.prepare(`${SELECT_INODE} WHERE i.parent = ? ORDER BY i.ino`),
        blocks: db.prepare('SELECT id, key FROM block WHERE ino = ? ORDER BY rowid'),
        counts: db.prepare(
          `SELECT count(*) AS total,
            coalesce(sum((mode & ${S_IFMT}) = ${S_IFDIR}), 0) AS dirs,
            coalesce(sum((mode & ${S_IFMT}) = ${S_IFREG}), 0) AS files,
            coalesce(sum((mode & ${S_IFMT}) = ${S_IFLNK}), 0) AS symlinks,
            coalesce(sum(CASE WHEN (mode & ${S_IFMT}) = ${S_IFREG} THEN size END), 0) AS bytes,
            (SELECT count(*) FROM block) AS blocks
          FROM inode`,
        ),
        // tag/route are optional: no metadata, no routes.
        tags: tables.has('tag') ? db.prepare('SELECT key, value FROM tag ORDER BY rowid') : undefined,
        routes: tables.has('route') ? db.prepare('SELECT start, "end", url FROM route ORDER BY rowid') : undefined,
      };
      const root = this.q.byIno.get(ROOT_INO);
      if (!root) throw invalid(`no root inode ${ROOT_INO}`);
      if (((root.mode ?? 0) & S_IFMT) !== S_IFDIR) throw invalid(`root inode ${ROOT_INO} is not a directory`);
      // A root with a parent could be its own descendant: the only way a walk down could loop.
      if (root.parent !== 0) throw invalid(`root inode ${ROOT_INO} has parent ${root.parent}, expected 0`);
      this.root = root;
      this.db = db;
    } catch (e) {
      db?.close();
      throw this.bad(oneLine(e), kindOf(e) === 'not_found' ? 'not_found' : 'invalid');
    }
  }

  private bad(problem: string, kind: 'invalid' | 'not_found' = 'invalid'): G8osError {
    return new G8osError(kind, `${this.file}: bad gen-3 flist: ${problem}`);
  }

  /** The inode row at a normalised relative path. */
  private lookup(rel: string): InodeRow | undefined {
    if (rel === '') return this.root;
    const parts = rel.split('/');
    if (parts.length > MAX_DEPTH) return undefined;
    let row = this.root;
    for (const name of parts) {
      if (((row.mode ?? 0) & S_IFMT) !== S_IFDIR || !validName(name)) return undefined;
      const next = this.q.child.get(row.ino, name);
      if (!next || next.ino === ROOT_INO) return undefined;
      row = next;
    }
    return row;
  }

  /** Valid, de-duplicated child rows of a directory, in stored (ino) order. */
  private childRows(ino: number): InodeRow[] {
    const seen = new Set<string>();
    const out: InodeRow[] = [];
    for (const r of this.q.children.all(ino)) {
      if (r.ino === ROOT_INO) throw this.bad(`parent link loop: root inode is a child of inode ${ino}`);
      if (!validName(r.name) || seen.has(r.name)) continue;
      seen.add(r.name);
      out.push(r);
    }
    return out;
  }

  private toEntry(r: InodeRow, path: string): Entry {
    const mode = (r.mode ?? 0) & 0o177777;
    const uid = r.uid ?? -1;
    const gid = r.gid ?? -1;
    const base = {
      name: path === '' ? '' : (r.name ?? ''),
      path,
      mode,
      uid,
      gid,
      uname: uid >= 0 ? String(uid) : '',
      gname: gid >= 0 ? String(gid) : '',
      mtime: r.mtime ?? 0,
      ctime: r.ctime ?? 0,
    };
    switch (mode & S_IFMT) {
      case S_IFDIR:
        return { ...base, kind: 'dir', size: 4096 };
      case S_IFREG:
        return { ...base, kind: 'file', size: r.size ?? 0, blocks: this.blockRefs(r.ino) };
      case S_IFLNK: {
        const t = r.target;
        const target = typeof t === 'string' ? t : Buffer.isBuffer(t) ? t.toString('utf8') : '';
        return { ...base, kind: 'link', size: Buffer.byteLength(target), target };
      }
      default: {
        const special = SPECIAL_BY_FMT.get(mode & S_IFMT) ?? 'unknown';
        const e: Entry = { ...base, kind: 'special', size: 0, special };
        if (special === 'block' || special === 'char') e.rdev = { major: r.major, minor: r.minor };
        return e;
      }
    }
  }

  private blockRefs(ino: number): BlockRef[] {
    return this.q.blocks.all(ino).map(({ id, key }) => {
      if (!Buffer.isBuffer(id) || !Buffer.isBuffer(key)) throw this.bad(`block of inode ${ino} is not a BLOB`);
      return { id, key };
    });
  }

  stat(path: string): Entry | undefined {
    const rel = relPath(path);
    const row = this.lookup(rel);
    return row && this.toEntry(row, rel);
  }

  list(path: string): Entry[] {
    const rel = relPath(path);
    const row = this.lookup(rel);
    if (!row || ((row.mode ?? 0) & S_IFMT) !== S_IFDIR) return [];
    return this.childRows(row.ino).map((c) => this.toEntry(c, rel === '' ? c.name! : `${rel}/${c.name}`));
  }

  *walk(): Generator<Entry> {
    // Stack of rows still to visit: holds only the pending siblings along the current path.
    const stack: { row: InodeRow; path: string; depth: number }[] = [{ row: this.root, path: '', depth: 0 }];
    while (stack.length > 0) {
      const { row, path, depth } = stack.pop()!;
      const entry = this.toEntry(row, path);
      yield entry;
      if (entry.kind !== 'dir') continue;
      const kids = this.childRows(row.ino);
      if (kids.length > 0 && depth >= MAX_DEPTH) throw this.bad(`tree deeper than ${MAX_DEPTH} levels at "${path}"`);
      for (let i = kids.length - 1; i >= 0; i--) {
        const k = kids[i];
        stack.push({ row: k, path: path === '' ? k.name! : `${path}/${k.name}`, depth: depth + 1 });
      }
    }
  }

  metadata(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const { key, value } of this.q.tags?.all() ?? []) out[String(key)] = value == null ? '' : String(value);
    return out;
  }

  /** Counts over all rows (rfs never writes orphans); bytes = sum of regular file sizes. */
  stats(): FlistStats {
    const { total, dirs, files, symlinks, blocks, bytes } = this.q.counts.get()!;
    return { dirs, files, symlinks, specials: total - dirs - files - symlinks, blocks, bytes };
  }

  routes(): Gen3Route[] {
    return (this.q.routes?.all() ?? []).map(({ start, end, url }) => ({ start, end, url: String(url ?? '') }));
  }

  close(): void {
    this.db.close();
  }
}

const SPECIAL_BY_FMT = new Map<number, SpecialType>([
  [S_IFSOCK, 'socket'],
  [S_IFBLK, 'block'],
  [S_IFCHR, 'char'],
  [S_IFIFO, 'fifo'],
]);

export function openGen3(path: string): Gen3Reader {
  return new Gen3Reader(path);
}

/** Cheap sniff so one CLI can open both generations: SQLite header plus an `inode` table. */
export function isGen3File(path: string): boolean {
  const head = Buffer.alloc(SQLITE_MAGIC.length);
  try {
    const fd = fs.openSync(path, 'r');
    try {
      if (fs.readSync(fd, head, 0, head.length, 0) !== head.length) return false;
    } finally {
      fs.closeSync(fd);
    }
    if (!head.equals(SQLITE_MAGIC)) return false;
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inode'").get() !== undefined;
    } finally {
      db.close();
    }
  } catch {
    return false;
  }
}

// ---- chunk codec: key = blake2b-256(plain); AES-256-GCM(key, nonce = key[0..12]) over
// snappy-raw(plain), tag appended; id = blake2b-256(all stored bytes). (rfs src/store/bs.rs)

const GCM_TAG = 16;
/** rfs chunks are 512 KiB; refuse a forged snappy length header before it allocates. */
const MAX_PLAIN = 64 * 1024 * 1024;

let b256: IHasher | undefined;
let pending: Promise<void> | undefined;

/** Must be awaited once per thread before decodeGen3Block/encodeGen3Block. */
export function gen3Ready(): Promise<void> {
  pending ??= createBLAKE2b(256).then((h) => {
    b256 = h;
  });
  return pending;
}

function blake2b256(data: Uint8Array): Buffer {
  if (!b256) throw new G8osError('internal', 'internal: gen3Ready() was not awaited before hashing');
  b256.init();
  b256.update(data);
  return Buffer.from(b256.digest('binary'));
}

/** Decoded length from the snappy raw preamble (uvarint, ≤ 32 bits). */
function snappyLength(b: Buffer): number | undefined {
  let n = 0;
  for (let i = 0; i < 5 && i < b.length; i++) {
    n += (b[i] & 0x7f) * 2 ** (7 * i);
    if (b[i] < 0x80) return n;
  }
  return undefined;
}

export function decodeGen3Block(cipher: Buffer, ref: BlockRef): Buffer {
  const fail = (why: string): CorruptBlockError => new CorruptBlockError(ref.id, why);
  if (ref.key.length !== 32) throw fail(`key is ${ref.key.length} bytes, expected 32`);
  if (cipher.length < GCM_TAG) throw fail(`${cipher.length} bytes, shorter than the GCM tag`);
  // Checked first: cheap, and names the store copy as the culprit before decryption does.
  if (!blake2b256(cipher).equals(ref.id)) throw fail('blake2b-256 of the stored bytes does not match the id');
  let compressed: Buffer;
  try {
    const d = crypto.createDecipheriv('aes-256-gcm', ref.key, ref.key.subarray(0, 12));
    d.setAuthTag(cipher.subarray(cipher.length - GCM_TAG));
    compressed = Buffer.concat([d.update(cipher.subarray(0, cipher.length - GCM_TAG)), d.final()]);
  } catch {
    throw fail('AES-256-GCM authentication failed');
  }
  const n = snappyLength(compressed);
  if (n === undefined || n > MAX_PLAIN) throw fail('bad snappy length header');
  let plain: Buffer;
  try {
    plain = snappyUncompress(compressed);
  } catch (e) {
    throw fail(`snappy: ${oneLine(e)}`);
  }
  if (!blake2b256(plain).equals(ref.key)) throw fail('blake2b-256 of the plaintext does not match the key');
  return plain;
}

/** Test helper: the stored bytes and ref rfs would produce for one chunk. */
export function encodeGen3Block(plain: Buffer): { data: Buffer; ref: BlockRef } {
  const key = blake2b256(plain);
  const c = crypto.createCipheriv('aes-256-gcm', key, key.subarray(0, 12));
  const data = Buffer.concat([c.update(compressSync(plain)), c.final(), c.getAuthTag()]);
  return { data, ref: { id: blake2b256(data), key } };
}
