// The command bus on the agent's redis-server (core0-protocol.md §1.3, §3): the `core:default`
// inbox, the `result:<id>:flag` marker, results and `stream:<id>` lists.
import Redis, { type RedisOptions } from 'ioredis';
import type { Result } from './types';

export const INBOX = 'core:default';
/** Result and flag lifetime after a job ends (ReturnExpire upstream). */
export const RETURN_EXPIRE = 300;
/**
 * Entries kept in a `stream:<id>` list. The spec trims to 1000; a reader that starts (or falls)
 * behind a fast writer then loses lines, so we keep more: they expire 60 s after the last push.
 */
const STREAM_KEEP = 100_000;
const STREAM_TTL = 60;

export const flagKey = (id: string): string => `result:${id}:flag`;
export const resultKey = (id: string): string => `result:${id}`;
export const streamKey = (id: string): string => `stream:${id}`;

/** Stream entry flags (§7.2). */
export const STREAM_FLAG = { MESSAGE: 0x1, EXIT_SUCCESS: 0x2, EXIT_ERROR: 0x4 } as const;

export interface StreamEntry {
  core: number;
  command: string;
  message: { message: string; epoch: number; meta: number };
}

export class Bus {
  /** every write goes through one connection, so the server sees them in the order made */
  private readonly w: Redis;
  private readonly r: Redis;
  private closed = false;
  private readonly pending = new Map<string, string[]>();

  constructor(opts: RedisOptions) {
    const common: RedisOptions = { ...opts, lazyConnect: false, maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(50 * n, 1000) };
    this.w = new Redis(common);
    this.r = new Redis(common);
    // errors surface on the calls; connection noise while redis restarts is expected
    this.w.on('error', () => undefined);
    this.r.on('error', () => undefined);
  }

  /** Pops the next raw command, waiting as long as it takes; null when the bus is closing. */
  async next(): Promise<string | null> {
    while (!this.closed) {
      try {
        const got = await this.r.blpop(INBOX, 1);
        if (got) return got[1];
      } catch {
        if (this.closed) return null;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    return null;
  }

  /** Step 3: the job is known. A re-used id must look running again (no TTL) with no stale result. */
  async flag(id: string, fresh: boolean): Promise<void> {
    const p = this.w.pipeline().rpush(flagKey(id), '');
    if (fresh) p.persist(flagKey(id)).del(resultKey(id));
    await p.exec();
  }

  /** Steps 5-6, in this order: the flag gets its TTL before the result appears. */
  async result(r: Result): Promise<void> {
    await this.w
      .pipeline()
      .expire(flagKey(r.id), RETURN_EXPIRE)
      .rpush(resultKey(r.id), JSON.stringify(r))
      .expire(resultKey(r.id), RETURN_EXPIRE)
      .exec();
  }

  /**
   * One `stream:<id>` entry (jobs started with `stream: true`). Entries made in the same tick go
   * out as one RPUSH: a process printing fast would otherwise cost three commands per line.
   */
  stream(id: string, e: StreamEntry): void {
    let list = this.pending.get(id);
    if (!list) this.pending.set(id, (list = []));
    list.push(JSON.stringify(e));
    if (this.pending.size === 1 && list.length === 1) setImmediate(() => this.flushStreams());
  }

  private flushStreams(): void {
    const p = this.w.pipeline();
    for (const [id, entries] of this.pending) p.rpush(streamKey(id), ...entries).ltrim(streamKey(id), -STREAM_KEEP, -1).expire(streamKey(id), STREAM_TTL);
    this.pending.clear();
    p.exec().catch(() => undefined);
  }

  /** Log records for a redis logger (§7.1). */
  log(key: string, record: object, keep: number): void {
    this.w.pipeline().rpush(key, JSON.stringify(record)).ltrim(key, -keep, -1).exec().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.r.disconnect();
    await this.w.quit().catch(() => this.w.disconnect());
  }
}
