// Merge flists into one Tree. The first flist wins on path collisions (0-hub / zflist merge
// semantics, hub-api.md §8.3); the first flist's metadata is kept. No data is copied.
import { FlistError } from './archive';
import { openFlist } from './open';
import { Tree } from './tree';

export async function mergeFlists(files: string[]): Promise<{ tree: Tree; metadata: Record<string, string> }> {
  const tree = new Tree();
  let metadata: Record<string, string> = {};
  for (const [i, file] of files.entries()) {
    const r = await openFlist(file);
    try {
      if (r.format !== 'gen2') throw new FlistError(`${file} is a generation-3 flist: only generation-2 flists can be merged`);
      if (i === 0) metadata = r.metadata();
      for (const e of r.walk()) {
        if (e.path === '') {
          if (i === 0) tree.add(e);
          continue;
        }
        if (tree.get(e.path)) continue; // an earlier flist has this path
        // Never let a later flist put entries below something an earlier one has as a non-directory.
        const parent = tree.get(e.path.slice(0, Math.max(0, e.path.lastIndexOf('/'))));
        if (!parent?.children) continue;
        tree.add(e);
      }
    } finally {
      r.close();
    }
  }
  return { tree, metadata };
}
