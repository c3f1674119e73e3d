// Store selection by URL scheme (never by probing the server: flist-format.md §10.3).
import { DirStore } from './dir';
import { chunks, limiter } from './retry';
import { type BlockStore, StoreError } from './types';

export { type BlockStore, StoreError } from './types';

export interface OpenStoreOptions {
  /** Bearer token for http(s) writes; AUTH token for zdb (hub RESP gateways). */
  token?: string;
  /** Parallel requests/file operations per store. */
  concurrency?: number;
  /** Per-request (http) or per-command (redis/zdb) timeout. */
  timeoutMs?: number;
}

const DEFAULT_PORTS: Record<string, number> = { redis: 6379, ardb: 16379, zdb: 9900 };

export const SUPPORTED_SCHEMES = ['dir', 'redis', 'ardb', 'zdb', 'http', 'https', 'redis+unix', 'zdb+unix'] as const;

/** The URL with passwords (userinfo and password/token query values) replaced by "***". */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//***@');
  }
  // In zdb://secret@host the lone "user name" is the password, so hide it too.
  if (u.password) u.password = '***';
  else if (u.username) u.username = '***';
  for (const key of ['password', 'token']) if (u.searchParams.has(key)) u.searchParams.set(key, '***');
  return u.toString();
}

function fail(url: string, why: string): never {
  throw new StoreError(`invalid store URL ${redactUrl(url)}: ${why}`, 'invalid');
}

/** Opens a store; connections are made lazily, on first use. */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<BlockStore> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    fail(url, `not a URL (expected one of ${SUPPORTED_SCHEMES.map((s) => `${s}://`).join(', ')})`);
  }
  const scheme = u.protocol.slice(0, -1).toLowerCase();
  const safe = redactUrl(url);
  const dec = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      fail(url, 'bad percent-encoding');
    }
  };
  const concurrency = opts.concurrency;
  if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency > 0)) {
    fail(url, `concurrency must be a positive integer, got ${concurrency}`);
  }

  switch (scheme) {
    case 'dir': {
      if (u.host) fail(url, 'expected dir:///absolute/path (three slashes)');
      const root = dec(u.pathname);
      if (!root.startsWith('/') || root === '/') fail(url, 'expected dir:///absolute/path');
      return new DirStore(root.replace(/\/+$/, ''), safe, concurrency);
    }
    case 'http':
    case 'https': {
      if (u.username || u.password) fail(url, 'credentials are not allowed in http store URLs; pass a token');
      if (u.search || u.hash) fail(url, 'query and fragment are not allowed');
      const { HttpStore } = await import('./http');
      return new HttpStore(u.toString(), safe, { token: opts.token, concurrency, timeoutMs: opts.timeoutMs });
    }
    case 'redis':
    case 'ardb':
    case 'zdb': {
      if (!u.hostname) fail(url, `expected ${scheme}://[password@]host[:port]`);
      const port = u.port ? Number(u.port) : DEFAULT_PORTS[scheme];
      const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
      // "[password@]" (spec form) puts the password in the user name; ":password@" and
      // "user:password@" (Redis ACL) are accepted too.
      const username = u.password ? dec(u.username) || undefined : undefined;
      const password = u.password ? dec(u.password) : u.username ? dec(u.username) : undefined;
      const path = dec(u.pathname).replace(/^\/+|\/+$/g, '');
      if (path.includes('/')) fail(url, 'the namespace must be a single path segment');
      // Loaded on demand: ioredis costs tens of milliseconds at every CLI start otherwise.
      const { ZdbStore } = await import('./zdb');
      const { RedisStore } = await import('./redis');
      if (scheme === 'zdb') {
        if (username) fail(url, 'zdb URLs take only a password: zdb://password@host:port/namespace');
        return new ZdbStore({ host, port }, safe, {
          namespace: path || undefined,
          password,
          token: opts.token,
          timeoutMs: opts.timeoutMs,
        });
      }
      if (scheme === 'ardb' && path) fail(url, 'ardb stores have no namespace');
      return new RedisStore({ kind: scheme, host, port, username, password }, safe, scheme === 'ardb' ? null : path || 'default', opts.timeoutMs);
    }
    case 'redis+unix':
    case 'zdb+unix': {
      // redis+unix:///run/redis.sock?ns=name&password=secret
      if (u.host) fail(url, `expected ${scheme}:///absolute/socket/path`);
      const socket = dec(u.pathname);
      if (!socket.startsWith('/')) fail(url, 'the socket path must be absolute');
      const ns = u.searchParams.get('ns') || undefined;
      const password = u.searchParams.get('password') || undefined;
      const { ZdbStore } = await import('./zdb');
      const { RedisStore } = await import('./redis');
      if (scheme === 'zdb+unix') {
        return new ZdbStore({ socket }, safe, { namespace: ns, password, token: opts.token, timeoutMs: opts.timeoutMs });
      }
      return new RedisStore({ kind: 'redis', socket, password }, safe, ns ?? 'default', opts.timeoutMs);
    }
    default:
      fail(url, `unknown scheme "${scheme}:" (supported: ${SUPPORTED_SCHEMES.join(', ')})`);
  }
}

export interface Block {
  id: Buffer;
  data: Buffer;
}

/**
 * Writes only the blocks the store does not have yet (dedup): exists() in batches, then
 * put() the missing ones with bounded concurrency. Returns how many blocks and bytes were written.
 */
export async function putMissing(
  store: BlockStore,
  blocks: Block[],
  opts: { concurrency?: number } = {},
): Promise<{ count: number; bytes: number }> {
  if (blocks.length === 0) return { count: 0, bytes: 0 };
  if (!store.writable) throw new StoreError(`store ${store.url} is read-only`);
  // The same chunk can occur several times in one batch; write it once.
  const unique = new Map<string, Block>();
  for (const b of blocks) unique.set(b.id.toString('hex'), b);
  const list = [...unique.values()];
  const limit = limiter(opts.concurrency ?? 8);
  let written = 0;
  let bytes = 0;
  for (const batch of chunks(list, 1000)) {
    const have = await store.exists(batch.map((b) => b.id));
    await Promise.all(
      batch.map((b, i) =>
        have[i]
          ? undefined
          : limit(async () => {
              await store.put(b.id, b.data);
              written++;
              bytes += b.data.length;
            }),
      ),
    );
  }
  return { count: written, bytes };
}
