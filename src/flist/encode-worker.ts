// Worker thread: encodes chunks off the main thread (hashing, snappy and XXTEA are CPU-bound),
// and with a dir:// store writes them too.
import { parentPort, workerData } from 'node:worker_threads';
import { DirStore } from '../store/dir';
import { encodeBlock } from './codec';
import { hashReady } from './hash';

const ready = hashReady();
const dirRoot = (workerData as { dirRoot?: string } | null)?.dirRoot;
const store = dirRoot ? new DirStore(dirRoot) : undefined;

parentPort!.on('message', async (msg: { seq: number; buf: ArrayBuffer; len: number }) => {
  await ready;
  try {
    const b = encodeBlock(new Uint8Array(msg.buf, 0, msg.len));
    // The chunk buffer goes back too, so the main thread can reuse it (less GC on ingest).
    if (store) {
      const written = store.putSync(b.id, b.cipher);
      parentPort!.postMessage({ seq: msg.seq, id: b.id, key: b.key, size: b.cipher.length, written, plain: msg.buf }, [msg.buf]);
      return;
    }
    const cipher = b.cipher.buffer.slice(b.cipher.byteOffset, b.cipher.byteOffset + b.cipher.length);
    parentPort!.postMessage({ seq: msg.seq, id: b.id, key: b.key, cipher, size: b.cipher.length, plain: msg.buf }, [cipher as ArrayBuffer, msg.buf]);
  } catch (e) {
    parentPort!.postMessage({ seq: msg.seq, error: (e as Error).message });
  }
});
