// The block cache of g8ufs, shared by every mount on a machine: verified plaintext blocks at
// <dir>/blocks/<id[0:2]>/<id[2:4]>/<id hex>, fetched from the store on first use.
//
// - Verification: a fetched block is decoded and checked against its id and key before anyone
//   sees it; a cached file is hashed against the key once per node (cache-trust.ts: a process
//   trusts a file another verified while its inode/size/mtime/ctime are unchanged) and again
//   whenever it changed (verify: 'always' hashes every disk read). A corrupt file is deleted
//   and fetched again, never returned.
// - Coalescing: one task per block in the process; across processes a lock file next to the
//   block (cache-lock.ts). Fetches run `concurrency` at a time; demand reads go first.
// - Failures: each fetch has a deadline (timeoutMs) covering `attempts` tries with back-off;
//   then the read fails with the block id, store and reason. A failed block is answered from a
//   1 s negative cache (a burst of reads of a dead block costs one fetch); nothing longer, so
//   reads work again as soon as the store is back.
// - Size: an in-memory index (LRU order) of the files, from a scan at start and every 10
//   minutes; least recently used unpinned blocks are deleted above maxBytes. Recency reaches
//   other processes through the files' mtime, touched at most once a minute per block.
// - Disk trouble (ENOSPC, EROFS): the verified bytes are still returned and kept in memory.
import fs, { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BlockCodec, BlockRef } from '../flist/types';
import { sleep, withDeadline } from '../lib/deadline';
import { LRU } from '../lib/lru';
import { errorText } from '../store/retry';
import type { BlockStore } from '../store/types';
import { BlockPool } from './block-pool';
import type { BlockCacheOptions, CacheStats } from './cache-options';
import { BlockFetchError, download, persist, present, readRange, unusableDir } from './cache-fetch';
import type { FileId } from './block-task';
import { CacheIndex, sameFile } from './cache-index';
import { lockBlock, type Held } from './cache-lock';
import { RACY_MS, TrustLog } from './cache-trust';
import { AHEAD, FetchQueue, type Plain, type Priority, type Queued, READ, WARM } from './cache-queue';
import type { BlockProvider } from './types';

export { BlockFetchError } from './cache-fetch';

export type { BlockCacheOptions, CacheStats } from './cache-options';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const RESCAN_MS = 10 * 60 * 1000;
/** How long close() waits for running fetches and writes. */
const CLOSE_GRACE_MS = 2000;
/** Read-ahead beyond this many outstanding blocks is dropped. */
const MAX_AHEAD = 256;

interface Task extends Queued {
  id: string;
  ref: BlockRef;
  codec: BlockCodec;
  /** keep the plaintext in memory (not for bulk warming) */
  keep: boolean;
  promise: Promise<Buffer>;
}

export class BlockCache implements BlockProvider {
  readonly dir: string;
  private readonly root: string;
  private readonly store: BlockStore;
  private readonly maxBytes: number;
  private readonly retry: { attempts: number; backoffMs: readonly number[]; timeoutMs: number };
  private readonly timeoutMs: number;
  private readonly negativeMs: number;
  private readonly verifyAlways: boolean;
  private readonly log: (line: string) => void;
  private readonly pool: BlockPool;
  private readonly queue: FetchQueue<Task>;
  private readonly memory: LRU<string, Plain>;
  private readonly index: CacheIndex;
  /** what other processes on this node verified (cache-trust.ts) */
  private readonly trust?: TrustLog;
  private readonly tasks = new Map<string, Task>();
  /** fetched, verified, not yet on disk */
  private readonly unwritten = new Map<string, Plain>();
  private readonly failed = new Map<string, { error: BlockFetchError; until: number }>();
  private readonly made = new Set<string>();
  private readonly background = new Set<Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private ahead = 0;
  private lastWriteError = '';
  private closed = false;
  private readonly counts = {
    memoryHits: 0,
    diskHits: 0,
    misses: 0,
    coalesced: 0,
    fetched: 0,
    fetchedBytes: 0,
    stored: 0,
    storedBytes: 0,
    errors: 0,
    badFetches: 0,
    corrupt: 0,
    verified: 0,
    trusted: 0,
    writeErrors: 0,
    prefetched: 0,
    prefetchErrors: 0,
    lockWaits: 0,
  };

