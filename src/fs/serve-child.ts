// Serves a read-only (possibly layered) flist mount in its own process, for tests and tools
// (a process touching its own FUSE mount deadlocks, so the caller must be another process).
//
//   node dist/src/fs/serve-child.js '<json ServeArgs>'
//
// Prints "mount starts" on stdout once the mount is usable; SIGTERM/SIGINT, an IPC
// disconnect or an external unmount end it (after unmounting). With an IPC channel it answers
// {type:'stats'} with {type:'stats', stats, fetched}.
import { storeFromBackend } from '../flist/backend';
import { openFlist } from '../flist/open';
import type { FlistReader } from '../flist/types';
import { openStore, type BlockStore } from '../store';
import { BlockCache } from './cache';
import { DirectBlocks } from './direct';
import { isMountpoint, ReadOnlyFs, type ReadOnlyFsOptions } from './rofs';
import { bindCodec, type Layer } from './types';

export interface ServeArgs {
  mountpoint: string;
  /** Bottom first (the last one is on top). `store` overrides the flist's backend metadata. */
  layers: Array<{ flist: string; store?: string }>;
  /** Store for flists that name none. */
  storageUrl?: string;
  /** Block cache directory (BlockCache); without it blocks come straight from the store (DirectBlocks). */
  cache?: string;
  name?: string;
  debug?: boolean;
  readTimeoutMs?: number;
  xattrs?: ReadOnlyFsOptions['xattrs'];
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '') as ServeArgs;
  const readers: FlistReader[] = [];
  const stores = new Map<string, { store: BlockStore; blocks: DirectBlocks | BlockCache }>();
  const layers: Layer[] = [];
  const closeAll = async (): Promise<void> => {
    for (const r of readers) r.close();
    for (const s of stores.values()) if (s.blocks instanceof BlockCache) await s.blocks.close().catch(() => undefined);
    await Promise.all([...stores.values()].map((s) => s.store.close().catch(() => undefined)));
  };
  try {
    for (const l of args.layers) {
      const reader = await openFlist(l.flist);
      readers.push(reader);
      const url = l.store ?? storeFromBackend(reader.metadata().backend) ?? args.storageUrl;
      if (!url) throw new Error(`${l.flist} names no store: give a storage URL`);
      let s = stores.get(url);
      if (!s) {
        const store = await openStore(url);
        s = { store, blocks: args.cache ? new BlockCache({ dir: args.cache, store }) : new DirectBlocks(store) };
        stores.set(url, s);
      }
      layers.push({ reader, blocks: bindCodec(s.blocks, reader.format) });
    }
  } catch (e) {
    await closeAll();
    throw e;
  }

  const rofs = new ReadOnlyFs(layers, { mountpoint: args.mountpoint, name: args.name, debug: args.debug, readTimeoutMs: args.readTimeoutMs, xattrs: args.xattrs });
  await rofs.mount();
  process.stdout.write('mount starts\n');

  let closing = false;
  const stop = async (why: string): Promise<void> => {
    if (closing) return;
    closing = true;
    let code = 0;
    try {
      await rofs.unmount();
    } catch (e) {
      process.stderr.write(`g8ufs: ${(e as Error).message} (after ${why})\n`);
      code = 1;
    }
    await closeAll();
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  if (process.send) {
    process.on('disconnect', () => void stop('parent gone'));
    process.on('message', (m: { type?: string }) => {
      if (m?.type !== 'stats') return;
      let fetched = 0;
      for (const s of stores.values()) fetched += s.blocks instanceof BlockCache ? s.blocks.stats().fetched : s.blocks.fetched;
      process.send!({ type: 'stats', stats: rofs.stats(), fetched });
    });
  }
  // Unmounted from outside (fusermount -u): libfuse does not tell us, so look.
  setInterval(() => {
    if (!closing && !isMountpoint(rofs.mountpoint)) {
      closing = true;
      void closeAll().then(() => process.exit(0));
    }
  }, 1000).unref();
  // Keep the process alive while mounted (fuse-native unrefs its handle after unmount only).
  setInterval(() => undefined, 1 << 30);
}

main().catch((e: Error) => {
  process.stderr.write(`g8ufs: ${e.message}\n`);
  process.exit(1);
});
