// The block cache of g8ufs, shared by every mount on a machine: verified plaintext blocks at
// <dir>/blocks/<id[0:2]>/<id[2:4]>/<id hex>, fetched from the store on first use.
//
// - Verification: a fetched block is decoded and checked against its id and key before anyone
//   sees it; a cached file is hashed against the key on its first read in this process and
//   again whenever its inode/size/mtime changed (verify: 'always' hashes every disk read).
//   A corrupt file is deleted and fetched again, never returned.
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
import { randomBytes } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BlockCodec, BlockRef } from '../flist/types';
import { errorText } from '../store/retry';
import type { BlockStore } from '../store/types';
import { sleep, withDeadline } from '../lib/deadline';
import { LRU } from '../lib/lru';
import { BlockPool } from './block-pool';
import type { FileId } from './block-task';
import { lockBlock, type Held } from './cache-lock';
import { AHEAD, FetchQueue, type Plain, type Priority, type Queued, READ, WARM } from './cache-queue';
import { scanBlocks } from './cache-scan';
import type { BlockProvider } from './types';

export interface BlockCacheOptions {
  /** The --cache directory, shared by all mounts on the machine. */
  dir: string;
  store: BlockStore;
  /** --cache-size; default 10 GiB. */
  maxBytes?: number;
  /** Parallel store fetches; default 8. */
  concurrency?: number;
  /** Tries per block within the deadline; default 3. */
  attempts?: number;
  /** Pause before the 2nd, 3rd, … try (the last value repeats); default 100, 400, 1600 ms. */
  backoffMs?: readonly number[];
  /** Deadline for fetching one block, all tries included; default 10 s (FUSE waits longer). */
  timeoutMs?: number;
  /** Recently used plaintext kept in memory; default 64 MiB. */
  memoryBytes?: number;
  /** How long a failed block fails without a new fetch; default 1000 ms (0: never). */
  negativeMs?: number;
  /** 'once' (default): hash a cached file on first use and when it changed; 'always': every disk read. */
  verify?: 'once' | 'always';
  /** Worker threads for decoding and verifying; 0 = on the calling thread. Default min(4, cores). */
  workers?: number;
  /** One line per failed block, corrupt file or write problem; default stderr. */
  log?: (line: string) => void;
}

export interface CacheStats {
  /** block() calls answered from memory / from a cached file */
  memoryHits: number;
  diskHits: number;
  /** block loads that had to go to the store, and calls that joined a load already running */
  misses: number;
  coalesced: number;
  /** store GETs answered with data, and their (stored, encoded) bytes */
  fetched: number;
  fetchedBytes: number;
  /** blocks written to the cache directory, plaintext bytes */
  stored: number;
  storedBytes: number;
  evictions: number;
  evictedBytes: number;
  /** blocks that could not be had (after retries) */
  errors: number;
  /** store copies that failed verification (each refetched up to `attempts` times) */
  badFetches: number;
  /** cached files that failed verification (deleted, refetched) */
  corrupt: number;
  /** cached files hashed against their key */
  verified: number;
  /** blocks that could not be written to the cache directory (served from memory) */
  writeErrors: number;
  prefetched: number;
  prefetchErrors: number;
  /** times a fetch waited for another process's lock */
  lockWaits: number;
  /** cache directory as this process knows it */
  blocks: number;
  bytes: number;
  pinned: number;
  inflight: number;
  queued: number;
  memoryBytes: number;
}

