// The layered read-only view over one or more flists (g8ufs.md §4.1). The last layer is on
// top. A file, link or special in the highest layer having a path wins; a directory merges
// that directory of every layer below it down to the first layer where the path is not a
// directory (overlayfs lookup rules: a non-directory cuts off the layers under it, so
// "dir below, file above" is a file and its old children vanish). Duplicate names: the
// highest layer wins. No whiteouts. Metadata only: nothing here touches a store except
// readFile().
import { type ErrorKind, G8osError } from '../errors';
import { relPath, type Entry } from '../flist/types';
import type { Layer, ViewEntry } from './types';

/** A resolved path: the winning entry, its stable inode number and, for directories, the merged layers. */
export interface ViewNode extends ViewEntry {
  /** Relative path ("" for the root). */
  path: string;
  ino: number;
  /** Directories only: indexes of the layers merged here, top first. */
  layers?: readonly number[];
  /** Directories only: 2 + merged sub-directories, once the directory was listed. */
  nlink?: number;
}

type ViewErrno = 'ENOENT' | 'ENOTDIR' | 'ELOOP' | 'EFBIG';
const VIEW_KINDS: Record<ViewErrno, ErrorKind> = { ENOENT: 'not_found', ENOTDIR: 'not_found', ELOOP: 'invalid', EFBIG: 'too_large' };

/** A path the view cannot answer as asked: the FUSE layer answers its precise errno (errnoName). */
export class ViewError extends G8osError {
  constructor(
    message: string,
    readonly code: ViewErrno,
  ) {
    super(VIEW_KINDS[code], message, { errno: code });
  }
}

interface Merged {
  entry: Entry;
  layer: number;
  layers?: number[];
  /** A non-directory was met below: no more layers merge into this directory. */
  closed: boolean;
}

/** FUSE paths ("/a/b") and relative ones ("a/b") to the relative form, cheaply when canonical. */
export function viewPath(p: string): string {
  const s = p.startsWith('/') ? p.slice(1) : p;
  return s.endsWith('/') || s.includes('//') || s.includes('./') || s === '.' ? relPath(s) : s;
}

/** Bounded map that does no work on hits: two generations, the older dropped when the young one fills. */
export class GenCache<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();

  constructor(private readonly max: number) {}

  get(k: K): V | undefined {
    let v = this.young.get(k);
    if (v !== undefined) return v;
    v = this.old.get(k);
    if (v !== undefined) this.set(k, v);
    return v;
  }

  set(k: K, v: V): void {
    this.young.set(k, v);
    if (this.young.size >= this.max) {
      this.old = this.young;
      this.young = new Map();
    }
  }
}

interface Listing {
  children: ViewNode[];
  subdirs: number;
}

export class LayeredView {
  private readonly nodes: GenCache<string, ViewNode | null>;
  private readonly listings: GenCache<string, Listing>;
  private readonly inos = new Map<string, number>();
  private nextIno = 2;
  private readonly root: ViewNode;

  constructor(
    readonly layers: readonly Layer[],
    opts: { cacheEntries?: number; cacheDirs?: number } = {},
  ) {
    if (layers.length === 0) throw new Error('a view needs at least one flist');
    this.nodes = new GenCache(opts.cacheEntries ?? 65536);
    this.listings = new GenCache(opts.cacheDirs ?? 8192);
    this.inos.set('', 1);
    const top = layers.length - 1;
    const entry = layers[top].reader.stat('');
    if (!entry) throw new Error('flist has no root directory');
    this.root = { entry, layer: top, path: '', ino: 1, layers: layers.map((_, i) => top - i) };
  }

  /** Stable inode number of a path for this view's lifetime (root = 1), assigned on first sight. */
  ino(path: string): number {
    let n = this.inos.get(path);
    if (n === undefined) {
      n = this.nextIno++;
      this.inos.set(path, n);
    }
    return n;
  }

  get inodes(): number {
    return this.inos.size;
  }

  /** The node at a path, or undefined when the view has nothing there. */
  stat(path: string): ViewNode | undefined {
    return this.resolve(viewPath(path));
  }

  private resolve(p: string): ViewNode | undefined {
    if (p === '') return this.root;
    const hit = this.nodes.get(p);
    if (hit !== undefined) return hit ?? undefined;
    const slash = p.lastIndexOf('/');
    const parent = this.resolve(slash < 0 ? '' : p.slice(0, slash));
    let found: Merged | undefined;
    if (parent?.layers) {
      for (const li of parent.layers) {
        const e = this.layers[li].reader.stat(p);
        if (!e) continue;
        if (!found) found = { entry: e, layer: li, layers: e.kind === 'dir' ? [li] : undefined, closed: e.kind !== 'dir' };
        else if (e.kind === 'dir') found.layers!.push(li);
        else found.closed = true;
        if (found.closed) break;
      }
    }
    const node = found ? this.node(p, found) : null;
    this.nodes.set(p, node);
    return node ?? undefined;
  }

