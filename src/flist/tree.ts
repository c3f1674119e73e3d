// An in-memory tree of entries (metadata and block refs only, never file contents): what
// the builder fills from a tarball or directory and the writer turns into an flist.
import { S_IFDIR, type Entry } from './types';

export interface TreeNode {
  entry: Entry;
  children?: Map<string, TreeNode>;
}

export class Tree {
  readonly root: TreeNode;

  constructor(root?: Partial<Entry>) {
    this.root = { entry: impliedDir('', '', root?.mtime ?? 0, root), children: new Map() };
  }

  get(path: string): TreeNode | undefined {
    let node: TreeNode | undefined = this.root;
    if (path === '') return node;
    for (const part of path.split('/')) {
      node = node?.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  /**
   * Add or replace the entry at entry.path (tar semantics: the last member wins). Parent
   * directories that were never listed are created with mode 0755, owned by root.
   * Replacing a directory by a directory keeps its children.
   */
  add(entry: Entry, implied: { mtime: number } = { mtime: entry.mtime }): TreeNode {
    if (entry.path === '') {
      this.root.entry = { ...entry, name: '', path: '' };
      return this.root;
    }
    const parts = entry.path.split('/');
    let node = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      let next = node.children!.get(parts[i]);
      if (!next || !next.children) {
        next = { entry: impliedDir(parts[i], parts.slice(0, i + 1).join('/'), implied.mtime), children: new Map() };
        node.children!.set(parts[i], next);
      }
      node = next;
    }
    const name = parts[parts.length - 1];
    const old = node.children!.get(name);
    const fresh: TreeNode = { entry };
    if (entry.kind === 'dir') fresh.children = old?.children ?? new Map();
    node.children!.set(name, fresh);
    return fresh;
  }

  /** Every entry, depth-first, parents before children. */
  *entries(): Iterable<Entry> {
    for (const n of this.walk()) yield n.entry;
  }

  /** Depth-first, parents before children. */
  *walk(node: TreeNode = this.root): Iterable<TreeNode> {
    yield node;
    if (node.children) for (const c of node.children.values()) yield* this.walk(c);
  }
}

function impliedDir(name: string, path: string, mtime: number, over?: Partial<Entry>): Entry {
  return {
    name, path, kind: 'dir', mode: S_IFDIR | 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root',
    size: 4096, mtime, ctime: mtime, ...over,
  };
}
