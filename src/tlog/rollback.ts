// Rollback of a detached vdisk to a sequence or a time: the state is computed from the newest
// snapshot ≤ the target plus the log after it, written under temporary keys, recorded in the
// log (a snapshot and a reset aggregation, so later snapshots start from it), then swapped in.
// Any failure before the swap leaves the vdisk as it was, and is reported as a failure.
import os from 'node:os';
import { G8osError } from '../errors';
import { mustMeta } from '../vdisk/catalog';
import type { Cluster } from '../vdisk/cluster';
import { logged } from './backend';
import { stage } from './primary';
import { encodeAggregation, hashOf } from './record';
import { blocksOf, stateAt, type Target } from './state';
import type { TlogStore } from './store';

export interface RollbackResult {
  id: string;
  /** the state restored: up to this seq / time */
  seq: number;
  tsNs: string;
  fromSnapshot: number;
  replayedRecords: number;
  blocks: number;
  /** the seq the rollback itself took in the log */
  resetSeq: number;
  ms: number;
}

/** "123" → seq; an ISO time with a zone (Z or ±hh:mm) → time; "ns:<digits>" → time in ns. */
export function parseTarget(s: string): Target {
  if (/^\d+$/.test(s)) return { seq: Number(s) };
  const ns = /^ns:(\d+)$/.exec(s);
  if (ns) return { tsNs: BigInt(ns[1]) };
  if (!/(Z|[+-]\d\d:?\d\d)$/i.test(s)) throw new G8osError('usage', `--to ${JSON.stringify(s)}: a seq, ns:<UTC ns>, or an ISO time with a zone (…Z)`);
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) throw new G8osError('usage', `--to ${JSON.stringify(s)}: not a time`);
  // sub-ms digits of the ISO text are kept (times are compared in ns)
  const frac = /\.(\d+)/.exec(s)?.[1] ?? '';
  const extra = frac.length > 3 ? BigInt(frac.slice(3, 9).padEnd(6, '0')) : 0n;
  return { tsNs: BigInt(ms) * 1_000_000n + extra };
}

export async function rollback(cluster: Cluster, store: TlogStore, id: string, to: Target): Promise<RollbackResult> {
  const t0 = Date.now();
  const meta = await mustMeta(cluster, id);
  if (!logged(meta)) throw new G8osError('invalid', `vdisk ${id} is ${meta.type}: only boot and db vdisks have a log`);
  const holder = `rollback:${os.hostname()}:${process.pid}:${Date.now()}`;
  const other = await store.acquire(id, holder, 120_000);
  if (other) throw new G8osError('conflict', `vdisk ${id} is attached (${other}); detach it before a rollback`);
  try {
    const st = await stateAt(store, id, to);
    const blocks = await blocksOf(store, id, st);
    const staged = await stage(cluster, meta, st.map, blocks);
    const head = await store.head(id);
    const resetSeq = head.lastSeq + 1;
    const n = head.head + 1;
    try {
      const now = BigInt(Date.now()) * 1_000_000n;
      const ts = now > head.lastTs ? now : head.lastTs + 1n;
      // blocks from the snapshot store are there already; only those written since it are new
      const fresh = new Map([...st.data].filter(([h]) => blocks.has(h)));
      await store.putSnapshot(id, { seq: resetSeq, agg: n, tsNs: String(ts), blocks: st.map.size, kind: 'rollback', created: new Date().toISOString() }, st.map, fresh);
      const bytes = encodeAggregation({ vdisk: id, n, prev: head.headHash ?? Buffer.alloc(32), firstSeq: resetSeq, tsNs: ts, records: [], reset: true });
      const hash = hashOf(bytes);
      await store.append(id, n, bytes, hash, head.headHash ?? Buffer.alloc(32), {
        n, hash: hash.toString('hex'), firstSeq: resetSeq, lastSeq: resetSeq, firstTs: String(ts), lastTs: String(ts), count: 0, reset: true,
      });
    } catch (e) {
      await store.dropSnapshot(id, resetSeq).catch(() => undefined);
      await staged.undo();
      throw e;
    }
    try {
      await staged.swap();
    } catch (e) {
      throw new G8osError('unavailable', `rollback of ${id}: the log records it at seq ${resetSeq} but the swap in the store failed (${(e as Error).message}); run the rollback again`, { cause: e });
    }
    return { id, seq: st.seq, tsNs: String(st.tsNs), fromSnapshot: st.snapshot.seq, replayedRecords: st.records, blocks: st.map.size, resetSeq, ms: Date.now() - t0 };
  } finally {
    await store.release(id, holder).catch(() => undefined);
  }
}
