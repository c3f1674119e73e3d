// Joins a client-given path under a place's root the way runc's filepath-securejoin does: every
// symlink met on the way is resolved *relative to the root*, so `..` and absolute link targets
// can never lead outside it. The result is a host path under root; components that do not exist
// are kept lexically (so the path can be created). A component swapped for a symlink between this
// call and the use of its result is not caught (the same race filepath-securejoin documents).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { CommandError } from '../types';

const MAX_LINKS = 255;

export interface JoinOptions {
  /** resolve a symlink in the last component (default true); false acts on the link itself (lstat, rename, remove) */
  followLast?: boolean;
}

/** The host path of `unsafe` (absolute or relative to the place's `/`) under `root`. */
export async function secureJoin(root: string, unsafe: string, opts: JoinOptions = {}): Promise<string> {
  root = path.resolve(root);
  const followLast = opts.followLast ?? true;
  let rest = unsafe.split('/');
  let current: string[] = [];
  let links = 0;
  while (rest.length > 0) {
    const name = rest.shift()!;
    if (name === '' || name === '.') continue;
    if (name === '..') {
      current.pop(); // `current` has no symlinks, so dropping its last name is the real parent
      continue;
    }
    const candidate = [...current, name];
    const last = rest.every((n) => n === '' || n === '.');
    if (last && !followLast) {
      current = candidate;
      break;
    }
    const host = path.join(root, ...candidate);
    let link: string | null = null;
    try {
      const st = await fsp.lstat(host);
      if (st.isSymbolicLink()) link = await fsp.readlink(host);
    } catch (err) {
      // missing (or a non-directory in the middle): keep the name; the operation itself reports it
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
    if (link === null) {
      current = candidate;
      continue;
    }
    if (++links > MAX_LINKS) throw new CommandError('invalid', `too many levels of symbolic links: ${unsafe}`);
    if (link.startsWith('/')) current = [];
    rest = [...link.split('/'), ...rest];
  }
  return path.join(root, ...current);
}
