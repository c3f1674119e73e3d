// The native codec (src/flist/native/codec.c → dist/native/codec.node) against the JS it
// replaces: known answers, byte-identical output over many sizes, corrupt input rejected, and
// the addon found from the built tree and from worker threads. scripts/setup.sh builds it, so
// its absence here is a failure, not a skip.
import crypto from 'node:crypto';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import snappy from 'snappy';
import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptBlockError, decodeBlockWith, encodeBlockWith, jsParts, nativeParts, type CodecParts } from '../src/flist/codec';
import { hashReady } from '../src/flist/hash';
import { snappyUncompressNative, xxteaJs, xxteaNative, type Xxtea } from '../src/flist/xxtea';
import { kindOf } from '../src/errors';

const REPO = path.resolve(__dirname, '..');
let native: Xxtea;
let nparts: CodecParts;
let unsnappy: (src: Uint8Array) => Buffer | null;

beforeAll(async () => {
  await hashReady();
  expect(xxteaNative, 'dist/native/codec.node should be built by scripts/setup.sh').not.toBeNull();
  native = xxteaNative!;
  nparts = nativeParts!;
  unsnappy = snappyUncompressNative!;
});

// Deterministic pseudo-random bytes, so a failure reproduces.
function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let off = 0;
  let ctr = 0;
  while (off < n) {
    const h = crypto.createHash('sha256').update(`${seed}:${ctr++}`).digest();
    off += h.copy(out, off);
  }
  return out;
}

/** Compressible but varied: runs, repeats at many distances, random stretches. */
function compressible(n: number, seed: number): Buffer {
  const r = bytes(n + 64, seed);
  const out = Buffer.alloc(n);
  let i = 0;
  let j = 0;
  while (i < n) {
    const mode = r[j++ % r.length] % 4;
    const len = Math.min(n - i, 1 + (r[j++ % r.length] << 2));
    if (mode === 0 || i < 70000) out.fill(r[j % r.length], i, i + len); // runs (overlapping copies)
    else if (mode === 1) out.copyWithin(i, i - 1 - ((r[j] * 977 + r[j + 1]) % Math.min(i, 70000)), i - 1 - ((r[j] * 977 + r[j + 1]) % Math.min(i, 70000)) + len);
    else r.copy(out, i, j % (r.length - len - 1), (j % (r.length - len - 1)) + len);
    j += 3;
    i += len;
  }
  return out;
}

const SIZES = [
  ...Array.from({ length: 70 }, (_, i) => i + 1),
  255, 256, 257, 1023, 1025, 4095, 4097, 65535, 65537, 100_001, 262_143, 524_287, 524_288, 524_289, 524_290, 524_291,
  ...Array.from({ length: 30 }, (_, i) => 1 + ((i * 2_654_435_761) % 524_288)),
];

