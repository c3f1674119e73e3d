// The in-memory view of one flist entry, shared by the generation-2 and -3 readers,
// the writer, the builder and (later) the mount.

export type EntryKind = 'dir' | 'file' | 'link' | 'special';

/** Special.type of the gen-2 schema, in its enum order. */
export const SPECIAL_TYPES = ['socket', 'block', 'char', 'fifo', 'unknown'] as const;
export type SpecialType = (typeof SPECIAL_TYPES)[number];

/** One stored chunk: `id` = storage id, `key` = decryption key (16 bytes gen-2, 32 bytes gen-3). */
export interface BlockRef {
  id: Buffer;
  key: Buffer;
}

export interface Entry {
  /** Base name; "" for the root. */
  name: string;
  /** Relative path below the root, no leading or trailing slash; "" for the root. */
  path: string;
  kind: EntryKind;
  /** Full st_mode: file-type bits | permission bits (07777). */
  mode: number;
  /** Numeric owner; -1 when the flist does not know it (then use uname/gname). */
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Regular files: content length; symlinks: target length; dirs: 4096; specials: 0. */
  size: number;
  mtime: number;
  ctime: number;
  /** Symlink target, verbatim. */
  target?: string;
  /** Chunks of a regular file in order (empty for an empty file). */
  blocks?: BlockRef[];
  special?: SpecialType;
  /** Device number for block/char specials. */
  rdev?: { major: number; minor: number };
}

export interface FlistStats {
  dirs: number;
  files: number;
  symlinks: number;
  specials: number;
  blocks: number;
  bytes: number;
}

/** Which chunk codec the block refs of a reader need. */
export type BlockCodec = 'gen2' | 'gen3';

export interface FlistReader {
  readonly format: BlockCodec;
  /** The entry at a relative path ("" or "/" = root); undefined when absent. */
  stat(path: string): Entry | undefined;
  /** Children of a directory, in stored order (duplicates dropped, first wins). */
  list(path: string): Entry[];
  /** Every entry, depth first, parents before children, the root first. */
  walk(): Iterable<Entry>;
  metadata(): Record<string, string>;
  stats(): FlistStats;
  close(): void;
}

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export const BLOCK_SIZE = 512 * 1024;

/** A child name readers accept (spec §7.3): not empty, ".", "..", and no "/" or NUL. */
export const validName = (n: unknown): n is string =>
  typeof n === 'string' && n !== '' && n !== '.' && n !== '..' && !n.includes('/') && !n.includes('\0');

/** Normalise a user-supplied path to the flist's relative form. */
export function relPath(p: string): string {
  return p
    .split('/')
    .filter((c) => c !== '' && c !== '.')
    .join('/');
}
