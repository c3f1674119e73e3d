// Integrity of a vdisk's log: every aggregation decodes, its hash is the one recorded when it
// was stored, it names the previous one's hash, seqs run on without gaps, and the head hash is
// the last one's. The first aggregation failing any of these is named.
import { G8osError, oneLine } from '../errors';
import { decodeAggregation, hashOf, lastSeq } from './record';
import type { TlogStore } from './store';

export interface VerifyResult {
  id: string;
  ok: boolean;
  aggregations: number;
  records: number;
  /** "<id>#<n>" of the first bad aggregation */
  firstBad?: string;
  problem?: string;
}

export async function verifyLog(store: TlogStore, id: string): Promise<VerifyResult> {
  const head = await store.head(id);
  if (!head.head && !(await store.snapshots(id)).length) throw new G8osError('not_found', `vdisk ${id} has no log in ${store.url}`);
  const hdrs = new Map((await store.headers(id)).map((h) => [h.n, h]));
  let prev = head.baseHash ?? Buffer.alloc(32);
  let prevLast: number | undefined;
  let records = 0;
  const res = (n: number, problem: string): VerifyResult => ({ id, ok: false, aggregations: n - head.baseAgg - 1, records, firstBad: `${id}#${n}`, problem });
  for (let n = head.baseAgg + 1; n <= head.head; n += 32) {
    const ns: number[] = [];
    for (let k = n; k < n + 32 && k <= head.head; k++) ns.push(k);
    const raws = await store.aggregations(id, ns);
    for (let i = 0; i < ns.length; i++) {
      const k = ns[i];
      const raw = raws[i];
      if (!raw) return res(k, 'missing');
      const h = hashOf(raw);
      const hdr = hdrs.get(k);
      if (!hdr) return res(k, 'no header');
      if (h.toString('hex') !== hdr.hash) return res(k, `content hash ${h.toString('hex').slice(0, 16)}… is not the stored ${hdr.hash.slice(0, 16)}…`);
      let a;
      try {
        a = decodeAggregation(raw, `${id}#${k}`);
      } catch (e) {
        return res(k, oneLine(e));
      }
      if (a.n !== k || a.vdisk !== id) return res(k, `names ${a.vdisk}#${a.n}`);
      if (!a.prev.equals(prev)) return res(k, 'previous-aggregation hash does not match the chain');
      if (prevLast !== undefined && a.firstSeq !== prevLast + 1) return res(k, `first seq ${a.firstSeq} after ${prevLast}`);
      prev = h;
      prevLast = lastSeq(a);
      records += a.records.length;
    }
  }
  if (head.head > head.baseAgg && !(head.headHash && head.headHash.equals(prev))) return res(head.head, 'head hash does not match the last aggregation');
  return { id, ok: true, aggregations: head.head - head.baseAgg, records };
}
