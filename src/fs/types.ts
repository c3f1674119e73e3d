// Contracts between the pieces of g8ufs: the block cache (cache.ts), the read-only FUSE
// filesystem (rofs.ts) and the mount orchestration (mount.ts).
import type { BlockCodec, BlockRef, Entry, FlistReader } from '../flist/types';

/** Where a read-only filesystem gets verified plaintext blocks (the shared block cache). */
export interface BlockSource {
  /** Plaintext of one block, verified against its key; throws (→ EIO) when it cannot be had. */
  block(ref: BlockRef, codec: BlockCodec): Promise<Buffer>;
  /**
   * Bytes [start, end) of one block's plaintext. Optional: a source may read just that range
   * of a block it already verified (small random reads), else it falls back to block().
   */
  range?(ref: BlockRef, codec: BlockCodec, start: number, end: number): Promise<Buffer>;
  /** Hint: these blocks are likely to be read soon (read-ahead, prefetch); never throws. */
  prefetch(refs: BlockRef[], codec: BlockCodec): void;
  /** Blocks of open files are not evicted while pinned. */
  pin(refs: BlockRef[]): void;
  unpin(refs: BlockRef[]): void;
}

/** One flist in a (possibly layered) read-only view; the last layer given is on top. */
export interface Layer {
  reader: FlistReader;
  /** Block source for this layer's files (its store may differ from the others'). */
  blocks: BlockSource;
}

/** A resolved path in the layered view. */
export interface ViewEntry {
  entry: Entry;
  layer: number;
}
