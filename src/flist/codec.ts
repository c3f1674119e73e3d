// Generation-2 chunk codec: key = blake2b-128(plain), snappy (raw block format),
// XXTEA with the key, storage id = blake2b-128(cipher). Convergent: equal chunks, equal ids.
import snappy from 'snappy';
import { blake2b128 } from './hash';
import { xxteaDecrypt, xxteaEncrypt } from './xxtea';
import { BLOCK_SIZE, type BlockRef } from './types';

export interface EncodedBlock extends BlockRef {
  cipher: Buffer;
}

export class CorruptBlockError extends Error {
  constructor(id: Buffer, why: string) {
    super(`corrupt block ${id.toString('hex')}: ${why}`);
    this.name = 'CorruptBlockError';
  }
}

export function encodeBlock(plain: Uint8Array): EncodedBlock {
  if (plain.length === 0 || plain.length > BLOCK_SIZE) throw new Error(`block of ${plain.length} bytes: must be 1..${BLOCK_SIZE}`);
  const key = blake2b128(plain);
  const cipher = xxteaEncrypt(snappy.compressSync(Buffer.from(plain.buffer, plain.byteOffset, plain.length)), key);
  return { id: blake2b128(cipher), key, cipher };
}

/** Decrypts and verifies a stored block; a block that does not match its id or key throws. */
export function decodeBlock(cipher: Uint8Array, ref: BlockRef): Buffer {
  if (!blake2b128(cipher).equals(ref.id)) throw new CorruptBlockError(ref.id, 'stored bytes do not hash to the block id');
  const compressed = xxteaDecrypt(cipher, ref.key);
  if (!compressed) throw new CorruptBlockError(ref.id, 'decryption length check failed');
  let plain: Buffer;
  try {
    plain = snappy.uncompressSync(compressed, { asBuffer: true }) as Buffer;
  } catch (e) {
    throw new CorruptBlockError(ref.id, `snappy: ${(e as Error).message}`);
  }
  if (!blake2b128(plain).equals(ref.key)) throw new CorruptBlockError(ref.id, 'content does not hash to the block key');
  return plain;
}
