// Minimal Cap'n Proto (unpacked, stream framing) reader and single-segment builder, just
// enough for the flist schema. Hand-written rather than capnp-es: see README "Design notes"
// for the measurement. The reader bounds its work as the spec's §5.4 requires.

import { G8osError } from '../errors';

const MAX_MESSAGE = 64 * 1024 * 1024;
const MAX_DEPTH = 64;

/** A capnp value that fails its structural checks: stored data, so `corrupt`. */
export class CapnpError extends G8osError {
  constructor(message: string) {
    super('corrupt', `capnp: ${message}`);
  }
}

/** A parsed message: segment views plus a traversal budget shared by all its readers. */
export class Message {
  readonly segments: Buffer[] = [];
  budget: number;

  constructor(buf: Buffer) {
    if (buf.length > MAX_MESSAGE) throw new CapnpError(`message of ${buf.length} bytes is over the 64 MiB limit`);
    if (buf.length < 8) throw new CapnpError('message shorter than its segment table');
    const count = buf.readUInt32LE(0) + 1;
    if (count > 512) throw new CapnpError(`implausible segment count ${count}`);
    let offset = 4 + 4 * count;
    if (offset % 8) offset += 4;
    if (offset > buf.length) throw new CapnpError('truncated segment table');
    let words = 0;
    for (let i = 0; i < count; i++) {
      const size = buf.readUInt32LE(4 + 4 * i) * 8;
      if (offset + size > buf.length) throw new CapnpError(`segment ${i} runs past the end of the message`);
      this.segments.push(buf.subarray(offset, offset + size));
      offset += size;
      words += size / 8;
    }
    if (offset !== buf.length) throw new CapnpError(`${buf.length - offset} bytes of trailing garbage`);
    this.budget = Math.max(8 * words, 64);
  }

  root(): StructReader {
    const s = this.pointer(0, 0, 0, 0);
    if (!s) return StructReader.empty(this);
    if (s.kind !== 0) throw new CapnpError('root pointer is not a struct');
    return s.struct;
  }

  private charge(words: number): void {
    this.budget -= Math.max(words, 1);
    if (this.budget < 0) throw new CapnpError('traversal limit exceeded (pointer loop or amplification)');
  }

  private checkRange(seg: number, word: number, words: number): void {
    const s = this.segments[seg];
    if (word < 0 || words < 0 || (word + words) * 8 > s.length) throw new CapnpError(`pointer target out of bounds in segment ${seg}`);
  }

  /** Resolve the pointer stored at word `at` of segment `seg`. */
  pointer(seg: number, at: number, depth: number, hops: number): Resolved | null {
    if (depth > MAX_DEPTH) throw new CapnpError('nesting deeper than 64');
    const s = this.segments[seg];
    if (s === undefined) throw new CapnpError(`pointer into missing segment ${seg}`);
    this.checkRange(seg, at, 1);
    const lo = s.readUInt32LE(at * 8);
    const hi = s.readUInt32LE(at * 8 + 4);
    if (lo === 0 && hi === 0) return null;
    const kind = lo & 3;
    if (kind === 2) {
      if (hops > 0) throw new CapnpError('far pointer lands on another far pointer');
      const target = hi;
      const pad = lo >>> 3;
      if (this.segments[target] === undefined) throw new CapnpError(`far pointer to missing segment ${target}`);
      if (!(lo & 4)) return this.pointer(target, pad, depth, 1);
      // Double-far: pad[0] is a far pointer to the content, pad[1] a tag describing it.
      this.checkRange(target, pad, 2);
      const ts = this.segments[target];
      const flo = ts.readUInt32LE(pad * 8);
      const fhi = ts.readUInt32LE(pad * 8 + 4);
      if ((flo & 3) !== 2 || flo & 4) throw new CapnpError('malformed double-far landing pad');
      if (this.segments[fhi] === undefined) throw new CapnpError(`far pointer to missing segment ${fhi}`);
      const tlo = ts.readUInt32LE(pad * 8 + 8);
      const thi = ts.readUInt32LE(pad * 8 + 12);
      return this.resolve(fhi, flo >>> 3, tlo & 3, thi, depth);
    }
    if (kind === 3) throw new CapnpError('capability pointers are not allowed in flists');
    const offset = (lo | 0) >> 2;
    return this.resolve(seg, at + 1 + offset, kind, hi, depth);
  }

