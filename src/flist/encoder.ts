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

interface Pending {
  resolve: (b: EncodedBlock) => void;
  reject: (e: Error) => void;
}

export class EncoderPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private next = 0;

  constructor(size = Math.max(1, os.availableParallelism())) {
    const script = workerScript();
    for (let i = 0; i < size; i++) {
      const w = new Worker(script);
      w.on('message', (m: { seq: number; id: Uint8Array; key: Uint8Array; cipher: ArrayBuffer; error?: string }) => {
        const p = this.pending.get(m.seq);
        if (!p) return;
        this.pending.delete(m.seq);
        if (m.error) p.reject(new Error(m.error));
        else p.resolve({ id: Buffer.from(m.id), key: Buffer.from(m.key), cipher: Buffer.from(m.cipher) });
      });
      w.on('error', (e) => this.failAll(e));
      this.workers.push(w);
    }
  }

  /** Encode `len` bytes of `buf`; the buffer is transferred to the worker (do not reuse it). */
  encode(buf: ArrayBuffer, len: number): Promise<EncodedBlock> {
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
