// Path resolution inside an flist, following symlinks the way the kernel would inside a
// chroot of it: absolute targets start at the flist root, ".." stops at the root.
import { relPath, type Entry, type FlistReader } from './types';

const MAX_LINKS = 40; // Linux's MAXSYMLINKS

/** The entry a path names after following every symlink; undefined if the chain ends nowhere. */
export function resolveEntry(r: FlistReader, path: string): Entry | undefined {
  let pending = relPath(path).split('/').filter(Boolean);
  let at: string[] = [];
  let hops = 0;
  while (pending.length) {
    const part = pending.shift()!;
    if (part === '..') {
      at.pop();
      continue;
    }
    const e = r.stat([...at, part].join('/'));
    if (!e) return undefined;
    if (e.kind === 'link') {
      if (++hops > MAX_LINKS) throw new Error(`${path}: too many levels of symbolic links`);
      const target = e.target ?? '';
      if (target.startsWith('/')) at = [];
      pending = [...target.split('/').filter((c) => c && c !== '.'), ...pending];
      continue;
    }
    at.push(part);
  }
  return r.stat(at.join('/'));
}
