// Worker thread for the block cache (see block-task.ts).
import { parentPort } from 'node:worker_threads';
import { blockTask, blockTaskReady, type BlockRequest } from './block-task';

const ready = blockTaskReady();

parentPort!.on('message', async (msg: BlockRequest) => {
  await ready;
  const reply = blockTask(msg);
  if (!reply.plain) return parentPort!.postMessage(reply);
  try {
    parentPort!.postMessage(reply, [reply.plain]);
  } catch {
    // not transferable (an external buffer): copy
    parentPort!.postMessage({ ...reply, plain: reply.plain.slice(0) });
  }
});
