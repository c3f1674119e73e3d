// Generation-2 reader: path lookup is O(depth) indexed reads of `entries` (keys bound as
// TEXT, see spec trap 1) with an LRU of decoded directories, so a 100k-file flist opens
// without reading it all.
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { FlistError, extractDb } from './archive';
import { dirKey, hashReady } from './hash';
import { LRU } from '../lib/lru';
import { countEntries } from './stats';
import { decodeAci, decodeDir, type RawAci, type RawDir, type RawInode } from './schema';
import {
  S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK,
  relPath, validName, type Entry, type FlistReader, type FlistStats, type SpecialType,
} from './types';

export const ROOT_KEY = 'cae66941d9efbd404e4d88758ea67670';

const SPECIAL_BITS: Record<SpecialType, number> = {
  socket: S_IFSOCK, block: S_IFBLK, char: S_IFCHR, fifo: S_IFIFO, unknown: S_IFREG,
};
const KIND_BITS = { dir: S_IFDIR, file: S_IFREG, link: S_IFLNK } as const;

/** Missing ACI row: the original mount's fallback (spec §7.6). */
const NO_ACI: RawAci = { uname: '', gname: '', mode: 0o400, uid: 1000, gid: 1000 };

/** A decoded directory plus a name index built on first lookup. */
interface DirNode {
  raw: RawDir;
  children: RawInode[];
  byName?: Map<string, RawInode>;
}

export class Gen2Reader implements FlistReader {
  readonly format = 'gen2' as const;
  private readonly db: Database.Database;
  private readonly getValue: Database.Statement<[string], { value: Buffer }>;
  private readonly dirs: LRU<string, DirNode>;
  private readonly acis = new Map<string, RawAci>();

  constructor(
    readonly file: string,
    dbPath: string,
    private readonly cleanup?: string,
    readonly router?: string,
    cacheDirs = 4096,
  ) {
    try {
      this.db = new Database(dbPath, { readonly: true, fileMustExist: true });
      this.getValue = this.db.prepare('SELECT value FROM entries WHERE key = ?');
    } catch (e) {
      this.removeTemp();
      throw new FlistError(`corrupt flist ${file}: ${(e as Error).message}`);
    }
    this.dirs = new LRU(cacheDirs);
  }

  /** The decoded directory row for a key; throws a FlistError naming the key when absent or bad. */
  dir(key: string): DirNode {
    const hit = this.dirs.get(key);
    if (hit) return hit;
    let row: { value: Buffer } | undefined;
    try {
      row = this.getValue.get(key);
    } catch (e) {
      throw new FlistError(`corrupt flist ${this.file}: ${(e as Error).message}`);
    }
    if (!row) throw new FlistError(`corrupt flist ${this.file}: directory key ${key} points nowhere`);
    let raw: RawDir;
    try {
      raw = decodeDir(Buffer.from(row.value));
    } catch (e) {
      throw new FlistError(`corrupt flist ${this.file}: directory ${key}: ${(e as Error).message}`);
    }
    const seen = new Set<string>();
    const children = raw.contents.filter((c) => validName(c.name) && !seen.has(c.name) && (seen.add(c.name), true));
    const node: DirNode = { raw, children };
    this.dirs.set(key, node);
    return node;
  }

  aci(key: string): RawAci {
    let a = this.acis.get(key);
    if (a) return a;
    const row = key ? this.getValue.get(key) : undefined;
    try {
      a = row ? decodeAci(Buffer.from(row.value)) : NO_ACI;
    } catch {
      a = NO_ACI; // a broken permission record degrades to the default, like a missing one
    }
    if (this.acis.size > 4096) this.acis.clear();
    this.acis.set(key, a);
    return a;
  }

  private entry(raw: RawInode, parentPath: string): Entry {
    const a = this.aci(raw.aclkey);
    const path = parentPath ? `${parentPath}/${raw.name}` : raw.name;
    const typeBits = raw.kind === 'special' ? SPECIAL_BITS[raw.special ?? 'unknown'] : KIND_BITS[raw.kind];
    const e: Entry = {
      name: raw.name, path, kind: raw.kind, mode: typeBits | (a.mode & 0o7777),
      uid: a.uid, gid: a.gid, uname: a.uname, gname: a.gname,
      size: raw.kind === 'dir' ? 4096 : raw.kind === 'special' ? 0 : raw.size,
      mtime: raw.mtime, ctime: raw.ctime,
    };
    if (raw.kind === 'file') e.blocks = raw.blocks;
    else if (raw.kind === 'link') {
      e.target = raw.target;
      e.size = Buffer.byteLength(raw.target ?? '');
    } else if (raw.kind === 'special') {
      e.special = raw.special;
      const m = /^(\d+),(\d+)$/.exec(raw.specialData ?? '');
      if (m) e.rdev = { major: Number(m[1]), minor: Number(m[2]) };
    }
    return e;
  }

