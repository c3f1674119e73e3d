// KvServer over a real redis-server (or anything speaking its protocol with Lua, e.g. ardb).
// Deduplicated blocks live under their raw 32-byte hash; the reference counts in the hash
// `dedup:refs`; blocks whose count reached 0 in the set `dedup:sweep` (disks-vms.md §3.2).
// Collision check, count and sweep are Lua scripts, so they are atomic per server.
import Redis from 'ioredis';
import { G8osError } from '../errors';
import type { KvServer } from './kv';

const PUT = `
local cur = redis.call('GET', KEYS[1])
if cur then
  if cur ~= ARGV[1] then return -1 end
else
  redis.call('SET', KEYS[1], ARGV[1])
end
local n = tonumber(ARGV[2])
if n ~= 0 then
  redis.call('HINCRBY', 'dedup:refs', KEYS[1], n)
  redis.call('SREM', 'dedup:sweep', KEYS[1])
end
return 1`;

const REF = `
local d = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  local n = redis.call('HINCRBY', 'dedup:refs', k, d)
  if n <= 0 then
    redis.call('HDEL', 'dedup:refs', k)
    redis.call('SADD', 'dedup:sweep', k)
  else
    redis.call('SREM', 'dedup:sweep', k)
  end
end
return 1`;

const SWEEP = `
local deleted = 0
local ks = redis.call('SPOP', 'dedup:sweep', 1000)
for i, k in ipairs(ks) do
  if not redis.call('HGET', 'dedup:refs', k) then
    deleted = deleted + redis.call('DEL', k)
  end
end
return {deleted, #ks}`;

export interface RedisKvOptions {
  /** per-command bound (the server down gives EIO after this, never a hang) */
  timeoutMs?: number;
}

export class RedisKv implements KvServer {
  readonly url: string;
  private readonly c: Redis;

  constructor(url: string, opts: RedisKvOptions = {}) {
    const u = new URL(url);
    const timeout = opts.timeoutMs ?? 10_000;
    const common = {
      lazyConnect: true,
      enableAutoPipelining: true,
      commandTimeout: timeout,
      connectTimeout: Math.min(timeout, 5000),
      maxRetriesPerRequest: 2,
      retryStrategy: (n: number) => Math.min(100 * n, 1000),
      // redis+unix:// carries its password as ?password= (a URL with no host has no userinfo)
      password: u.password ? decodeURIComponent(u.password) : u.searchParams.get('password') ?? undefined,
    };
    if (u.protocol === 'redis+unix:') {
      const db = Number(u.searchParams.get('db') ?? 0);
      this.c = new Redis({ ...common, path: u.pathname, db });
      this.url = `redis+unix://${u.pathname}${db ? `?db=${db}` : ''}`;
    } else if (u.protocol === 'redis:') {
      const db = Number(u.pathname.slice(1) || 0);
      const port = Number(u.port || 6379);
      this.c = new Redis({ ...common, host: u.hostname, port, db });
      this.url = `redis://${u.hostname}:${port}${db ? `/${db}` : ''}`;
    } else {
      throw new G8osError('invalid', `${url}: expected redis://host:port[/db] or redis+unix:///path`);
    }
    if (!Number.isInteger((this.c.options.db ?? 0)) || (this.c.options.db ?? 0) < 0) {
      throw new G8osError('invalid', `${url}: bad database number`);
    }
    this.c.on('error', () => undefined); // surfaced per command
    this.c.defineCommand('vdiskPut', { numberOfKeys: 1, lua: PUT });
    this.c.defineCommand('vdiskSweep', { numberOfKeys: 0, lua: SWEEP });
    this.c.defineCommand('vdiskRef', { lua: REF });
  }

  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.c.status === 'wait') await this.c.connect().catch(() => undefined);
    try {
      return await fn();
    } catch (e) {
      if (e instanceof G8osError) throw e;
      const m = (e as Error).message ?? String(e);
      const errno = /^OOM/.test(m) ? 'ENOSPC' : 'EIO';
      throw new G8osError('unavailable', `${this.url}: ${what}: ${m}`, { cause: e, errno });
    }
  }

  hget(key: string, field: string): Promise<Buffer | null> {
    return this.run('HGET', () => this.c.hgetBuffer(key, field));
  }
  async hset(key: string, field: string, value: Buffer): Promise<void> {
    await this.run('HSET', () => this.c.hset(key, field, value));
  }
  async hsetnx(key: string, field: string, value: Buffer): Promise<void> {
    await this.run('HSETNX', () => this.c.hsetnx(key, field, value));
  }
  async hdel(key: string, field: string): Promise<void> {
    await this.run('HDEL', () => this.c.hdel(key, field));
  }
  async hgetall(key: string): Promise<Map<string, Buffer>> {
    const o = await this.run('HGETALL', () => this.c.hgetallBuffer(key));
    return new Map(Object.entries(o));
  }
  async del(key: string): Promise<void> {
    await this.run('DEL', () => this.c.del(key));
  }
  async rename(from: string, to: string): Promise<void> {
    // RENAME fails on an absent source: an empty hash is "no hash", so the target goes
    await this.run('RENAME', () => this.c.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[2]) else redis.call('DEL', KEYS[2]) end return 1",
      2, from, to));
  }
  blockGet(hash: Buffer): Promise<Buffer | null> {
    return this.run('GET', () => this.c.getBuffer(hash));
  }
  async blockPut(hash: Buffer, data: Buffer, refs: number): Promise<void> {
    const r = await this.run('block put', () =>
      (this.c as unknown as { vdiskPut(k: Buffer, d: Buffer, n: number): Promise<number> }).vdiskPut(hash, data, refs));
    if (r === -1) throw new G8osError('corrupt', `${this.url}: hash collision on block ${hash.toString('hex')}`, { errno: 'EIO' });
  }
  async blockRef(hashes: Buffer[], delta: number): Promise<void> {
    for (let i = 0; i < hashes.length; i += 500) {
      const part = hashes.slice(i, i + 500);
      await this.run('block ref', () =>
        (this.c as unknown as { vdiskRef(n: number, ...a: unknown[]): Promise<number> }).vdiskRef(part.length, ...part, delta));
    }
  }
  async blockRefs(hash: Buffer): Promise<number> {
    const v = await this.run('HGET', () => this.c.hget('dedup:refs', hash));
    return v ? Number(v) : 0;
  }
  async sweep(): Promise<number> {
    let total = 0;
    for (;;) {
      const [deleted, popped] = await this.run('sweep', () =>
        (this.c as unknown as { vdiskSweep(): Promise<[number, number]> }).vdiskSweep());
      total += deleted;
      if (popped < 1000) return total;
    }
  }
  async flush(): Promise<void> {
    // An acknowledged command is in the server; its own persistence (appendfsync) makes it
    // durable. The round trip makes sure every earlier pipelined command was acknowledged.
    await this.run('PING', () => this.c.ping());
  }
  async close(): Promise<void> {
    this.c.disconnect();
  }
}
