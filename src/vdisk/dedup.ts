// Deduplicated (boot) storage: block index → blake2b-256 hash through the LBA (sectors of 128
// hashes in the hash `lba:<id>`), content once per hash with a reference count. A new hash is
// counted before the LBA that names it is written; a replaced hash is uncounted only after the
// LBA no longer naming it is stored, so a crash can leak a count but never lose a block.
import { G8osError } from '../errors';
import type { BlockBackend } from './blockdisk';
import type { Cluster } from './cluster';
import { blake2b256, ZERO_HASH } from './hash';
import type { TemplateSource } from './template';

export const SECTOR_HASHES = 128;
const SECTOR_BYTES = SECTOR_HASHES * 32;
/** LBA cache bound (upstream -lbacachelimit: 20 MiB) */
const CACHE_SECTORS = (20 * 1024 * 1024) / SECTOR_BYTES;

interface Sector {
  hashes: Buffer;
  dirty: boolean;
  /** hashes replaced since the last store of this sector */
  unref: Buffer[];
}

export const lbaKey = (id: string): string => `lba:${id}`;

export class DedupBackend implements BlockBackend {
  private readonly sectors = new Map<number, Sector>();
  private readonly loading = new Map<number, Promise<Sector>>();
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly cluster: Cluster,
    private readonly id: string,
    private readonly template?: TemplateSource,
    private readonly log: (l: string) => void = () => undefined,
  ) {}

  private async sector(n: number): Promise<Sector> {
    const hit = this.sectors.get(n);
    if (hit) {
      this.sectors.delete(n); // LRU: move to the end
      this.sectors.set(n, hit);
      return hit;
    }
    let p = this.loading.get(n);
    if (!p) {
      p = this.cluster.meta.hget(lbaKey(this.id), String(n)).then((raw) => {
        if (raw && raw.length !== SECTOR_BYTES) {
          throw new G8osError('corrupt', `LBA sector ${n} of ${this.id} has ${raw.length} bytes`, { errno: 'EIO' });
        }
        const s: Sector = { hashes: raw ? Buffer.from(raw) : Buffer.alloc(SECTOR_BYTES), dirty: false, unref: [] };
        this.sectors.set(n, s);
        this.evict();
        return s;
      });
      this.loading.set(n, p);
      p.finally(() => this.loading.delete(n)).catch(() => undefined);
    }
    return p;
  }

  private evict(): void {
    if (this.sectors.size <= CACHE_SECTORS) return;
    for (const [n, s] of this.sectors) {
      if (this.sectors.size <= CACHE_SECTORS) break;
      if (!s.dirty) this.sectors.delete(n);
    }
  }

  async get(index: number): Promise<Buffer | null> {
    const s = await this.sector(Math.floor(index / SECTOR_HASHES));
    const at = (index % SECTOR_HASHES) * 32;
    const hash = Buffer.from(s.hashes.subarray(at, at + 32));
    if (hash.equals(ZERO_HASH)) return null;
    const server = this.cluster.forHash(hash);
    const data = await server.blockGet(hash);
    if (data) return data;
    if (this.template) {
      const t = await this.template.byHash(hash);
      if (t) {
        // served now, stored in our cluster in the background (counted when the LBA was copied)
        server.blockPut(hash, t, 0).catch((e) => this.log(`vdisk ${this.id}: template write-back: ${(e as Error).message}`));
        return t;
      }
    }
    throw new G8osError('corrupt', `vdisk ${this.id}: block ${index} (${hash.toString('hex')}) is missing from the store`, { errno: 'EIO' });
  }

  private async replace(index: number, hash: Buffer): Promise<void> {
    const s = await this.sector(Math.floor(index / SECTOR_HASHES));
    const at = (index % SECTOR_HASHES) * 32;
    const old = Buffer.from(s.hashes.subarray(at, at + 32));
    if (old.equals(hash)) return;
    hash.copy(s.hashes, at);
    s.dirty = true;
    if (!old.equals(ZERO_HASH)) s.unref.push(old);
  }

  async set(index: number, data: Buffer): Promise<void> {
    const hash = blake2b256(data);
    const s = await this.sector(Math.floor(index / SECTOR_HASHES));
    const at = (index % SECTOR_HASHES) * 32;
    if (s.hashes.subarray(at, at + 32).equals(hash)) return;
    await this.cluster.forHash(hash).blockPut(hash, data, 1);
    await this.replace(index, hash);
    if (this.sectors.size > CACHE_SECTORS) await this.flush();
  }

  delete(index: number): Promise<void> {
    return this.replace(index, ZERO_HASH);
  }

  async flush(): Promise<void> {
    // one flush at a time; a caller arriving during one waits for it and then runs its own
    while (this.flushing) await this.flushing.catch(() => undefined);
    this.flushing = this.flushOnce();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }

  private async flushOnce(): Promise<void> {
    const unref: Buffer[] = [];
    for (const [n, s] of this.sectors) {
      if (!s.dirty) continue;
      const bytes = Buffer.from(s.hashes);
      const gone = s.unref;
      s.dirty = false;
      s.unref = [];
      try {
        if (bytes.equals(Buffer.alloc(SECTOR_BYTES))) await this.cluster.meta.hdel(lbaKey(this.id), String(n));
        else await this.cluster.meta.hset(lbaKey(this.id), String(n), bytes);
      } catch (e) {
        s.dirty = true;
        s.unref.unshift(...gone);
        throw e;
      }
      unref.push(...gone);
    }
    await this.cluster.flush();
    // the LBA no longer names these: now they may be uncounted (and later swept)
    await uncount(this.cluster, unref);
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

/** Adds delta to the counts of hashes, grouped per server. */
export async function recount(cluster: Cluster, hashes: Buffer[], delta: number): Promise<void> {
  const by = new Map<number, Buffer[]>();
  for (const h of hashes) {
    const i = h[0] % cluster.servers.length;
    let l = by.get(i);
    if (!l) by.set(i, (l = []));
    l.push(h);
  }
  await Promise.all([...by].map(([i, l]) => cluster.servers[i].blockRef(l, delta)));
}

const uncount = (cluster: Cluster, hashes: Buffer[]): Promise<void> => recount(cluster, hashes, -1);

/** Every non-zero hash named by a set of LBA sectors. */
export function hashesOf(sectors: Iterable<Buffer>): Buffer[] {
  const out: Buffer[] = [];
  for (const s of sectors) {
    for (let at = 0; at + 32 <= s.length; at += 32) {
      const h = s.subarray(at, at + 32);
      if (!h.equals(ZERO_HASH)) out.push(Buffer.from(h));
    }
  }
  return out;
}
