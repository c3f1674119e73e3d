// Generation-2 chunk codec: key = blake2b-128(plain), snappy (raw block format),
// XXTEA with the key, storage id = blake2b-128(cipher). Convergent: equal chunks, equal ids.
import snappy from 'snappy';
import { G8osError } from '../errors';
import { blake2b128 } from './hash';
import { snappyUncompressNative, xxteaJs, xxteaNative, type Xxtea } from './xxtea';
import { BLOCK_SIZE, type BlockRef } from './types';

export interface EncodedBlock extends BlockRef {
  cipher: Buffer;
}

export class CorruptBlockError extends G8osError {
  constructor(id: Buffer, why: string) {
    super('corrupt', `corrupt block ${id.toString('hex')}: ${why}`);
  }
}

/** The codec's swappable parts: the C addon's or the JS ones (fallback and bench baseline). */
export interface CodecParts {
  xxtea: Xxtea;
  /** Snappy raw decode; throws on corrupt input. */
  uncompress(src: Buffer): Buffer;
}

export const jsParts: CodecParts = {
  xxtea: xxteaJs,
  uncompress: (src) => snappy.uncompressSync(src, { asBuffer: true }) as Buffer,
};

export const nativeParts: CodecParts | null =
  xxteaNative && snappyUncompressNative
    ? {
        xxtea: xxteaNative,
        uncompress(src) {
          const out = snappyUncompressNative!(src);
          if (!out) throw new G8osError('corrupt', 'invalid compressed data');
          return out;
        },
      }
    : null;

const parts = nativeParts ?? jsParts;

/** Snappy raw decode for every codec (gen-3 too): the addon's when present. The snappy
 *  package's sync calls never free their output on glibc (Brooooooklyn/snappy#323; measured
 *  here: +1.3 GiB RSS after 40 passes over 32 MiB, the addon +35 MiB flat). */
export const snappyUncompress = (src: Buffer): Buffer => parts.uncompress(src);

/** encodeBlock with chosen parts. Compression always uses the snappy package, so that block
 *  ids stay what they were (Snappy output differs between compressors). */
export function encodeBlockWith(c: CodecParts, plain: Uint8Array): EncodedBlock {
  if (plain.length === 0 || plain.length > BLOCK_SIZE) {
    throw new G8osError(plain.length === 0 ? 'invalid' : 'too_large', `block of ${plain.length} bytes: must be 1..${BLOCK_SIZE}`);
  }
  const key = blake2b128(plain);
  const cipher = c.xxtea.encrypt(snappy.compressSync(Buffer.from(plain.buffer, plain.byteOffset, plain.length)), key);
  return { id: blake2b128(cipher), key, cipher };
}

/** decodeBlock with chosen parts. */
export function decodeBlockWith(c: CodecParts, cipher: Uint8Array, ref: BlockRef): Buffer {
  if (!blake2b128(cipher).equals(ref.id)) throw new CorruptBlockError(ref.id, 'stored bytes do not hash to the block id');
  const compressed = c.xxtea.decrypt(cipher, ref.key);
  if (!compressed) throw new CorruptBlockError(ref.id, 'decryption length check failed');
  let plain: Buffer;
  try {
    plain = c.uncompress(compressed);
  } catch (e) {
    throw new CorruptBlockError(ref.id, `snappy: ${(e as Error).message}`);
  }
  if (!blake2b128(plain).equals(ref.key)) throw new CorruptBlockError(ref.id, 'content does not hash to the block key');
  return plain;
}

export const encodeBlock = (plain: Uint8Array): EncodedBlock => encodeBlockWith(parts, plain);

/** Decrypts and verifies a stored block; a block that does not match its id or key throws. */
export const decodeBlock = (cipher: Uint8Array, ref: BlockRef): Buffer => decodeBlockWith(parts, cipher, ref);
