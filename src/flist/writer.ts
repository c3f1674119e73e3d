// Writes a Tree as a generation-2 flist: one transaction, VACUUM, tar.gz, atomic rename.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { packFlist } from './archive';
import { makeTempDir } from './tempdir';
import { blake2b64, dirKey, hashReady } from './hash';
import { encodeAci, encodeDir, type RawAci, type RawInode } from './schema';
import type { Tree, TreeNode } from './tree';
import type { Entry } from './types';

/**
 * ACI key from a collision-free recipe (spec §4.2: the 2020–2022 upstream recipe sliced the
 * mode text and made 0644/0744/0444 collide).
 */
export function aciKey(a: RawAci): string {
  const recipe = `user:${a.uname}\ngroup:${a.gname}\nmode:0o${(a.mode & 0o7777).toString(8)}\nuid:${a.uid}\ngid:${a.gid}`;
  return blake2b64(recipe).toString('hex');
}

/** The format stores unsigned 32-bit seconds: clamp rather than wrap (1969 must not become 2106). */
export const u32Time = (t: number): number => Math.min(Math.max(Math.floor(t), 0), 0xffffffff);

const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Sub-directories first, then everything else; each group in byte order (spec §7.3). */
function ordered(children: Iterable<TreeNode>): TreeNode[] {
  const all = [...children];
  const dirs = all.filter((c) => c.entry.kind === 'dir').sort((x, y) => byteOrder(x.entry.name, y.entry.name));
  const rest = all.filter((c) => c.entry.kind !== 'dir').sort((x, y) => byteOrder(x.entry.name, y.entry.name));
  return dirs.concat(rest);
}

function aciOf(e: Entry): RawAci {
  return { uname: e.uname || String(e.uid), gname: e.gname || String(e.gid), mode: e.mode & 0o7777, uid: e.uid, gid: e.gid };
}

function inodeOf(e: Entry, aclkey: string): RawInode {
  const n: RawInode = { name: e.name, size: e.size, kind: e.kind, aclkey, mtime: u32Time(e.mtime), ctime: u32Time(e.ctime) };
  if (e.kind === 'dir') {
    n.subKey = dirKey(e.path);
    n.size = 4096;
  } else if (e.kind === 'file') n.blocks = e.blocks ?? [];
  else if (e.kind === 'link') {
    n.target = e.target ?? '';
    n.size = Buffer.byteLength(n.target);
  } else {
    n.special = e.special;
    n.size = 0;
    n.specialData = e.rdev ? `${e.rdev.major},${e.rdev.minor}` : '(nothing)';
  }
  return n;
}

/** Write the tree's database to a new SQLite file at dbFile. */
export async function writeDb(tree: Tree, dbFile: string, metadata: Record<string, string> = {}): Promise<void> {
  await hashReady();
  const db = new Database(dbFile);
  try {
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.exec('CREATE TABLE entries (key VARCHAR(64) PRIMARY KEY, value BLOB);');
    db.exec('CREATE TABLE metadata (key VARCHAR(64) PRIMARY KEY, value TEXT);');
    const putEntry = db.prepare('INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)');
    const putMeta = db.prepare('INSERT OR REPLACE INTO metadata (key, value) VALUES (?, ?)');
    const acis = new Set<string>();
    const aclkeyOf = (e: Entry): string => {
      const a = aciOf(e);
      const key = aciKey(a);
      if (!acis.has(key)) {
        acis.add(key);
        putEntry.run(key, encodeAci(a));
      }
      return key;
    };
    db.transaction(() => {
      const stack: Array<{ node: TreeNode; parentKey: string }> = [];
      const rootKey = dirKey('');
      stack.push({ node: tree.root, parentKey: rootKey });
      while (stack.length) {
        const { node, parentKey } = stack.pop()!;
        const e = node.entry;
        const key = dirKey(e.path);
        const kids = ordered(node.children!.values());
        putEntry.run(key, encodeDir({
          name: e.name, location: e.path, parent: parentKey, size: 4096, aclkey: aclkeyOf(e),
          mtime: u32Time(e.mtime), ctime: u32Time(e.ctime),
          contents: kids.map((c) => inodeOf(c.entry, aclkeyOf(c.entry))),
        }));
        for (const c of kids) if (c.children) stack.push({ node: c, parentKey: key });
      }
      for (const [k, v] of Object.entries(metadata)) putMeta.run(k, v);
    })();
    db.exec('VACUUM');
  } finally {
    db.close();
  }
}

/**
 * Write the tree as an flist file at `out`; nothing is left at `out` on failure. The database
 * is built in a temp dir under `tmpDir` (default the OS's): the hub passes its own, which it
 * clears at start, so a crash mid-write leaves nothing behind.
 */
export async function writeFlist(tree: Tree, out: string, metadata: Record<string, string> = {}, opts: { tmpDir?: string } = {}): Promise<void> {
  const tmp = await makeTempDir('write', opts.tmpDir);
  try {
    const dbFile = path.join(tmp, 'flistdb.sqlite3');
    await writeDb(tree, dbFile, metadata);
    await packFlist(dbFile, out);
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
}
