// The core every builder shares: chunking file contents into 512 KiB blocks, encoding them in
// a worker pool, writing the ones the store lacks, enforcing size caps, and the statistics.
import { type ErrorKind, G8osError } from '../errors';
import { putMissing } from '../store';
import { DirStore } from '../store/dir';
import type { BlockStore } from '../store/types';
import type { EncodedBlock } from './codec';
import { EncoderPool, type PooledBlock } from './encoder';
import { countEntries } from './stats';
import { Tree } from './tree';
import { BLOCK_SIZE, type BlockRef, type Entry } from './types';

/** The archive or tree cannot be built (the input's fault); over a size cap it is too_large. */
export class BuildError extends G8osError {
  constructor(message: string, kind: ErrorKind = 'invalid') {
    super(kind, message);
  }
}

export interface BuildStats {
  regular: number;
  symlink: number;
  directory: number;
  special: number;
  /** members that could not be represented (skipped, e.g. unknown tar types) */
  failure: number;
  /** sum of regular file sizes */
  fullsize: number;
  /** hard links stored as separate files sharing blocks (the format has no hard links) */
  hardlinks: number;
  blocks: number;
  uploaded_chunks: number;
  uploaded_bytes: number;
  /** bytes read from the input (compressed size for tar.gz) */
  input_bytes: number;
}

export interface BuildProgress {
  inputBytes: number;
  entries: number;
  uploadedChunks: number;
}

export interface BuildOptions {
  store: BlockStore;
  /** Cap on the bytes of file content the archive may expand to (decompression bombs). */
  maxExpandedBytes?: number;
  /** Cap on the number of members. */
  maxEntries?: number;
  onProgress?: (p: BuildProgress) => void;
  /** Warnings (skipped members, lost features); default: ignored. */
  onWarning?: (message: string) => void;
  workers?: number;
}

export interface BuildResult {
  tree: Tree;
  stats: BuildStats;
}

const MAX_INFLIGHT_PER_WORKER = 3;
const SINK_BATCH = 32;

/** The build-statistics names for a tree's counts (the hub's API uses these). */
export function treeCounts(tree: Tree): Pick<BuildStats, 'directory' | 'regular' | 'symlink' | 'special' | 'fullsize' | 'blocks'> {
  const c = countEntries(tree.entries());
  return { directory: c.dirs, regular: c.files, symlink: c.symlinks, special: c.specials, fullsize: c.bytes, blocks: c.blocks };
}

/** Collects encoded chunks and writes the ones the store lacks, in batches. */
class BlockSink {
  private batch: EncodedBlock[] = [];
  private batchBytes = 0;
  private readonly seen = new Set<string>();
  chunks = 0;
  bytes = 0;

  constructor(private readonly store: BlockStore) {}

  async add(b: PooledBlock): Promise<void> {
    if (b.written !== undefined) {
      // the worker already stored it (dir:// store)
      if (b.written) {
        this.chunks++;
        this.bytes += b.size;
      }
      return;
    }
    const hex = b.id.toString('hex');
    if (this.seen.has(hex)) return; // the same chunk earlier in this build
    this.seen.add(hex);
    this.batch.push(b);
    this.batchBytes += b.cipher.length;
    if (this.batch.length >= SINK_BATCH || this.batchBytes >= 16 * BLOCK_SIZE) await this.flush();
  }

  async flush(): Promise<void> {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.batchBytes = 0;
    const written = await putMissing(this.store, batch.map((b) => ({ id: b.id, data: b.cipher })));
    this.chunks += written.count;
    this.bytes += written.bytes;
  }
}

/** Chunking and encoding shared by the tar and directory builders. */
export class Ingest {
  readonly tree = new Tree();
  readonly stats: BuildStats = {
    regular: 0, symlink: 0, directory: 0, special: 0, failure: 0, fullsize: 0, hardlinks: 0,
    blocks: 0, uploaded_chunks: 0, uploaded_bytes: 0, input_bytes: 0,
  };
  private readonly pool: EncoderPool;
  private readonly sink: BlockSink;
  private inflight = 0;
  private readonly waiters: Array<() => void> = [];
  private failed: Error | undefined;
  private readonly maxInflight: number;
  entries = 0;
  private expanded = 0;

