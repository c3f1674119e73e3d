// Worker thread: encodes chunks off the main thread (hashing, snappy and XXTEA are CPU-bound).
import { parentPort } from 'node:worker_threads';
import { encodeBlock } from './codec';
import { hashReady } from './hash';

const ready = hashReady();
parentPort!.on('message', async (msg: { seq: number; buf: ArrayBuffer; len: number }) => {
  await ready;
  try {
    const b = encodeBlock(new Uint8Array(msg.buf, 0, msg.len));
    const cipher = b.cipher.buffer.slice(b.cipher.byteOffset, b.cipher.byteOffset + b.cipher.length);
    parentPort!.postMessage({ seq: msg.seq, id: b.id, key: b.key, cipher }, [cipher as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ seq: msg.seq, error: (e as Error).message });
  }
});
