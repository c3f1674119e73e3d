// One contract, two implementations: every test here runs over the shared block cache
// (BlockCache) and the store-direct source (DirectBlocks), each bound to a layer's codec, as
// store.test.ts runs one suite over every store. Real dir:// stores on disk, no mocks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { errnoName, kindOf } from '../src/errors';
import { encodeBlock } from '../src/flist/codec';
import { hashReady } from '../src/flist/hash';
import { BLOCK_SIZE, type BlockRef } from '../src/flist/types';
import { BlockCache } from '../src/fs/cache';
import { DirectBlocks } from '../src/fs/direct';
import { bindCodec, type BlockSource } from '../src/fs/types';
import { DirStore } from '../src/store/dir';

let tmp: string;
let store: DirStore;
const plains: Buffer[] = [];
const refs: BlockRef[] = [];
let missing: BlockRef;
let corrupt: BlockRef;

beforeAll(async () => {
  await hashReady();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-blocksource-'));
  store = new DirStore(path.join(tmp, 'store'));
  let seed = 7;
  for (const size of [BLOCK_SIZE, 1000, 70_000]) {
    const p = Buffer.alloc(size);
    for (let i = 0; i < size; i++) p[i] = (seed = (seed * 1103515245 + 12345) & 0x7fffffff) >> 16;
    const b = encodeBlock(p);
    await store.put(b.id, b.cipher);
    plains.push(p);
    refs.push({ id: b.id, key: b.key });
  }
  const gone = encodeBlock(Buffer.from('never stored'));
  missing = { id: gone.id, key: gone.key };
  // stored under its id, but the bytes are another block's: decoding must refuse them
  const other = encodeBlock(Buffer.from('the real content'));
  const wrong = encodeBlock(Buffer.from('something else entirely'));
  await store.put(other.id, wrong.cipher);
  corrupt = { id: other.id, key: other.key };
});

afterAll(async () => {
  await store.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Impl {
  name: string;
  open(): { source: BlockSource; close(): Promise<void> };
}

let n = 0;
const impls: Impl[] = [
  {
    name: 'BlockCache',
    open() {
      const c = new BlockCache({ dir: path.join(tmp, `cache-${++n}`), store, attempts: 1, timeoutMs: 2000, log: () => {} });
      return { source: bindCodec(c, 'gen2'), close: () => c.close() };
    },
  },
  {
    name: 'DirectBlocks',
    open() {
      const d = new DirectBlocks(store, 2);
      return { source: bindCodec(d, 'gen2'), close: async () => {} };
    },
  },
];

describe.each(impls)('BlockSource: $name', (impl) => {
  let src: BlockSource;
  let close: () => Promise<void>;
  const use = (): BlockSource => {
    const o = impl.open();
    src = o.source;
    close = o.close;
    return src;
  };
  afterEach(async () => close?.());

  it('block() gives each block its verified plaintext, again and concurrently', async () => {
    use();
    for (let i = 0; i < refs.length; i++) expect((await src.block(refs[i])).equals(plains[i])).toBe(true);
    const again = await Promise.all(Array.from({ length: 8 }, () => src.block(refs[0])));
    for (const b of again) expect(b.equals(plains[0])).toBe(true);
  });

  it('range() gives exactly bytes [start, end) of the block, before and after the block was read', async () => {
    use();
    expect((await src.range(refs[0], 5, 4101)).equals(plains[0].subarray(5, 4101))).toBe(true);
    await src.block(refs[0]);
    expect((await src.range(refs[0], BLOCK_SIZE - 10, BLOCK_SIZE)).equals(plains[0].subarray(BLOCK_SIZE - 10))).toBe(true);
    expect((await src.range(refs[1], 0, 1000)).equals(plains[1])).toBe(true);
    expect((await src.range(refs[2], 69_999, 70_000)).equals(plains[2].subarray(69_999))).toBe(true);
  });

  it('a block the store lacks fails as unavailable (EIO) naming the block', async () => {
    use();
    const err = await src.block(missing).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(kindOf(err)).toBe('unavailable');
    expect(errnoName(err)).toBe('EIO');
    expect((err as Error).message).toContain(missing.id.toString('hex'));
    await expect(src.range(missing, 0, 10)).rejects.toThrow(missing.id.toString('hex'));
  });

  it('a store copy that does not decode to its key is never returned', async () => {
    use();
    const err = await src.block(corrupt).then((b) => b, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(errnoName(err)).toBe('EIO');
    await expect(src.range(corrupt, 0, 4)).rejects.toBeInstanceOf(Error);
  });

  it('prefetch() never throws, also for blocks that cannot be had; pins and unpins are balanced', async () => {
    use();
    expect(() => src.prefetch([missing, corrupt, ...refs])).not.toThrow();
    src.pin(refs);
    src.pin([refs[0]]);
    expect((await src.block(refs[2])).equals(plains[2])).toBe(true);
    src.unpin([refs[0]]);
    src.unpin(refs);
    expect((await src.block(refs[0])).equals(plains[0])).toBe(true);
  });
});
