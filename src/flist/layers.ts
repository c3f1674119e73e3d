// Container image layers (OCI image-spec "layer changesets") applied in order onto one Tree:
// each layer is built by buildFromTar into a Tree of its own (its blocks go to the store as
// usual), then merged onto the result with whiteouts honoured.
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { buildFromTar, memberPath, treeCounts, type BuildOptions, type BuildStats } from './builder';
import { Tree, type TreeNode } from './tree';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

export interface Layer {
  tree: Tree;
  stats: BuildStats;
  /** Paths the layer's tar lists itself; other directories in `tree` are implied parents. */
  listed: Set<string>;
}

/**
 * Build one layer from its uncompressed tar stream. The tar is also read by a header-only
 * parser alongside the builder, because the builder's Tree cannot tell a listed directory from
 * an implied parent, and an implied parent must not replace the lower layer's directory.
 */
export async function buildLayer(input: Readable, opts: BuildOptions): Promise<Layer> {
  const toBuilder = new PassThrough({ highWaterMark: 1 << 20 });
  const toScanner = new PassThrough({ highWaterMark: 1 << 20 });
  input.pipe(toBuilder);
  input.pipe(toScanner);
  input.on('error', (e) => {
    toBuilder.destroy(e);
    toScanner.destroy(e);
  });
  const listed = new Set<string>();
  const extract = tar.extract();
  const scanned = (async () => {
    const parsed = pipeline(toScanner, extract);
    parsed.catch(() => undefined);
    for await (const member of extract) {
      try {
        listed.add(memberPath(member.header.name));
      } catch {
        // the builder refuses the same name with a clear message
      }
      for await (const _ of member); // headers only; skip the data
    }
    await parsed;
  })();
  scanned.catch(() => undefined); // a bad tar is reported by the builder
  try {
    const { tree, stats } = await buildFromTar(toBuilder, opts);
    await scanned;
    return { tree, stats, listed };
  } finally {
    input.unpipe();
    input.destroy();
    toScanner.destroy();
    extract.destroy();
  }
}

const isWhiteout = (name: string): boolean => name.startsWith(WHITEOUT_PREFIX);

/**
 * Apply `layer` onto `base` (the lower layers, merged so far). Whiteouts act only on lower
 * content, so all of them are applied before any of the layer's own entries are added:
 * `.wh.<name>` removes <name> beside it, `.wh..wh..opq` empties its directory. Whiteout files
 * never appear in the result. Returns the number of whiteouts seen.
 */
export function applyLayer(base: Tree, layer: Layer): number {
  let whiteouts = 0;
  for (const { entry } of layer.tree.walk()) {
    if (!isWhiteout(entry.name)) continue;
    whiteouts++;
    const dir = base.get(parentPath(entry.path));
    if (!dir?.children) continue;
    if (entry.name === OPAQUE_WHITEOUT) dir.children.clear();
    else {
      const hidden = entry.name.slice(WHITEOUT_PREFIX.length);
      // other ".wh..wh.*" names are aufs bookkeeping (e.g. .wh..wh.plnk): never content
      if (!hidden.startsWith(WHITEOUT_PREFIX)) dir.children.delete(hidden);
    }
  }
  const add = (node: TreeNode): void => {
    const e = node.entry;
    if (isWhiteout(e.name)) return; // and anything below it
    if (e.path !== '' || layer.listed.has('')) {
      const lower = base.get(e.path);
      // an implied parent keeps the lower directory's metadata
      if (layer.listed.has(e.path) || !lower || (e.kind === 'dir' && !lower.children)) base.add(e);
    }
    if (node.children) for (const c of node.children.values()) add(c);
  };
  add(layer.tree.root);
  return whiteouts;
}

function parentPath(p: string): string {
  const d = path.posix.dirname(p);
  return d === '.' ? '' : d;
}

/** Totals for the merged tree: counts from the tree itself, work done summed over the layers. */
export function mergedStats(tree: Tree, layers: BuildStats[]): BuildStats {
  const s: BuildStats = {
    regular: 0, symlink: 0, directory: 0, special: 0, failure: 0, fullsize: 0, hardlinks: 0,
    blocks: 0, uploaded_chunks: 0, uploaded_bytes: 0, input_bytes: 0,
  };
  for (const l of layers) {
    s.failure += l.failure;
    s.hardlinks += l.hardlinks;
    s.uploaded_chunks += l.uploaded_chunks;
    s.uploaded_bytes += l.uploaded_bytes;
    s.input_bytes += l.input_bytes;
  }
  return { ...s, ...treeCounts(tree) };
}
