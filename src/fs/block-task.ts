// The CPU-bound steps of the block cache, run in worker threads (block-worker.ts) or inline:
// decode + verify a fetched block; read a cached plaintext file and check it against its key.
import fs from 'node:fs';
import { createBLAKE2b, type IHasher } from 'hash-wasm';
import { decodeBlock } from '../flist/codec';
import { decodeGen3Block, gen3Ready } from '../flist/gen3';
import { blake2b128, hashReady } from '../flist/hash';
import type { BlockCodec } from '../flist/types';

/** What a cached file looked like when it was last verified: a change means verify again. */
export interface FileId {
  ino: number;
  size: number;
  mtimeMs: number;
  /** a write in place changes ctime even when mtime is set back */
  ctimeMs: number;
}

export type BlockJob =
  | { op: 'decode'; cipher: Uint8Array; id: Uint8Array; key: Uint8Array; codec: BlockCodec }
  | { op: 'read'; file: string; key: Uint8Array; codec: BlockCodec; trust?: FileId };
export type BlockRequest = BlockJob & { seq: number };

export interface BlockReply {
  seq: number;
  /** decoded or cached plaintext */
  plain?: ArrayBuffer;
  /** read: the file's identity, and whether its content was hashed (false: trusted as unchanged) */
  file?: FileId;
  verified?: boolean;
  /** read: no such file */
  missing?: boolean;
  /** the bytes do not match the id/key: why */
  corrupt?: string;
  /** anything else (I/O error) */
  error?: string;
}

/** Bigger than any block a flist can describe: such a file is not a block. */
const MAX_BLOCK = 64 * 1024 * 1024;

let b256: IHasher | undefined;
let ready: Promise<void> | undefined;

export function blockTaskReady(): Promise<void> {
  ready ??= Promise.all([hashReady(), gen3Ready(), createBLAKE2b(256)]).then(([, , h]) => {
    b256 = h;
  });
  return ready;
}

/** Whether plaintext hashes to its key (blake2b-128 for gen-2 keys, blake2b-256 for gen-3). */
export function matchesKey(plain: Uint8Array, key: Uint8Array, codec: BlockCodec): boolean {
  let digest: Buffer;
  if (codec === 'gen3') {
    b256!.init();
    b256!.update(plain);
    digest = Buffer.from(b256!.digest('binary'));
  } else digest = blake2b128(plain);
  return digest.equals(key);
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ');

/** The bytes of buf as an ArrayBuffer of their own (transferable without detaching a pool). */
function own(buf: Buffer): ArrayBuffer {
  if (buf.byteOffset === 0 && buf.buffer.byteLength === buf.length && buf.buffer instanceof ArrayBuffer) return buf.buffer;
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer;
}

/** Runs one request; blockTaskReady() must have been awaited. Never throws. */
export function blockTask(msg: BlockRequest): BlockReply {
  const seq = msg.seq;
  if (msg.op === 'decode') {
    const ref = { id: Buffer.from(msg.id), key: Buffer.from(msg.key) };
    const cipher = Buffer.from(msg.cipher.buffer, msg.cipher.byteOffset, msg.cipher.length);
    try {
      return { seq, plain: own(msg.codec === 'gen3' ? decodeGen3Block(cipher, ref) : decodeBlock(cipher, ref)) };
    } catch (e) {
      // Both codecs only throw on bytes that do not match the ref.
      return { seq, corrupt: message(e).replace(/^corrupt block [0-9a-f]+: /, '') };
    }
  }
  let fd: number;
  try {
    fd = fs.openSync(msg.file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { seq, missing: true };
    return { seq, error: message(e) };
  }
  try {
    const st = fs.fstatSync(fd);
    const file: FileId = { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
    if (st.size === 0 || st.size > MAX_BLOCK) return { seq, file, corrupt: `cached file holds ${st.size} bytes` };
    const buf = Buffer.allocUnsafeSlow(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = fs.readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    if (off !== buf.length) return { seq, file, corrupt: `cached file shrank to ${off} bytes while read` };
    const t = msg.trust;
    if (t && t.ino === file.ino && t.size === file.size && t.mtimeMs === file.mtimeMs && t.ctimeMs === file.ctimeMs) return { seq, file, verified: false, plain: own(buf) };
    if (!matchesKey(buf, msg.key, msg.codec)) return { seq, file, corrupt: `cached content (${st.size} bytes) does not hash to the block key` };
    return { seq, file, verified: true, plain: own(buf) };
  } catch (e) {
    return { seq, error: message(e) };
  } finally {
    fs.closeSync(fd);
  }
}
