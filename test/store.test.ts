import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import express from 'express';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blake2b128, hashReady } from '../src/flist/hash';
import { blockRouter } from '../src/hub/blocks';
import { DirStore } from '../src/store/dir';
import { openStore, putMissing, redactUrl } from '../src/store/index';
import type { BlockStore } from '../src/store/types';
import { freePort, startRedis, type RedisServer } from './helpers/redis';
import { kindOf } from '../src/errors';

function block(size = 64 + Math.floor(Math.random() * 4096)): { id: Buffer; data: Buffer } {
  const data = randomBytes(size);
  return { id: blake2b128(data), data };
}

/** Every file under dir, relative. */
function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p).map((x) => path.join(e.name, x)));
    else out.push(e.name);
  }
  return out;
}

async function elapsed<T>(p: Promise<T>): Promise<{ ms: number; err: Error }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    return { ms: Date.now() - t0, err: err as Error };
  }
  throw new Error('expected a rejection');
}

// --- 0-db stand-in -----------------------------------------------------------------------
// 0-db cannot be installed here (no Debian package), so this is a minimal RESP server with
// 0-db's user-key semantics: SELECT <ns> [password], GET, SET (replies the key, nil when the
// value already exists), EXISTS, binary keys. Enough to exercise the zdb client.

interface Namespace {
  password?: string;
  data: Map<string, Buffer>;
}

function parseCommand(buf: Buffer, start: number): { args: Buffer[]; next: number } | null {
  const line = (at: number): { text: string; next: number } | null => {
    const end = buf.indexOf('\r\n', at);
    return end < 0 ? null : { text: buf.toString('latin1', at, end), next: end + 2 };
  };
  const head = line(start);
  if (!head) return null;
  if (head.text[0] !== '*') throw new Error('stand-in only speaks RESP arrays');
  const n = Number(head.text.slice(1));
  const args: Buffer[] = [];
  let at = head.next;
  for (let i = 0; i < n; i++) {
    const l = line(at);
    if (!l) return null;
    const len = Number(l.text.slice(1));
    if (buf.length < l.next + len + 2) return null;
    args.push(buf.subarray(l.next, l.next + len));
    at = l.next + len + 2;
  }
  return { args, next: at };
}

const bulk = (b: Buffer | null): Buffer =>
  b === null ? Buffer.from('$-1\r\n') : Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')]);

async function startZdbStandIn(namespaces: Record<string, Namespace>): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    let pending = Buffer.alloc(0);
    let ns = namespaces.default;
    sock.on('data', (d) => {
      pending = Buffer.concat([pending, d]);
      let at = 0;
      for (;;) {
        const cmd = parseCommand(pending, at);
        if (!cmd) break;
        at = cmd.next;
        const [name, ...args] = cmd.args;
        const key = args[0]?.toString('latin1');
        switch (name.toString().toUpperCase()) {
          case 'PING':
            sock.write('+PONG\r\n');
            break;
          case 'SELECT': {
            const target = namespaces[args[0].toString()];
            if (!target) sock.write('-Namespace not found\r\n');
            else if (target.password && target.password !== args[1]?.toString()) sock.write('-Access denied\r\n');
            else {
              ns = target;
              sock.write('+OK\r\n');
            }
            break;
          }
          case 'GET':
            sock.write(bulk(ns.data.get(key!) ?? null));
            break;
          case 'SET':
            if (ns.data.has(key!)) sock.write(bulk(null));
            else {
              ns.data.set(key!, Buffer.from(args[1]));
              sock.write(bulk(args[0]));
            }
            break;
          case 'EXISTS':
            sock.write(`:${ns.data.has(key!) ? 1 : 0}\r\n`);
            break;
          default:
            sock.write(`-unknown command ${name.toString()}\r\n`);
        }
      }
      pending = pending.subarray(at);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// --- fixtures ----------------------------------------------------------------------------

const TOKEN = 'secret-token';
let tmp: string;
let redis: RedisServer;
let redisPw: RedisServer;
let zdb: { port: number; close(): Promise<void> };
let zdbData: Record<string, Namespace>;
let hubDir: string;
let hub: Server;
let hubUrl: string;

beforeAll(async () => {
  await hashReady();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'g8os-store-'));
  [redis, redisPw] = await Promise.all([startRedis(), startRedis({ password: 'p@ss word' })]);
  zdbData = { default: { data: new Map() }, locked: { password: 'nspw', data: new Map() } };
  zdb = await startZdbStandIn(zdbData);
  hubDir = path.join(tmp, 'hub');
  const app = express();
  app.use(
    blockRouter(new DirStore(hubDir), {
      authorize: (req) => req.headers.authorization === `Bearer ${TOKEN}`,
    }),
  );
  hub = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  hubUrl = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
});

