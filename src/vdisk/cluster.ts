// A storage cluster: a list of KvServers. Deduplicated blocks go to server `hash[0] mod N`,
// non-deduplicated blocks to `index mod N`; metadata (index, LBA) lives on the first server.
import path from 'node:path';
import { G8osError } from '../errors';
import type { KvServer } from './kv';
import { DirKv } from './kv-dir';
import { MemKv } from './kv-mem';
import { RedisKv } from './kv-redis';

export class Cluster {
  constructor(readonly servers: KvServer[]) {
    if (!servers.length) throw new G8osError('invalid', 'a storage cluster needs at least one server');
  }
  get url(): string {
    return this.servers.map((s) => s.url).join(',');
  }
  get meta(): KvServer {
    return this.servers[0];
  }
  forHash(hash: Buffer): KvServer {
    return this.servers[hash[0] % this.servers.length];
  }
  forIndex(index: number): KvServer {
    return this.servers[index % this.servers.length];
  }
  async flush(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.flush()));
  }
  async sweep(): Promise<number> {
    const n = await Promise.all(this.servers.map((s) => s.sweep()));
    return n.reduce((a, b) => a + b, 0);
  }
  async close(): Promise<void> {
    await Promise.allSettled(this.servers.map((s) => s.close()));
  }
}

export interface ClusterOptions {
  timeoutMs?: number;
}

/** One server from its address: redis://, redis+unix://, dir:///path (or a plain path), mem:. */
export function openServer(spec: string, opts: ClusterOptions = {}): KvServer {
  const s = spec.trim();
  if (s === 'mem:') return new MemKv();
  if (s.startsWith('dir://')) return new DirKv(path.resolve(s.slice('dir://'.length)));
  if (s.startsWith('redis://') || s.startsWith('redis+unix://')) return new RedisKv(s, opts);
  if (s.startsWith('/') || s.startsWith('.')) return new DirKv(path.resolve(s));
  throw new G8osError('invalid', `storage ${JSON.stringify(spec)}: expected redis://host:port[/db], redis+unix:///socket, dir:///path or mem:`);
}

/** A cluster from a comma-separated list (or an array) of server addresses. */
export function openCluster(spec: string | string[], opts: ClusterOptions = {}): Cluster {
  const list = (Array.isArray(spec) ? spec : spec.split(',')).map((x) => x.trim()).filter(Boolean);
  if (!list.length) throw new G8osError('invalid', 'empty storage cluster address');
  return new Cluster(list.map((x) => openServer(x, opts)));
}