describe('native XXTEA', () => {
  it('matches the public test vector and the spec chunk vector', () => {
    const key = Buffer.alloc(16);
    Buffer.from('1234567890').copy(key);
    const plain = Buffer.from('Hello World! 你好，中国！');
    const cipher = native.encrypt(plain, key);
    expect(cipher.toString('base64')).toBe('QncB1C0rHQoZ1eRiPM4dsZtRi9pNrp7sqvX76cFXvrrIHXL6');
    expect(native.decrypt(cipher, key)).toEqual(plain);
    for (const p of [nparts, jsParts]) {
      const b = encodeBlockWith(p, Buffer.from('hello world\n'));
      expect(b.key.toString('hex')).toBe('c0cdb4699cdaa9eea4c563a934f1d52b');
      expect(b.cipher.toString('hex')).toBe('893f00077aad00982c3024bda3cbe527b9e1ecb0');
      expect(b.id.toString('hex')).toBe('a5147f6e7cac3a7076f942cb5e00d896');
      expect(decodeBlockWith(p, b.cipher, b).toString()).toBe('hello world\n');
    }
  });

  it('is byte-identical to the JS over 1 byte .. 512 KiB (non-multiples of 4 included)', () => {
    for (const [i, n] of SIZES.entries()) {
      const plain = bytes(n, i);
      const key = bytes(16, 1000 + i);
      const c = native.encrypt(plain, key);
      expect(c.length, `size ${n}`).toBe(4 * Math.ceil(n / 4) + 4);
      expect(c.equals(xxteaJs.encrypt(plain, key)), `encrypt size ${n}`).toBe(true);
      expect(native.decrypt(c, key)!.equals(plain), `native decrypt size ${n}`).toBe(true);
      expect(xxteaJs.decrypt(c, key)!.equals(plain), `js decrypt size ${n}`).toBe(true);
      // an unaligned view must give the same answer (the addon reads words with memcpy)
      const shifted = Buffer.alloc(n + 1);
      plain.copy(shifted, 1);
      expect(native.encrypt(shifted.subarray(1), key).equals(c), `unaligned size ${n}`).toBe(true);
    }
  });

  it('keys: shorter ones are zero-padded, NUL bytes are never a terminator', () => {
    const plain = bytes(1000, 7);
    for (const key of [Buffer.from('12345'), Buffer.from('00112233445566778899aabbccddeeff', 'hex'), Buffer.alloc(16), bytes(20, 3)]) {
      expect(native.encrypt(plain, key).equals(xxteaJs.encrypt(plain, key))).toBe(true);
    }
  });

  it('rejects what the JS rejects: bad lengths, wrong keys, random bytes', () => {
    const key = bytes(16, 9);
    const other = bytes(16, 10);
    expect(() => native.encrypt(Buffer.alloc(0), key)).toThrow(/empty input/);
    for (const n of [0, 1, 4, 7, 9, 10, 11]) {
      expect(native.decrypt(Buffer.alloc(n), key), `length ${n}`).toBeNull();
      expect(xxteaJs.decrypt(Buffer.alloc(n), key)).toBeNull();
    }
    const c = native.encrypt(bytes(5001, 11), key);
    expect(native.decrypt(c, other)).toBeNull();
    expect(native.decrypt(c.subarray(0, c.length - 4), key)).toBeNull();
    let accepted = 0;
    for (let i = 0; i < 2000; i++) {
      const junk = bytes(8 + 4 * (i % 50), 20_000 + i);
      const a = native.decrypt(junk, key);
      const b = xxteaJs.decrypt(junk, key);
      expect(a === null ? null : a.toString('hex'), `junk ${i}`).toBe(b === null ? null : b.toString('hex'));
      if (a) accepted++;
    }
    // a random length word passes the check with odds of ~4/2^32: none should here
    expect(accepted).toBe(0);
  });
});

