// redis:// (one hash per namespace) and ardb:// (plain GET/SET) stores, plus the RESP
// connection handling shared with zdb.ts.
import Redis from 'ioredis';
import { type BlockStore, StoreError } from './types';
import { chunks, errorText, hexId, sleep } from './retry';

export interface RespTarget {
  host?: string;
  port?: number;
  /** Unix socket path (then host/port are unused). */
  socket?: string;
  username?: string;
  password?: string;
  /** Protocol name used in messages: "redis", "ardb", "zdb". */
  kind: string;
}

export interface RespOptions {
  timeoutMs?: number;
  /** Real Redis/ardb answer INFO for the ready check; 0-db stand-ins need not. */
  readyCheck?: boolean;
  /** Runs on every fresh connection before it is used (AUTH, SELECT). */
  init?: (client: Redis) => Promise<void>;
}

const PIPELINE_BATCH = 1000;
// Back-off between connection attempts; keeps a dead server failing in well under a second.
const RECONNECT_DELAYS = [100, 400];

/** "redis://host:port" / "zdb+unix:///path" — names the server without credentials. */
export function endpointOf(t: RespTarget): string {
  return t.socket ? `${t.kind}+unix://${t.socket}` : `${t.kind}://${t.host}:${t.port}`;
}

class ConnectError extends StoreError {
  constructor(
    message: string,
    /** Only network failures are worth another attempt; auth/protocol errors are not. */
    readonly retryable = false,
  ) {
    super(message);
  }
}

/**
 * One lazily opened ioredis connection without ioredis's own reconnect loop: when it
 * drops, the next command opens a new one (a few bounded attempts), so commands against a
 * dead server fail quickly with a clear message instead of queueing forever.
 */
export class RespConn {
  readonly endpoint: string;
  private client: Redis | undefined;
  private opening: Promise<Redis> | undefined;

  constructor(
    private readonly target: RespTarget,
    private readonly opts: RespOptions = {},
  ) {
    this.endpoint = endpointOf(target);
  }

  /** Runs fn on a ready connection; connection-level failures are retried on a new one. */
  async run<T>(what: string, fn: (c: Redis) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let client: Redis;
      try {
        client = await this.connect();
      } catch (err) {
        if (!(err instanceof ConnectError && err.retryable) || attempt >= RECONNECT_DELAYS.length) throw err;
        await sleep(RECONNECT_DELAYS[attempt]);
        continue;
      }
      try {
        return await fn(client);
      } catch (err) {
        const dropped = client.status === 'end' || client.status === 'close';
        if (dropped && attempt < RECONNECT_DELAYS.length) {
          await sleep(RECONNECT_DELAYS[attempt]);
          continue;
        }
        throw new StoreError(`${this.target.kind} store ${this.endpoint}: ${what} failed: ${errorText(err)}`);
      }
    }
  }

  private connect(): Promise<Redis> {
    const c = this.client;
    if (c && c.status === 'ready') return Promise.resolve(c);
    this.opening ??= this.open().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async open(): Promise<Redis> {
    this.client?.disconnect();
    this.client = undefined;
    const t = this.target;
    const timeoutMs = this.opts.timeoutMs ?? 30_000;
    const client = new Redis({
      ...(t.socket ? { path: t.socket } : { host: t.host, port: t.port }),
      username: t.username,
      password: t.password,
      lazyConnect: true,
      connectTimeout: Math.min(timeoutMs, 5_000),
      commandTimeout: timeoutMs,
      retryStrategy: () => null,
      // A hung server never answers our FIN; don't wait ioredis's default 2 s for it.
      disconnectTimeout: 200,
      maxRetriesPerRequest: 0,
      enableReadyCheck: this.opts.readyCheck ?? true,
      disableClientInfo: true,
    });
    let lastError: Error | undefined;
    // ioredis reports the cause (ECONNREFUSED, WRONGPASS) as an event, then rejects connect()
    // with a generic "Connection is closed."; keep the cause for the message.
    client.on('error', (err: Error) => {
      lastError ??= err;
    });
    try {
      await client.connect();
      await this.opts.init?.(client);
    } catch (err) {
      client.disconnect();
      throw this.connectError(lastError ?? (err as Error));
    }
    client.on('end', () => {
      if (this.client === client) this.client = undefined;
    });
    this.client = client;
    return client;
  }

  private connectError(err: Error): StoreError {
    const text = errorText(err);
    if (/NOAUTH|requires a password|Authentication required/i.test(text)) {
      return new ConnectError(`${this.target.kind} store ${this.endpoint} requires authentication (wrong or missing password): ${text}`);
    }
    if (/WRONGPASS|invalid password|password|denied|auth/i.test(text)) {
      return new ConnectError(`authentication failed for ${this.target.kind} store ${this.endpoint}: ${text}`);
    }
    if ((err as { code?: unknown }).code || /ETIMEDOUT|ECONN|ENOENT|EHOSTUNREACH|Connection is closed/.test(text)) {
      return new ConnectError(`cannot reach ${this.target.kind} store ${this.endpoint}: ${text}`, true);
    }
    return new ConnectError(`${this.target.kind} store ${this.endpoint}: cannot open connection: ${text}`);
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (!c) return;
    try {
      if (c.status === 'ready') await c.quit();
    } catch {
      // closing anyway
    } finally {
      c.disconnect();
    }
  }
}

/** Sends one command per id in pipelines of PIPELINE_BATCH and collects integer/any replies. */
export async function pipelined<T>(
  conn: RespConn,
  what: string,
  ids: Buffer[],
  add: (p: ReturnType<Redis['pipeline']>, id: Buffer) => void,
  map: (reply: unknown) => T,
): Promise<T[]> {
  const out: T[] = [];
  for (const batch of chunks(ids, PIPELINE_BATCH)) {
    const replies = await conn.run(what, async (c) => {
      const p = c.pipeline();
      for (const id of batch) add(p, id);
      const res = (await p.exec()) ?? [];
      return res.map(([err, reply]) => {
        if (err) throw err;
        return reply;
      });
    });
    for (const r of replies) out.push(map(r));
  }
  return out;
}

/** redis:// — HSET/HGET/HEXISTS <namespace> <raw id>. ardb:// — GET/SET/EXISTS <raw id>. */
export class RedisStore implements BlockStore {
  readonly writable = true;
  private readonly conn: RespConn;

  constructor(
    target: RespTarget,
    readonly url: string,
    /** Hash name; null for ardb (plain keys). */
    private readonly namespace: string | null,
    timeoutMs?: number,
  ) {
    this.conn = new RespConn(target, { timeoutMs });
  }

  async get(id: Buffer): Promise<Buffer | null> {
    hexId(id);
    const ns = this.namespace;
    return this.conn.run(ns === null ? 'GET' : 'HGET', (c) => (ns === null ? c.getBuffer(id) : c.hgetBuffer(ns, id)));
  }

  async put(id: Buffer, data: Buffer): Promise<void> {
    hexId(id);
    const ns = this.namespace;
    // Content-addressed: overwriting an id with the same bytes is harmless, so no check first.
    await this.conn.run(ns === null ? 'SET' : 'HSET', async (c) => {
      if (ns === null) await c.set(id, data);
      else await c.hset(ns, id, data);
    });
  }

  async exists(ids: Buffer[]): Promise<boolean[]> {
    ids.forEach(hexId);
    const ns = this.namespace;
    return pipelined(
      this.conn,
      ns === null ? 'EXISTS' : 'HEXISTS',
      ids,
      (p, id) => (ns === null ? p.exists(id) : p.hexists(ns, id)),
      (r) => Number(r) > 0,
    );
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}
