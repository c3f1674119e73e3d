// The log client inside the NBD server, one per attached vdisk: numbers every block mutation,
// keeps it until the log server has stored the aggregation holding it (retrying while the log
// server is away), and cuts aggregations at flush-size records, after flush-time, or on FLUSH.
// It holds the vdisk's attachment lease and makes the periodic snapshots.
import os from 'node:os';
import { G8osError, oneLine } from '../errors';
import { blake2b256, ZERO_HASH } from '../vdisk/hash';
import { type Aggregation, encodeAggregation, hashOf, lastSeq, type LogRecord } from './record';
import { compact, snapshotNow } from './state';
import { type AggHeader, type SnapInfo, type TlogStore } from './store';

export interface TlogSettings {
  /** records per aggregation (upstream default 25) */
  flushSize: number;
  /** ms before a partial aggregation is written (upstream 25 s) */
  flushTimeMs: number;
  /** a snapshot after this many sequences… */
  snapshotEvery: number;
  /** …or this many ms with writes since the last one */
  snapshotIntervalMs: number;
  /** snapshots kept (older ones and the log before the oldest kept are dropped) */
  retainSnapshots: number;
  /** FLUSH fails with EIO when the log has not stored its writes within this */
  ackTimeoutMs: number;
  /** writes wait while this many bytes are unacknowledged */
  maxPendingBytes: number;
  leaseTtlMs: number;
}

export const DEFAULT_SETTINGS: TlogSettings = {
  flushSize: 25, flushTimeMs: 25_000, snapshotEvery: 10_000, snapshotIntervalMs: 600_000, retainSnapshots: 8,
  ackTimeoutMs: 30_000, maxPendingBytes: 256 * 1024 * 1024, leaseTtlMs: 10_000,
};

export class TlogWriter {
  private seq: number;
  private acked: number;
  private n: number;
  private prev: Buffer;
  private lastTs: bigint;
  private pending: LogRecord[] = [];
  private pendingBytes = 0;
  private writing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly waiters: { seq: number; resolve: () => void }[] = [];
  private readonly roomWaiters: (() => void)[] = [];
  private closed = false;
  private snapping: Promise<void> | null = null;
  private lastSnapSeq: number;
  private lastSnapAt = Date.now();
  private readonly leaseTimer: NodeJS.Timeout;
  private lastError = '';

  private constructor(
    private readonly store: TlogStore, readonly id: string, private readonly s: TlogSettings,
    private readonly holder: string, head: { head: number; headHash: Buffer | null; lastSeq: number; lastTs: bigint }, lastSnap: number,
    private readonly log: (l: string) => void,
  ) {
    this.seq = this.acked = head.lastSeq;
    this.n = head.head;
    this.prev = head.headHash ?? ZERO_HASH;
    this.lastTs = head.lastTs;
    this.lastSnapSeq = lastSnap;
    this.leaseTimer = setInterval(() => {
      store.refresh(id, holder, s.leaseTtlMs).then((ok) => {
        if (!ok) return store.acquire(id, holder, s.leaseTtlMs).then(() => undefined);
        return undefined;
      }).catch(() => undefined);
    }, Math.max(200, Math.floor(s.leaseTtlMs / 3)));
    this.leaseTimer.unref();
  }

  /**
   * Attaches: takes the lease (refused while another holds it), reads the head (the last
   * stored sequence), and makes the base snapshot from `base()` when the vdisk has no log yet.
   */
  static async open(store: TlogStore, id: string, s: TlogSettings, base: () => Promise<Map<number, Buffer>>, log: (l: string) => void = () => undefined): Promise<TlogWriter> {
    const holder = `nbd:${os.hostname()}:${process.pid}:${Date.now()}`;
    const other = await store.acquire(id, holder, s.leaseTtlMs);
    if (other) throw new G8osError('conflict', `vdisk ${id} is attached elsewhere (${other})`);
    try {
      const head = await store.head(id);
      let snaps = await store.snapshots(id);
      if (!snaps.length) {
        const blocks = await base();
        const map = new Map<number, Buffer>();
        const data = new Map<string, Buffer>();
        for (const [i, d] of blocks) {
          const h = blake2b256(d);
          map.set(i, h);
          data.set(h.toString('hex'), d);
        }
        const info: SnapInfo = { seq: head.lastSeq, agg: head.head, tsNs: String(BigInt(Date.now()) * 1_000_000n), blocks: map.size, kind: 'base', created: new Date().toISOString() };
        await store.putSnapshot(id, info, map, data);
        snaps = [info];
      }
      return new TlogWriter(store, id, s, holder, head, snaps[snaps.length - 1].seq, log);
    } catch (e) {
      await store.release(id, holder).catch(() => undefined);
      throw e;
    }
  }

  get lastSeq(): number {
    return this.seq;
  }
  get ackedSeq(): number {
    return this.acked;
  }