afterAll(async () => {
  hub?.closeAllConnections();
  await new Promise((r) => hub?.close(r));
  await Promise.all([redis?.stop(), redisPw?.stop(), zdb?.close()]);
  rmSync(tmp, { recursive: true, force: true });
});

// --- the same behaviour from every store --------------------------------------------------

const stores: [string, () => string, { token?: string }?][] = [
  ['dir', () => `dir://${tmp}/blocks`],
  ['redis', () => `${redis.url}/ns1`],
  ['redis with password', () => `${redisPw.url}`],
  ['redis+unix', () => `redis+unix://${redis.socket}?ns=viasocket`],
  ['ardb', () => redis.url.replace('redis:', 'ardb:')],
  ['zdb', () => `zdb://127.0.0.1:${zdb.port}`],
  ['zdb with namespace password', () => `zdb://nspw@127.0.0.1:${zdb.port}/locked`],
  ['http', () => hubUrl, { token: TOKEN }],
];

describe.each(stores)('%s store', (_name, url, opts) => {
  let store: BlockStore;
  beforeAll(async () => {
    store = await openStore(url(), opts);
  });
  afterAll(() => store?.close());

  it('round-trips put/get/exists', async () => {
    const b = block();
    expect(await store.get(b.id)).toBeNull();
    await store.put(b.id, b.data);
    expect((await store.get(b.id))?.equals(b.data)).toBe(true);
    expect(await store.exists([b.id])).toEqual([true]);
    await store.put(b.id, b.data); // again: a no-op
    expect((await store.get(b.id))?.equals(b.data)).toBe(true);
  });

  it('keeps a 512 KiB block intact', async () => {
    const b = block(512 * 1024 + 20);
    await store.put(b.id, b.data);
    expect((await store.get(b.id))?.equals(b.data)).toBe(true);
  });

  it('answers exists for a mixed batch larger than one wire batch', async () => {
    const present = Array.from({ length: 10 }, () => block(100));
    for (const b of present) await store.put(b.id, b.data);
    const ids: Buffer[] = [];
    const want: boolean[] = [];
    for (let i = 0; i < 2500; i++) {
      if (i % 250 === 7) {
        ids.push(present[want.filter(Boolean).length].id);
        want.push(true);
      } else {
        ids.push(randomBytes(16));
        want.push(false);
      }
    }
    expect(await store.exists(ids)).toEqual(want);
    expect(await store.exists([])).toEqual([]);
  });

  it('dedups through putMissing', async () => {
    const blocks = Array.from({ length: 25 }, () => block(200));
    const withDup = [...blocks, blocks[3]];
    expect((await putMissing(store, withDup)).count).toBe(25);
    expect(await putMissing(store, withDup)).toEqual({ count: 0, bytes: 0 });
    const extra = block(200);
    expect(await putMissing(store, [...blocks, extra], { concurrency: 2 })).toEqual({ count: 1, bytes: extra.data.length });
    expect(await store.exists([...blocks, extra].map((b) => b.id))).toEqual(new Array(26).fill(true));
  });

  it('rejects ids that are not 16 bytes', async () => {
    await expect(store.get(Buffer.alloc(5))).rejects.toThrow(/16 bytes/);
    await expect(store.exists([randomBytes(16), Buffer.alloc(17)])).rejects.toThrow(/16 bytes/);
  });
});

// --- scheme handling ------------------------------------------------------------------------

