// A vdisk's block map at a point of its log: the newest snapshot at or before the target, then
// the aggregations after it replayed up to the target. Cost: the snapshot's size plus the
// writes since it, not the whole history. New snapshots are made the same way (the newest one
// plus everything after it), and retention drops what precedes the oldest kept snapshot.
import { G8osError } from '../errors';
import { type Aggregation, decodeAggregation, hashOf } from './record';
import { type SnapInfo, type TlogStore } from './store';

export interface Target {
  /** the last sequence to include */
  seq?: number;
  /** include records with ts ≤ this (UTC ns) */
  tsNs?: bigint;
}

export interface State {
  /** block index → hash (absent: zeros) */
  map: Map<number, Buffer>;
  /** hash hex → bytes for blocks written since the snapshot */
  data: Map<string, Buffer>;
  /** the last sequence included */
  seq: number;
  tsNs: bigint;
  snapshot: SnapInfo;
  /** aggregations and records replayed after the snapshot */
  aggregations: number;
  records: number;
  /** the last aggregation read */
  agg: number;
}

const within = (t: Target, seq: number, ts: bigint): boolean =>
  (t.seq === undefined || seq <= t.seq) && (t.tsNs === undefined || ts <= t.tsNs);

const BATCH = 32;

export async function stateAt(store: TlogStore, id: string, t: Target): Promise<State> {
  const [snaps, head] = await Promise.all([store.snapshots(id), store.head(id)]);
  if (!snaps.length) throw new G8osError('not_found', `vdisk ${id} has no log in ${store.url} (never served with a log server)`);
  if (t.seq !== undefined && t.seq > head.lastSeq) {
    throw new G8osError('invalid', `seq ${t.seq} is past the end of the log of ${id} (last seq ${head.lastSeq})`);
  }
  let snap: SnapInfo | undefined;
  for (const s of snaps) if (within(t, s.seq, BigInt(s.tsNs))) snap = s;
  if (!snap) {
    const first = snaps[0];
    throw new G8osError('not_found', `${t.seq !== undefined ? `seq ${t.seq}` : `time ${t.tsNs} ns`} is before the oldest retained snapshot of ${id} (seq ${first.seq}, ${new Date(Number(BigInt(first.tsNs) / 1_000_000n)).toISOString()})`);
  }
  const st: State = { map: await store.snapshotMap(id, snap.seq), data: new Map(), seq: snap.seq, tsNs: BigInt(snap.tsNs), snapshot: snap, aggregations: 0, records: 0, agg: snap.agg };
  let done = false;
  for (let n = snap.agg + 1; n <= head.head && !done; n += BATCH) {
    const ns: number[] = [];
    for (let k = n; k < n + BATCH && k <= head.head; k++) ns.push(k);
    const [raws, hdrs] = await Promise.all([store.aggregations(id, ns), store.headersOf(id, ns)]);
    for (let k = 0; k < ns.length && !done; k++) {
      const raw = raws[k];
      if (!raw) throw new G8osError('corrupt', `log of ${id}: aggregation ${id}#${ns[k]} is missing`);
      // what is replayed is what was stored: its hash as recorded at append
      if (hashOf(raw).toString('hex') !== hdrs[k]?.hash) throw new G8osError('corrupt', `log of ${id}: aggregation ${id}#${ns[k]} does not match its recorded hash`);
      const a: Aggregation = decodeAggregation(raw, `${id}#${ns[k]}`);
      if (a.reset) {
        // a rollback happened here; its snapshot at firstSeq is the state from then on
        if (!within(t, a.firstSeq, a.tsNs)) break;
        const s = snaps.find((x) => x.seq === a.firstSeq);
        if (!s) throw new G8osError('corrupt', `log of ${id}: rollback at seq ${a.firstSeq} has no snapshot`);
        st.map = await store.snapshotMap(id, s.seq);
        st.data.clear();
        st.seq = a.firstSeq;
        st.tsNs = a.tsNs;
        st.agg = a.n;
        st.aggregations++;
        continue;
      }
      for (const r of a.records) {
        if (!within(t, r.seq, r.tsNs)) {
          done = true;
          break;
        }
        if (r.data) {
          st.map.set(r.index, r.hash);
          st.data.set(r.hash.toString('hex'), r.data);
        } else st.map.delete(r.index);
        st.seq = r.seq;
        st.tsNs = r.tsNs;
        st.records++;
      }
      if (!done) st.agg = a.n;
      st.aggregations++;
    }
  }
  return st;
}

/** The bytes of every block in a state (from its own new data, else the snapshot block store). */
export async function blocksOf(store: TlogStore, id: string, st: State): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const need: Buffer[] = [];
  for (const h of st.map.values()) {
    const k = h.toString('hex');
    if (out.has(k)) continue;
    const d = st.data.get(k);
    if (d) out.set(k, d);
    else if (!need.some((x) => x.equals(h))) need.push(h);
  }
  const got = await store.blockData(id, need);
  got.forEach((d, i) => {
    if (!d) throw new G8osError('corrupt', `log of ${id}: block ${need[i].toString('hex')} of snapshot ${st.snapshot.seq} is missing`);
    out.set(need[i].toString('hex'), d);
  });
  return out;
}

/** A snapshot at the head: the newest one plus everything after it. Null when nothing new. */
export async function snapshotNow(store: TlogStore, id: string, kind: SnapInfo['kind'] = 'periodic'): Promise<SnapInfo | null> {
  const st = await stateAt(store, id, {});
  if (st.seq === st.snapshot.seq) return null;
  const info: SnapInfo = { seq: st.seq, agg: st.agg, tsNs: String(st.tsNs), blocks: st.map.size, kind, created: new Date().toISOString() };
  // only the new blocks the map still names need storing; older ones are in the block store
  const fresh = new Map<string, Buffer>();
  for (const h of st.map.values()) {
    const k = h.toString('hex');
    const d = st.data.get(k);
    if (d) fresh.set(k, d);
  }
  await store.putSnapshot(id, info, st.map, fresh);
  return info;
}

/** Keeps the newest `keep` snapshots; drops older ones, the log before the oldest kept, unreferenced blocks. */
export async function compact(store: TlogStore, id: string, keep: number): Promise<{ snapshots: number; aggregations: number; blocks: number }> {
  if (!Number.isInteger(keep) || keep < 1) throw new G8osError('invalid', `retain ${keep}: at least 1 snapshot`);
  const snaps = await store.snapshots(id);
  if (snaps.length <= keep) return { snapshots: 0, aggregations: 0, blocks: 0 };
  const drop = snaps.slice(0, snaps.length - keep);
  const kept = snaps.slice(snaps.length - keep);
  // the entries go first: from then on nothing may start from a dropped snapshot
  for (const s of drop) await store.dropSnapshot(id, s.seq);
  const aggregations = await store.dropAggregations(id, kept[0].agg);
  const live = new Set<string>();
  for (const s of kept) for (const h of (await store.snapshotMap(id, s.seq)).values()) live.add(h.toString('hex'));
  const dead = (await store.blockHashes(id)).filter((h) => !live.has(h.toString('hex')));
  await store.dropBlocks(id, dead);
  return { snapshots: drop.length, aggregations, blocks: dead.length };
}
