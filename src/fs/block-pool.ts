// Worker threads for the block cache's CPU-bound steps; with size 0 they run inline.
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { blockTask, blockTaskReady, type BlockJob, type BlockReply } from './block-task';

/** Compiled worker script; under vitest (TypeScript sources) the built copy in dist/. */
function workerScript(): string | undefined {
  const sibling = path.join(__dirname, 'block-worker.js');
  if (fs.existsSync(sibling)) return sibling;
  const built = path.resolve(__dirname, '../../dist/src/fs/block-worker.js');
  return fs.existsSync(built) ? built : undefined;
}

interface Slot {
  worker: Worker;
  pending: Map<number, (r: BlockReply) => void>;
}

export class BlockPool {
  private readonly slots: (Slot | undefined)[];
  private readonly script: string | undefined;
  private seq = 0;
  private closed = false;

  constructor(size: number, warn: (line: string) => void) {
    this.script = size > 0 ? workerScript() : undefined;
    if (size > 0 && !this.script) warn('block cache: worker script not built (npm run build); decoding on the main thread');
    this.slots = new Array(this.script ? size : 0).fill(undefined);
  }

  run(job: BlockJob): Promise<BlockReply> {
    if (this.closed) return Promise.resolve({ seq: -1, error: 'block cache closed' });
    const seq = this.seq++;
    if (this.slots.length === 0) return blockTaskReady().then(() => blockTask({ ...job, seq }));
    // Least busy worker: a slow read on one does not queue the others behind it.
    let best = 0;
    for (let i = 1; i < this.slots.length; i++) if ((this.slots[i]?.pending.size ?? 0) < (this.slots[best]?.pending.size ?? 0)) best = i;
    const slot = (this.slots[best] ??= this.spawn(best));
    return new Promise((resolve) => {
      // Referenced while busy: a process waiting only for this answer must not exit.
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(seq, resolve);
      // A decode job's cipher is a private copy: move it instead of copying it again.
      slot.worker.postMessage({ ...job, seq }, job.op === 'decode' ? [job.cipher.buffer as ArrayBuffer] : []);
    });
  }

  private spawn(i: number): Slot {
    const worker = new Worker(this.script!);
    const slot: Slot = { worker, pending: new Map() };
    // An idle pool must not keep a process alive.
    worker.unref();
    worker.on('message', (r: BlockReply) => {
      const done = slot.pending.get(r.seq);
      slot.pending.delete(r.seq);
      if (slot.pending.size === 0) worker.unref();
      done?.(r);
    });
    const fail = (why: string): void => {
      if (this.slots[i] === slot) this.slots[i] = undefined; // respawned on next use
      for (const [seq, done] of slot.pending) done({ seq, error: why });
      slot.pending.clear();
    };
    worker.on('error', (e) => fail(`block worker failed: ${e.message}`));
    worker.on('exit', (code) => fail(`block worker exited (${code})`));
    return slot;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s?.worker.terminate()));
  }
}