describe('openStore', () => {
  it('names an unknown scheme', async () => {
    await expect(openStore('ftp://user:hunter2@example.org/x')).rejects.toThrow(
      /^invalid store URL ftp:\/\/user:\*\*\*@example.org\/x: unknown scheme "ftp:"/,
    );
  });

  it('rejects malformed URLs without leaking passwords', async () => {
    const err = (await elapsed(openStore('redis//:hunter2@host'))).err;
    expect(err.name).toBe('StoreError');
    expect(err.message).toMatch(/invalid store URL/);
    expect(err.message).not.toContain('hunter2');
    await expect(openStore('dir://relative/path')).rejects.toThrow(/three slashes/);
    await expect(openStore('http://u:hunter2@127.0.0.1:1/')).rejects.toThrow(/credentials are not allowed/);
    await expect(openStore('ardb://127.0.0.1:1/ns')).rejects.toThrow(/no namespace/);
  });

  it('redacts passwords', () => {
    expect(redactUrl('zdb://secret@127.0.0.1:9900/ns')).toBe('zdb://***@127.0.0.1:9900/ns');
    expect(redactUrl('redis://:secret@127.0.0.1:6379')).toBe('redis://:***@127.0.0.1:6379');
    expect(redactUrl('redis+unix:///run/r.sock?ns=a&password=secret')).toBe('redis+unix:///run/r.sock?ns=a&password=***');
    expect(redactUrl('not a url //me:secret@x')).not.toContain('secret');
  });

  it('store.url never contains the password', async () => {
    const s = await openStore(`zdb://nspw@127.0.0.1:${zdb.port}/locked`);
    expect(s.url).not.toContain('nspw');
    await s.close();
  });
});

describe('unreachable servers', () => {
  let closedPort: number;
  beforeAll(async () => {
    closedPort = await freePort();
  });

  it.each(['redis', 'ardb', 'zdb', 'http'])('%s rejects quickly naming host:port', async (scheme) => {
    const store = await openStore(`${scheme}://127.0.0.1:${closedPort}`);
    const { ms, err } = await elapsed(store.get(randomBytes(16)));
    expect(ms).toBeLessThan(5000);
    expect(err.name).toBe('StoreError');
    expect(kindOf(err)).toBe('unavailable');
    expect(err.message).toContain(`127.0.0.1:${closedPort}`);
    expect(err.message).toMatch(/cannot reach .*ECONNREFUSED/);
    await store.close();
  });

  it.each(['redis', 'zdb', 'http'])('%s against a server that never answers times out', async (scheme) => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    try {
      const store = await openStore(`${scheme}://127.0.0.1:${port}`, { timeoutMs: 300 });
      const { ms, err } = await elapsed(store.exists([randomBytes(16)]));
      expect(ms).toBeLessThan(3000);
      expect(err.name).toBe('StoreError');
      expect(err.message).toContain(`127.0.0.1:${port}`);
      expect(err.message).toMatch(/timed out/i);
      await store.close();
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('a redis that dies mid-session fails the next command within seconds', async () => {
    const server = await startRedis();
    const store = await openStore(server.url);
    const b = block();
    await store.put(b.id, b.data);
    await server.stop();
    const { ms, err } = await elapsed(store.get(b.id));
    expect(ms).toBeLessThan(5000);
    expect(err.message).toContain(`127.0.0.1:${server.port}`);
    await store.close();
  });
});

// --- redis specifics --------------------------------------------------------------------------

describe('redis store', () => {
  it('keeps blocks in one hash per namespace, keyed by the raw id', async () => {
    const raw = new Redis(redis.port, '127.0.0.1');
    try {
      const b = block();
      const dflt = await openStore(redis.url);
      const named = await openStore(`${redis.url}/other`);
      await dflt.put(b.id, b.data);
      expect((await raw.hgetBuffer('default', b.id))?.equals(b.data)).toBe(true);
      expect(await named.exists([b.id])).toEqual([false]);
      const ardb = await openStore(redis.url.replace('redis:', 'ardb:'));
      await ardb.put(b.id, b.data);
      expect((await raw.getBuffer(b.id))?.equals(b.data)).toBe(true);
      await Promise.all([dflt.close(), named.close(), ardb.close()]);
    } finally {
      raw.disconnect();
    }
  });

  it('names a wrong password clearly', async () => {
    const store = await openStore(`redis://:wrong@127.0.0.1:${redisPw.port}`);
    const { ms, err } = await elapsed(store.get(randomBytes(16)));
    expect(ms).toBeLessThan(3000);
    expect(err.message).toMatch(new RegExp(`^authentication failed for redis store redis://127.0.0.1:${redisPw.port}: WRONGPASS`));
    expect(err.message).not.toContain('wrong');
    await store.close();
  });

  it('names a missing password clearly', async () => {
    const store = await openStore(`redis://127.0.0.1:${redisPw.port}`);
    await expect(store.exists([randomBytes(16)])).rejects.toThrow(/requires authentication.*NOAUTH/);
    await store.close();
  });
});

// --- zdb specifics -----------------------------------------------------------------------------

describe('zdb store', () => {
  it('selects the namespace and stores raw keys', async () => {
    const store = await openStore(`zdb://nspw@127.0.0.1:${zdb.port}/locked`);
    const b = block();
    await store.put(b.id, b.data);
    expect(zdbData.locked.data.get(b.id.toString('latin1'))?.equals(b.data)).toBe(true);
    expect(zdbData.default.data.has(b.id.toString('latin1'))).toBe(false);
    await store.close();
  });

  it('names a wrong namespace password and an unknown namespace', async () => {
    const wrong = await openStore(`zdb://nope@127.0.0.1:${zdb.port}/locked`);
    await expect(wrong.get(randomBytes(16))).rejects.toThrow(
      new RegExp(`^authentication failed for zdb store zdb://127.0.0.1:${zdb.port}: SELECT locked failed: Access denied`),
    );
    const unknown = await openStore(`zdb://127.0.0.1:${zdb.port}/missing`);
    await expect(unknown.get(randomBytes(16))).rejects.toThrow(/SELECT missing failed: Namespace not found/);
    await Promise.all([wrong.close(), unknown.close()]);
  });
});

// --- dir specifics -----------------------------------------------------------------------------

describe('dir store', () => {
  it('lays blocks out as <hex[0:2]>/<hex[2:4]>/<hex> and leaves no temp files', async () => {
    const root = path.join(tmp, 'layout');
    const store = await openStore(`dir://${root}`);
    const b = block();
    await store.put(b.id, b.data);
    const hex = b.id.toString('hex');
    expect(readFileSync(path.join(root, hex.slice(0, 2), hex.slice(2, 4), hex)).equals(b.data)).toBe(true);
    expect(walk(root)).toEqual([path.join(hex.slice(0, 2), hex.slice(2, 4), hex)]);
  });

  it('survives concurrent puts of the same id', async () => {
    const root = path.join(tmp, 'concurrent');
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStore(`dir://${root}`)));
    const b = block(300_000);
    const others = Array.from({ length: 30 }, () => block(1000));
    await Promise.all([
      ...stores.flatMap((s) => Array.from({ length: 5 }, () => s.put(b.id, b.data))),
      ...others.map((o) => stores[0].put(o.id, o.data)),
    ]);
    expect((await stores[1].get(b.id))?.equals(b.data)).toBe(true);
    const files = walk(root);
    expect(files).toHaveLength(31);
    expect(files.filter((f) => path.basename(f).startsWith('.'))).toEqual([]);
  });
});

