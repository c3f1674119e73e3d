// A client of the agent, speaking the same redis list protocol as the original Python client
// (core0-protocol.md §3, §14): push on core:default, wait on the flag, then on result:<id>.
import crypto from 'node:crypto';
import Redis, { type RedisOptions } from 'ioredis';
import { flagKey, INBOX, resultKey, STREAM_FLAG, streamKey, type StreamEntry } from './bus';
import type { Command, Result, Tags } from './types';

export class JobNotFound extends Error {
  constructor(readonly id: string) {
    super(`job ${id} not found (it never reached the agent, or its result expired)`);
    this.name = 'JobNotFound';
  }
}

export class TimeoutError extends Error {
  constructor(readonly id: string, seconds: number) {
    super(`job ${id}: no result within ${seconds} s`);
    this.name = 'TimeoutError';
  }
}

/** A job that ended in another state than SUCCESS, or a built-in answering an error. */
export class ResultError extends Error {
  constructor(readonly result: Result) {
    super(ResultError.text(result));
    this.name = 'ResultError';
  }
  static text(r: Result): string {
    let why = r.data;
    try {
      const v: unknown = JSON.parse(r.data);
      if (typeof v === 'string') why = v;
    } catch {
      // plain text data
    }
    if (!why) why = r.streams?.[1]?.trim().split('\n').pop() ?? '';
    return `${r.command}: ${r.state}${why ? `: ${why}` : ''}`;
  }
}

/** redis://[:password@]host[:port], unix:///path/redis.sock or a plain socket path. */
export function connect(url: string, password?: string): Redis {
  let opts: RedisOptions;
  if (url.startsWith('/') || url.startsWith('unix://')) {
    opts = { path: url.replace(/^unix:\/\//, '') };
  } else {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error(`agent address ${url}: expected redis://host:port or a unix socket path`);
    }
    if (u.protocol !== 'redis:') throw new Error(`agent address ${url}: expected redis://host:port or a unix socket path`);
    opts = { host: u.hostname || '127.0.0.1', port: Number(u.port || 6379), password: decodeURIComponent(u.password) || undefined };
  }
  const pw = password ?? opts.password;
  return new Redis({ ...opts, password: pw || undefined, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, enableOfflineQueue: true });
}

export interface RawOptions {
  id?: string;
  queue?: string | null;
  max_time?: number | null;
  max_restart?: number;
  recurring_period?: number;
  stream?: boolean;
  tags?: Tags;
}

export class Response {
  constructor(private readonly client: Client, readonly id: string) {}

  /** Known to the agent (flag present). */
  async exists(): Promise<boolean> {
    return (await this.client.redis.exists(flagKey(this.id))) === 1;
  }

  /** Still running: the flag exists without a TTL. */
  async running(): Promise<boolean> {
    return (await this.client.redis.ttl(flagKey(this.id))) === -1;
  }

  /** Waits for the result (in 10 s slices, as the original client does). */
  async get(timeoutSeconds = 10): Promise<Result> {
    const until = Date.now() + timeoutSeconds * 1000;
    const r = this.client.blocking();
    for (;;) {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) throw new TimeoutError(this.id, timeoutSeconds);
      const flag = await r.exists(flagKey(this.id));
      if (!flag) {
        // the agent may not have picked the command yet: give it the first slice
        const picked = await r.brpoplpush(flagKey(this.id), flagKey(this.id), Math.min(left, 10));
        if (picked === null) throw new JobNotFound(this.id);
      }
      const got = await r.brpoplpush(resultKey(this.id), resultKey(this.id), Math.min(left, 10));
      if (got !== null) return JSON.parse(got) as Result;
    }
  }

  /** Calls back with every message of a job started with `stream: true`, until it ends. */
  async stream(cb: (level: number, text: string, flags: number) => void, idleSeconds = 10): Promise<void> {
    const r = this.client.blocking();
    const key = streamKey(this.id);
    for (;;) {
      const got = await r.blpop(key, idleSeconds);
      if (got === null) {
        if (!(await this.running())) return;
        continue;
      }
      // drain what else is there in one round trip: the agent keeps only the last 1000 entries,
      // so a reader taking one entry per round trip falls behind a fast writer and loses lines
      const more = (await r.lpop(key, 1000)) ?? [];
      for (const raw of [got[1], ...more]) {
        const e = JSON.parse(raw) as StreamEntry;
        const meta = e.message.meta;
        const flags = meta & 0xffff;
        cb(meta >> 16, e.message.message, flags);
        if (flags & (STREAM_FLAG.EXIT_SUCCESS | STREAM_FLAG.EXIT_ERROR)) return;
      }
    }
  }
}

