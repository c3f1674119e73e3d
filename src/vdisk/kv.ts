// One storage server of a vdisk cluster (disks-vms.md §3.2): redis-style hashes for LBA
// sectors, non-deduplicated blocks and the vdisk index, plus content-addressed deduplicated
// blocks with reference counts. Implementations: redis (kv-redis.ts), a directory
// (kv-dir.ts), memory (kv-mem.ts).

export interface KvServer {
  /** address with any password removed */
  readonly url: string;
  hget(key: string, field: string): Promise<Buffer | null>;
  hset(key: string, field: string, value: Buffer): Promise<void>;
  /** sets the field only when it is absent (template write-back must not undo a newer write) */
  hsetnx(key: string, field: string, value: Buffer): Promise<void>;
  hdel(key: string, field: string): Promise<void>;
  hgetall(key: string): Promise<Map<string, Buffer>>;
  /** deletes a whole hash */
  del(key: string): Promise<void>;
  /** replaces hash `to` by hash `from` in one step (a rollback's swap); `from` is gone after */
  rename(from: string, to: string): Promise<void>;
  /** content of a deduplicated block, or null */
  blockGet(hash: Buffer): Promise<Buffer | null>;
  /**
   * Stores a block under its hash and adds `refs` references (0: a template write-back, whose
   * references were counted when the LBA was copied). Same hash, other bytes: throws corrupt.
   */
  blockPut(hash: Buffer, data: Buffer, refs: number): Promise<void>;
  /** adds delta (may be negative) to each hash's count; counts reaching 0 become sweep candidates */
  blockRef(hashes: Buffer[], delta: number): Promise<void>;
  /** reference count (0 when unknown) */
  blockRefs(hash: Buffer): Promise<number>;
  /** deletes sweep candidates still unreferenced; returns how many blocks were deleted */
  sweep(): Promise<number>;
  /** every write acknowledged before the call is durable when it resolves */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** A hash collision: the store holds other bytes under this hash (never overwritten). */
export const COLLISION = 'hash collision';