/** A block that cannot be had; the FUSE layer answers EIO. */
export class BlockFetchError extends Error {
  constructor(
    readonly id: string,
    readonly store: string,
    readonly reason: string,
  ) {
    super(`cannot fetch block ${id} from ${store}: ${reason}`);
    this.name = 'BlockFetchError';
  }
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const RESCAN_MS = 10 * 60 * 1000;
const TOUCH_MS = 60 * 1000;
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

interface Indexed {
  size: number;
  atime: number;
  touched: number;
  /** the file as it was when its content last matched `key` */
  verified?: FileId & { key: Buffer };
}

class Timeout extends Error {}

async function present(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}

const sameFile = (a: FileId, b: FileId): boolean => a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;

export class BlockCache implements BlockProvider {
  readonly dir: string;
  private readonly root: string;
  private readonly store: BlockStore;
  private readonly maxBytes: number;
  private readonly attempts: number;
  private readonly backoffMs: readonly number[];
  private readonly timeoutMs: number;
  private readonly negativeMs: number;
  private readonly verifyAlways: boolean;
  private readonly log: (line: string) => void;
  private readonly pool: BlockPool;
  private readonly queue: FetchQueue<Task>;
  private readonly memory: LRU<string, Plain>;
  /** cached files, least recently used first */
  private readonly index = new Map<string, Indexed>();
  private total = 0;
  private readonly tasks = new Map<string, Task>();
  /** fetched, verified, not yet on disk */
  private readonly unwritten = new Map<string, Plain>();
  private readonly pins = new Map<string, number>();
  private readonly failed = new Map<string, { error: BlockFetchError; until: number }>();
  private readonly made = new Set<string>();
  private readonly background = new Set<Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private ahead = 0;
  private lastWriteError = '';
  private warnedPinned = false;
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
    evictions: 0,
    evictedBytes: 0,
    errors: 0,
    badFetches: 0,
    corrupt: 0,
    verified: 0,
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
    this.attempts = Math.max(1, opts.attempts ?? 3);
    this.backoffMs = opts.backoffMs?.length ? opts.backoffMs : [100, 400, 1600];
    this.timeoutMs = opts.timeoutMs ?? 10_000;
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
      throw new Error(`cache directory ${this.dir} is not usable: ${errorText(e)}`);
    }
    this.pool = new BlockPool(opts.workers ?? Math.min(4, os.availableParallelism()), this.log);
    this.queue = new FetchQueue<Task>(concurrency);
    this.memory = new LRU<string, Plain>(opts.memoryBytes ?? 64 * MiB, (p) => p.buf.length);
    this.track(this.rescan());
    this.timer = setInterval(() => this.track(this.rescan()), RESCAN_MS);
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
      const fh = await fsp.open(this.pathOf(id), 'r').catch(() => undefined);
      if (fh) {
        try {
          const st = await fh.stat();
          if (sameFile(v, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs })) {
            const out = Buffer.allocUnsafe(end - start);
            const { bytesRead } = await fh.read(out, 0, out.length, start);
            if (bytesRead === out.length) {
              this.counts.diskHits++;
              this.touch(id);
              return out;
            }
          }
        } finally {
          await fh.close();
        }
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
      if (!this.index.has(id)) this.remember(id, st.size);
      return;
    } catch {
      // not cached
    }
    await this.task(id, ref, codec, WARM, false).promise;
  }

  pin(refs: BlockRef[]): void {
    for (const r of refs) {
      const id = r.id.toString('hex');
      this.pins.set(id, (this.pins.get(id) ?? 0) + 1);
    }
  }

  unpin(refs: BlockRef[]): void {
    for (const r of refs) {
      const id = r.id.toString('hex');
      const n = (this.pins.get(id) ?? 0) - 1;
      if (n > 0) this.pins.set(id, n);
      else this.pins.delete(id);
    }
    this.evict();
  }

  stats(): CacheStats {
    return {
      ...this.counts,
      blocks: this.index.size,
      bytes: this.total,
      pinned: this.pins.size,
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

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await Promise.allSettled([...this.tasks.values()].map((t) => t.promise));
    await this.flush();
    await this.pool.close();
  }

  // -- loading ---------------------------------------------------------------------------------

  private fromMemory(id: string, ref: BlockRef): Buffer | undefined {
    const m = this.memory.get(id) ?? this.unwritten.get(id);
    if (!m) return undefined;
    if (!m.key.equals(ref.key)) throw this.keyMismatch(id);
    this.touch(id);
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
    const trust = !this.verifyAlways && e?.verified ? { ino: e.verified.ino, size: e.verified.size, mtimeMs: e.verified.mtimeMs } : undefined;
    const r = await this.pool.run({ op: 'read', file, key: new Uint8Array(t.ref.key), codec: t.codec, trust });
    if (r.missing) {
      this.forget(t.id);
      return undefined;
    }
    if (r.error) {
      this.log(`block cache: cannot read ${file}: ${r.error}; fetching the block again`);
      return undefined;
    }
    if (r.corrupt) {
      this.counts.corrupt++;
      this.log(`block cache: ${file}: ${r.corrupt}; deleted, fetching it again`);
      this.forget(t.id);
      await fsp.rm(file, { force: true }).catch(() => undefined);
      return undefined;
    }
    if (r.verified) this.counts.verified++;
    this.counts.diskHits++;
    const buf = Buffer.from(r.plain!);
    const key = Buffer.from(t.ref.key);
    this.remember(t.id, r.file!.size, { ...r.file!, key });
    this.touch(t.id);
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
      const plain = await this.download(t, deadline);
      const key = Buffer.from(t.ref.key);
      this.unwritten.set(t.id, { buf: plain, key });
      if (t.keep) this.memory.set(t.id, { buf: plain, key });
      // The reader gets the bytes now; the slot and lock stay held until the file is in place.
      handedOff = true;
      const held = lock;
      this.track(
        this.persist(t.id, file, plain, key).finally(async () => {
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

  /** GET + decode + verify, `attempts` tries within the deadline. */
  private async download(t: Task, deadline: number): Promise<Buffer> {
    let why = `timed out after ${this.timeoutMs} ms`;
    let tries = 0;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) {
        const pause = this.backoffMs[Math.min(attempt - 1, this.backoffMs.length - 1)];
        if (Date.now() + pause >= deadline) break;
        await sleep(pause);
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      tries++;
      let cipher: Buffer | null;
      try {
        cipher = await withDeadline(this.store.get(t.ref.id), left, () => new Timeout());
      } catch (e) {
        why = e instanceof Timeout ? `timed out after ${this.timeoutMs} ms` : errorText(e);
        continue;
      }
      if (!cipher) throw new BlockFetchError(t.id, this.store.url, 'the store does not have it');
      this.counts.fetched++;
      this.counts.fetchedBytes += cipher.length;
      const r = await this.pool.run({ op: 'decode', cipher: new Uint8Array(cipher), id: new Uint8Array(t.ref.id), key: new Uint8Array(t.ref.key), codec: t.codec });
      if (r.plain) return Buffer.from(r.plain);
      if (r.corrupt) {
        this.counts.badFetches++;
        why = `corrupt block: ${r.corrupt}`;
      } else why = r.error ?? 'decoding failed';
    }
    throw new BlockFetchError(t.id, this.store.url, `${why} (${tries} ${tries === 1 ? 'try' : 'tries'})`);
  }

  // -- the cache directory ---------------------------------------------------------------------

  private async mkdir(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    await fsp.mkdir(dir, { recursive: true });
    this.made.add(dir);
  }

  /** temp file, fsync, rename: a crash never leaves a short block under its final name. */
  private async persist(id: string, file: string, plain: Buffer, key: Buffer): Promise<void> {
    const dir = path.dirname(file);
    const tmp = path.join(dir, `.${id}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await this.mkdir(dir);
      const fh = await fsp.open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(plain);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, file);
      const st = await fsp.stat(file);
      this.counts.stored++;
      this.counts.storedBytes += st.size;
      this.remember(id, st.size, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, key });
    } catch (e) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
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

  private track(p: Promise<unknown>): void {
    const q = p.catch((e) => this.log(`block cache: ${errorText(e)}`)).finally(() => this.background.delete(q));
    this.background.add(q);
  }

  /** Record a cached file as the most recently used. */
  private remember(id: string, size: number, verified?: Indexed['verified']): void {
    const now = Date.now();
    const e = this.index.get(id);
    if (e) {
      this.total += size - e.size;
      e.size = size;
      e.atime = now;
      if (verified) e.verified = verified;
      this.index.delete(id);
      this.index.set(id, e);
    } else {
      this.total += size;
      this.index.set(id, { size, atime: now, touched: now, verified });
    }
    this.evict();
  }

  private forget(id: string): void {
    const e = this.index.get(id);
    if (!e) return;
    this.index.delete(id);
    this.total -= e.size;
  }

  /** A use: most recent in memory; the file's mtime now and then, for other processes' scans. */
  private touch(id: string): void {
    const e = this.index.get(id);
    if (!e) return;
    const now = Date.now();
    this.index.delete(id);
    this.index.set(id, e);
    e.atime = now;
    if (now - e.touched < TOUCH_MS) return;
    e.touched = now;
    const file = this.pathOf(id);
    this.track(
      (async () => {
        const before = await fsp.stat(file);
        // Changed since verified: verify on next read (touching would hide the change).
        if (e.verified && !sameFile(e.verified, before)) e.verified = undefined;
        const t = new Date(now);
        await fsp.utimes(file, t, t);
        const after = await fsp.stat(file);
        if (e.verified && after.ino === e.verified.ino) e.verified.mtimeMs = after.mtimeMs;
      })().catch(() => undefined),
    );
  }

  /** Delete least recently used unpinned blocks while over the size limit. */
  private evict(): void {
    let over = this.total - this.maxBytes;
    if (over <= 0) return;
    const victims: string[] = [];
    for (const [id, e] of this.index) {
      if (over <= 0) break;
      if (this.pins.has(id) || this.tasks.has(id) || this.unwritten.has(id)) continue;
      victims.push(id);
      over -= e.size;
    }
    for (const id of victims) {
      const size = this.index.get(id)!.size;
      this.forget(id);
      this.counts.evictions++;
      this.counts.evictedBytes += size;
      this.track(fsp.rm(this.pathOf(id), { force: true }));
    }
    if (over > 0 && !this.warnedPinned) {
      this.warnedPinned = true;
      this.log(`block cache: ${this.dir} holds ${this.total} bytes, over its ${this.maxBytes}-byte limit, but the rest is pinned by open files`);
    }
    if (over <= 0) this.warnedPinned = false;
  }

  /** Learn the directory as other processes left it; keep this process's own recency. */
  private async rescan(): Promise<void> {
    const started = Date.now();
    const found = await scanBlocks(this.root);
    const seen = new Set<string>();
    const rows: [string, Indexed][] = [];
    for (const f of found) {
      seen.add(f.id);
      const e = this.index.get(f.id);
      if (e) {
        if (e.size !== f.size || (e.verified && e.verified.mtimeMs !== f.mtimeMs)) e.verified = undefined;
        e.size = f.size;
        e.atime = Math.max(e.atime, f.mtimeMs);
        rows.push([f.id, e]);
      } else rows.push([f.id, { size: f.size, atime: f.mtimeMs, touched: f.mtimeMs }]);
    }
    // Added while the scan ran: the scan may have passed their directory already.
    for (const [id, e] of this.index) if (!seen.has(id) && e.atime >= started) rows.push([id, e]);
    rows.sort((a, b) => a[1].atime - b[1].atime);
    this.index.clear();
    this.total = 0;
    for (const [id, e] of rows) {
      this.index.set(id, e);
      this.total += e.size;
    }
    this.evict();
  }
}
