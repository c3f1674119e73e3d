// Warming the block cache: every block of every file of a flist (or of some paths), fetched in
// the background with bounded parallelism — `--prefetch` and `g8os flist prefetch`.
import { BLOCK_SIZE, relPath, type BlockCodec, type BlockRef, type Entry, type FlistReader } from '../flist/types';

export interface WarmProgress {
  files: number;
  /** unique blocks done (cached or failed) / to do */
  blocks: number;
  totalBlocks: number;
  /** plaintext bytes of the blocks done / to do */
  bytes: number;
  totalBytes: number;
  failed: number;
}

export interface WarmResult extends WarmProgress {
  /** the first few failures, one line each */
  errors: string[];
  aborted: boolean;
}

export interface WarmOptions {
  /** Files or directories (whole subtrees) inside the flist; default the whole tree. */
  paths?: string[];
  /** Blocks in flight at once; default 8 (the cache still bounds the store fetches). */
  concurrency?: number;
  onProgress?: (p: WarmProgress) => void;
  signal?: AbortSignal;
}

/** What warming needs from a cache (BlockCache.ensure). */
export interface Warmable {
  ensure(ref: BlockRef, codec: BlockCodec): Promise<void>;
}

interface Job {
  ref: BlockRef;
  size: number;
}

/** Plaintext size of each block of a file (512 KiB stride; an even split if the refs disagree). */
function blockSizes(e: Entry): number[] {
  const n = e.blocks?.length ?? 0;
  if (n === Math.ceil(e.size / BLOCK_SIZE)) return Array.from({ length: n }, (_, i) => Math.min(BLOCK_SIZE, e.size - i * BLOCK_SIZE));
  return Array.from({ length: n }, () => Math.floor(e.size / n));
}

function selectFiles(reader: FlistReader, paths: string[] | undefined): Entry[] {
  if (!paths) return [...reader.walk()].filter((e) => e.kind === 'file');
  const files = new Map<string, Entry>();
  const dirs: string[] = [];
  for (const p of paths) {
    const e = reader.stat(relPath(p));
    if (!e) throw new Error(`${p}: no such file or directory in the flist`);
    if (e.kind === 'dir') dirs.push(e.path);
    else if (e.kind === 'file') files.set(e.path, e);
  }
  if (dirs.length) {
    const under = (p: string): boolean => dirs.some((d) => d === '' || p.startsWith(`${d}/`));
    for (const e of reader.walk()) if (e.kind === 'file' && under(e.path)) files.set(e.path, e);
  }
  return [...files.values()];
}

export async function warm(cache: Warmable, reader: FlistReader, opts: WarmOptions = {}): Promise<WarmResult> {
  const files = selectFiles(reader, opts.paths);
  const jobs = new Map<string, Job>();
  for (const f of files) {
    const sizes = blockSizes(f);
    (f.blocks ?? []).forEach((ref, i) => {
      const id = ref.id.toString('hex');
      if (!jobs.has(id)) jobs.set(id, { ref, size: sizes[i] });
    });
  }
  const p: WarmProgress = { files: files.length, blocks: 0, totalBlocks: jobs.size, bytes: 0, totalBytes: 0, failed: 0 };
  for (const j of jobs.values()) p.totalBytes += j.size;
  const errors: string[] = [];
  const queue = [...jobs.values()];
  const codec = reader.format;
  opts.onProgress?.({ ...p });
  const worker = async (): Promise<void> => {
    for (let job = queue.shift(); job && !opts.signal?.aborted; job = queue.shift()) {
      try {
        await cache.ensure(job.ref, codec);
      } catch (e) {
        p.failed++;
        if (errors.length < 10) errors.push((e as Error).message);
      }
      p.blocks++;
      p.bytes += job.size;
      opts.onProgress?.({ ...p });
    }
  };
  const n = Math.max(1, Math.min(opts.concurrency ?? 8, queue.length));
  await Promise.all(Array.from({ length: n }, worker));
  return { ...p, errors, aborted: Boolean(opts.signal?.aborted) };
}