// --- http store and block router --------------------------------------------------------------

describe('http store and block API', () => {
  const api = (p: string): string => `${hubUrl}/api/blocks/${p}`;
  const auth = { authorization: `Bearer ${TOKEN}` };

  it('is read-only without a token', async () => {
    const store = await openStore(hubUrl);
    expect(store.writable).toBe(false);
    const b = block();
    await expect(store.put(b.id, b.data)).rejects.toThrow(/read-only/);
    await expect(putMissing(store, [b])).rejects.toThrow(/read-only/);
  });

  it('PUT: 401 without token, 400 on a body not matching the id, 201 then 200', async () => {
    const b = block();
    const noAuth = await fetch(api(b.id.toString('hex')), { method: 'PUT', body: b.data });
    expect(noAuth.status).toBe(401);
    expect(await noAuth.json()).toEqual({ status: 'error', message: 'no authorization provided' });
    const badToken = await fetch(api(b.id.toString('hex')), { method: 'PUT', body: b.data, headers: { authorization: 'Bearer x' } });
    expect(badToken.status).toBe(401);

    const wrong = await fetch(api(b.id.toString('hex')), { method: 'PUT', body: randomBytes(10), headers: auth });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toEqual({ status: 'error', message: 'block id does not match blake2b-128 of body' });

    const first = await fetch(api(b.id.toString('hex')), { method: 'PUT', body: b.data, headers: auth });
    expect(first.status).toBe(201);
    const again = await fetch(api(b.id.toString('hex')), { method: 'PUT', body: b.data, headers: auth });
    expect(again.status).toBe(200);

    // The store surfaces the status and the server's message.
    const store = await openStore(hubUrl, { token: TOKEN });
    await expect(store.put(randomBytes(16), b.data)).rejects.toThrow(/HTTP 400: block id does not match/);
    const badStore = await openStore(hubUrl, { token: 'nope' });
    await expect(badStore.put(b.id, b.data)).rejects.toThrow(/HTTP 401/);
  });

  it('PUT: 413 above 2 MiB', async () => {
    const big = block(2 * 1024 * 1024 + 1);
    const res = await fetch(api(big.id.toString('hex')), { method: 'PUT', body: big.data, headers: auth }).catch((e: Error) => e);
    // The server answers before reading the body; depending on timing the client sees the 413
    // or a reset connection. Either way nothing is stored.
    if (!(res instanceof Error)) expect(res.status).toBe(413);
    const store = await openStore(hubUrl);
    expect(await store.exists([big.id])).toEqual([false]);
  });

  it('GET: cache headers, ETag/304, Range/206/416, HEAD, alias path', async () => {
    const b = block(1000);
    const hex = b.id.toString('hex');
    await fetch(api(hex), { method: 'PUT', body: b.data, headers: auth });

    const res = await fetch(api(hex));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('etag')).toBe(`"${hex}"`);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(Buffer.from(await res.arrayBuffer()).equals(b.data)).toBe(true);

    const cached = await fetch(api(hex), { headers: { 'if-none-match': `"${hex}"` } });
    expect(cached.status).toBe(304);
    const other = await fetch(api(hex), { headers: { 'if-none-match': '"0000"' } });
    expect(other.status).toBe(200);
    await other.arrayBuffer();

    const part = await fetch(api(hex), { headers: { range: 'bytes=10-19' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 10-19/1000');
    expect(Buffer.from(await part.arrayBuffer()).equals(b.data.subarray(10, 20))).toBe(true);
    const tail = await fetch(api(hex), { headers: { range: 'bytes=-5' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(b.data.subarray(995))).toBe(true);
    const open = await fetch(api(hex), { headers: { range: 'bytes=990-' } });
    expect(Buffer.from(await open.arrayBuffer()).equals(b.data.subarray(990))).toBe(true);
    const beyond = await fetch(api(hex), { headers: { range: 'bytes=1000-1010' } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe('bytes */1000');
    await beyond.arrayBuffer();
    const staleIfRange = await fetch(api(hex), { headers: { range: 'bytes=0-0', 'if-range': '"other"' } });
    expect(staleIfRange.status).toBe(200);
    await staleIfRange.arrayBuffer();

    const head = await fetch(api(hex), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('etag')).toBe(`"${hex}"`);
    const headMissing = await fetch(api(randomBytes(16).toString('hex')), { method: 'HEAD' });
    expect(headMissing.status).toBe(404);

    const alias = await fetch(`${hubUrl}/api/block/${hex}`);
    expect(alias.status).toBe(200);
    expect(Buffer.from(await alias.arrayBuffer()).equals(b.data)).toBe(true);
    const missing = await fetch(api(randomBytes(16).toString('hex')));
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { status: string }).status).toBe('error');
  });

  it('rejects invalid ids and bad exists bodies with JSON 400', async () => {
    for (const bad of ['ABCDEF0123456789abcdef0123456789', 'abc', 'z'.repeat(32)]) {
      const res = await fetch(api(bad));
      expect(res.status).toBe(400);
      expect(((await res.json()) as { status: string }).status).toBe('error');
    }
    const post = (body: string): Promise<Response> =>
      fetch(api('exists'), { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    for (const body of ['{not json', '{"a":1}', '["xyz"]', '[1]', JSON.stringify(Array(10_001).fill('0'.repeat(32)))]) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { status: string }).status).toBe('error');
    }
    const some = block();
    await fetch(`${hubUrl}/api/block/${some.id.toString('hex')}`, { method: 'PUT', body: some.data, headers: auth });
    const absent = randomBytes(16).toString('hex');
    const res = await fetch(`${hubUrl}/api/block/exists`, { method: 'POST', body: JSON.stringify([some.id.toString('hex'), absent]) });
    expect(await res.json()).toEqual([absent]);
  });

  it('writes land in the hub dir store', () => {
    expect(walk(hubDir).length).toBeGreaterThan(0);
    expect(walk(hubDir).filter((f) => path.basename(f).startsWith('.'))).toEqual([]);
  });
});
