// `g8os flist prefetch`: warm the shared block cache, from an flist (its blocks go straight
// into the cache directory) or from a running mount (its files are read through FUSE, so the
// mount process fetches and caches them; the mount keeps no record of its flist to go by).
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BlockCodec, BlockRef } from '../flist/types';
import { formatBytes, UsageError } from './util';

export interface PrefetchFlags {
  cache?: string;
  storageUrl?: string;
  hub?: string;
}

const MiB = 1024 * 1024;

/** One progress line on stderr: rewritten in place on a terminal, else at most once a second. */
function progress(): { update(line: string): void; done(line: string): void } {
  const tty = process.stderr.isTTY;
  let last = 0;
  return {
    update(line) {
      const now = Date.now();
      if (now - last < (tty ? 100 : 1000)) return;
      last = now;
      process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
    },
    done(line) {
      process.stderr.write(tty ? `\r\x1b[K${line}\n` : `${line}\n`);
    },
  };
}

export async function prefetch(source: string, paths: string[], o: PrefetchFlags): Promise<number> {
  const { mountAt } = await import('../fs/mount-table');
  const abs = path.resolve(source);
  if (fs.existsSync(abs) && mountAt(abs)) return prefetchMount(abs, paths);
  return prefetchFlist(source, paths, o);
}

async function prefetchFlist(source: string, paths: string[], o: PrefetchFlags): Promise<number> {
  const { openFlist } = await import('../flist/open');
  const { storeFromBackend } = await import('../flist/backend');
  const { openStore } = await import('../store');
  const { BlockCache } = await import('../fs/cache');
  const { DEFAULT_CACHE_BYTES, defaultCacheDir } = await import('../fs/mount');
  const { warm } = await import('../fs/warm');
  const { flistSource } = await import('./mount');

  const reader = await openFlist(flistSource(source, o.hub ?? process.env.G8OS_HUB));
  try {
    const url = o.storageUrl ?? storeFromBackend(reader.metadata().backend);
    if (!url) throw new UsageError(`${source} names no backend store: pass --storage-url <url>`);
    const store = await openStore(url);
    const cache = new BlockCache({ dir: path.resolve(o.cache ?? defaultCacheDir()), store, maxBytes: DEFAULT_CACHE_BYTES, log: () => undefined });
    try {
      let cached = 0;
      // counts blocks that were on disk before warming asked for them
      const counting = {
        async ensure(ref: BlockRef, codec: BlockCodec): Promise<void> {
          const had = await fsp.access(cache.pathOf(ref.id.toString('hex'))).then(() => true, () => false);
          await cache.ensure(ref, codec);
          if (had) cached++;
        },
      };
      const line = progress();
      const r = await warm(counting, reader, {
        paths: paths.length ? paths : undefined,
        onProgress: (p) =>
          line.update(`prefetching: ${p.blocks}/${p.totalBlocks} blocks, ${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)}${p.failed ? `, ${p.failed} failed` : ''}`),
      });
      await cache.flush();
      for (const e of r.errors) process.stderr.write(`g8os: ${e}\n`);
      line.done(`prefetched ${r.blocks - r.failed} blocks (${(r.bytes / MiB).toFixed(1)} MiB) of ${r.files} files, ${cached} already cached, ${r.failed} failed`);
      return r.failed ? 1 : 0;
    } finally {
      await cache.close();
      await store.close();
    }
  } finally {
    reader.close();
  }
}

/** Reads every regular file under the mount (or the given paths in it), a few at a time. */
async function prefetchMount(root: string, paths: string[], concurrency = 8): Promise<number> {
  const files: string[] = [];
  const collect = async (p: string): Promise<void> => {
    const st = await fsp.lstat(p);
    if (st.isFile()) files.push(p);
    else if (st.isDirectory()) {
      // never open fifos or devices: only regular files hold blocks
      for (const d of await fsp.readdir(p, { withFileTypes: true })) {
        if (d.isDirectory() || d.isFile()) await collect(path.join(p, d.name));
      }
    }
  };
  for (const p of paths.length ? paths : ['']) {
    const full = path.join(root, p.replace(/^\/+/, ''));
    if (full !== root && !full.startsWith(`${root}/`)) throw new UsageError(`${p} is outside the mount ${root}`);
    await collect(full).catch((e: NodeJS.ErrnoException) => {
      throw new UsageError(`${p}: ${e.code === 'ENOENT' ? 'no such file or directory in the mount' : e.message}`);
    });
  }
  const line = progress();
  let done = 0;
  let bytes = 0;
  let failed = 0;
  const queue = [...files];
  const worker = async (): Promise<void> => {
    const buf = Buffer.allocUnsafe(MiB);
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      try {
        const fh = await fsp.open(f, 'r');
        try {
          for (let n = 1; n > 0; ) {
            ({ bytesRead: n } = await fh.read(buf, 0, buf.length, null));
            bytes += n;
          }
        } finally {
          await fh.close();
        }
      } catch (e) {
        failed++;
        process.stderr.write(`g8os: ${path.relative(root, f)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      }
      done++;
      line.update(`prefetching: ${done}/${files.length} files, ${formatBytes(bytes)}`);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, files.length)) }, worker));
  line.done(`prefetched ${files.length - failed} files (${(bytes / MiB).toFixed(1)} MiB) through the mount, ${failed} failed`);
  return failed ? 1 : 0;
}
