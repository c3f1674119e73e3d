// The log server: a redis-server of its own (never the primary cluster). Per vdisk id:
//   tlog:<id>          hash  head, headHash, lastSeq, lfseq, lastTs, baseAgg, baseHash
//   tlog:<id>:agg      hash  n → encoded aggregation
//   tlog:<id>:hdr      hash  n → JSON {h: hash hex, s, e: first/last seq, t0, t1: ts ns, c, r}
//   tlog:<id>:snaps    hash  seq → JSON SnapInfo;  tlog:<id>:snap:<seq>  string: the block map
//   tlog:<id>:blocks   hash  raw block hash → bytes (the snapshots' blocks, stored once)
//   tlog:<id>:lease    string with a TTL: who has the vdisk attached
import Redis from 'ioredis';
import { G8osError } from '../errors';

export interface Head {
  head: number;
  headHash: Buffer | null;
  lastSeq: number;
  lastTs: bigint;
  /** aggregations ≤ baseAgg were compacted away; baseHash is the hash of baseAgg */
  baseAgg: number;
  baseHash: Buffer | null;
}

export interface AggHeader {
  n: number;
  hash: string;
  firstSeq: number;
  lastSeq: number;
  firstTs: string;
  lastTs: string;
  count: number;
  reset: boolean;
}

export interface SnapInfo {
  seq: number;
  /** the last aggregation it includes */
  agg: number;
  /** ts of the last record it includes (ns, decimal) */
  tsNs: string;
  blocks: number;
  kind: 'base' | 'periodic' | 'rollback' | 'import';
  created: string;
}

const APPEND = `
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
local n = tonumber(ARGV[1])
if head >= n then
  if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 0 end
  return -1
end
if head ~= n - 1 then return -2 end
local hh = redis.call('HGET', KEYS[1], 'headHash')
if head > 0 and hh ~= ARGV[6] then return -3 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[7])
redis.call('HSET', KEYS[1], 'head', ARGV[1], 'headHash', ARGV[3], 'lastSeq', ARGV[4], 'lfseq', ARGV[4], 'lastTs', ARGV[5])
return 1`;

const REFRESH = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export const key = (id: string, part?: string): string => (part ? `tlog:${id}:${part}` : `tlog:${id}`);

export class TlogStore {
  readonly url: string;
  private readonly c: Redis;

