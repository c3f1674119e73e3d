// In-memory KvServer: protocol tests and `tmp` vdisks that need no persistence.
import { G8osError } from '../errors';
import type { KvServer } from './kv';

export class MemKv implements KvServer {
  readonly url = 'mem:';
  private readonly hashes = new Map<string, Map<string, Buffer>>();
  private readonly blocks = new Map<string, Buffer>();
  private readonly refs = new Map<string, number>();
  private readonly candidates = new Set<string>();

  async hget(key: string, field: string): Promise<Buffer | null> {
    return this.hashes.get(key)?.get(field) ?? null;
  }
  async hset(key: string, field: string, value: Buffer): Promise<void> {
    let h = this.hashes.get(key);
    if (!h) this.hashes.set(key, (h = new Map()));
    h.set(field, Buffer.from(value));
  }
  async hsetnx(key: string, field: string, value: Buffer): Promise<void> {
    if (!this.hashes.get(key)?.has(field)) await this.hset(key, field, value);
  }
  async hdel(key: string, field: string): Promise<void> {
    this.hashes.get(key)?.delete(field);
  }
  async hgetall(key: string): Promise<Map<string, Buffer>> {
    return new Map(this.hashes.get(key) ?? []);
  }
  async del(key: string): Promise<void> {
    this.hashes.delete(key);
  }
  async rename(from: string, to: string): Promise<void> {
    const h = this.hashes.get(from);
    this.hashes.delete(from);
    if (h) this.hashes.set(to, h);
    else this.hashes.delete(to);
  }
  async blockGet(hash: Buffer): Promise<Buffer | null> {
    return this.blocks.get(hash.toString('hex')) ?? null;
  }
  async blockPut(hash: Buffer, data: Buffer, refs: number): Promise<void> {
    const k = hash.toString('hex');
    const cur = this.blocks.get(k);
    if (cur && !cur.equals(data)) throw new G8osError('corrupt', `hash collision on block ${k}`, { errno: 'EIO' });
    if (!cur) this.blocks.set(k, Buffer.from(data));
    if (refs) this.refs.set(k, (this.refs.get(k) ?? 0) + refs);
  }
  async blockRef(hashes: Buffer[], delta: number): Promise<void> {
    for (const h of hashes) {
      const k = h.toString('hex');
      const n = (this.refs.get(k) ?? 0) + delta;
      if (n <= 0) {
        this.refs.delete(k);
        this.candidates.add(k);
      } else this.refs.set(k, n);
    }
  }
  async blockRefs(hash: Buffer): Promise<number> {
    return this.refs.get(hash.toString('hex')) ?? 0;
  }
  async sweep(): Promise<number> {
    let n = 0;
    for (const k of this.candidates) {
      if (!this.refs.has(k) && this.blocks.delete(k)) n++;
    }
    this.candidates.clear();
    return n;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
