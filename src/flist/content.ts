// Reassembles file contents from a store: blocks fetched a few ahead, decoded, verified.
import { corrupt, G8osError } from '../errors';
import type { BlockStore } from '../store/types';
import { decodeBlock } from './codec';
import { decodeGen3Block, gen3Ready } from './gen3';
import { hashReady } from './hash';
import { BLOCK_SIZE, type BlockCodec, type BlockRef, type Entry } from './types';

/** `not_found`, but EIO to a filesystem reader: the file exists, its bytes cannot be had. */
export class MissingBlockError extends G8osError {
  constructor(id: Buffer, where: string, store: string) {
    super('not_found', `block ${id.toString('hex')} of ${where} is missing from ${store}`, { errno: 'EIO' });
  }
}

/** Fetch and decode one block; a missing block or a corrupt one throws. */
export async function fetchBlock(store: BlockStore, ref: BlockRef, codec: BlockCodec, where: string): Promise<Buffer> {
  const cipher = await store.get(ref.id);
  if (!cipher) throw new MissingBlockError(ref.id, where, store.url);
  return codec === 'gen3' ? decodeGen3Block(cipher, ref) : decodeBlock(cipher, ref);
}

/** The file's bytes in order, `ahead` blocks fetched in parallel. */
export async function* fileContent(store: BlockStore, entry: Entry, codec: BlockCodec, ahead = 4): AsyncGenerator<Buffer> {
  await (codec === 'gen3' ? gen3Ready() : hashReady());
  const blocks = entry.blocks ?? [];
  const window: Promise<Buffer>[] = [];
  let next = 0;
  let total = 0;
  const fill = (): void => {
    while (window.length < ahead && next < blocks.length) {
      const p = fetchBlock(store, blocks[next], codec, `/${entry.path}`);
      p.catch(() => undefined); // surfaced when awaited in order
      window.push(p);
      next++;
    }
  };
  fill();
  for (let i = 0; i < blocks.length; i++) {
    const data = await window.shift()!;
    if (i < blocks.length - 1 && data.length !== BLOCK_SIZE && codec === 'gen2') {
      throw corrupt(`corrupt file /${entry.path}: block ${i} decodes to ${data.length} bytes, not ${BLOCK_SIZE}`);
    }
    total += data.length;
    fill();
    yield data;
  }
  if (total !== entry.size) throw corrupt(`corrupt file /${entry.path}: blocks hold ${total} bytes, the flist says ${entry.size}`);
}
