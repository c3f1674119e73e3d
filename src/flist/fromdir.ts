// Builds from a directory on the local filesystem (read, never modified).
import fs from 'node:fs';
import path from 'node:path';
import { hashReady } from './hash';
import { BuildError, Ingest, type BuildOptions, type BuildResult } from './ingest';
import {
  BLOCK_SIZE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
  type Entry, type SpecialType,
} from './types';

export function splitDev(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

/** Build from a directory on the local filesystem (it is read, never modified). */
export async function buildFromDir(dir: string, opts: BuildOptions): Promise<BuildResult> {
  await hashReady();
  const rootSt = await fs.promises.lstat(dir).catch((e: NodeJS.ErrnoException) => {
    throw new BuildError(`cannot read ${dir}: ${e.code ?? e.message}`);
  });
  if (!rootSt.isDirectory()) throw new BuildError(`${dir} is not a directory`);
  const ing = new Ingest(opts);
  const owners = await ownerNames(dir);
  const seenInodes = new Map<string, Entry>();
  const entryOf = (rel: string, st: fs.Stats): Entry => ({
    name: path.posix.basename(rel), path: rel, kind: 'file', mode: st.mode, uid: st.uid, gid: st.gid,
    uname: owners.users.get(st.uid) ?? String(st.uid), gname: owners.groups.get(st.gid) ?? String(st.gid),
    size: 0, mtime: ing.time(st.mtimeMs / 1000, rel), ctime: ing.time(st.ctimeMs / 1000, rel),
  });
  try {
    const root = entryOf('', rootSt);
    ing.tree.add({ ...root, kind: 'dir', size: 4096 });
    ing.count(ing.tree.root.entry);
    const stack = [''];
    while (stack.length) {
      const rel = stack.pop()!;
      const names = (await fs.promises.readdir(path.join(dir, rel))).sort();
      for (const n of names) {
        const childRel = rel ? `${rel}/${n}` : n;
        const abs = path.join(dir, childRel);
        const st = await fs.promises.lstat(abs);
        const e = entryOf(childRel, st);
        const type = st.mode & S_IFMT;
        if (type === S_IFDIR) {
          Object.assign(e, { kind: 'dir', size: 4096 });
          stack.push(childRel);
        } else if (type === S_IFREG) {
          e.size = st.size;
          const inode = `${st.dev}:${st.ino}`;
          const first = st.nlink > 1 ? seenInodes.get(inode) : undefined;
          ing.count(e);
          if (first) {
            e.blocks = first.blocks;
            e.size = first.size;
            ing.stats.hardlinks++;
          } else {
            e.blocks = await ing.content(fs.createReadStream(abs, { highWaterMark: BLOCK_SIZE }), st.size, childRel);
            if (st.nlink > 1) seenInodes.set(inode, e);
          }
          ing.tree.add(e);
          continue;
        } else if (type === S_IFLNK) {
          const target = await fs.promises.readlink(abs);
          Object.assign(e, { kind: 'link', target, size: Buffer.byteLength(target) });
        } else {
          const special: SpecialType = type === S_IFCHR ? 'char' : type === S_IFBLK ? 'block' : type === S_IFIFO ? 'fifo' : type === S_IFSOCK ? 'socket' : 'unknown';
          Object.assign(e, { kind: 'special', special, size: 0 });
          if (special === 'char' || special === 'block') e.rdev = splitDev(st.rdev);
        }
        ing.count(e);
        ing.tree.add(e);
      }
    }
    return await ing.finish();
  } catch (e) {
    await ing.abort();
    if (e instanceof BuildError) throw e;
    throw new BuildError(`cannot read ${dir}: ${(e as Error).message}`);
  }
}

/**
 * uid/gid → name for a directory build: from the tree's own /etc/passwd and /etc/group when it
 * has them (a root filesystem names its own users), else from the host's.
 */
async function ownerNames(dir: string): Promise<{ users: Map<number, string>; groups: Map<number, string> }> {
  const parse = async (file: string): Promise<Map<number, string> | undefined> => {
    const st = await fs.promises.lstat(file).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const m = new Map<number, string>();
    for (const line of (await fs.promises.readFile(file, 'utf8')).split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && /^\d+$/.test(f[2]) && !m.has(Number(f[2]))) m.set(Number(f[2]), f[0]);
    }
    return m;
  };
  const own = async (name: string): Promise<Map<number, string>> =>
    (await parse(path.join(dir, 'etc', name))) ?? (await parse(path.join('/etc', name))) ?? new Map();
  return { users: await own('passwd'), groups: await own('group') };
}

/** Build from a path: a directory, or a tar / tar.gz file. */