  constructor(opts: BlockCacheOptions) {
    this.dir = path.resolve(opts.dir);
    this.root = path.join(this.dir, 'blocks');
    this.store = opts.store;
    this.maxBytes = opts.maxBytes ?? 10 * GiB;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.retry = { attempts: Math.max(1, opts.attempts ?? 3), backoffMs: opts.backoffMs?.length ? opts.backoffMs : [100, 400, 1600], timeoutMs: this.timeoutMs };
    this.negativeMs = opts.negativeMs ?? 1000;
    this.verifyAlways = opts.verify === 'always';
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    const concurrency = opts.concurrency ?? 8;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`cache concurrency must be a positive integer, got ${concurrency}`);
    if (!(this.maxBytes >= 0)) throw new RangeError(`cache size must be a number of bytes, got ${this.maxBytes}`);
    try {
      fs.mkdirSync(this.root, { recursive: true });
      fs.accessSync(this.root, fs.constants.W_OK);
    } catch (e) {
      throw unusableDir(this.dir, e);
    }
    this.index = new CacheIndex(this.dir, this.root, this.maxBytes, {
      pathOf: (id) => this.pathOf(id),
      busy: (id) => this.tasks.has(id) || this.unwritten.has(id),
      track: (p) => this.track(p),
      log: this.log,
      touched: (id, file) => this.trustLater(id, file),
    });
    this.trust = this.verifyAlways ? undefined : new TrustLog(this.dir);
    this.pool = new BlockPool(opts.workers ?? Math.min(4, os.availableParallelism()), this.log);
    this.queue = new FetchQueue<Task>(concurrency);
    this.memory = new LRU<string, Plain>(opts.memoryBytes ?? 64 * MiB, (p) => p.buf.length);
    this.track(this.index.rescan());
    this.timer = setInterval(() => this.track(this.index.rescan()), RESCAN_MS);
    this.timer.unref();
  }

  /** Verified plaintext of one block. The buffer is shared: do not modify it. */
  async block(ref: BlockRef, codec: BlockCodec): Promise<Buffer> {
    const id = ref.id.toString('hex');
    const hot = this.fromMemory(id, ref);
    if (hot) {
      this.counts.memoryHits++;
      return hot;
    }
    const t = this.task(id, ref, codec, READ, true);
    // The caller's own bound: a read queued behind others still answers in time.
    const limit = this.timeoutMs + 1000;
    return withDeadline(t.promise, limit, () => new BlockFetchError(id, this.store.url, `no answer within ${limit} ms (${this.queue.queued} fetches queued)`));
  }

  /**
   * Part of a block. A block this process verified and still finds unchanged on disk (same
   * inode, size, mtime) is read by range: small random reads then cost one pread instead of
   * reading, copying and (in a worker) handling all 512 KiB. Anything else goes through block().
   */
  async range(ref: BlockRef, codec: BlockCodec, start: number, end: number): Promise<Buffer> {
    const id = ref.id.toString('hex');
    const hot = this.fromMemory(id, ref);
    if (hot) {
      this.counts.memoryHits++;
      return hot.subarray(start, end);
    }
    const v = this.verifyAlways ? undefined : this.index.get(id)?.verified;
    if (v && v.key.equals(ref.key) && end <= v.size) {
      const out = await readRange(this.pathOf(id), v, start, end);
      if (out) {
        this.counts.diskHits++;
        this.index.touch(id);
        return out;
      }
    }
    return (await this.block(ref, codec)).subarray(start, end);
  }

  /** Read-ahead: fetch these in the background, behind demand reads; never throws. */
  prefetch(refs: BlockRef[], codec: BlockCodec): void {
    for (const ref of refs) {
      if (this.ahead >= MAX_AHEAD) return;
      const id = ref.id.toString('hex');
      if (this.memory.has(id) || this.unwritten.has(id) || this.tasks.has(id)) continue;
      const f = this.failed.get(id);
      if (f && f.until > Date.now()) continue;
      if (this.closed) return;
      this.ahead++;
      this.task(id, ref, codec, AHEAD, true).promise.then(
        () => this.counts.prefetched++,
        () => this.counts.prefetchErrors++,
      ).finally(() => this.ahead--);
    }
  }

  /** Make sure the block is in the cache directory (bulk warming: lowest priority, not kept in memory). */
  async ensure(ref: BlockRef, codec: BlockCodec): Promise<void> {
    const id = ref.id.toString('hex');
    if (this.unwritten.has(id)) return; // fetched, being written
    if (this.tasks.has(id)) {
      await this.task(id, ref, codec, WARM, false).promise;
      return;
    }
    try {
      const st = await fsp.stat(this.pathOf(id));
      if (!this.index.has(id)) this.index.remember(id, st.size);
      return;
    } catch {
      // not cached
    }
    await this.task(id, ref, codec, WARM, false).promise;
  }

  pin(refs: BlockRef[]): void {
    for (const r of refs) {
      this.index.pin(r.id.toString('hex'));
    }
  }

  unpin(refs: BlockRef[]): void {
    for (const r of refs) {
      this.index.unpin(r.id.toString('hex'));
    }
    this.index.evict();
  }

  stats(): CacheStats {
    return {
      ...this.counts,
      evictions: this.index.evictions,
      evictedBytes: this.index.evictedBytes,
      blocks: this.index.blocks,
      bytes: this.index.bytes,
      pinned: this.index.pinned,
      inflight: this.tasks.size,
      queued: this.queue.queued,
      memoryBytes: this.memory.weight,
    };
  }

  /** Where a block's plaintext lives in the cache directory. */
  pathOf(id: string): string {
    return path.join(this.root, id.slice(0, 2), id.slice(2, 4), id);
  }

  /** Wait for background writes, evictions and scans. */
  async flush(): Promise<void> {
    while (this.background.size) await Promise.allSettled([...this.background]);
  }

  /**
   * Stops: queued fetches fail at once, running ones and block writes get `graceMs` to finish
   * (a dead store must not hold up an unmount: each fetch may take timeoutMs, and a reader
   * that keeps a file open can queue many).
   */
  async close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.queue.close((t) => new BlockFetchError(t.id, this.store.url, 'the block cache is closed'));
    const settled = Promise.allSettled([...this.tasks.values()].map((t) => t.promise)).then(() => this.flush());
    await withDeadline(settled, graceMs, () => new Error('close timed out')).catch(() => undefined);
    await this.pool.close();
  }

  // -- loading ---------------------------------------------------------------------------------

  private fromMemory(id: string, ref: BlockRef): Buffer | undefined {
    const m = this.memory.get(id) ?? this.unwritten.get(id);
    if (!m) return undefined;
    if (!m.key.equals(ref.key)) throw this.keyMismatch(id);
    this.index.touch(id);
    return m.buf;
  }

  private keyMismatch(id: string): BlockFetchError {
    return new BlockFetchError(id, this.store.url, 'the flist gives this block a key its verified content does not hash to');
  }

  private task(id: string, ref: BlockRef, codec: BlockCodec, prio: Priority, keep: boolean): Task {
    const running = this.tasks.get(id);
    if (running) {
      this.counts.coalesced++;
      if (keep) running.keep = true;
      if (prio < running.prio) this.queue.raise(running, prio);
      return running;
    }
    const t: Task = { id, ref, codec, prio, keep, promise: Promise.resolve(Buffer.alloc(0)) };
    const f = this.failed.get(id);
    if (this.closed) t.promise = Promise.reject(new BlockFetchError(id, this.store.url, 'the block cache is closed'));
    else if (f && f.until > Date.now()) t.promise = Promise.reject(f.error);
    else {
      this.failed.delete(id);
      this.tasks.set(id, t);
      t.promise = this.load(t).finally(() => this.tasks.delete(id));
    }
    t.promise.catch(() => undefined); // callers see it; a caller that timed out must not leave it unhandled
    return t;
  }

  private async load(t: Task): Promise<Buffer> {
    const file = this.pathOf(t.id);
    try {
      const cached = await this.readCached(t, file);
      if (cached) return cached;
      this.counts.misses++;
      return await this.fetch(t, file);
    } catch (e) {
      const err = e instanceof BlockFetchError ? e : new BlockFetchError(t.id, this.store.url, errorText(e));
      this.counts.errors++;
      if (this.negativeMs > 0) {
        if (this.failed.size > 10_000) this.failed.clear();
        this.failed.set(t.id, { error: err, until: Date.now() + this.negativeMs });
      }
      this.log(`block cache: ${err.message}`);
      throw err;
    }
  }

  /** The cached plaintext, verified; undefined when absent or corrupt (then deleted). */
  private async readCached(t: Task, file: string): Promise<Buffer | undefined> {
    const e = this.index.get(t.id);
    if (e?.verified && !e.verified.key.equals(t.ref.key)) throw this.keyMismatch(t.id);
    let trust: FileId | undefined;
    if (e?.verified) trust = this.verifyAlways ? undefined : { ino: e.verified.ino, size: e.verified.size, mtimeMs: e.verified.mtimeMs, ctimeMs: e.verified.ctimeMs };
    else trust = await this.trust?.lookup(t.id, t.ref.key);
    const r = await this.pool.run({ op: 'read', file, key: new Uint8Array(t.ref.key), codec: t.codec, trust });
    if (r.missing) {
      this.index.forget(t.id);
      return undefined;
    }
    if (r.error) {
      this.log(`block cache: cannot read ${file}: ${r.error}; fetching the block again`);
      return undefined;
    }
    if (r.corrupt) {
      this.counts.corrupt++;
      this.log(`block cache: ${file}: ${r.corrupt}; deleted, fetching it again`);
      this.index.forget(t.id);
      await fsp.rm(file, { force: true }).catch(() => undefined);
      return undefined;
    }
    if (r.verified) {
      this.counts.verified++;
      this.track(this.trust?.record(t.id, Buffer.from(t.ref.key), r.file!) ?? Promise.resolve());
    } else this.counts.trusted++;
    this.counts.diskHits++;
    const buf = Buffer.from(r.plain!);
    const key = Buffer.from(t.ref.key);
    this.index.remember(t.id, r.file!.size, { ...r.file!, key });
    this.index.touch(t.id);
    if (t.keep) this.memory.set(t.id, { buf, key });
    return buf;
  }

  private async fetch(t: Task, file: string): Promise<Buffer> {
    const release = await this.queue.acquire(t);
    let lock: Held | undefined;
    let handedOff = false;
    try {
      const deadline = Date.now() + this.timeoutMs;
      const dir = path.dirname(file);
      await this.mkdir(dir).catch(() => undefined); // then the lock is 'unavailable' and the write fails
      const got = await lockBlock(file, deadline, { staleMs: 2 * this.timeoutMs + 10_000, onWait: () => this.counts.lockWaits++ });
      if (typeof got === 'object') lock = got;
      if (got === 'timeout') throw new BlockFetchError(t.id, this.store.url, `timed out after ${this.timeoutMs} ms waiting for another process fetching it`);
      if (got === 'appeared' || (lock && (await present(file)))) {
        await lock?.release();
        lock = undefined;
        const cached = await this.readCached(t, file);
        if (cached) return cached;
      }
      const plain = await download(this.store, this.pool, t.ref, t.codec, deadline, this.retry, this.counts);
      const key = Buffer.from(t.ref.key);
      this.unwritten.set(t.id, { buf: plain, key });
      if (t.keep) this.memory.set(t.id, { buf: plain, key });
      // The reader gets the bytes now; the slot and lock stay held until the file is in place.
      handedOff = true;
      const held = lock;
      this.track(
        this.store_(t.id, file, plain, key).finally(async () => {
          this.unwritten.delete(t.id);
          await held?.release();
          release();
        }),
      );
      return plain;
    } finally {
      if (!handedOff) {
        await lock?.release();
        release();
      }
    }
  }

  // -- the cache directory ---------------------------------------------------------------------

  private async mkdir(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    await fsp.mkdir(dir, { recursive: true });
    this.made.add(dir);
  }

  /** Writes a verified block into the directory; a failure (disk full) leaves it served from memory. */
  private async store_(id: string, file: string, plain: Buffer, key: Buffer): Promise<void> {
    const dir = path.dirname(file);
    try {
      await this.mkdir(dir);
      const st = await persist(id, file, plain);
      this.counts.stored++;
      this.counts.storedBytes += st.size;
      this.index.remember(id, st.size, { ...st, key });
      this.trustLater(id, st);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') this.made.delete(dir); // the directory was removed under us
      this.counts.writeErrors++;
      const why = errorText(e);
      if (why !== this.lastWriteError || this.counts.writeErrors % 100 === 0) {
        this.lastWriteError = why;
        this.log(`block cache: cannot store block ${id} in ${this.dir}: ${why} (served from memory; ${this.counts.writeErrors} write errors so far)`);
      }
    }
  }

  /**
   * Tells other processes a file this process wrote or touched is verified, once its change is
   * old enough to tell from a later write; not if it changed meanwhile.
   */
  private trustLater(id: string, file: FileId): void {
    const trust = this.trust;
    const v = this.index.get(id)?.verified;
    if (!trust || !v) return;
    this.track(
      sleep(RACY_MS + 5).then(async () => {
        const st = await fsp.stat(this.pathOf(id));
        if (sameFile(file, st)) await trust.record(id, v.key, file);
      }).catch(() => undefined),
    );
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((e) => this.log(`block cache: ${errorText(e)}`)).finally(() => this.background.delete(q));
    this.background.add(q);
  }
}