describe('native Snappy decoder', () => {
  it('decodes what the snappy package encodes, byte for byte', () => {
    for (const [i, n] of SIZES.entries()) {
      for (const plain of [compressible(n, i), bytes(n, i)]) {
        const c = snappy.compressSync(plain);
        const out = unsnappy(c);
        expect(out && out.equals(plain), `size ${n} (${c.length} compressed)`).toBe(true);
      }
    }
  });

  it('rejects truncated and damaged input (never out of bounds, never a wrong length)', () => {
    const plain = compressible(300_000, 5);
    const c = snappy.compressSync(plain);
    for (const cut of [0, 1, 2, 3, 10, 1000, c.length - 1]) expect(unsnappy(c.subarray(0, cut)), `cut ${cut}`).toBeNull();
    // a declared length that does not match what the elements produce
    const literal = (declared: number): Buffer => Buffer.concat([Buffer.from([declared, 0x10]), Buffer.from('abcde')]);
    expect(unsnappy(literal(5))!.toString()).toBe('abcde');
    expect(unsnappy(literal(6))).toBeNull();
    expect(unsnappy(literal(4))).toBeNull();
    // every copy form (snappy itself never emits 4-byte offsets: it works in 64 KiB fragments)
    const lit = Buffer.from([0x0c, 0x61, 0x62, 0x63, 0x64]); // literal "abcd"
    expect(unsnappy(Buffer.from([0x08, ...lit, 0x0f, 4, 0, 0, 0]))!.toString()).toBe('abcdabcd');
    expect(unsnappy(Buffer.from([0x08, ...lit, 0x0e, 4, 0]))!.toString()).toBe('abcdabcd');
    expect(unsnappy(Buffer.from([0x0a, ...lit, 0x01 | (2 << 2), 1]))!.toString()).toBe('abcddddddd');
    expect(unsnappy(Buffer.from([0x08, ...lit, 0x0f, 5, 0, 0, 0]))).toBeNull();
    // a back-reference before the start of the output
    expect(unsnappy(Buffer.from([0x08, 0x01 | (4 << 2), 0x05]))).toBeNull();
    // offset 0 is invalid
    expect(unsnappy(Buffer.from([0x05, 0x00, 0x61, 0x01, 0x00]))).toBeNull();
    // an over-long varint
    expect(unsnappy(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBeNull();
    // random damage: whenever the package still decodes, we give the same bytes or fail
    for (let i = 0; i < 300; i++) {
      const d = Buffer.from(c);
      const r = bytes(8, 50_000 + i);
      d[r.readUInt32LE(0) % d.length] ^= 1 << (r[4] % 8);
      const ours = unsnappy(d);
      let theirs: Buffer | null = null;
      try {
        theirs = snappy.uncompressSync(d, { asBuffer: true }) as Buffer;
      } catch {
        theirs = null;
      }
      if (ours && theirs) expect(ours.equals(theirs), `damage ${i}`).toBe(true);
      if (ours) expect(ours.length).toBe(300_000);
    }
  });
});

describe('native block codec', () => {
  it('encodes and decodes whole blocks exactly as the JS parts do', () => {
    for (const [i, n] of [1, 3, 12, 4096, 100_003, 524_288].entries()) {
      for (const plain of [compressible(n, 100 + i), bytes(n, 200 + i)]) {
        const a = encodeBlockWith(nparts, plain);
        const b = encodeBlockWith(jsParts, plain);
        expect(a.cipher.equals(b.cipher) && a.id.equals(b.id) && a.key.equals(b.key), `size ${n}`).toBe(true);
        expect(decodeBlockWith(nparts, b.cipher, b).equals(plain)).toBe(true);
        expect(decodeBlockWith(jsParts, a.cipher, a).equals(plain)).toBe(true);
      }
    }
  });

  it('corrupt blocks are CorruptBlockError of kind corrupt, with either parts', () => {
    const plain = compressible(200_000, 77);
    const b = encodeBlockWith(nparts, plain);
    const flipped = Buffer.from(b.cipher);
    flipped[100] ^= 1;
    const other = encodeBlockWith(nparts, Buffer.from('other'));
    for (const p of [nparts, jsParts]) {
      for (const [cipher, ref] of [[flipped, b], [b.cipher, { id: b.id, key: other.key }]] as const) {
        let err: unknown;
        try {
          decodeBlockWith(p, cipher, ref);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(CorruptBlockError);
        expect(kindOf(err)).toBe('corrupt');
        expect((err as Error).message).toMatch(/^corrupt block [0-9a-f]{32}: /);
      }
    }
  });

  it('the built tree and its worker threads load the addon (ingest encodes in workers)', async () => {
    const built = path.join(REPO, 'dist/src/flist');
    // the same script the ingest pool runs, from dist/, answering one chunk
    const w = new Worker(path.join(built, 'encode-worker.js'), { workerData: null });
    try {
      const plain = compressible(524_288, 3);
      const buf = new ArrayBuffer(plain.length);
      new Uint8Array(buf).set(plain);
      const answer = await new Promise<{ id: Buffer; key: Buffer; cipher: ArrayBuffer; error?: string }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
        w.postMessage({ seq: 1, buf, len: plain.length }, [buf]);
      });
      expect(answer.error).toBeUndefined();
      const want = encodeBlockWith(jsParts, plain);
      expect(Buffer.from(answer.cipher).equals(want.cipher)).toBe(true);
      expect(Buffer.from(answer.id).equals(want.id)).toBe(true);
    } finally {
      await w.terminate();
    }
    // and the worker really had the native parts, not the fallback
    const probe = new Worker(
      `const x = require(${JSON.stringify(path.join(built, 'xxtea.js'))}); require('node:worker_threads').parentPort.postMessage(x.xxteaNative !== null);`,
      { eval: true },
    );
    try {
      expect(await new Promise((resolve, reject) => (probe.once('message', resolve), probe.once('error', reject)))).toBe(true);
    } finally {
      await probe.terminate();
    }
  });
});
