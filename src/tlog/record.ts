// Log records and aggregations (disks-vms.md §3.4). A record is one block mutation:
// (seq, block index, blake2b-256 of the data, data | tombstone, ts in UTC ns). An aggregation is
// a run of consecutive records plus the hash of the previous aggregation, so the log is a
// backward-linked chain whose head hash is kept beside it; `verify` recomputes the chain.
import { G8osError } from '../errors';
import { blake2b256, ZERO_HASH } from '../vdisk/hash';

export const OP_SET = 1;
export const OP_DELETE = 2;

export interface LogRecord {
  seq: number;
  index: number;
  /** blake2b-256 of data; zero hash for a tombstone */
  hash: Buffer;
  /** null: tombstone (the block reads as zeros) */
  data: Buffer | null;
  tsNs: bigint;
}

export interface Aggregation {
  vdisk: string;
  /** position in the chain, from 1 */
  n: number;
  prev: Buffer;
  /** sequence of the first record (records are consecutive); for a reset, its one seq */
  firstSeq: number;
  tsNs: bigint;
  records: LogRecord[];
  /** a rollback: the state becomes the snapshot at `firstSeq` (no records) */
  reset?: boolean;
}

const MAGIC = Buffer.from('G8TL');
const VERSION = 1;

export function lastSeq(a: Aggregation): number {
  return a.reset ? a.firstSeq : a.firstSeq + a.records.length - 1;
}

export function encodeAggregation(a: Aggregation): Buffer {
  const id = Buffer.from(a.vdisk, 'utf8');
  const head = Buffer.alloc(4 + 1 + 1 + 2 + id.length + 8 + 32 + 8 + 4 + 8);
  let o = MAGIC.copy(head, 0);
  o = head.writeUInt8(VERSION, o);
  o = head.writeUInt8(a.reset ? 1 : 0, o);
  o = head.writeUInt16BE(id.length, o);
  o += id.copy(head, o);
  o = head.writeBigUInt64BE(BigInt(a.n), o);
  o += a.prev.copy(head, o);
  o = head.writeBigUInt64BE(BigInt(a.firstSeq), o);
  o = head.writeUInt32BE(a.records.length, o);
  head.writeBigUInt64BE(a.tsNs, o);
  const parts: Buffer[] = [head];
  for (const r of a.records) {
    const h = Buffer.alloc(8 + 8 + 8 + 1 + 32 + 4);
    let p = h.writeBigUInt64BE(BigInt(r.seq), 0);
    p = h.writeBigUInt64BE(BigInt(r.index), p);
    p = h.writeBigUInt64BE(r.tsNs, p);
    p = h.writeUInt8(r.data ? OP_SET : OP_DELETE, p);
    p += r.hash.copy(h, p);
    h.writeUInt32BE(r.data?.length ?? 0, p);
    parts.push(h);
    if (r.data) parts.push(r.data);
  }
  return Buffer.concat(parts);
}

/** Decodes and checks one aggregation's own consistency (record hashes, consecutive seqs). */
export function decodeAggregation(b: Buffer, name: string): Aggregation {
  const bad = (m: string): never => {
    throw new G8osError('corrupt', `aggregation ${name}: ${m}`);
  };
  try {
    if (b.length < 8 || !b.subarray(0, 4).equals(MAGIC)) bad('bad magic');
    if (b.readUInt8(4) !== VERSION) bad(`unknown version ${b.readUInt8(4)}`);
    const flags = b.readUInt8(5);
    const idLen = b.readUInt16BE(6);
    let o = 8;
    const vdisk = b.subarray(o, o + idLen).toString('utf8');
    o += idLen;
    const n = Number(b.readBigUInt64BE(o));
    const prev = Buffer.from(b.subarray(o + 8, o + 40));
    const firstSeq = Number(b.readBigUInt64BE(o + 40));
    const count = b.readUInt32BE(o + 48);
    const tsNs = b.readBigUInt64BE(o + 52);
    o += 60;
    const records: LogRecord[] = [];
    for (let i = 0; i < count; i++) {
      if (o + 61 > b.length) bad(`truncated at record ${i}`);
      const seq = Number(b.readBigUInt64BE(o));
      const index = Number(b.readBigUInt64BE(o + 8));
      const ts = b.readBigUInt64BE(o + 16);
      const op = b.readUInt8(o + 24);
      const hash = Buffer.from(b.subarray(o + 25, o + 57));
      const len = b.readUInt32BE(o + 57);
      o += 61;
      if (seq !== firstSeq + i) bad(`record ${i} has seq ${seq}, expected ${firstSeq + i}`);
      let data: Buffer | null = null;
      if (op === OP_SET) {
        if (o + len > b.length) bad(`truncated data of seq ${seq}`);
        data = Buffer.from(b.subarray(o, o + len));
        o += len;
        if (!blake2b256(data).equals(hash)) bad(`seq ${seq}: data does not match its hash`);
      } else if (op !== OP_DELETE || len !== 0 || !hash.equals(ZERO_HASH)) bad(`seq ${seq}: bad operation ${op}`);
      records.push({ seq, index, hash, data, tsNs: ts });
    }
    if (o !== b.length) bad(`${b.length - o} trailing bytes`);
    return { vdisk, n, prev, firstSeq, tsNs, records, ...(flags & 1 ? { reset: true } : {}) };
  } catch (e) {
    if (e instanceof G8osError) throw e;
    return bad((e as Error).message);
  }
}

export const hashOf = (encoded: Buffer): Buffer => blake2b256(encoded);

export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
}
