// Small helpers shared by the stores: back-off retries, bounded concurrency, id checks.
import { StoreError } from './types';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs fn; when it throws and retryable(err) says so, waits delays[i] and tries again.
 * At most delays.length + 1 attempts; the last error is rethrown.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  retryable: (err: unknown) => boolean,
  delays: readonly number[] = [100, 400, 1600],
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= delays.length || !retryable(err)) throw err;
      await sleep(delays[attempt]);
    }
  }
}

export type Limit = <T>(fn: () => Promise<T>) => Promise<T>;

/** A tiny p-limit: at most `n` of the wrapped functions run at once, FIFO. */
export function limiter(n: number): Limit {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`concurrency must be a positive integer, got ${n}`);
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    // A woken waiter inherits the finished task's slot, so `active` never overshoots n.
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    else active++;
    try {
      return await fn();
    } finally {
      const wake = waiting.shift();
      if (wake) wake();
      else active--;
    }
  };
}

/** Splits items into consecutive slices of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Hex of a storage id; stores only accept 16-byte (generation-2) ids. */
export function hexId(id: Buffer): string {
  if (!Buffer.isBuffer(id) || id.length !== 16) {
    throw new StoreError(`invalid block id: expected 16 bytes, got ${Buffer.isBuffer(id) ? id.length : typeof id}`, 'invalid');
  }
  return id.toString('hex');
}

/** "ECONNREFUSED" for socket errors, else the message (also unwraps fetch's `cause`). */
export function errorText(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  if (e && typeof e.code === 'string' && /^E[A-Z_]+$/.test(e.code)) return e.code;
  if (e && e.cause) return errorText(e.cause);
  if (e && typeof e.message === 'string') return e.message;
  return String(err);
}