  /** Numbers one block mutation (data null: zeros) and queues it; waits while too much is unacknowledged. */
  async append(index: number, data: Buffer | null): Promise<number> {
    if (this.closed) throw new G8osError('unavailable', `log of ${this.id} is closed`, { errno: 'EIO' });
    while (this.pendingBytes > this.s.maxPendingBytes) await new Promise<void>((r) => this.roomWaiters.push(r));
    let ts = BigInt(Date.now()) * 1_000_000n;
    if (ts <= this.lastTs) ts = this.lastTs + 1n; // strictly increasing: a time names one point
    this.lastTs = ts;
    const rec: LogRecord = { seq: ++this.seq, index, hash: data ? blake2b256(data) : ZERO_HASH, data: data ? Buffer.from(data) : null, tsNs: ts };
    this.pending.push(rec);
    this.pendingBytes += (data?.length ?? 0) + 64;
    if (this.pending.length >= this.s.flushSize) this.kick();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.kick(true);
      }, this.s.flushTimeMs);
      this.timer.unref();
    }
    return rec.seq;
  }

  /** Starts writing aggregations (full ones; with `all` also the partial last one). */
  private kick(all = false): void {
    if (this.writing) {
      if (all) this.writing.then(() => this.kick(true), () => undefined);
      return;
    }
    if (!this.pending.length) return;
    if (!all && this.pending.length < this.s.flushSize) return;
    this.writing = this.drain(all).finally(() => {
      this.writing = null;
      if (this.pending.length >= this.s.flushSize) this.kick();
    });
  }

  private async drain(all: boolean): Promise<void> {
    while (this.pending.length && (all || this.pending.length >= this.s.flushSize)) {
      const records = this.pending.slice(0, this.s.flushSize);
      const a: Aggregation = { vdisk: this.id, n: this.n + 1, prev: this.prev, firstSeq: records[0].seq, tsNs: records[records.length - 1].tsNs, records };
      await this.put(a);
      this.pending.splice(0, records.length);
      this.pendingBytes -= records.reduce((t, r) => t + (r.data?.length ?? 0) + 64, 0);
      for (const w of this.roomWaiters.splice(0)) w();
    }
  }

  /** Stores one aggregation, retrying while the log server is unreachable (never dropping it). */
  private async put(a: Aggregation): Promise<void> {
    const bytes = encodeAggregation(a);
    const hash = hashOf(bytes);
    const hdr: AggHeader = {
      n: a.n, hash: hash.toString('hex'), firstSeq: a.firstSeq, lastSeq: lastSeq(a), firstTs: String(a.records[0]?.tsNs ?? a.tsNs),
      lastTs: String(a.tsNs), count: a.records.length, reset: !!a.reset,
    };
    for (let attempt = 0; ; attempt++) {
      try {
        await this.store.append(this.id, a.n, bytes, hash, a.prev, hdr);
        break;
      } catch (e) {
        if (e instanceof G8osError && e.kind === 'conflict') {
          this.lastError = oneLine(e);
          this.failWaiters(e);
          throw e;
        }
        this.lastError = oneLine(e);
        if (attempt === 0) this.log(`tlog: ${this.id}: ${this.lastError}; retrying`);
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 500)));
      }
    }
    if (this.lastError) {
      this.log(`tlog: ${this.id}: log server back, aggregation ${a.n} stored`);
      this.lastError = '';
    }
    this.n = a.n;
    this.prev = hash;
    this.acked = hdr.lastSeq;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i].seq <= this.acked) this.waiters.splice(i, 1)[0].resolve();
    }
    this.maybeSnapshot();
  }

  private rejecters = new Set<(e: unknown) => void>();
  private failWaiters(e: unknown): void {
    for (const r of this.rejecters) r(e);
  }

  private maybeSnapshot(): void {
    if (this.snapping) return;
    const due = this.acked - this.lastSnapSeq >= this.s.snapshotEvery
      || (this.acked > this.lastSnapSeq && Date.now() - this.lastSnapAt >= this.s.snapshotIntervalMs);
    if (!due) return;
    this.snapping = (async () => {
      const info = await snapshotNow(this.store, this.id);
      if (info) this.lastSnapSeq = info.seq;
      this.lastSnapAt = Date.now();
      await compact(this.store, this.id, this.s.retainSnapshots);
    })().catch((e) => this.log(`tlog: ${this.id}: snapshot: ${oneLine(e)}`)).finally(() => {
      this.snapping = null;
    });
  }

  /** Resolves when every mutation numbered so far is stored in the log; EIO after ackTimeoutMs. */
  async flush(): Promise<void> {
    const target = this.seq;
    if (this.acked >= target) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.kick(true);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        done();
        reject(new G8osError('unavailable', `log of ${this.id}: seq ${target} not stored within ${this.s.ackTimeoutMs} ms (${this.lastError || 'log server slow'})`, { errno: 'EIO' }));
      }, this.s.ackTimeoutMs);
      const w = { seq: target, resolve: () => { done(); resolve(); } };
      const rej = (e: unknown): void => {
        done();
        reject(e);
      };
      const done = (): void => {
        clearTimeout(t);
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        this.rejecters.delete(rej);
      };
      this.waiters.push(w);
      this.rejecters.add(rej);
    });
  }

  /** Flushes (bounded by ackTimeoutMs), waits for a running snapshot, releases the lease. */
  async close(): Promise<void> {
    try {
      await this.flush();
      await this.snapping;
    } finally {
      this.closed = true;
      clearInterval(this.leaseTimer);
      if (this.timer) clearTimeout(this.timer);
      await this.store.release(this.id, this.holder).catch(() => undefined);
    }
  }
}
