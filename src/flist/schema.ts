// The generation-2 flist schema (0-flist format/flist.capnp, file id @0xae9223e76351538a):
// Dir, Inode and its union members, ACI. Layouts per flist-format.md §6.
import { Builder, Message, type StructReader } from './capnp';
import { SPECIAL_TYPES, type BlockRef, type SpecialType } from './types';

const MINUS_ONE = -1n;

export interface RawInode {
  name: string;
  size: number;
  kind: 'dir' | 'file' | 'link' | 'special';
  aclkey: string;
  mtime: number;
  ctime: number;
  /** dir: the child directory's entry key */
  subKey?: string;
  /** file: chunks in order ([] for a null list) */
  blocks?: BlockRef[];
  /** link: target */
  target?: string;
  special?: SpecialType;
  /** special: "major,minor" or "(nothing)" */
  specialData?: string;
}

export interface RawDir {
  name: string;
  location: string;
  parent: string;
  size: number;
  aclkey: string;
  mtime: number;
  ctime: number;
  contents: RawInode[];
}

export interface RawAci {
  uname: string;
  gname: string;
  mode: number;
  uid: number;
  gid: number;
}

const KINDS = ['dir', 'file', 'link', 'special'] as const;

function readInode(s: StructReader): RawInode {
  const which = s.u16(8);
  const kind = KINDS[which];
  if (!kind) throw new Error(`unknown inode kind ${which}`);
  const node: RawInode = {
    name: s.text(0),
    size: s.u64(0),
    kind,
    aclkey: s.text(2),
    mtime: s.u32(12),
    ctime: s.u32(16),
  };
  const attr = s.struct(1);
  if (kind === 'dir') node.subKey = attr ? attr.text(0) : '';
  else if (kind === 'file') {
    const list = attr ? attr.structList(0) : null;
    node.blocks = list ? list.map((b) => ({ id: Buffer.from(b.data(0) ?? []), key: Buffer.from(b.data(1) ?? []) })) : [];
  } else if (kind === 'link') node.target = attr ? attr.text(0) : '';
  else {
    node.special = SPECIAL_TYPES[attr ? attr.u16(0) : 4] ?? 'unknown';
    const d = attr ? attr.data(0) : null;
    node.specialData = d ? d.toString('utf8') : '';
  }
  return node;
}

export function decodeDir(value: Buffer): RawDir {
  const d = new Message(value).root();
  return {
    name: d.text(0),
    location: d.text(1),
    parent: d.text(3),
    size: d.u64(0),
    aclkey: d.text(4),
    mtime: d.u32(8),
    ctime: d.u32(12),
    contents: (d.structList(2) ?? []).map(readInode),
  };
}

export function decodeAci(value: Buffer): RawAci {
  const a = new Message(value).root();
  return { uname: a.text(0), gname: a.text(1), mode: a.u16(0) & 0o7777, uid: a.i64(8, MINUS_ONE), gid: a.i64(16, MINUS_ONE) };
}

export function encodeDir(dir: RawDir): Buffer {
  const b = new Builder();
  const root = b.alloc(1);
  const d = b.struct(root, 2, 5);
  const dp = d + 2;
  b.text(dp, dir.name);
  b.text(dp + 1, dir.location);
  b.text(dp + 3, dir.parent);
  b.text(dp + 4, dir.aclkey);
  b.u64(d, 0, dir.size);
  b.u32(d, 8, dir.mtime);
  b.u32(d, 12, dir.ctime);
  if (dir.contents.length === 0) return b.finish();
  const first = b.structList(dp + 2, dir.contents.length, 3, 3);
  dir.contents.forEach((n, i) => {
    const s = first + i * 6;
    const p = s + 3;
    b.text(p, n.name);
    b.u64(s, 0, n.size);
    b.u16(s, 8, KINDS.indexOf(n.kind));
    b.u32(s, 12, n.mtime);
    b.u32(s, 16, n.ctime);
    b.text(p + 2, n.aclkey);
    if (n.kind === 'dir') b.text(b.struct(p + 1, 0, 1), n.subKey ?? '');
    else if (n.kind === 'file') {
      const f = b.struct(p + 1, 1, 1);
      b.u16(f, 0, 128);
      const blocks = n.blocks ?? [];
      if (blocks.length === 0) return; // empty files have a null block list
      const fb = b.structList(f + 1, blocks.length, 0, 2);
      blocks.forEach((blk, k) => {
        b.data(fb + 2 * k, blk.id);
        b.data(fb + 2 * k + 1, blk.key);
      });
    } else if (n.kind === 'link') b.text(b.struct(p + 1, 0, 1), n.target ?? '');
    else {
      const sp = b.struct(p + 1, 1, 1);
      b.u16(sp, 0, SPECIAL_TYPES.indexOf(n.special ?? 'unknown'));
      b.data(sp + 1, Buffer.from(n.specialData ?? '', 'utf8'));
    }
  });
  return b.finish();
}

export function encodeAci(aci: RawAci): Buffer {
  const b = new Builder();
  const root = b.alloc(1);
  const a = b.struct(root, 3, 3);
  b.text(a + 3, aci.uname);
  b.text(a + 4, aci.gname);
  b.u16(a, 0, aci.mode & 0o7777);
  b.i64(a, 8, aci.uid, MINUS_ONE);
  b.i64(a, 16, aci.gid, MINUS_ONE);
  return b.finish();
}
