// A small QMP client (the qemu machine protocol, JSON lines on a unix socket): greeting,
// qmp_capabilities, commands answered by id, asynchronous events (SHUTDOWN, STOP, RESUME ...).
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { G8osError } from '../errors';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

export class Qmp extends EventEmitter {
  private sock?: net.Socket;
  private buf = '';
  private seq = 0;
  private readonly pending = new Map<string, Pending>();
  private greeting?: (v: unknown) => void;
  closed = false;

  /** Connects, reads the greeting and leaves negotiation mode. */
  static async connect(socket: string, timeoutMs = 10_000): Promise<Qmp> {
    const q = new Qmp();
    await q.open(socket, timeoutMs);
    return q;
  }

  private open(socket: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new G8osError('unavailable', `QMP socket ${socket}: no greeting within ${timeoutMs} ms`)), timeoutMs);
      const fail = (e: Error): void => {
        clearTimeout(timer);
        this.sock?.destroy();
        reject(e);
      };
      const s = net.createConnection(socket);
      this.sock = s;
      s.setEncoding('utf8');
      s.once('error', (e) => fail(new G8osError('unavailable', `QMP socket ${socket}: ${e.message}`, { cause: e })));
      s.on('data', (d: string) => this.data(d));
      s.on('close', () => this.gone());
      this.greeting = () => {
        this.greeting = undefined;
        this.execute('qmp_capabilities').then(() => {
          clearTimeout(timer);
          s.removeAllListeners('error');
          s.on('error', () => undefined);
          resolve();
        }, fail);
      };
    });
  }

  private data(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (m.QMP) this.greeting?.(m);
      else if (typeof m.event === 'string') this.emit('event', m as unknown as QmpEvent);
      else if (typeof m.id === 'string') {
        const p = this.pending.get(m.id);
        if (!p) continue;
        this.pending.delete(m.id);
        if (m.error) {
          const err = m.error as { class?: string; desc?: string };
          p.reject(new G8osError('invalid', `qemu: ${err.desc ?? err.class ?? 'error'}`));
        } else p.resolve(m.return);
      }
    }
  }

  private gone(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new G8osError('unavailable', 'QMP connection closed (qemu gone)'));
    this.pending.clear();
    this.emit('close');
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closed || !this.sock) return Promise.reject(new G8osError('unavailable', 'QMP connection closed (qemu gone)'));
    const id = `g8-${++this.seq}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new G8osError('unavailable', `QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v as T)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.sock!.write(`${JSON.stringify({ execute: command, arguments: args, id })}\n`);
    });
  }

  close(): void {
    this.sock?.destroy();
    this.gone();
  }
}