export class Client {
  readonly redis: Redis;
  private blockingConn?: Redis;
  private lastError?: Error;

  constructor(readonly url: string, readonly password?: string) {
    this.redis = connect(url, password);
    this.redis.on('error', (e: Error) => (this.lastError = e));
  }

  /** Connects and checks the agent is there (and the password is right). */
  async open(): Promise<this> {
    try {
      await this.redis.connect();
      await this.redis.ping();
    } catch (e) {
      this.close();
      const msg = [(e as Error).message, this.lastError?.message].join(' ');
      if (/WRONGPASS|invalid password|NOAUTH/i.test(msg)) throw new Error(`agent ${this.url}: wrong or missing password (--password / $G8OS_AGENT_PASSWORD)`);
      throw new Error(`agent ${this.url}: cannot connect (${(this.lastError ?? (e as Error)).message}); is \`g8os agent\` (or \`npm start\`) running?`);
    }
    return this;
  }

  /** Blocking reads get their own connection, so several responses can wait at once. */
  blocking(): Redis {
    if (!this.blockingConn) {
      this.blockingConn = this.redis.duplicate();
      this.blockingConn.on('error', () => undefined);
    }
    return this.blockingConn;
  }

  async raw(command: string, args: unknown, o: RawOptions = {}): Promise<Response> {
    const id = o.id ?? crypto.randomUUID();
    const cmd: Command = { id, command, arguments: args, queue: o.queue ?? null, max_time: o.max_time ?? null };
    if (o.max_restart !== undefined) cmd.max_restart = o.max_restart;
    if (o.recurring_period !== undefined) cmd.recurring_period = o.recurring_period;
    if (o.stream) cmd.stream = true;
    if (o.tags !== undefined) cmd.tags = o.tags;
    await this.redis.rpush(INBOX, JSON.stringify(cmd));
    return new Response(this, id);
  }

  /** Runs a built-in and returns its decoded value; anything but SUCCESS throws ResultError. */
  async json<T = unknown>(command: string, args: unknown, timeoutSeconds = 60): Promise<T> {
    const r = await (await this.raw(command, args)).get(timeoutSeconds);
    if (r.state !== 'SUCCESS') throw new ResultError(r);
    return (r.data ? JSON.parse(r.data) : null) as T;
  }

  ping(): Promise<string> {
    return this.json<string>('core.ping', {});
  }

  system(argv: string[], o: { dir?: string; stdin?: string; env?: Record<string, string> } & RawOptions = {}): Promise<Response> {
    const [name, ...args] = argv;
    return this.raw('core.system', { name, args, dir: o.dir ?? '', stdin: o.stdin ?? '', env: o.env ?? null }, o);
  }

  bash(script: string, stdin = ''): Promise<Response> {
    return this.raw('bash', { script, stdin });
  }

  /** corex.dispatch: runs a command inside a container; returns the inner job's response. */
  async dispatch(container: number, command: string, args: unknown, o: RawOptions = {}): Promise<Response> {
    const inner: Record<string, unknown> = { command, arguments: args, queue: o.queue ?? null, max_time: o.max_time ?? null };
    if (o.id) inner.id = o.id;
    if (o.stream) inner.stream = true;
    if (o.tags !== undefined) inner.tags = o.tags;
    const id = await this.json<string>('corex.dispatch', { container, command: inner });
    return new Response(this, id);
  }

  close(): void {
    this.redis.disconnect();
    this.blockingConn?.disconnect();
  }
}
