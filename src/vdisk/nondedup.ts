// Non-deduplicated storage (db, cache, tmp): block bytes in the hash `nondedup:<id>` on server
// `index mod N`, zero blocks deleted. With a template (db), an absent block is fetched from the
// template; a zeroed block then needs an explicit empty value so it is not fetched again.
import type { BlockBackend } from './blockdisk';
import type { Cluster } from './cluster';
import type { TemplateSource } from './template';

export const nondedupKey = (id: string): string => `nondedup:${id}`;
const EMPTY = Buffer.alloc(0);

export class NondedupBackend implements BlockBackend {
  private readonly key: string;
  constructor(
    private readonly cluster: Cluster,
    id: string,
    private readonly template?: { source: TemplateSource; vdisk: string },
    private readonly log: (l: string) => void = () => undefined,
  ) {
    this.key = nondedupKey(id);
  }

  async get(index: number): Promise<Buffer | null> {
    const server = this.cluster.forIndex(index);
    const v = await server.hget(this.key, String(index));
    if (v) return v.length ? v : null;
    if (!this.template) return null;
    const t = await this.template.source.byIndex(this.template.vdisk, index);
    server.hsetnx(this.key, String(index), t ?? EMPTY).catch((e) => this.log(`${this.key}: template write-back: ${(e as Error).message}`));
    return t;
  }
  set(index: number, data: Buffer): Promise<void> {
    return this.cluster.forIndex(index).hset(this.key, String(index), data);
  }
  delete(index: number): Promise<void> {
    const s = this.cluster.forIndex(index);
    return this.template ? s.hset(this.key, String(index), EMPTY) : s.hdel(this.key, String(index));
  }
  flush(): Promise<void> {
    return this.cluster.flush();
  }
  async close(): Promise<void> {}
}
