// The hub's registry: users, hashed tokens and each repository's entries (flists, links, tags)
// in SQLite; flist files themselves are content-addressed under <data>/flists/<sha256>.flist,
// so publishing is "write file, then one transaction" and renames or promotes copy no bytes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { invalid, unauthorized } from '../errors';


export type EntryKind = 'regular' | 'symlink' | 'crosstag';

export interface RegistryEntry {
  user: string;
  /** file name, with ".flist" for flists and links to flists */
  name: string;
  kind: EntryKind;
  /** regular: sha256 of the flist file */
  file: string | null;
  size: number | null;
  md5: string | null;
  /** symlink: "<user>/<name>.flist"; crosstag: "<user>/<tag>" */
  target: string | null;
  updated: number;
}

export interface TagEntry {
  user: string;
  tag: string;
  name: string;
  target: string;
  updated: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, created INTEGER NOT NULL, official INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, user TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER);
CREATE TABLE IF NOT EXISTS entries (
  user TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, file TEXT, size INTEGER, md5 TEXT,
  target TEXT, updated INTEGER NOT NULL, PRIMARY KEY (user, name));
CREATE TABLE IF NOT EXISTS tags (
  user TEXT NOT NULL, tag TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, updated INTEGER NOT NULL,
  PRIMARY KEY (user, tag, name));
