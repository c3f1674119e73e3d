// The one worker-thread pool (block decoding in the block cache, chunk encoding on ingest).
// Every message carries a `seq` the worker echoes back. Workers start on first use and again
// after one dies; a busy worker keeps the process alive, an idle one does not.
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

/** A compiled worker script under src/ (`fs/block-worker.js`); under vitest (sources) the built copy in dist/. */
export function workerScript(name: string): string | undefined {
  const sibling = path.join(__dirname, '..', name);
  if (fs.existsSync(sibling)) return sibling;
  const built = path.resolve(__dirname, '../../dist/src', name);
  return fs.existsSync(built) ? built : undefined;
}

interface Slot<R> {
  worker: Worker;
  pending: Map<number, { resolve: (r: R) => void; reject: (e: Error) => void }>;
}

export class WorkerPool<Req extends object, Rep extends { seq: number }> {
  private readonly slots: (Slot<Rep> | undefined)[];
  private seq = 0;
  private closed = false;

  constructor(
    private readonly script: string,
    size: number,
    private readonly workerData?: unknown,
  ) {
    this.slots = new Array(Math.max(1, size)).fill(undefined);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Posts `{...msg, seq}` to the least busy worker; rejects when the worker fails or the pool closes. */
  run(msg: Req, transfer: readonly ArrayBuffer[] = []): Promise<Rep> {
    if (this.closed) return Promise.reject(new Error('worker pool closed'));
    const seq = this.seq++;
    // Least busy: a slow job on one worker does not queue the others behind it.
    let best = 0;
    for (let i = 1; i < this.slots.length; i++) if ((this.slots[i]?.pending.size ?? 0) < (this.slots[best]?.pending.size ?? 0)) best = i;
    const slot = (this.slots[best] ??= this.spawn(best));
    return new Promise<Rep>((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(seq, { resolve, reject });
      slot.worker.postMessage({ ...msg, seq }, transfer as ArrayBuffer[]);
    });
  }

  private spawn(i: number): Slot<Rep> {
    const worker = new Worker(this.script, { workerData: this.workerData });
    const slot: Slot<Rep> = { worker, pending: new Map() };
    worker.unref();
    worker.on('message', (r: Rep) => {
      const p = slot.pending.get(r.seq);
      slot.pending.delete(r.seq);
      if (slot.pending.size === 0) worker.unref();
      p?.resolve(r);
    });
    const fail = (why: string): void => {
      if (this.slots[i] === slot) this.slots[i] = undefined; // respawned on next use
      for (const p of slot.pending.values()) p.reject(new Error(why));
      slot.pending.clear();
    };
    worker.on('error', (e) => fail(`worker failed: ${e.message}`));
    worker.on('exit', (code) => fail(this.closed ? 'worker pool closed' : `worker exited (${code})`));
    return slot;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s?.worker.terminate()));
  }
}
