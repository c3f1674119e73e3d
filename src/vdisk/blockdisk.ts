// A byte-addressed Vdisk over a block-indexed backend: splits requests into blocks, does the
// read-modify-write of partial blocks under a per-block lock (two partial writes of one block in
// flight must not lose each other), and turns all-zero blocks into deletes.
import { G8osError } from '../errors';
import type { Vdisk, VdiskMeta } from './types';

export interface BlockBackend {
  /** block bytes (exactly blockSize), or null for an absent (zero) block */
  get(index: number): Promise<Buffer | null>;
  set(index: number, data: Buffer): Promise<void>;
  delete(index: number): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

const isZero = (b: Buffer): boolean => {
  // compare 8 bytes at a time would be faster; Buffer.compare against a shared zero block is native
  return b.equals(zeroBlock(b.length));
};
const zeros = new Map<number, Buffer>();
function zeroBlock(n: number): Buffer {
  let z = zeros.get(n);
  if (!z) zeros.set(n, (z = Buffer.alloc(n)));
  return z;
}

export class BlockVdisk implements Vdisk {
  readonly id: string;
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  private readonly locks = new Map<number, Promise<void>>();
  private readonly writes = new Set<Promise<unknown>>();

  constructor(meta: VdiskMeta, private readonly backend: BlockBackend, private readonly onClose?: () => Promise<void>) {
    this.id = meta.id;
    this.size = meta.size;
    this.blockSize = meta.blockSize;
    this.readOnly = meta.readOnly;
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new G8osError('invalid', `${offset}+${length} is outside vdisk ${this.id} (${this.size} bytes)`, { errno: 'EINVAL' });
    }
  }

  private checkWritable(): void {
    if (this.readOnly) throw new G8osError('unauthorized', `vdisk ${this.id} is read-only`, { errno: 'EPERM' });
  }

  /** Runs fn with block `index` locked (FIFO per block). */
  private async locked<T>(index: number, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(index);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev ? prev.then(() => mine) : mine;
    this.locks.set(index, chained);
    if (prev) await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(index) === chained) this.locks.delete(index);
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    const out = Buffer.alloc(length);
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const jobs: Promise<void>[] = [];
    for (let i = first; length > 0 && i <= last; i++) {
      jobs.push(
        this.backend.get(i).then((b) => {
          if (!b) return;
          const start = Math.max(offset, i * bs);
          const end = Math.min(offset + length, (i + 1) * bs);
          b.copy(out, start - offset, start - i * bs, end - i * bs);
        }),
      );
    }
    await Promise.all(jobs);
    return out;
  }

  /** Applies `mutate` to every block in the range: whole blocks get `whole`, partial ones RMW. */
  private async each(offset: number, length: number, whole: (i: number, src: number) => Promise<void>,
    partial: (cur: Buffer | null, i: number, from: number, to: number, src: number) => Buffer | null): Promise<void> {
    const bs = this.blockSize;
    const jobs: Promise<void>[] = [];
    for (let pos = offset; pos < offset + length;) {
      const i = Math.floor(pos / bs);
      const from = pos - i * bs;
      const to = Math.min(bs, offset + length - i * bs);
      const src = pos - offset;
      if (from === 0 && to === bs) jobs.push(this.locked(i, () => whole(i, src)));
      else {
        jobs.push(this.locked(i, async () => {
          const cur = await this.backend.get(i);
          const next = partial(cur, i, from, to, src);
          if (next === null) return;
          if (isZero(next)) await this.backend.delete(i);
          else await this.backend.set(i, next);
        }));
      }
      pos = (i + 1) * bs;
    }
    const all = Promise.all(jobs);
    this.writes.add(all);
    try {
      await all;
    } finally {
      this.writes.delete(all);
    }
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.checkWritable();
    this.check(offset, data.length);
    const bs = this.blockSize;
    await this.each(offset, data.length,
      async (i, src) => {
        const b = data.subarray(src, src + bs);
        if (isZero(b)) await this.backend.delete(i);
        else await this.backend.set(i, Buffer.from(b));
      },
      (cur, _i, from, to, src) => {
        const next = cur ? Buffer.from(cur) : Buffer.alloc(bs);
        data.copy(next, from, src, src + (to - from));
        return next;
      });
    if (fua) await this.flush();
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.writeZeroes(offset, length, fua);
  }

  async writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    this.checkWritable();
    this.check(offset, length);
    await this.each(offset, length,
      (i) => this.backend.delete(i),
      (cur, _i, from, to) => {
        // zeros merge only into a block that exists
        if (!cur) return null;
        const next = Buffer.from(cur);
        next.fill(0, from, to);
        return next;
      });
    if (fua) await this.flush();
  }

  async flush(): Promise<void> {
    await Promise.allSettled([...this.writes]);
    await this.backend.flush();
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.backend.close();
      await this.onClose?.();
    }
  }
}