  private resolve(seg: number, word: number, kind: number, hi: number, depth: number): Resolved {
    if (kind === 0) {
      const dataWords = hi & 0xffff;
      const ptrWords = hi >>> 16;
      this.checkRange(seg, word, dataWords + ptrWords);
      this.charge(dataWords + ptrWords);
      return { kind: 0, struct: new StructReader(this, seg, word, dataWords, ptrWords, depth + 1) };
    }
    if (kind !== 1) throw new CapnpError(`unexpected pointer kind ${kind}`);
    const elemSize = hi & 7;
    const count = hi >>> 3;
    if (elemSize === 7) {
      this.checkRange(seg, word, count + 1);
      const s = this.segments[seg];
      const tlo = s.readUInt32LE(word * 8);
      const thi = s.readUInt32LE(word * 8 + 4);
      if ((tlo & 3) !== 0) throw new CapnpError('inline composite tag is not a struct pointer');
      const n = (tlo | 0) >> 2;
      const dataWords = thi & 0xffff;
      const ptrWords = thi >>> 16;
      if (n < 0 || n * (dataWords + ptrWords) > count) throw new CapnpError('inline composite list larger than its word count');
      this.charge(count + 1);
      return { kind: 1, seg, word: word + 1, elemSize, count: n, dataWords, ptrWords, depth: depth + 1 };
    }
    const bits = [0, 1, 8, 16, 32, 64, 64, 0][elemSize];
    const words = Math.ceil((count * bits) / 64);
    this.checkRange(seg, word, words);
    this.charge(words);
    return { kind: 1, seg, word, elemSize, count, dataWords: 0, ptrWords: 0, depth: depth + 1 };
  }
}

type Resolved =
  | { kind: 0; struct: StructReader }
  | { kind: 1; seg: number; word: number; elemSize: number; count: number; dataWords: number; ptrWords: number; depth: number };

export class StructReader {
  constructor(
    private readonly msg: Message,
    private readonly seg: number,
    private readonly word: number,
    private readonly dataWords: number,
    private readonly ptrWords: number,
    private readonly depth: number,
  ) {}

  static empty(msg: Message): StructReader {
    return new StructReader(msg, 0, 0, 0, 0, 0);
  }

  private get buf(): Buffer {
    return this.msg.segments[this.seg];
  }

  // Fields outside the data section read as their default (older/newer writers).
  u16(byte: number): number {
    return byte + 2 <= this.dataWords * 8 ? this.buf.readUInt16LE(this.word * 8 + byte) : 0;
  }

  u32(byte: number): number {
    return byte + 4 <= this.dataWords * 8 ? this.buf.readUInt32LE(this.word * 8 + byte) : 0;
  }

  u64(byte: number): number {
    return byte + 8 <= this.dataWords * 8 ? Number(this.buf.readBigUInt64LE(this.word * 8 + byte)) : 0;
  }

  /** Int64 stored XOR its default (ACI uid/gid default to -1). */
  i64(byte: number, def: bigint): number {
    const raw = byte + 8 <= this.dataWords * 8 ? this.buf.readBigInt64LE(this.word * 8 + byte) : 0n;
    return Number(raw ^ def);
  }

  private ptr(i: number): Resolved | null {
    if (i >= this.ptrWords) return null;
    return this.msg.pointer(this.seg, this.word + this.dataWords + i, this.depth, 0);
  }

  private bytes(i: number): Buffer | null {
    const p = this.ptr(i);
    if (!p) return null;
    if (p.kind !== 1 || p.elemSize !== 2) throw new CapnpError(`pointer ${i} is not a byte list`);
    const start = p.word * 8;
    return this.msg.segments[p.seg].subarray(start, start + p.count);
  }

