// A pool of worker threads that encode chunks; the main thread keeps parsing the tar.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { EncodedBlock } from './codec';

/** Compiled worker script; under vitest (TypeScript sources) use the built copy in dist/. */
function workerScript(): string {
  const sibling = path.join(__dirname, 'encode-worker.js');
  if (fs.existsSync(sibling)) return sibling;
  const built = path.resolve(__dirname, '../../dist/src/flist/encode-worker.js');
  if (fs.existsSync(built)) return built;
  throw new Error(`encoder worker not built: run "npm run build" (looked for ${built})`);
}

interface WorkerReply {
  seq: number;
  id: Uint8Array;
  key: Uint8Array;
  /** the ciphertext, unless the worker stored it itself */
  cipher?: ArrayBuffer;
  size: number;
  /** set when the worker wrote the block to the dir store (false: it was there already) */
  written?: boolean;
  plain?: ArrayBuffer;
  error?: string;
}

/** An encoded chunk as the pool returns it. */
export interface PooledBlock extends EncodedBlock {
  size: number;
  written?: boolean;
}

interface Pending {
  resolve: (b: PooledBlock) => void;
  reject: (e: Error) => void;
}

export class EncoderPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private next = 0;
  /** Chunk buffers the workers handed back, ready for reuse. */
  private readonly spare: ArrayBuffer[] = [];

  /**
   * With `dirRoot` (a dir:// store), workers also write the blocks they encode: synchronous
   * file calls in a worker cost far less than the main thread's promise-based ones.
   */
  constructor(size = Math.max(1, os.availableParallelism()), opts: { dirRoot?: string } = {}) {
    const script = workerScript();
    for (let i = 0; i < size; i++) {
      const w = new Worker(script, { workerData: { dirRoot: opts.dirRoot } });
      w.on('message', (m: WorkerReply) => {
        if (m.plain && this.spare.length < 16) this.spare.push(m.plain);
        const p = this.pending.get(m.seq);
        if (!p) return;
        this.pending.delete(m.seq);
        if (m.error) p.reject(new Error(m.error));
        else p.resolve({ id: Buffer.from(m.id), key: Buffer.from(m.key), cipher: Buffer.from(m.cipher ?? new ArrayBuffer(0)), size: m.size, written: m.written });
      });
      w.on('error', (e) => this.failAll(e));
      this.workers.push(w);
    }
  }

  /** A chunk-sized buffer, recycled when one is free. */
  buffer(size: number): ArrayBuffer {
    const b = this.spare.pop();
    return b && b.byteLength === size ? b : new ArrayBuffer(size);
  }

  /** Encode `len` bytes of `buf`; the buffer is transferred to the worker (do not reuse it). */
  encode(buf: ArrayBuffer, len: number): Promise<PooledBlock> {
    const seq = this.seq++;
    const w = this.workers[this.next++ % this.workers.length];
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      w.postMessage({ seq, buf, len }, [buf]);
    });
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.failAll(new Error('encoder pool closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
