// XXTEA in the xxtea-c / xxtea-go variant used by 0-flist: the plaintext is zero-padded
// to whole words and one extra word holding its byte length is appended before encryption.
// The hot path runs in a small C addon (src/flist/native/codec.c → dist/native/codec.node,
// built by scripts/setup.sh); this typed-array code is the fallback when the addon is absent
// and the baseline bench/codec.ts measures it against (it was 210 MB/s here against 63 MB/s for
// the `xxtea-node` package on 512 KiB chunks).
import fs from 'node:fs';
import path from 'node:path';
import { G8osError } from '../errors';

const DELTA = 0x9e3779b9 | 0;

function keyWords(key: Uint8Array): Int32Array {
  // Binary keys are zero-padded to 16 bytes and never truncated at a NUL byte.
  const k = new Uint8Array(16);
  k.set(key.subarray(0, 16));
  return new Int32Array(k.buffer, 0, 4);
}

function encryptWords(v: Int32Array, k: Int32Array): void {
  const n = v.length;
  let rounds = 6 + ((52 / n) | 0);
  let sum = 0;
  let z = v[n - 1];
  let y: number;
  while (rounds-- > 0) {
    sum = (sum + DELTA) | 0;
    const e = (sum >>> 2) & 3;
    let p = 0;
    for (; p < n - 1; p++) {
      y = v[p + 1];
      z = v[p] = (v[p] + ((((z >>> 5) ^ (y << 2)) + ((y >>> 3) ^ (z << 4))) ^ ((sum ^ y) + (k[(p & 3) ^ e] ^ z)))) | 0;
    }
    y = v[0];
    z = v[n - 1] = (v[n - 1] + ((((z >>> 5) ^ (y << 2)) + ((y >>> 3) ^ (z << 4))) ^ ((sum ^ y) + (k[(p & 3) ^ e] ^ z)))) | 0;
  }
}

function decryptWords(v: Int32Array, k: Int32Array): void {
  const n = v.length;
  const rounds = 6 + ((52 / n) | 0);
  let sum = Math.imul(rounds, DELTA) | 0;
  let y = v[0];
  let z: number;
  while (sum !== 0) {
    const e = (sum >>> 2) & 3;
    let p = n - 1;
    for (; p > 0; p--) {
      z = v[p - 1];
      y = v[p] = (v[p] - ((((z >>> 5) ^ (y << 2)) + ((y >>> 3) ^ (z << 4))) ^ ((sum ^ y) + (k[(p & 3) ^ e] ^ z)))) | 0;
    }
    z = v[n - 1];
    y = v[0] = (v[0] - ((((z >>> 5) ^ (y << 2)) + ((y >>> 3) ^ (z << 4))) ^ ((sum ^ y) + (k[(p & 3) ^ e] ^ z)))) | 0;
    sum = (sum - DELTA) | 0;
  }
}

export interface Xxtea {
  /** Ciphertext is 4*ceil(len/4)+4 bytes. */
  encrypt(plain: Uint8Array, key: Uint8Array): Buffer;
  /** Returns null when the length word is inconsistent (wrong key or corrupt data). */
  decrypt(cipher: Uint8Array, key: Uint8Array): Buffer | null;
}

function emptyInput(): G8osError {
  return new G8osError('invalid', 'xxtea: empty input is never encrypted');
}

function jsEncrypt(plain: Uint8Array, key: Uint8Array): Buffer {
  if (plain.length === 0) throw emptyInput();
  const words = ((plain.length + 3) >>> 2) + 1;
  const ab = new ArrayBuffer(words * 4);
  new Uint8Array(ab).set(plain);
  const v = new Int32Array(ab);
  v[words - 1] = plain.length;
  encryptWords(v, keyWords(key));
  return Buffer.from(ab);
}

function jsDecrypt(cipher: Uint8Array, key: Uint8Array): Buffer | null {
  if (cipher.length < 8 || cipher.length % 4 !== 0) return null;
  const ab = new ArrayBuffer(cipher.length);
  new Uint8Array(ab).set(cipher);
  const v = new Int32Array(ab);
  decryptWords(v, keyWords(key));
  const n = v.length;
  const len = v[n - 1] >>> 0;
  const max = 4 * (n - 1);
  if (len < max - 3 || len > max) return null;
  return Buffer.from(ab, 0, len);
}

/** The typed-array implementation (fallback and bench baseline). */
export const xxteaJs: Xxtea = { encrypt: jsEncrypt, decrypt: jsDecrypt };

interface Addon {
  encrypt(plain: Uint8Array, key: Uint8Array, out: Uint8Array): number;
  decrypt(cipher: Uint8Array, key: Uint8Array, out: Uint8Array): number;
  snappyLength(src: Uint8Array): number;
  snappyDecode(src: Uint8Array, out: Uint8Array): number;
}

// dist/src/flist → dist/native when built; src/flist → dist/native when run from source (vitest).
const ADDON_PATHS = [path.resolve(__dirname, '../../native/codec.node'), path.resolve(__dirname, '../../dist/native/codec.node')];

function loadAddon(): Addon | null {
  if (process.env.G8OS_NATIVE === '0') return debugNote('G8OS_NATIVE=0: using the JS XXTEA');
  const file = ADDON_PATHS.find((f) => fs.existsSync(f));
  if (!file) return debugNote(`no native codec at ${ADDON_PATHS[0]} (run scripts/setup.sh): using the JS XXTEA`);
  try {
    return require(file) as Addon;
  } catch (e) {
    return debugNote(`native codec ${file} did not load (${(e as Error).message}): using the JS XXTEA`);
  }
}

function debugNote(msg: string): null {
  if (process.env.G8OS_DEBUG) process.stderr.write(`g8os: debug: ${msg}\n`);
  return null;
}

function nativeOf(addon: Addon): Xxtea {
  return {
    encrypt(plain, key) {
      if (plain.length === 0) throw emptyInput();
      const out = Buffer.allocUnsafe(((plain.length + 3) >>> 2) * 4 + 4);
      addon.encrypt(plain, key, out);
      return out;
    },
    decrypt(cipher, key) {
      const out = Buffer.allocUnsafe(cipher.length);
      const len = addon.decrypt(cipher, key, out);
      if (len < 0) return null;
      return out.subarray(0, len);
    },
  };
}

const addon = loadAddon();
/** The C addon's XXTEA, or null when it is absent (or disabled with G8OS_NATIVE=0). */
export const xxteaNative: Xxtea | null = addon ? nativeOf(addon) : null;

/** The C addon's Snappy raw decoder (null when absent): the bytes, or null when corrupt. */
export const snappyUncompressNative: ((src: Uint8Array) => Buffer | null) | null = addon
  ? (src) => {
      const len = addon.snappyLength(src);
      if (len < 0) return null;
      const out = Buffer.allocUnsafe(len);
      return addon.snappyDecode(src, out) === 0 ? out : null;
    }
  : null;
/** The implementation the codec uses: native when present, else JS. */
export const xxtea: Xxtea = xxteaNative ?? xxteaJs;
export const xxteaEncrypt = (plain: Uint8Array, key: Uint8Array): Buffer => xxtea.encrypt(plain, key);
export const xxteaDecrypt = (cipher: Uint8Array, key: Uint8Array): Buffer | null => xxtea.decrypt(cipher, key);