  private rootEntry(): Entry {
    const r = this.dir(ROOT_KEY).raw;
    const a = this.aci(r.aclkey);
    return {
      name: '', path: '', kind: 'dir', mode: S_IFDIR | (a.mode & 0o7777), uid: a.uid, gid: a.gid,
      uname: a.uname, gname: a.gname, size: 4096, mtime: r.mtime, ctime: r.ctime,
    };
  }

  private child(node: DirNode, name: string): RawInode | undefined {
    if (node.children.length < 16) return node.children.find((c) => c.name === name);
    node.byName ??= new Map(node.children.map((c) => [c.name, c]));
    return node.byName.get(name);
  }

  /** Directory key for a sub-directory inode; falls back to hashing the path. */
  private subKey(raw: RawInode, path: string): string {
    return raw.subKey || dirKey(path);
  }

  private dirAt(path: string): { node: DirNode; path: string } | undefined {
    const parts = relPath(path).split('/').filter(Boolean);
    let node = this.dir(ROOT_KEY);
    let at = '';
    for (const part of parts) {
      const c = this.child(node, part);
      if (!c || c.kind !== 'dir') return undefined;
      at = at ? `${at}/${part}` : part;
      node = this.dir(this.subKey(c, at));
    }
    return { node, path: at };
  }

  stat(path: string): Entry | undefined {
    const p = relPath(path);
    if (p === '') return this.rootEntry();
    const slash = p.lastIndexOf('/');
    const parent = this.dirAt(slash < 0 ? '' : p.slice(0, slash));
    if (!parent) return undefined;
    const c = this.child(parent.node, p.slice(slash + 1));
    return c ? this.entry(c, parent.path) : undefined;
  }

  list(path: string): Entry[] {
    const d = this.dirAt(path);
    if (!d) {
      const e = this.stat(path);
      throw new FlistError(e ? `${path}: not a directory` : `${path}: no such file or directory`);
    }
    return d.node.children.map((c) => this.entry(c, d.path));
  }

  *walk(): Iterable<Entry> {
    yield this.rootEntry();
    const visited = new Set<string>([ROOT_KEY]);
    const stack: Array<{ key: string; path: string }> = [{ key: ROOT_KEY, path: '' }];
    while (stack.length) {
      const { key, path } = stack.pop()!;
      const node = this.dir(key);
      const subdirs: Array<{ key: string; path: string }> = [];
      for (const c of node.children) {
        const e = this.entry(c, path);
        yield e;
        if (c.kind === 'dir') {
          const k = this.subKey(c, e.path);
          if (visited.has(k)) throw new FlistError(`corrupt flist ${this.file}: directory ${e.path} loops back (key ${k})`);
          visited.add(k);
          subdirs.push({ key: k, path: e.path });
        }
      }
      // Reverse so sub-directories come out in stored order (depth first).
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
    }
  }

  stats(): FlistStats {
    return countEntries(this.walk());
  }

  metadata(): Record<string, string> {
    const has = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name='metadata'").get();
    if (!has) return {};
    const rows = this.db.prepare('SELECT key, value FROM metadata').all() as Array<{ key: string; value: string }>;
    return Object.fromEntries(rows.map((r) => [r.key, String(r.value)]));
  }

  /** Raw rows, for tools that copy or check the database. */
  rawDb(): Database.Database {
    return this.db;
  }

  private removeTemp(): void {
    if (this.cleanup) fs.rmSync(this.cleanup, { recursive: true, force: true });
  }

  close(): void {
    if (this.db?.open) this.db.close();
    this.removeTemp();
  }
}

/** Open a generation-2 flist (tar.gz, bare sqlite or extracted directory). */
export async function openGen2(file: string): Promise<Gen2Reader> {
  await hashReady();
  const x = await extractDb(file);
  const r = new Gen2Reader(file, x.db, x.tempDir, x.router);
  try {
    const tables = r.rawDb().prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='entries'").get();
    if (!tables) throw new FlistError(`not an flist: ${file} has no entries table`);
    r.dir(ROOT_KEY);
  } catch (e) {
    r.close();
    if (e instanceof FlistError) throw e;
    throw new FlistError(`corrupt flist ${file}: ${(e as Error).message}`);
  }
  return r;
}