  text(i: number): string {
    const b = this.bytes(i);
    if (!b || b.length === 0) return '';
    return b.toString('utf8', 0, b[b.length - 1] === 0 ? b.length - 1 : b.length);
  }

  data(i: number): Buffer | null {
    return this.bytes(i);
  }

  struct(i: number): StructReader | null {
    const p = this.ptr(i);
    if (!p) return null;
    if (p.kind !== 0) throw new CapnpError(`pointer ${i} is not a struct`);
    return p.struct;
  }

  /** A list of structs (inline composite), or null for a null pointer. */
  structList(i: number): StructReader[] | null {
    const p = this.ptr(i);
    if (!p) return null;
    if (p.kind !== 1 || p.elemSize !== 7) throw new CapnpError(`pointer ${i} is not a list of structs`);
    const out: StructReader[] = [];
    const stride = p.dataWords + p.ptrWords;
    for (let k = 0; k < p.count; k++) {
      out.push(new StructReader(this.msg, p.seg, p.word + k * stride, p.dataWords, p.ptrWords, p.depth));
    }
    return out;
  }
}

/** Single-segment message builder; callers lay out structs explicitly. */
export class Builder {
  private buf = Buffer.alloc(1024);
  private words = 0;

  /** Allocate zeroed words; returns the first word index. */
  alloc(n: number): number {
    const at = this.words;
    this.words += n;
    if (this.words * 8 > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.words * 8));
      this.buf.copy(next, 0, 0, at * 8);
      this.buf = next;
    }
    return at;
  }

  private setPointer(at: number, target: number, kind: number, hi: number): void {
    const offset = target - at - 1;
    this.buf.writeUInt32LE((((offset << 2) | kind) >>> 0), at * 8);
    this.buf.writeUInt32LE(hi >>> 0, at * 8 + 4);
  }

  /** Allocate a struct and point `at` to it; returns the struct's first word. */
  struct(at: number, dataWords: number, ptrWords: number): number {
    const s = this.alloc(dataWords + ptrWords);
    this.setPointer(at, s, 0, dataWords | (ptrWords << 16));
    return s;
  }

  /** Inline-composite list of `count` structs; returns the first element's word. */
  structList(at: number, count: number, dataWords: number, ptrWords: number): number {
    const stride = dataWords + ptrWords;
    const tag = this.alloc(1 + count * stride);
    this.setPointer(at, tag, 1, 7 | ((count * stride) << 3));
    this.buf.writeUInt32LE((count << 2) >>> 0, tag * 8);
    this.buf.writeUInt32LE(dataWords | (ptrWords << 16), tag * 8 + 4);
    return tag + 1;
  }

  private byteList(at: number, bytes: Buffer, extra: number): void {
    const n = bytes.length + extra;
    const start = this.alloc(Math.ceil(n / 8));
    bytes.copy(this.buf, start * 8);
    this.setPointer(at, start, 1, 2 | (n << 3));
  }

  text(at: number, s: string): void {
    this.byteList(at, Buffer.from(s, 'utf8'), 1);
  }

  data(at: number, b: Buffer): void {
    this.byteList(at, b, 0);
  }

  u16(word: number, byte: number, v: number): void {
    this.buf.writeUInt16LE(v, word * 8 + byte);
  }

  u32(word: number, byte: number, v: number): void {
    this.buf.writeUInt32LE(v >>> 0, word * 8 + byte);
  }

  u64(word: number, byte: number, v: number): void {
    this.buf.writeBigUInt64LE(BigInt(v), word * 8 + byte);
  }

  i64(word: number, byte: number, v: number, def: bigint): void {
    this.buf.writeBigInt64LE(BigInt(v) ^ def, word * 8 + byte);
  }

  /** The framed message: segment table for one segment, then the segment. */
  finish(): Buffer {
    const out = Buffer.alloc(8 + this.words * 8);
    out.writeUInt32LE(0, 0);
    out.writeUInt32LE(this.words, 4);
    this.buf.copy(out, 8, 0, this.words * 8);
    return out;
  }
}
