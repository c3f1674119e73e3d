// http(s):// — a hub's block API (see src/hub/blocks.ts); read-only unless a token is given.
import { type BlockStore, StoreError } from './types';
import { chunks, errorText, hexId, limiter, type Limit, withRetry } from './retry';

export interface HttpStoreOptions {
  token?: string;
  concurrency?: number;
  timeoutMs?: number;
  /** Back-off before each retry; its length is the number of retries. */
  retryDelays?: readonly number[];
}

const EXISTS_BATCH = 1000;

/** A 5xx answer: worth retrying, unlike 4xx. */
class ServerError extends StoreError {}

export class HttpStore implements BlockStore {
  readonly writable: boolean;
  private readonly base: string;
  private readonly limit: Limit;

  constructor(base: string, readonly url: string = base, private readonly opts: HttpStoreOptions = {}) {
    this.base = base.replace(/\/+$/, '');
    this.writable = Boolean(opts.token);
    // Bounds open sockets; undici's global dispatcher keeps them alive between requests.
    this.limit = limiter(opts.concurrency ?? 16);
  }

  async get(id: Buffer): Promise<Buffer | null> {
    return this.request('GET', `/api/blocks/${hexId(id)}`, {}, async (res) => {
      if (res.status === 404) return null;
      if (res.status !== 200) throw await statusError('GET', res);
      return Buffer.from(await res.arrayBuffer());
    });
  }

  async put(id: Buffer, data: Buffer): Promise<void> {
    const hex = hexId(id);
    if (!this.opts.token) throw new StoreError(`http store ${this.url} is read-only (no token given)`);
    await this.request(
      'PUT',
      `/api/blocks/${hex}`,
      {
        body: data,
        headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/octet-stream' },
      },
      async (res) => {
        if (res.status !== 200 && res.status !== 201) throw await statusError('PUT', res);
        await res.arrayBuffer();
      },
    );
  }

  async exists(ids: Buffer[]): Promise<boolean[]> {
    const hexes = ids.map(hexId);
    const missing = new Set<string>();
    await Promise.all(
      chunks(hexes, EXISTS_BATCH).map((batch) =>
        this.request(
          'POST',
          '/api/blocks/exists',
          { body: JSON.stringify(batch), headers: { 'content-type': 'application/json' } },
          async (res) => {
            if (res.status !== 200) throw await statusError('POST', res);
            const body: unknown = await res.json().catch(() => undefined);
            if (!Array.isArray(body) || !body.every((x) => typeof x === 'string')) {
              throw new StoreError(`POST ${res.url}: expected a JSON array of missing ids`);
            }
            for (const h of body) missing.add(h);
          },
        ),
      ),
    );
    return hexes.map((h) => !missing.has(h));
  }

  async close(): Promise<void> {}

  /**
   * One request with retries on network errors and 5xx (never on 4xx or timeouts: a hung
   * server would otherwise cost attempts × timeout). `handle` also runs inside the retry, so a
   * body cut off mid-transfer is retried too.
   */
  private request<T>(
    method: string,
    path: string,
    init: { body?: Buffer | string; headers?: Record<string, string> },
    handle: (res: Response) => Promise<T>,
  ): Promise<T> {
    const target = this.base + path;
    const timeoutMs = this.opts.timeoutMs ?? 30_000;
    return withRetry(
      () =>
        this.limit(async () => {
          const res = await fetch(target, {
            method,
            headers: init.headers,
            body: init.body,
            signal: AbortSignal.timeout(timeoutMs),
          });
          if (res.status >= 500) {
            await res.arrayBuffer().catch(() => undefined);
            throw new ServerError(`${method} ${target}: HTTP ${res.status} ${res.statusText}`);
          }
          return handle(res);
        }),
      (err) => err instanceof ServerError || (!(err instanceof StoreError) && !isTimeout(err)),
      this.opts.retryDelays ?? [100, 400, 1600],
    ).catch((err: unknown) => {
      if (err instanceof StoreError) throw err;
      if (isTimeout(err)) throw new StoreError(`${method} ${target}: timed out after ${timeoutMs} ms`);
      throw new StoreError(`cannot reach http store ${this.url}: ${method} ${target}: ${errorText(err)}`);
    });
  }
}

function isTimeout(err: unknown): boolean {
  const name = (err as { name?: string } | undefined)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

async function statusError(method: string, res: Response): Promise<StoreError> {
  let detail = '';
  try {
    const text = await res.text();
    try {
      const msg = (JSON.parse(text) as { message?: unknown }).message;
      detail = typeof msg === 'string' ? msg : text.slice(0, 200);
    } catch {
      detail = text.slice(0, 200);
    }
  } catch {
    // body unreadable; the status says enough
  }
  return new StoreError(`${method} ${res.url}: HTTP ${res.status}${detail ? `: ${detail.trim()}` : ''}`);
}
