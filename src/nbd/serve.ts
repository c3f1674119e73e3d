// Runs an NBD server from a ServeConfig: opens the cluster, creates configured vdisks that are
// absent, listens, and sweeps unreferenced deduplicated blocks in the background.
import { rmSync } from 'node:fs';
import { oneLine } from '../errors';
import { createVdisk, getMeta } from '../vdisk/catalog';
import { openCluster } from '../vdisk/cluster';
import type { ServeConfig } from '../vdisk/config';
import { ClusterExports } from '../vdisk/exports';
import { tlogWrap } from '../tlog/backend';
import { TlogStore } from '../tlog/store';
import { DEFAULT_SETTINGS } from '../tlog/writer';
import { NbdServer } from './server';

export interface Running {
  address: string;
  stop(): Promise<void>;
}

/** "host:port" → TCP, anything else → a unix socket path */
export function parseListen(listen: string): string | { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^/:]+):(\d+)$/.exec(listen);
  if (m) return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  return listen;
}

export async function serve(cfg: ServeConfig, log: (l: string) => void = () => undefined): Promise<Running> {
  const cluster = openCluster(cfg.storage, { timeoutMs: Math.min(cfg.templateTimeoutMs, 10_000) });
  const tlog = cfg.tlog ? new TlogStore(cfg.tlog.storage) : undefined;
  try {
    for (const [id, e] of cfg.vdisks ?? []) {
      if (e.create && !(await getMeta(cluster, id))) {
        await createVdisk(cluster, id, { ...e.create, timeoutMs: cfg.templateTimeoutMs });
        log(`nbd: created ${e.create.type} vdisk ${id}`);
      }
    }
    const readOnly = new Set([...(cfg.vdisks ?? [])].filter(([, e]) => e.readOnly).map(([id]) => id));
    const exports = new ClusterExports(cluster, {
      ids: cfg.vdisks ? [...cfg.vdisks.keys()] : undefined, readOnly, timeoutMs: cfg.templateTimeoutMs, log,
      wrap: tlog && cfg.tlog ? tlogWrap(tlog, { ...DEFAULT_SETTINGS, ...stripStorage(cfg.tlog) }, log) : undefined,
    });
    await exports.refresh();
    const server = new NbdServer({ exports, defaultExport: cfg.defaultExport, log });
    const where = parseListen(cfg.listen);
    if (typeof where === 'string') rmSync(where, { force: true }); // a stale socket of a dead server
    const address = await server.listen(where);
    // an index refresh picks up vdisks created after start when no list is configured
    const refresher = setInterval(() => exports.refresh().catch((e) => log(`nbd: index refresh: ${oneLine(e)}`)), 5000);
    const sweeper = setInterval(() => {
      cluster.sweep().then((n) => n && log(`nbd: swept ${n} unreferenced blocks`), (e) => log(`nbd: sweep: ${oneLine(e)}`));
    }, cfg.sweepIntervalMs);
    refresher.unref();
    sweeper.unref();
    log(`nbd: serving ${exports.list().map((e) => e.name).join(', ') || '(no vdisks)'} on ${address}`);
    return {
      address,
      async stop() {
        clearInterval(refresher);
        clearInterval(sweeper);
        await server.close();
        await exports.closeAll();
        await cluster.close();
        await tlog?.close();
        if (typeof where === 'string') rmSync(where, { force: true });
      },
    };
  } catch (e) {
    await cluster.close();
    await tlog?.close();
    throw e;
  }
}

function stripStorage<T extends { storage: string }>(t: T): Omit<T, 'storage'> {
  const { storage: _s, ...rest } = t;
  return rest;
}
