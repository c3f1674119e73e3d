import type { Entry, FlistStats } from './types';

/** Counts by kind; dirs include the root when the entries do; bytes = regular file sizes. */
export function countEntries(entries: Iterable<Entry>): FlistStats {
  const s: FlistStats = { dirs: 0, files: 0, symlinks: 0, specials: 0, blocks: 0, bytes: 0 };
  for (const e of entries) {
    if (e.kind === 'dir') s.dirs++;
    else if (e.kind === 'file') {
      s.files++;
      s.blocks += e.blocks?.length ?? 0;
      s.bytes += e.size;
    } else if (e.kind === 'link') s.symlinks++;
    else s.specials++;
  }
  return s;
}
