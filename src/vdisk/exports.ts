// The exports of one NBD server: vdisk ids in one cluster, opened on first use and shared by
// every connection to the same id, closed (flushed; tmp wiped) when the last one goes.
import { G8osError } from '../errors';
import { listVdisks, type OpenOptions, openVdisk } from './catalog';
import type { Cluster } from './cluster';
import type { ExportProvider, Vdisk } from './types';

interface Open {
  disk: Promise<Vdisk>;
  users: number;
}

export interface ClusterExportsOptions {
  /** ids served; undefined = every vdisk in the cluster index (refreshed by refresh()) */
  ids?: string[];
  readOnly?: Set<string>;
  timeoutMs?: number;
  log?: (l: string) => void;
  wrap?: OpenOptions['wrap'];
}

export class ClusterExports implements ExportProvider {
  private readonly open_ = new Map<string, Open>();
  /** closes in progress: a new open of the same id waits, or it would read a stale LBA */
  private readonly closing = new Map<string, Promise<void>>();
  private names: { name: string; description?: string }[] = [];

  constructor(readonly cluster: Cluster, private readonly o: ClusterExportsOptions = {}) {}

  /** Reads the cluster index (LIST answers from this snapshot). */
  async refresh(): Promise<void> {
    const all = await listVdisks(this.cluster);
    const byId = new Map(all.map((m) => [m.id, m]));
    const ids = this.o.ids ?? all.map((m) => m.id);
    this.names = ids.map((id) => {
      const m = byId.get(id);
      return { name: id, description: m ? `${m.type} ${m.size} bytes${m.readOnly ? ' read-only' : ''}` : 'missing from the index' };
    });
  }

  list(): { name: string; description?: string }[] {
    return this.names;
  }

  async open(name: string): Promise<Vdisk | null> {
    if (!this.names.some((n) => n.name === name)) return null;
    await this.closing.get(name)?.catch(() => undefined);
    let e = this.open_.get(name);
    if (!e) {
      e = {
        users: 0,
        disk: openVdisk(this.cluster, name, { timeoutMs: this.o.timeoutMs, log: this.o.log, readOnly: this.o.readOnly?.has(name), wrap: this.o.wrap }),
      };
      this.open_.set(name, e);
      e.disk.catch(() => this.open_.delete(name));
    }
    e.users++;
    try {
      return await e.disk;
    } catch (err) {
      e.users--;
      if (err instanceof G8osError && err.kind === 'not_found') return null;
      throw err;
    }
  }

  async release(disk: Vdisk): Promise<void> {
    const e = this.open_.get(disk.id);
    if (!e) return;
    if (--e.users > 0) return;
    this.open_.delete(disk.id);
    const p = disk.close();
    this.closing.set(disk.id, p);
    try {
      await p;
    } finally {
      if (this.closing.get(disk.id) === p) this.closing.delete(disk.id);
    }
  }

  async closeAll(): Promise<void> {
    const all = [...this.open_.values()];
    this.open_.clear();
    await Promise.allSettled(all.map(async (e) => (await e.disk).close()));
  }
}
