// A snapshot as a file: header JSON line, block map, then each block once; gzip-compressed,
// optionally AES-256-GCM encrypted (key file: 32 bytes or 64 hex digits). Import checks every
// block against its hash before anything is written, then creates the vdisk and its log base.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { G8osError } from '../errors';
import { createVdisk, deleteVdisk, mustMeta } from '../vdisk/catalog';
import type { Cluster } from '../vdisk/cluster';
import { blake2b256 } from '../vdisk/hash';
import type { VdiskMeta, VdiskType } from '../vdisk/types';
import { stage } from './primary';
import { blocksOf, stateAt } from './state';
import { decodeMap, encodeMap, type TlogStore } from './store';

const PLAIN = Buffer.from('G8SZ');
const SEALED = Buffer.from('G8SE');

interface Header {
  format: 'g8os-vdisk-snapshot';
  version: 1;
  vdisk: string;
  type: VdiskType;
  size: number;
  blockSize: number;
  seq: number;
  tsNs: string;
  blocks: number;
  mapBytes: number;
}

function readKey(file: string): Buffer {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (e) {
    throw new G8osError('not_found', `key file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (raw.length === 32) return raw;
  throw new G8osError('invalid', `key file ${file}: expected 32 bytes or 64 hex digits`);
}

export async function exportSnapshot(cluster: Cluster, store: TlogStore, id: string, seq: number, file: string, keyFile?: string): Promise<{ blocks: number; bytes: number }> {
  const meta = await mustMeta(cluster, id);
  const key = keyFile ? readKey(keyFile) : undefined;
  if (!(await store.snapshots(id)).some((s) => s.seq === seq)) throw new G8osError('not_found', `vdisk ${id} has no snapshot at seq ${seq} (see g8os vdisk snapshots)`);
  const st = await stateAt(store, id, { seq });
  const data = await blocksOf(store, id, st);
  const map = encodeMap(st.map);
  const h: Header = { format: 'g8os-vdisk-snapshot', version: 1, vdisk: id, type: meta.type, size: meta.size, blockSize: meta.blockSize, seq, tsNs: String(st.tsNs), blocks: data.size, mapBytes: map.length };
  const parts: Buffer[] = [Buffer.from(`${JSON.stringify(h)}\n`), map];
  for (const [hex, d] of data) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(d.length);
    parts.push(Buffer.from(hex, 'hex'), len, d);
  }
  const gz = zlib.gzipSync(Buffer.concat(parts));
  let out: Buffer;
  if (key) {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, iv);
    const body = Buffer.concat([c.update(gz), c.final()]);
    out = Buffer.concat([SEALED, iv, c.getAuthTag(), body]);
  } else out = Buffer.concat([PLAIN, gz]);
  // a new file only: an existing one is never overwritten
  try {
    fs.writeFileSync(file, out, { flag: 'wx' });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new G8osError(code === 'EEXIST' ? 'conflict' : 'unavailable', `${file}: ${code === 'EEXIST' ? 'exists already' : code}`);
  }
  return { blocks: data.size, bytes: out.length };
}

function open(file: string, keyFile?: string): { h: Header; map: Map<number, Buffer>; data: Map<string, Buffer> } {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (e) {
    throw new G8osError('not_found', `snapshot file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const bad = (m: string): never => {
    throw new G8osError('corrupt', `snapshot file ${file}: ${m}`);
  };
  let gz: Buffer;
  const magic = raw.subarray(0, 4);
  if (magic.equals(SEALED)) {
    if (!keyFile) throw new G8osError('invalid', `snapshot file ${file} is encrypted: give --key`);
    const d = createDecipheriv('aes-256-gcm', readKey(keyFile), raw.subarray(4, 16));
    d.setAuthTag(raw.subarray(16, 32));
    try {
      gz = Buffer.concat([d.update(raw.subarray(32)), d.final()]);
    } catch {
      return bad('cannot be decrypted with this key (wrong key or damaged file)');
    }
  } else if (magic.equals(PLAIN)) gz = raw.subarray(4);
  else return bad('not a g8os vdisk snapshot');
  let body: Buffer;
  try {
    body = zlib.gunzipSync(gz);
  } catch {
    return bad('damaged (gzip)');
  }
  const nl = body.indexOf(10);
  let h: Header;
  try {
    h = JSON.parse(body.subarray(0, nl).toString('utf8')) as Header;
  } catch {
    return bad('bad header');
  }
  if (h.format !== 'g8os-vdisk-snapshot' || h.version !== 1) bad('unknown format');
  let o = nl + 1;
  const map = decodeMap(body.subarray(o, o + h.mapBytes), file);
  o += h.mapBytes;
  const data = new Map<string, Buffer>();
  while (o < body.length) {
    if (o + 36 > body.length) bad('truncated');
    const hash = body.subarray(o, o + 32);
    const len = body.readUInt32BE(o + 32);
    const d = Buffer.from(body.subarray(o + 36, o + 36 + len));
    o += 36 + len;
    if (d.length !== len || !blake2b256(d).equals(hash)) bad(`block ${hash.toString('hex')} does not match its hash`);
    data.set(hash.toString('hex'), d);
  }
  for (const [i, hh] of map) if (!data.has(hh.toString('hex'))) bad(`block ${i} has no data`);
  return { h, map, data };
}

export async function importSnapshot(cluster: Cluster, store: TlogStore, file: string, id: string, keyFile?: string): Promise<VdiskMeta> {
  const { h, map, data } = open(file, keyFile);
  if ((await store.snapshots(id)).length || (await store.head(id)).head) {
    throw new G8osError('conflict', `the log server has a log for ${id} already`);
  }
  const meta = await createVdisk(cluster, id, { type: h.type, size: h.size, blockSize: h.blockSize });
  try {
    const staged = await stage(cluster, meta, map, data);
    await staged.swap();
    await store.putSnapshot(id, { seq: 0, agg: 0, tsNs: String(BigInt(Date.now()) * 1_000_000n), blocks: map.size, kind: 'import', created: new Date().toISOString() }, map, data);
  } catch (e) {
    await deleteVdisk(cluster, id).catch(() => undefined);
    await store.dropAll(id).catch(() => undefined);
    throw e;
  }
  return meta;
}