CREATE INDEX IF NOT EXISTS entries_file ON entries (file);
`;

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._+@:=,-]{0,254}$/;

/** A user, flist, link or tag name: one path component, no "..", no leading dot, no NUL. */
export function checkName(name: string, what = 'name'): string {
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw invalid(`invalid ${what} ${JSON.stringify(name)}: use letters, digits and . _ - + @ : = , (no "/", no "..", no leading dot)`);
  }
  return name;
}

/** "name" or "name.flist" → "name.flist" (the hub's rule: names without .flist get it). */
export function flistName(name: string): string {
  const n = name.endsWith('.flist') ? name : `${name}.flist`;
  return checkName(n, 'flist name');
}

export const now = (): number => Math.floor(Date.now() / 1000);

export const hashToken = (token: string): string => crypto.createHash('sha256').update(token).digest('hex');

export class Registry {
  readonly db: Database.Database;
  readonly flistDir: string;
  readonly tmpDir: string;

  constructor(readonly dataDir: string) {
    this.flistDir = path.join(dataDir, 'flists');
    this.tmpDir = path.join(dataDir, 'tmp');
    fs.mkdirSync(this.flistDir, { recursive: true });
    fs.mkdirSync(this.tmpDir, { recursive: true });
    this.db = new Database(path.join(dataDir, 'hub.sqlite3'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  /** At hub start: uploads in progress when it last stopped are garbage (nothing was published). */
  cleanTemp(): void {
    fs.rmSync(this.tmpDir, { recursive: true, force: true });
    fs.mkdirSync(this.tmpDir, { recursive: true });
  }

  // -- users and tokens ---------------------------------------------------------------------

  /** Create the user if needed and issue a new token (returned once; only its hash is kept). */
  addUser(name: string, ttlSeconds?: number): string {
    checkName(name, 'user name');
    const token = `g8h_${crypto.randomBytes(24).toString('base64url')}`;
    const t = now();
    this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO users (name, created) VALUES (?, ?)').run(name, t);
      this.db.prepare('INSERT INTO tokens (hash, user, created, expires) VALUES (?, ?, ?, ?)').run(hashToken(token), name, t, ttlSeconds ? t + ttlSeconds : null);
    })();
    return token;
  }

  userForToken(token: string): string | undefined {
    const row = this.db.prepare('SELECT user, expires FROM tokens WHERE hash = ?').get(hashToken(token)) as { user: string; expires: number | null } | undefined;
    if (!row || (row.expires !== null && row.expires < now())) return undefined;
    return row.user;
  }

  userExists(name: string): boolean {
    return this.db.prepare('SELECT 1 FROM users WHERE name = ?').get(name) !== undefined;
  }

  users(): Array<{ name: string; official: boolean; updated: number }> {
    const rows = this.db
      .prepare('SELECT u.name, u.official, MAX(COALESCE(e.updated, u.created)) AS updated FROM users u LEFT JOIN entries e ON e.user = u.name GROUP BY u.name ORDER BY u.name')
      .all() as Array<{ name: string; official: number; updated: number }>;
    return rows.map((r) => ({ name: r.name, official: r.official === 1, updated: r.updated }));
  }

  // -- entries ------------------------------------------------------------------------------

  filePath(sha256: string): string {
    return path.join(this.flistDir, `${sha256}.flist`);
  }

  entry(user: string, name: string): RegistryEntry | undefined {
    return this.db.prepare('SELECT * FROM entries WHERE user = ? AND name = ?').get(user, name) as RegistryEntry | undefined;
  }

  entries(user: string): RegistryEntry[] {
    return this.db.prepare('SELECT * FROM entries WHERE user = ? ORDER BY name').all(user) as RegistryEntry[];
  }

  /** Follow links (at most 8) to a regular flist; undefined when the chain ends nowhere. */
  resolve(user: string, name: string): RegistryEntry | undefined {
    let e = this.entry(user, name);
    for (let hops = 0; e && e.kind === 'symlink' && hops < 8; hops++) {
      const [u, n] = splitTarget(e.target!);
      e = this.entry(u, n);
    }
    return e?.kind === 'regular' ? e : undefined;
  }

  /**
   * Publish a finished flist file (a temp file on the same filesystem) as user/name, atomically:
   * the file is moved to its content address, then one transaction points the entry at it.
   */
  async publish(user: string, name: string, tmpFile: string): Promise<RegistryEntry> {
    const { sha256, md5, size } = await digestFile(tmpFile);
    const dest = this.filePath(sha256);
    if (fs.existsSync(dest)) fs.rmSync(tmpFile);
    else fs.renameSync(tmpFile, dest);
    const e: RegistryEntry = { user, name, kind: 'regular', file: sha256, size, md5, target: null, updated: now() };
    const old = this.entry(user, name);
    this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO users (name, created) VALUES (?, ?)').run(user, e.updated);
      this.putEntry(e);
    })();
    this.dropIfUnused(old?.file);
    return e;
  }

  private putEntry(e: RegistryEntry): void {
    this.db.prepare('INSERT OR REPLACE INTO entries (user, name, kind, file, size, md5, target, updated) VALUES (@user, @name, @kind, @file, @size, @md5, @target, @updated)').run(e);
  }

  /**
   * Point user/name at another entry: kind "symlink" → target "<user>/<name>.flist",
   * "crosstag" → "<user>/<tag>". Replaces a link, never a regular flist (401 as in 0-hub).
   */
  link(user: string, name: string, kind: 'symlink' | 'crosstag', target: string): RegistryEntry {
    const e: RegistryEntry = { user, name, kind, file: null, size: null, md5: null, target, updated: now() };
    this.db.transaction(() => {
      if (this.entry(user, name)?.kind === 'regular') throw unauthorized('link destination is already a file'); // (sic) the reference's 401
      this.putEntry(e);
    })();
    return e;
  }

  /** Copy a regular entry to user/name (promote): the flist file is shared, not copied. */
  copy(source: RegistryEntry, user: string, name: string): RegistryEntry {
    const e: RegistryEntry = { ...source, user, name, kind: 'regular', target: null, updated: now() };
    const old = this.entry(user, name);
    this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO users (name, created) VALUES (?, ?)').run(user, e.updated);
      this.putEntry(e);
    })();
    if (old?.file !== e.file) this.dropIfUnused(old?.file);
    return e;
  }

  /** Rename within a repository, replacing whatever `to` was (like rename(2)). */
  rename(user: string, from: string, to: string): RegistryEntry | undefined {
    if (from === to) return this.entry(user, from);
    const old = this.entry(user, to);
    const src = this.entry(user, from);
    if (!src) return undefined;
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM entries WHERE user = ? AND name = ?').run(user, to);
      this.db.prepare('UPDATE entries SET name = ? WHERE user = ? AND name = ?').run(to, user, from);
    })();
    this.dropIfUnused(old?.file);
    return { ...src, name: to };
  }

  /** Remove an entry (flist or link); its file goes when nothing else uses it. */
  remove(user: string, name: string): RegistryEntry | undefined {
    const old = this.entry(user, name);
    if (!old) return undefined;
    this.db.prepare('DELETE FROM entries WHERE user = ? AND name = ?').run(user, name);
    this.dropIfUnused(old.file);
    return old;
  }

  /** Follow a crosstag link user/link to the regular flist `name` in the tag it points at. */
  resolveCrosstag(user: string, link: string, name: string): RegistryEntry | undefined {
    const e = this.entry(user, link);
    if (e?.kind !== 'crosstag') return undefined;
    const [u, tag] = splitTarget(e.target!);
    const t = this.tagEntry(u, tag, name);
    return t ? this.resolve(...splitTarget(t.target)) : undefined;
  }

  // -- tags ---------------------------------------------------------------------------------

  /** The user's tags with their latest change. */
  tags(user: string): Array<{ tag: string; updated: number }> {
    return this.db.prepare('SELECT tag, MAX(updated) AS updated FROM tags WHERE user = ? GROUP BY tag ORDER BY tag').all(user) as Array<{ tag: string; updated: number }>;
  }

  tagExists(user: string, tag: string): boolean {
    return this.db.prepare('SELECT 1 FROM tags WHERE user = ? AND tag = ? LIMIT 1').get(user, tag) !== undefined;
  }

  tagEntries(user: string, tag: string): TagEntry[] {
    return this.db.prepare('SELECT * FROM tags WHERE user = ? AND tag = ? ORDER BY name').all(user, tag) as TagEntry[];
  }

  tagEntry(user: string, tag: string, name: string): TagEntry | undefined {
    return this.db.prepare('SELECT * FROM tags WHERE user = ? AND tag = ? AND name = ?').get(user, tag, name) as TagEntry | undefined;
  }

  /** Add or replace user's tag entry `name` → target "<user>/<name>.flist" (creates the tag). */
  setTag(user: string, tag: string, name: string, target: string): TagEntry {
    const t: TagEntry = { user, tag, name, target, updated: now() };
    this.db.prepare('INSERT OR REPLACE INTO tags (user, tag, name, target, updated) VALUES (@user, @tag, @name, @target, @updated)').run(t);
    return t;
  }

  /** Remove a tag entry; a tag without entries no longer exists. */
  removeTag(user: string, tag: string, name: string): boolean {
    return this.db.prepare('DELETE FROM tags WHERE user = ? AND tag = ? AND name = ?').run(user, tag, name).changes > 0;
  }

  /** Delete an flist file once no entry refers to it (cheap per-file garbage collection). */
  private dropIfUnused(sha256: string | null | undefined): void {
    if (!sha256) return;
    if (this.db.prepare("SELECT 1 FROM entries WHERE kind = 'regular' AND file = ? LIMIT 1").get(sha256)) return;
    fs.rmSync(this.filePath(sha256), { force: true });
  }

  /** A fresh temp path on the registry's filesystem (for builds that end in publish()). */
  tempPath(prefix: string): string {
    return path.join(this.tmpDir, `${prefix}-${process.pid}-${crypto.randomBytes(6).toString('hex')}`);
  }

  /** Remove flist files no entry points to any more (after deletes and replacements). */
  collectGarbage(): number {
    const used = new Set((this.db.prepare("SELECT DISTINCT file FROM entries WHERE kind = 'regular'").pluck().all() as string[]));
    let removed = 0;
    for (const f of fs.readdirSync(this.flistDir)) {
      const sha = f.replace(/\.flist$/, '');
      if (!used.has(sha)) {
        fs.rmSync(path.join(this.flistDir, f), { force: true });
        removed++;
      }
    }
    return removed;
  }
}

export function splitTarget(target: string): [string, string] {
  const i = target.indexOf('/');
  return [target.slice(0, i), target.slice(i + 1)];
}

async function digestFile(file: string): Promise<{ sha256: string; md5: string; size: number }> {
  const sha = crypto.createHash('sha256');
  const md5 = crypto.createHash('md5');
  let size = 0;
  for await (const chunk of fs.createReadStream(file)) {
    sha.update(chunk as Buffer);
    md5.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: sha.digest('hex'), md5: md5.digest('hex'), size };
}
