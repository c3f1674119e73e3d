// Worker threads for the block cache's CPU-bound steps (src/lib/worker-pool.ts); with size 0
// (or no built worker script) they run inline. Never rejects: failures come back as `error`.
import { WorkerPool, workerScript } from '../lib/worker-pool';
import { blockTask, blockTaskReady, type BlockJob, type BlockReply } from './block-task';

export class BlockPool {
  private readonly pool?: WorkerPool<BlockJob, BlockReply>;
  private seq = 0;
  private closed = false;

  constructor(size: number, warn: (line: string) => void) {
    const script = size > 0 ? workerScript('fs/block-worker.js') : undefined;
    if (size > 0 && !script) warn('block cache: worker script not built (npm run build); decoding on the main thread');
    if (script) this.pool = new WorkerPool(script, size);
  }

  run(job: BlockJob): Promise<BlockReply> {
    if (this.closed) return Promise.resolve({ seq: -1, error: 'block cache closed' });
    if (!this.pool) return blockTaskReady().then(() => blockTask({ ...job, seq: this.seq++ }));
    // A decode job's cipher is a private copy: move it instead of copying it again.
    const transfer = job.op === 'decode' ? [job.cipher.buffer as ArrayBuffer] : [];
    return this.pool.run(job, transfer).catch((e: Error) => ({ seq: -1, error: `block ${e.message}` }));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.pool?.close();
  }
}
