// Template sources for lazy copy-on-read (disks-vms.md §3.3): another storage cluster holding
// the template vdisk. Every fetch is bounded: a source that is down gives EIO, never a hang.
import { G8osError } from '../errors';
import { type Cluster, openCluster } from './cluster';
import { blake2b256 } from './hash';

export interface TemplateSource {
  readonly url: string;
  /** a deduplicated block by its hash (boot templates) */
  byHash(hash: Buffer): Promise<Buffer | null>;
  /** block `index` of the template vdisk (db templates) */
  byIndex(vdisk: string, index: number): Promise<Buffer | null>;
  /** the template vdisk's LBA sectors (copied when a boot vdisk is created from it) */
  lba(vdisk: string): Promise<Map<string, Buffer>>;
  close(): Promise<void>;
}

export const DEFAULT_TEMPLATE_TIMEOUT_MS = 30_000;

export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new G8osError('unavailable', `${what}: no answer within ${ms} ms`, { errno: 'EIO' })), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class ClusterTemplate implements TemplateSource {
  readonly url: string;
  constructor(private readonly cluster: Cluster, private readonly timeoutMs = DEFAULT_TEMPLATE_TIMEOUT_MS) {
    this.url = cluster.url;
  }
  private wrap<T>(p: Promise<T>, what: string): Promise<T> {
    return bounded(p, this.timeoutMs, `template ${this.url}: ${what}`).catch((e) => {
      if (e instanceof G8osError && e.kind === 'corrupt') throw e;
      throw new G8osError('unavailable', (e as Error).message, { cause: e, errno: 'EIO' });
    });
  }
  async byHash(hash: Buffer): Promise<Buffer | null> {
    const b = await this.wrap(this.cluster.forHash(hash).blockGet(hash), `block ${hash.toString('hex')}`);
    if (b && !blake2b256(b).equals(hash)) {
      throw new G8osError('corrupt', `template ${this.url}: block ${hash.toString('hex')} does not match its hash`, { errno: 'EIO' });
    }
    return b;
  }
  async byIndex(vdisk: string, index: number): Promise<Buffer | null> {
    const b = await this.wrap(this.cluster.forIndex(index).hget(`nondedup:${vdisk}`, String(index)), `block ${index} of ${vdisk}`);
    return b && b.length ? b : null;
  }
  lba(vdisk: string): Promise<Map<string, Buffer>> {
    return this.wrap(this.cluster.meta.hgetall(`lba:${vdisk}`), `LBA of ${vdisk}`);
  }
  close(): Promise<void> {
    return this.cluster.close();
  }
}

/** A template source from its address: a storage cluster (comma-separated servers). */
export function openTemplate(source: string, timeoutMs = DEFAULT_TEMPLATE_TIMEOUT_MS): TemplateSource {
  return new ClusterTemplate(openCluster(source, { timeoutMs }), timeoutMs);
}
