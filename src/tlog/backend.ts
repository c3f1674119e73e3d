// Hooks the log into a vdisk: every block set/delete is numbered and queued for the log (under
// the block's lock, so seq order is the order the primary saw), and FLUSH returns only when both
// the primary store and the log server hold everything written before it.
import type { BlockBackend } from '../vdisk/blockdisk';
import type { Cluster } from '../vdisk/cluster';
import type { VdiskMeta } from '../vdisk/types';
import { storedBlocks } from './primary';
import type { TlogStore } from './store';
import { type TlogSettings, TlogWriter } from './writer';

export class LoggedBackend implements BlockBackend {
  constructor(private readonly inner: BlockBackend, readonly writer: TlogWriter) {}
  get(index: number): Promise<Buffer | null> {
    return this.inner.get(index);
  }
  async set(index: number, data: Buffer): Promise<void> {
    await this.writer.append(index, data);
    await this.inner.set(index, data);
  }
  async delete(index: number): Promise<void> {
    await this.writer.append(index, null);
    await this.inner.delete(index);
  }
  async flush(): Promise<void> {
    await Promise.all([this.inner.flush(), this.writer.flush()]);
  }
  async close(): Promise<void> {
    try {
      await this.inner.close();
    } finally {
      await this.writer.close();
    }
  }
}

/** Redundant types (boot, db) are logged; cache and tmp are not (disks-vms.md §3.1). */
export const logged = (m: VdiskMeta): boolean => m.type === 'boot' || m.type === 'db';

/** The openVdisk wrap hook for a log server. */
export function tlogWrap(store: TlogStore, settings: TlogSettings, log?: (l: string) => void) {
  return async (cluster: Cluster, meta: VdiskMeta, backend: BlockBackend): Promise<BlockBackend> => {
    if (!logged(meta) || meta.readOnly) return backend;
    const w = await TlogWriter.open(store, meta.id, settings, () => storedBlocks(cluster, meta), log);
    return new LoggedBackend(backend, w);
  };
}
