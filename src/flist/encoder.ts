// A pool of worker threads that encode chunks; the main thread keeps parsing the tar.
import os from 'node:os';
import { WorkerPool, workerScript } from '../lib/worker-pool';
import type { EncodedBlock } from './codec';

function script(): string {
  const found = workerScript('flist/encode-worker.js');
  if (!found) throw new Error('encoder worker not built: run "npm run build"');
  return found;
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

interface EncodeJob {
  buf: ArrayBuffer;
  len: number;
}

export class EncoderPool {
  private readonly pool: WorkerPool<EncodeJob, WorkerReply>;
  /** Chunk buffers the workers handed back, ready for reuse. */
  private readonly spare: ArrayBuffer[] = [];

  /**
   * With `dirRoot` (a dir:// store), workers also write the blocks they encode: synchronous
   * file calls in a worker cost far less than the main thread's promise-based ones.
   */
  constructor(size = Math.max(1, os.availableParallelism()), opts: { dirRoot?: string } = {}) {
    this.pool = new WorkerPool(script(), size, { dirRoot: opts.dirRoot });
  }

  /** A chunk-sized buffer, recycled when one is free. */
  buffer(size: number): ArrayBuffer {
    const b = this.spare.pop();
    return b && b.byteLength === size ? b : new ArrayBuffer(size);
  }

  /** Encode `len` bytes of `buf`; the buffer is transferred to the worker (do not reuse it). */
  async encode(buf: ArrayBuffer, len: number): Promise<PooledBlock> {
    const m = await this.pool.run({ buf, len }, [buf]);
    if (m.plain && this.spare.length < 16) this.spare.push(m.plain);
    if (m.error) throw new Error(m.error);
    return { id: Buffer.from(m.id), key: Buffer.from(m.key), cipher: Buffer.from(m.cipher ?? new ArrayBuffer(0)), size: m.size, written: m.written };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
