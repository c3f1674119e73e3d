// The primary cluster side of the log: a vdisk's stored blocks (its base snapshot when logging
// starts), and a restored map written into it under a temporary key and swapped in one rename.
import { G8osError } from '../errors';
import type { Cluster } from '../vdisk/cluster';
import { hashesOf, lbaKey, recount, SECTOR_HASHES } from '../vdisk/dedup';
import { blake2b256, ZERO_HASH } from '../vdisk/hash';
import { nondedupKey } from '../vdisk/nondedup';
import type { VdiskMeta } from '../vdisk/types';

/** index → bytes of every stored (non-zero) block */
export async function storedBlocks(cluster: Cluster, m: VdiskMeta): Promise<Map<number, Buffer>> {
  const out = new Map<number, Buffer>();
  if (m.type === 'boot') {
    for (const [f, s] of await cluster.meta.hgetall(lbaKey(m.id))) {
      for (let k = 0; k < SECTOR_HASHES; k++) {
        const h = s.subarray(k * 32, k * 32 + 32);
        if (h.length < 32 || h.equals(ZERO_HASH)) continue;
        const d = await cluster.forHash(h).blockGet(h);
        if (!d) throw new G8osError('corrupt', `vdisk ${m.id}: block ${Number(f) * SECTOR_HASHES + k} is missing from the store`);
        out.set(Number(f) * SECTOR_HASHES + k, d);
      }
    }
  } else {
    for (const s of cluster.servers) {
      for (const [f, v] of await s.hgetall(nondedupKey(m.id))) if (v.length) out.set(Number(f), v);
    }
  }
  return out;
}

const TMP = '~rollback';

/** runs fn over items, 128 at a time (pipelined round trips, bounded memory) */
async function inBatches<T>(items: T[], fn: (x: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 128) await Promise.all(items.slice(i, i + 128).map(fn));
}

/**
 * Writes map (index → hash, bytes in `blocks`) under temporary keys. Returns the swap (one
 * rename per server; the old content's counts dropped after it) and an undo for failures.
 */
export async function stage(cluster: Cluster, m: VdiskMeta, map: Map<number, Buffer>, blocks: Map<string, Buffer>): Promise<{ swap(): Promise<void>; undo(): Promise<void> }> {
  const bytesOf = (h: Buffer): Buffer => {
    const d = blocks.get(h.toString('hex'));
    if (!d) throw new G8osError('internal', `restore of ${m.id}: no bytes for block ${h.toString('hex')}`);
    return d;
  };
  if (m.type === 'boot') {
    const tmp = lbaKey(m.id) + TMP;
    await cluster.meta.del(tmp);
    const sectors = new Map<number, Buffer>();
    const counted: Buffer[] = [];
    try {
      await inBatches([...map], async ([i, h]) => {
        const d = bytesOf(h);
        if (!blake2b256(d).equals(h)) throw new G8osError('corrupt', `restore of ${m.id}: block ${i} does not match its hash`);
        await cluster.forHash(h).blockPut(h, d, 1);
        counted.push(h);
      });
      for (const [i, h] of map) {
        const n = Math.floor(i / SECTOR_HASHES);
        let s = sectors.get(n);
        if (!s) sectors.set(n, (s = Buffer.alloc(SECTOR_HASHES * 32)));
        h.copy(s, (i % SECTOR_HASHES) * 32);
      }
      for (const [n, s] of sectors) await cluster.meta.hset(tmp, String(n), s);
      await cluster.flush();
    } catch (e) {
      await recount(cluster, counted, -1).catch(() => undefined);
      await cluster.meta.del(tmp).catch(() => undefined);
      throw e;
    }
    return {
      async swap() {
        const old = await cluster.meta.hgetall(lbaKey(m.id));
        await cluster.meta.rename(tmp, lbaKey(m.id));
        await cluster.flush();
        await recount(cluster, hashesOf(old.values()), -1);
      },
      async undo() {
        await recount(cluster, counted, -1).catch(() => undefined);
        await cluster.meta.del(tmp).catch(() => undefined);
      },
    };
  }
  const tmp = nondedupKey(m.id) + TMP;
  const undo = async (): Promise<void> => {
    await Promise.allSettled(cluster.servers.map((s) => s.del(tmp)));
  };
  try {
    await Promise.all(cluster.servers.map((s) => s.del(tmp)));
    await inBatches([...map], ([i, h]) => cluster.forIndex(i).hset(tmp, String(i), bytesOf(h)));
    await cluster.flush();
  } catch (e) {
    await undo();
    throw e;
  }
  return {
    // one rename per server: atomic on a one-server cluster, server by server on several
    async swap() {
      for (const s of cluster.servers) await s.rename(tmp, nondedupKey(m.id));
      await cluster.flush();
    },
    undo,
  };
}
