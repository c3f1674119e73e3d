// Contracts between the pieces of g8ufs: the block cache (cache.ts), the read-only FUSE
// filesystem (rofs.ts) and the mount orchestration (mount.ts).
import type { BlockCodec, BlockRef, Entry, FlistReader } from '../flist/types';

/**
 * Where one layer of a read-only filesystem gets verified plaintext blocks; the codec is bound
 * to the layer (see bindCodec), so reads pass only block refs.
 */
export interface BlockSource {
  /** Plaintext of one block, verified against its key; throws (→ EIO) when it cannot be had. */
  block(ref: BlockRef): Promise<Buffer>;
  /** Bytes [start, end) of one block's plaintext (a source may read just that range of a block it verified). */
  range(ref: BlockRef, start: number, end: number): Promise<Buffer>;
  /** Hint: these blocks are likely to be read soon (read-ahead, prefetch); never throws. */
  prefetch(refs: BlockRef[]): void;
  /** Blocks of open files are not evicted while pinned. */
  pin(refs: BlockRef[]): void;
  unpin(refs: BlockRef[]): void;
}

/** Blocks of any codec from one store: the shared block cache (BlockCache) or DirectBlocks. */
export interface BlockProvider {
  block(ref: BlockRef, codec: BlockCodec): Promise<Buffer>;
  range(ref: BlockRef, codec: BlockCodec, start: number, end: number): Promise<Buffer>;
  prefetch(refs: BlockRef[], codec: BlockCodec): void;
  pin(refs: BlockRef[]): void;
  unpin(refs: BlockRef[]): void;
}

/** The BlockSource of a layer whose flist uses `codec`. */
export function bindCodec(p: BlockProvider, codec: BlockCodec): BlockSource {
  return {
    block: (ref) => p.block(ref, codec),
    range: (ref, start, end) => p.range(ref, codec, start, end),
    prefetch: (refs) => p.prefetch(refs, codec),
    pin: (refs) => p.pin(refs),
    unpin: (refs) => p.unpin(refs),
  };
}

/** One flist in a (possibly layered) read-only view; the last layer given is on top. */
export interface Layer {
  reader: FlistReader;
  /** Block source for this layer's files, bound to its codec (its store may differ from the others'). */
  blocks: BlockSource;
}

/** A resolved path in the layered view. */
export interface ViewEntry {
  entry: Entry;
  layer: number;
}