  private node(p: string, m: Merged): ViewNode {
    const n: ViewNode = { entry: m.entry, layer: m.layer, path: p, ino: this.ino(p) };
    if (m.layers) n.layers = m.layers;
    return n;
  }

  /** Children of a directory, merged over its layers (top layer's order first). Do not modify. */
  list(path: string): readonly ViewNode[] {
    const dir = this.stat(path);
    if (!dir) throw new ViewError(`/${viewPath(path)}: no such file or directory`, 'ENOENT');
    if (!dir.layers) throw new ViewError(`/${dir.path}: not a directory`, 'ENOTDIR');
    let l = this.listings.get(dir.path);
    if (!l) {
      l = { children: [], subdirs: 0 };
      for (const m of this.merged(dir.path, dir.layers).values()) {
        const p = m.entry.path;
        let n = this.nodes.get(p);
        if (!n) {
          n = this.node(p, m);
          this.nodes.set(p, n);
        }
        if (n.layers) l.subdirs++;
        l.children.push(n);
      }
      this.listings.set(dir.path, l);
    }
    dir.nlink = 2 + l.subdirs;
    return l.children;
  }

  /** 1 for non-directories; 2 + merged sub-directories (lists the directory once). */
  nlink(n: ViewNode): number {
    if (!n.layers) return 1;
    if (n.nlink === undefined) this.list(n.path);
    return n.nlink!;
  }

  private merged(p: string, layers: readonly number[]): Map<string, Merged> {
    const out = new Map<string, Merged>();
    for (const li of layers) {
      for (const e of this.layers[li].reader.list(p)) {
        const m = out.get(e.name);
        if (!m) out.set(e.name, { entry: e, layer: li, layers: e.kind === 'dir' ? [li] : undefined, closed: e.kind !== 'dir' });
        else if (!m.closed) {
          if (e.kind === 'dir') m.layers!.push(li);
          else m.closed = true;
        }
      }
    }
    return out;
  }

  /** Every entry of the view, parents first, the root first; bypasses the node cache. */
  *walk(): Iterable<ViewEntry> {
    if (this.layers.length === 1) {
      for (const entry of this.layers[0].reader.walk()) yield { entry, layer: 0 };
      return;
    }
    yield this.root;
    const stack: Array<{ path: string; layers: readonly number[] }> = [{ path: '', layers: this.root.layers! }];
    while (stack.length) {
      const d = stack.pop()!;
      for (const m of this.merged(d.path, d.layers).values()) {
        yield { entry: m.entry, layer: m.layer };
        if (m.layers) stack.push({ path: m.entry.path, layers: m.layers });
      }
    }
  }

  /** Follows symlinks inside the view (absolute targets from its root); undefined when dangling. */
  follow(path: string, hops = 16): ViewNode | undefined {
    let p = viewPath(path);
    for (let i = 0; i <= hops; i++) {
      const n = this.resolve(p);
      if (!n || n.entry.kind !== 'link') return n;
      const t = n.entry.target ?? '';
      const base = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
      p = normalize(t.startsWith('/') ? t : `${base}/${t}`);
    }
    throw new ViewError(`/${viewPath(path)}: too many levels of symbolic links`, 'ELOOP');
  }

  /** Whole content of a (small) regular file, fetched through its layer's block source. */
  async readFile(path: string, maxBytes = 4 * 1024 * 1024): Promise<Buffer | undefined> {
    const n = this.follow(path);
    if (!n || n.entry.kind !== 'file') return undefined;
    if (n.entry.size > maxBytes) throw new ViewError(`/${n.path}: larger than ${maxBytes} bytes`, 'EFBIG');
    const layer = this.layers[n.layer];
    const parts: Buffer[] = [];
    for (const ref of n.entry.blocks ?? []) parts.push(await layer.blocks.block(ref));
    const all = Buffer.concat(parts);
    if (all.length < n.entry.size) {
      throw new Error(`/${n.path}: blocks hold ${all.length} bytes, the flist says ${n.entry.size}`);
    }
    return all.subarray(0, n.entry.size);
  }
}

/** "a/./b/../c" → "a/c", never above the root. */
function normalize(p: string): string {
  const out: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return out.join('/');
}
