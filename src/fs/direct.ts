// Blocks straight from a store (a BlockProvider), for tools and tests until (or without) the shared
// block cache: verified fetches, concurrent fetches of one block coalesced, and the last few
// blocks kept in memory so a 128 KiB kernel read pattern does not refetch a 512 KiB block
// four times. Nothing is written to disk; pins are no-ops.
import { oneLine, unavailable } from '../errors';
import { fetchBlock } from '../flist/content';
import { gen3Ready } from '../flist/gen3';
import { hashReady } from '../flist/hash';
import { LRU } from '../lib/lru';
import type { BlockCodec, BlockRef } from '../flist/types';
import type { BlockStore } from '../store/types';
import type { BlockProvider } from './types';

export class DirectBlocks implements BlockProvider {
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly recent: LRU<string, Buffer>;
  /** Blocks fetched from the store (each counted once per fetch, not per read). */
  fetched = 0;

  constructor(
    readonly store: BlockStore,
    keep = 8,
  ) {
    this.recent = new LRU(Math.max(1, keep));
  }

  block(ref: BlockRef, codec: BlockCodec): Promise<Buffer> {
    const id = ref.id.toString('hex');
    const hit = this.recent.get(id);
    if (hit) return Promise.resolve(hit);
    let p = this.inflight.get(id);
    if (!p) {
      p = this.fetch(ref, codec, id);
      this.inflight.set(id, p);
      const clear = (): void => void this.inflight.delete(id);
      p.then(clear, clear);
    }
    return p;
  }

  private async fetch(ref: BlockRef, codec: BlockCodec, id: string): Promise<Buffer> {
    await (codec === 'gen3' ? gen3Ready() : hashReady());
    this.fetched++;
    let data: Buffer;
    try {
      data = await fetchBlock(this.store, ref, codec, 'a mounted file');
    } catch (e) {
      // missing, corrupt or unreachable alike: this block cannot be had (→ EIO); message as before
      throw unavailable(oneLine(e), { cause: e });
    }
    this.recent.set(id, data);
    return data;
  }

  async range(ref: BlockRef, codec: BlockCodec, start: number, end: number): Promise<Buffer> {
    return (await this.block(ref, codec)).subarray(start, end);
  }

  prefetch(refs: BlockRef[], codec: BlockCodec): void {
    for (const r of refs) this.block(r, codec).catch(() => undefined);
  }

  pin(): void {}

  unpin(): void {}
}
