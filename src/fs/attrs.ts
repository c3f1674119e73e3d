// stat(2) answers for view nodes (g8ufs.md §5.2) and owner-name resolution for entries whose
// numeric ids the flist does not know.
import fs from 'node:fs';
import type Fuse from 'fuse-native';
import type { Entry } from '../flist/types';
import type { LayeredView, ViewNode } from './view';
import { withDeadline } from '../lib/deadline';

/** The kernel's new_encode_dev() (32-bit dev_t of stat on the wire), unlike upstream's major<<8|minor. */
export function makedev(major: number, minor: number): number {
  return (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12)) >>> 0;
}

export function statOf(n: ViewNode, nlink: number, uid: number, gid: number): Fuse.Stat {
  const e = n.entry;
  const size = e.kind === 'dir' ? 4096 : e.kind === 'link' ? Buffer.byteLength(e.target ?? '') : e.kind === 'special' ? 0 : e.size;
  return {
    mode: e.mode,
    uid,
    gid,
    size,
    nlink,
    ino: n.ino,
    rdev: e.rdev ? makedev(e.rdev.major, e.rdev.minor) : 0,
    blksize: 4096,
    blocks: Math.ceil(size / 512),
    atime: e.mtime * 1000,
    mtime: e.mtime * 1000,
    ctime: e.ctime * 1000,
  };
}

/**
 * What readdir needs per name, packed as fuse-native 2.2.6 packs a stat (getStatArray: mode,
 * uid, gid, size lo/hi, dev, nlink, ino, rdev, blksize, blocks lo/hi, 3 × ms lo/hi); libfuse 2
 * only passes st_ino and the type bits on to the kernel.
 */
export function packedDirent(mode: number, ino: number): Uint32Array {
  const a = new Uint32Array(18);
  a[0] = mode;
  a[6] = 1;
  a[7] = ino;
  return a;
}

/** name → id from passwd(5) or group(5) text (the id is the third field in both). */
export function parseIds(text: string): Map<string, number> {
  const ids = new Map<string, number>();
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || !f[0] || line.startsWith('#')) continue;
    const id = Number(f[2]);
    if (Number.isInteger(id) && id >= 0 && id <= 0xffffffff && !ids.has(f[0])) ids.set(f[0], id);
  }
  return ids;
}

interface IdTables {
  users: Map<string, number>;
  groups: Map<string, number>;
}

/** Fallback owner when neither the flist nor the host knows a name (upstream's choice). */
export const UNKNOWN_ID = 1000;

/**
 * Numeric ids for entries whose uid/gid are -1 (g8ufs.md §10): the name in the view's own
 * /etc/passwd and /etc/group (fetched once, through the blocks, bounded in time), else in the
 * host's, else 1000. Entries with numeric ids never get here.
 */
export class Owners {
  private flist?: Promise<IdTables>;
  private host?: Promise<IdTables>;

  constructor(
    private readonly view: LayeredView,
    private readonly log: (line: string) => void,
    private readonly timeoutMs = 10_000,
  ) {}

  async ids(e: Entry): Promise<{ uid: number; gid: number }> {
    const [f, h] = await Promise.all([(this.flist ??= this.loadFlist()), (this.host ??= loadHost())]);
    const pick = (id: number, name: string, own: Map<string, number>, host: Map<string, number>): number =>
      id >= 0 ? id : (own.get(name) ?? host.get(name) ?? UNKNOWN_ID);
    return { uid: pick(e.uid, e.uname, f.users, h.users), gid: pick(e.gid, e.gname, f.groups, h.groups) };
  }

  private async loadFlist(): Promise<IdTables> {
    const read = async (p: string): Promise<Map<string, number>> => {
      try {
        const buf = await withDeadline(this.view.readFile(p, 4 * 1024 * 1024), this.timeoutMs, () => new Error(`timed out after ${this.timeoutMs} ms`));
        return buf ? parseIds(buf.toString('utf8')) : new Map();
      } catch (err) {
        this.log(`g8ufs: cannot read ${p} of the flist for owner names (host names used): ${(err as Error).message}`);
        return new Map();
      }
    };
    const [users, groups] = await Promise.all([read('etc/passwd'), read('etc/group')]);
    return { users, groups };
  }
}

async function loadHost(): Promise<IdTables> {
  const read = (p: string): Promise<Map<string, number>> =>
    fs.promises.readFile(p, 'utf8').then(parseIds, () => new Map<string, number>());
  const [users, groups] = await Promise.all([read('/etc/passwd'), read('/etc/group')]);
  return { users, groups };
}