  constructor(readonly opts: BuildOptions) {
    const workers = opts.workers ?? undefined;
    this.pool = new EncoderPool(workers, { dirRoot: opts.store instanceof DirStore ? opts.store.root : undefined });
    this.maxInflight = MAX_INFLIGHT_PER_WORKER * (workers ?? 2);
    this.sink = new BlockSink(opts.store);
  }

  warn(message: string): void {
    this.opts.onWarning?.(message);
  }

  /** Seconds as the format can hold them (unsigned 32-bit), with a warning when clamped. */
  time(t: number, name: string): number {
    const s = Math.floor(t);
    if (Number.isFinite(s) && s >= 0 && s <= 0xffffffff) return s;
    this.warn(`${name}: time ${t} is outside 1970..2106, stored as ${s < 0 ? '1970-01-01' : '2106-02-07'}`);
    return s < 0 ? 0 : 0xffffffff;
  }

  /** Enforce the member and size caps as entries arrive (before their data is read). */
  count(e: Entry): void {
    this.entries++;
    if (this.opts.maxEntries && this.entries > this.opts.maxEntries) throw new BuildError(`archive has more than ${this.opts.maxEntries} members`, 'too_large');
    if (e.kind !== 'file') return;
    this.expanded += e.size;
    if (this.opts.maxExpandedBytes !== undefined && this.expanded > this.opts.maxExpandedBytes) {
      throw new BuildError(`archive expands to more than ${this.opts.maxExpandedBytes} bytes (the limit)`, 'too_large');
    }
  }

  private async slot(): Promise<void> {
    if (this.failed) throw this.failed;
    while (this.inflight >= this.maxInflight) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failed) throw this.failed;
    this.inflight++;
  }

  private release(): void {
    this.inflight--;
    this.waiters.shift()?.();
  }

  private async submit(blocks: BlockRef[], index: number, buf: ArrayBuffer, len: number): Promise<void> {
    await this.slot();
    void this.pool
      .encode(buf, len)
      .then(async (b) => {
        blocks[index] = { id: b.id, key: b.key };
        await this.sink.add(b);
        this.opts.onProgress?.({ inputBytes: this.stats.input_bytes, entries: this.entries, uploadedChunks: this.sink.chunks });
      })
      .catch((e: Error) => {
        this.failed ??= e;
      })
      .finally(() => this.release());
  }

  /** Wait until every submitted chunk is encoded and stored. */
  private async drain(): Promise<void> {
    while (this.inflight > 0) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Read a file's content stream into chunks; returns its block list (filled asynchronously). */
  async content(stream: AsyncIterable<Buffer>, expected: number, name: string): Promise<BlockRef[]> {
    const blocks: BlockRef[] = [];
    let buf = this.pool.buffer(BLOCK_SIZE);
    let view = new Uint8Array(buf);
    let fill = 0;
    let total = 0;
    let index = 0;
    for await (const data of stream) {
      let off = 0;
      while (off < data.length) {
        const n = Math.min(BLOCK_SIZE - fill, data.length - off);
        view.set(data.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === BLOCK_SIZE) {
          await this.submit(blocks, index++, buf, fill);
          buf = this.pool.buffer(BLOCK_SIZE);
          view = new Uint8Array(buf);
          fill = 0;
        }
      }
      total += data.length;
    }
    if (fill > 0) await this.submit(blocks, index++, buf, fill);
    if (total !== expected) throw new BuildError(`${name}: read ${total} bytes, expected ${expected} (file changed or archive truncated)`);
    return blocks;
  }

  async finish(): Promise<BuildResult> {
    try {
      await this.drain();
      if (this.failed) throw this.failed;
      await this.sink.flush();
      // Count what the flist will hold: duplicates replaced, implied parents and the root included.
      Object.assign(this.stats, treeCounts(this.tree));
      this.stats.uploaded_chunks = this.sink.chunks;
      this.stats.uploaded_bytes = this.sink.bytes;
      return { tree: this.tree, stats: this.stats };
    } finally {
      await this.pool.close();
    }
  }

  async abort(): Promise<void> {
    this.failed ??= new BuildError('aborted');
    await this.drain();
    await this.pool.close();
  }
}
