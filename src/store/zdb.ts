// zdb:// — 0-db in user-key mode: SELECT <namespace> [password], then GET/SET/EXISTS <raw id>.
import type Redis from 'ioredis';
import { type BlockStore } from './types';
import { hexId } from './retry';
import { pipelined, RespConn, type RespTarget } from './redis';

export interface ZdbOptions {
  namespace?: string;
  /** Namespace password, sent with SELECT. */
  password?: string;
  /** Sent as AUTH <token> before SELECT (hub RESP gateways). */
  token?: string;
  timeoutMs?: number;
}

export class ZdbStore implements BlockStore {
  readonly writable = true;
  readonly namespace: string;
  private readonly conn: RespConn;

  constructor(target: Omit<RespTarget, 'kind' | 'password' | 'username'>, readonly url: string, opts: ZdbOptions = {}) {
    const ns = (this.namespace = opts.namespace || 'default');
    const { password, token } = opts;
    this.conn = new RespConn(
      { ...target, kind: 'zdb' },
      {
        timeoutMs: opts.timeoutMs,
        // 0-db has no Redis-style ready check, and SELECT must be redone on every connection.
        readyCheck: false,
        init: async (c: Redis) => {
          if (token) await c.call('AUTH', token);
          let reply: unknown;
          try {
            reply = await c.call('SELECT', ...(password ? [ns, password] : [ns]));
          } catch (err) {
            throw new Error(`SELECT ${ns} failed: ${(err as Error).message}`);
          }
          if (reply !== 'OK') throw new Error(`SELECT ${ns}: unexpected reply ${JSON.stringify(reply)}`);
        },
      },
    );
  }

  async get(id: Buffer): Promise<Buffer | null> {
    hexId(id);
    return this.conn.run('GET', (c) => c.callBuffer('GET', id) as Promise<Buffer | null>);
  }

  async put(id: Buffer, data: Buffer): Promise<void> {
    hexId(id);
    // The reply is the key, or nil when the value was already there: both mean stored.
    await this.conn.run('SET', (c) => c.callBuffer('SET', id, data));
  }

  async exists(ids: Buffer[]): Promise<boolean[]> {
    ids.forEach(hexId);
    return pipelined(this.conn, 'EXISTS', ids, (p, id) => p.call('EXISTS', id), (r) => Number(r) > 0);
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}
