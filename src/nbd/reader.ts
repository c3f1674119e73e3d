// Exact-length async reads from a socket, with backpressure (the socket pauses while we hold
// more than HIGH_WATER unread bytes) and a clear error when the peer goes away mid-message.
import type { Socket } from 'node:net';
import { G8osError } from '../errors';

const HIGH_WATER = 4 * 1024 * 1024;

export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;

  constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      if (this.buffered > HIGH_WATER) sock.pause();
      this.serve();
    });
    const end = (): void => {
      this.ended ??= new G8osError('invalid', 'client closed the connection', { errno: 'ECONNRESET' });
      this.serve();
    };
    sock.on('end', end);
    sock.on('close', end);
    sock.on('error', end);
  }

  /** Bytes already received and not yet consumed. */
  get available(): number {
    return this.buffered;
  }

  read(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('internal: concurrent reads'));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serve();
    });
  }

  /** Reads and drops n bytes without holding them all (a refused oversized WRITE payload). */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const step = Math.min(n, 1024 * 1024);
      await this.read(step);
      n -= step;
    }
  }

  private serve(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.buffered >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    } else if (this.ended) {
      this.waiter = null;
      w.reject(this.ended);
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    let out: Buffer;
    if (this.chunks[0].length >= n) {
      const c = this.chunks[0];
      out = c.subarray(0, n);
      if (c.length === n) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    if (this.buffered <= HIGH_WATER && this.sock.isPaused()) this.sock.resume();
    return out;
  }
}
