// The block cache's view of its directory: which block files exist, their sizes in least
// recently used order, which are pinned by open files, and eviction above the size limit.
// Learnt from a scan at start and every 10 minutes (other processes add and evict files too);
// recency reaches other processes through the files' mtime, touched at most once a minute.
import { promises as fsp } from 'node:fs';
import type { FileId } from './block-task';
import { scanBlocks } from './cache-scan';

const TOUCH_MS = 60 * 1000;

export interface Indexed {
  size: number;
  atime: number;
  touched: number;
  /** the file as it was when its content last matched `key` (in this process) */
  verified?: FileId & { key: Buffer };
}

export const sameFile = (a: FileId, b: FileId): boolean => a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;

export interface IndexHooks {
  pathOf(id: string): string;
  /** a block being fetched or written: never evicted */
  busy(id: string): boolean;
  /** runs background work (file deletes, touches), awaited by flush() */
  track(p: Promise<unknown>): void;
  /** a touch changed the file's times: the new identity of a file still verified */
  touched?(id: string, file: FileId): void;
  log(line: string): void;
}

export class CacheIndex {
  /** cached files, least recently used first */
  private readonly index = new Map<string, Indexed>();
  private readonly pins = new Map<string, number>();
  private total = 0;
  private warnedPinned = false;
  evictions = 0;
  evictedBytes = 0;

  constructor(
    /** the cache directory (for messages) and its blocks/ subdirectory */
    private readonly dir: string,
    private readonly root: string,
    private readonly maxBytes: number,
    private readonly hooks: IndexHooks,
  ) {}

  get blocks(): number {
    return this.index.size;
  }

  get bytes(): number {
    return this.total;
  }

  get pinned(): number {
    return this.pins.size;
  }

  get(id: string): Indexed | undefined {
    return this.index.get(id);
  }

  has(id: string): boolean {
    return this.index.has(id);
  }

  pin(id: string): void {
    this.pins.set(id, (this.pins.get(id) ?? 0) + 1);
  }

  unpin(id: string): void {
    const n = (this.pins.get(id) ?? 0) - 1;
    if (n > 0) this.pins.set(id, n);
    else this.pins.delete(id);
  }

  /** Record a cached file as the most recently used. */
  remember(id: string, size: number, verified?: Indexed['verified']): void {
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

  forget(id: string): void {
    const e = this.index.get(id);
    if (!e) return;
    this.index.delete(id);
    this.total -= e.size;
  }

  /** A use: most recent in memory; the file's mtime now and then, for other processes' scans. */
  touch(id: string): void {
    const e = this.index.get(id);
    if (!e) return;
    const now = Date.now();
    this.index.delete(id);
    this.index.set(id, e);
    e.atime = now;
    if (now - e.touched < TOUCH_MS) return;
    e.touched = now;
    const file = this.hooks.pathOf(id);
    this.hooks.track(
      (async () => {
        const before = await fsp.stat(file);
        // Changed since verified: verify on next read (touching would hide the change).
        if (e.verified && !sameFile(e.verified, before)) e.verified = undefined;
        const t = new Date(now);
        await fsp.utimes(file, t, t);
        const after = await fsp.stat(file);
        if (e.verified && after.ino === e.verified.ino) {
          e.verified.mtimeMs = after.mtimeMs;
          e.verified.ctimeMs = after.ctimeMs;
          this.hooks.touched?.(id, { ino: after.ino, size: after.size, mtimeMs: after.mtimeMs, ctimeMs: after.ctimeMs });
        }
      })().catch(() => undefined),
    );
  }

  /** Delete least recently used unpinned blocks while over the size limit. */
  evict(): void {
    let over = this.total - this.maxBytes;
    if (over <= 0) return;
    const victims: string[] = [];
    for (const [id, e] of this.index) {
      if (over <= 0) break;
      if (this.pins.has(id) || this.hooks.busy(id)) continue;
      victims.push(id);
      over -= e.size;
    }
    for (const id of victims) {
      const size = this.index.get(id)!.size;
      this.forget(id);
      this.evictions++;
      this.evictedBytes += size;
      this.hooks.track(fsp.rm(this.hooks.pathOf(id), { force: true }));
    }
    if (over > 0 && !this.warnedPinned) {
      this.warnedPinned = true;
      this.hooks.log(`block cache: ${this.dir} holds ${this.total} bytes, over its ${this.maxBytes}-byte limit, but the rest is pinned by open files`);
    }
    if (over <= 0) this.warnedPinned = false;
  }

  /** Learn the directory as other processes left it; keep this process's own recency. */
  async rescan(): Promise<void> {
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