  constructor(url: string, opts: { timeoutMs?: number } = {}) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new G8osError('invalid', `log server ${JSON.stringify(url)}: expected redis://host:port[/db]`);
    }
    if (u.protocol !== 'redis:') throw new G8osError('invalid', `log server ${url}: expected redis://host:port[/db]`);
    const timeout = opts.timeoutMs ?? 5000;
    this.url = `redis://${u.hostname}:${u.port || 6379}${u.pathname.length > 1 ? u.pathname : ''}`;
    this.c = new Redis(url, {
      lazyConnect: true, enableAutoPipelining: true, commandTimeout: timeout, connectTimeout: Math.min(timeout, 5000),
      maxRetriesPerRequest: 1, retryStrategy: (n: number) => Math.min(50 * n, 500),
    });
    this.c.on('error', () => undefined);
  }

  private async run<T>(what: string, fn: (c: Redis) => Promise<T>): Promise<T> {
    if (this.c.status === 'wait') await this.c.connect().catch(() => undefined);
    try {
      return await fn(this.c);
    } catch (e) {
      if (e instanceof G8osError) throw e;
      throw new G8osError('unavailable', `log server ${this.url}: ${what}: ${(e as Error).message}`, { cause: e, errno: 'EIO' });
    }
  }

  async head(id: string): Promise<Head> {
    const h = await this.run('HGETALL', (c) => c.hgetallBuffer(key(id)));
    const num = (f: string): number => Number(h[f]?.toString() ?? 0);
    return {
      head: num('head'), headHash: h.headHash ?? null, lastSeq: num('lastSeq'), lastTs: BigInt(h.lastTs?.toString() ?? 0),
      baseAgg: num('baseAgg'), baseHash: h.baseHash ?? null,
    };
  }

  /** Appends aggregation n after headHash `prev`; a retry of a stored one is fine; a fork is refused. */
  async append(id: string, n: number, bytes: Buffer, hash: Buffer, prev: Buffer, hdr: AggHeader): Promise<void> {
    const r = await this.run('append', (c) => c.eval(APPEND, 3, key(id), key(id, 'agg'), key(id, 'hdr'),
      n, bytes, hash, hdr.lastSeq, hdr.lastTs, prev, JSON.stringify(hdr))) as number;
    if (r === -1) throw new G8osError('conflict', `log of ${id}: aggregation ${n} exists with other content (two writers?)`);
    if (r === -2) throw new G8osError('conflict', `log of ${id}: aggregation ${n} does not follow the head`);
    if (r === -3) throw new G8osError('conflict', `log of ${id}: aggregation ${n} does not chain onto the head`);
  }

  async aggregations(id: string, ns: number[]): Promise<(Buffer | null)[]> {
    if (!ns.length) return [];
    return this.run('HMGET', (c) => c.hmgetBuffer(key(id, 'agg'), ...ns.map(String)));
  }

  async headers(id: string): Promise<AggHeader[]> {
    const all = await this.run('HGETALL', (c) => c.hgetall(key(id, 'hdr')));
    return Object.values(all).map((v) => JSON.parse(v) as AggHeader).sort((a, b) => a.n - b.n);
  }

  async headersOf(id: string, ns: number[]): Promise<(AggHeader | null)[]> {
    if (!ns.length) return [];
    const v = await this.run('HMGET', (c) => c.hmget(key(id, 'hdr'), ...ns.map(String)));
    return v.map((x) => (x ? (JSON.parse(x) as AggHeader) : null));
  }

  async header(id: string, n: number): Promise<AggHeader | null> {
    const v = await this.run('HGET', (c) => c.hget(key(id, 'hdr'), String(n)));
    return v ? (JSON.parse(v) as AggHeader) : null;
  }

  async snapshots(id: string): Promise<SnapInfo[]> {
    const all = await this.run('HGETALL', (c) => c.hgetall(key(id, 'snaps')));
    return Object.values(all).map((v) => JSON.parse(v) as SnapInfo).sort((a, b) => a.seq - b.seq);
  }

  async snapshotMap(id: string, seq: number): Promise<Map<number, Buffer>> {
    const raw = await this.run('GET', (c) => c.getBuffer(key(id, `snap:${seq}`)));
    if (!raw) throw new G8osError('corrupt', `log of ${id}: snapshot ${seq} has no block map`);
    return decodeMap(raw, `${id} snapshot ${seq}`);
  }

  /** Blocks first, then the map, then the entry: a half-written snapshot is never listed. */
  async putSnapshot(id: string, info: SnapInfo, map: Map<number, Buffer>, data: Map<string, Buffer>): Promise<void> {
    const entries = [...data];
    for (let i = 0; i < entries.length; i += 256) {
      const part = entries.slice(i, i + 256);
      await this.run('HSETNX', (c) => Promise.all(part.map(([h, d]) => c.hsetnx(key(id, 'blocks'), Buffer.from(h, 'hex'), d))));
    }
    await this.run('SET', (c) => c.set(key(id, `snap:${info.seq}`), encodeMap(map)));
    await this.run('HSET', (c) => c.hset(key(id, 'snaps'), String(info.seq), JSON.stringify(info)));
  }

  async dropSnapshot(id: string, seq: number): Promise<void> {
    await this.run('HDEL', (c) => c.hdel(key(id, 'snaps'), String(seq)));
    await this.run('DEL', (c) => c.del(key(id, `snap:${seq}`)));
  }

  async blockData(id: string, hashes: Buffer[]): Promise<(Buffer | null)[]> {
    const out: (Buffer | null)[] = [];
    for (let i = 0; i < hashes.length; i += 512) {
      const part = hashes.slice(i, i + 512);
      out.push(...(await this.run('HMGET', (c) => c.hmgetBuffer(key(id, 'blocks'), ...part))));
    }
    return out;
  }

  async blockHashes(id: string): Promise<Buffer[]> {
    const out: Buffer[] = [];
    let cursor = '0';
    do {
      const [next, kv] = await this.run('HSCAN', (c) => c.hscanBuffer(key(id, 'blocks'), cursor, 'COUNT', 1000));
      cursor = next.toString();
      for (let i = 0; i < kv.length; i += 2) out.push(kv[i]);
    } while (cursor !== '0');
    return out;
  }

  async dropBlocks(id: string, hashes: Buffer[]): Promise<void> {
    for (let i = 0; i < hashes.length; i += 512) {
      const part = hashes.slice(i, i + 512);
      await this.run('HDEL', (c) => c.hdel(key(id, 'blocks'), ...part));
    }
  }

  /** Drops aggregations ≤ upTo (they precede the oldest retained snapshot). */
  async dropAggregations(id: string, upTo: number): Promise<number> {
    const h = await this.head(id);
    if (upTo <= h.baseAgg) return 0;
    const hdr = await this.header(id, upTo);
    if (!hdr) throw new G8osError('corrupt', `log of ${id}: aggregation ${upTo} has no header`);
    await this.run('HSET', (c) => c.hset(key(id), 'baseAgg', String(upTo), 'baseHash', Buffer.from(hdr.hash, 'hex')));
    const ns: string[] = [];
    for (let n = h.baseAgg + 1; n <= upTo; n++) ns.push(String(n));
    for (let i = 0; i < ns.length; i += 512) {
      const part = ns.slice(i, i + 512);
      await this.run('HDEL', (c) => Promise.all([c.hdel(key(id, 'agg'), ...part), c.hdel(key(id, 'hdr'), ...part)]));
    }
    return ns.length;
  }

  /** test/ops hook: the raw client */
  get redis(): Redis {
    return this.c;
  }

  async acquire(id: string, holder: string, ttlMs: number): Promise<string | null> {
    const ok = await this.run('SET', (c) => c.set(key(id, 'lease'), holder, 'PX', ttlMs, 'NX'));
    if (ok === 'OK') return null;
    return (await this.holder(id)) ?? 'someone';
  }
  async refresh(id: string, holder: string, ttlMs: number): Promise<boolean> {
    return (await this.run('lease refresh', (c) => c.eval(REFRESH, 1, key(id, 'lease'), holder, ttlMs))) === 1;
  }
  async release(id: string, holder: string): Promise<void> {
    await this.run('lease release', (c) => c.eval(RELEASE, 1, key(id, 'lease'), holder));
  }
  holder(id: string): Promise<string | null> {
    return this.run('GET', (c) => c.get(key(id, 'lease')));
  }

  /** Every key of one vdisk's log (vdisk delete). */
  async dropAll(id: string): Promise<void> {
    const snaps = await this.snapshots(id);
    await this.run('DEL', (c) => c.del(key(id), key(id, 'agg'), key(id, 'hdr'), key(id, 'snaps'), key(id, 'blocks'), ...snaps.map((s) => key(id, `snap:${s.seq}`))));
  }

  async close(): Promise<void> {
    // QUIT: the server closes at once (a bare disconnect lingered ~1 s in the CLI's exit)
    if (this.c.status === 'ready') await Promise.race([this.c.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 500).unref())]);
    this.c.disconnect();
  }
}

/** A block map as sorted (u64 index, 32-byte hash) pairs. */
export function encodeMap(map: Map<number, Buffer>): Buffer {
  const idx = [...map.keys()].sort((a, b) => a - b);
  const out = Buffer.alloc(idx.length * 40);
  idx.forEach((i, k) => {
    out.writeBigUInt64BE(BigInt(i), k * 40);
    map.get(i)!.copy(out, k * 40 + 8);
  });
  return out;
}

export function decodeMap(raw: Buffer, what: string): Map<number, Buffer> {
  if (raw.length % 40) throw new G8osError('corrupt', `${what}: block map of ${raw.length} bytes`);
  const m = new Map<number, Buffer>();
  for (let o = 0; o < raw.length; o += 40) m.set(Number(raw.readBigUInt64BE(o)), Buffer.from(raw.subarray(o + 8, o + 40)));
  return m;
}
