// The hub's web back end (web/README.md is the contract with the pages), against real processes:
// a hub started with --agent and a real agent (its own redis-server, real FUSE mounts,
// namespaces and cgroups), both inside a network namespace this test creates, so the agent's
// bridge, veths and NAT rules never touch the host.
//
// The containers fetch their flists and blocks from the hub at http://127.0.0.1:<port> inside
// that namespace, so the hub must listen there. The test process cannot reach a namespace's
// loopback over TCP, and adding a veth and addresses to the host is off limits for tests; so
// test/helpers/netns-port.ts relays the same 127.0.0.1:<port> on the host's loopback to the
// namespace through a unix socket (a file, reachable from both). The hub's URL is then the same
// on both sides, and the test uses plain fetch.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../src/agent/client';
import { readMounts } from '../src/fs/mount-table';
import { type AgentProcess, leftovers, makeNetns, startAgent } from './helpers/agent';
import { g8os, ROOT } from './helpers/cli';
import { type HubProcess, startHub } from './helpers/hub';
import { type ExposedPort, exposeNetnsPort } from './helpers/netns-port';
import { freePort } from './helpers/redis';
import { busyboxRootfsTar, everyTypeEntries, writeTarFile } from './helpers/tarballs';

const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";
const WEB = path.join(ROOT, 'web');
const README = '# The fixture\n\nEvery *kind* of entry: files, links, devices, a fifo.\n';
const ENTRYPOINT = ['/bin/run.sh', '--flag'];

let tmp: string;
let ns: string;
let hub: HubProcess; // in the namespace, with --agent
let plain: HubProcess; // on the host, no agent
let agent: AgentProcess;
let relay: ExposedPort;
let client: Client;
let alice: string;
let bob: string;
let fixtureLocal: string; // the fixture flist as downloaded from the hub

// -- helpers ---------------------------------------------------------------------------------

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
  body: Buffer;
}

async function call(method: string, p: string, o: { token?: string; auth?: string; body?: string; h?: HubProcess; headers?: Record<string, string> } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.auth) headers.authorization = o.auth;
  const res = await fetch(`${(o.h ?? hub).url}${p}`, { method, headers, body: o.body });
  const body = Buffer.from(await res.arrayBuffer());
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json, body };
}

const get = (p: string, token?: string, h?: HubProcess): Promise<Reply> => call('GET', p, { token, h });
const post = (p: string, body: unknown, token = alice): Promise<Reply> =>
  call('POST', p, { token, body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } });

/** A request with the path exactly as given (fetch would normalise "..", "%2e%2e"). */
function rawGet(p: string): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(hub.port, '127.0.0.1', () => sock.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let out = '';
    sock.on('data', (d: Buffer) => (out += d.toString('utf8')));
    sock.on('error', reject);
    sock.on('close', () => {
      const i = out.indexOf('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(out)?.[1] ?? 0), head: out.slice(0, i), body: out.slice(i + 4) });
    });
  });
}

interface SseEvent {
  event: string;
  data: any;
  id?: string;
  at: number;
}

/** Reads server-sent events until `end` (or the stream ends); `events` fills as they come. */
function sse(p: string, o: { token?: string; headers?: Record<string, string> } = {}): { events: SseEvent[]; done: Promise<{ status: number; text?: string }> } {
  const events: SseEvent[] = [];
  const done = (async () => {
    const headers: Record<string, string> = { accept: 'text/event-stream', ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    const res = await fetch(`${hub.url}${p}`, { headers, signal: AbortSignal.timeout(90_000) });
    if (res.status !== 200) return { status: res.status, text: await res.text() };
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done: eof } = await reader.read();
      if (eof) return { status: 200 };
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const e: Partial<SseEvent> = { event: 'message', at: Date.now() };
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const [k, v] = [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).replace(/^ /, '')];
          if (k === 'event') e.event = v;
          else if (k === 'id') e.id = v;
          else if (k === 'data') data.push(v);
        }
        if (!data.length) continue;
        e.data = JSON.parse(data.join('\n'));
        events.push(e as SseEvent);
        if (e.event === 'end') {
          await reader.cancel();
          return { status: 200 };
        }
      }
    }
  })();
  return { events, done };
}

const shape = (events: SseEvent[]): Array<[string, unknown]> => events.map((e) => [e.event, e.data]);

async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every file under a directory, relative, skipping hidden ones (the hub does not serve them). */
function filesUnder(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesUnder(dir, r));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

/** Builds an flist with its blocks sent to the hub's block API, and publishes it with upload-flist. */
async function publish(token: string, name: string, tar: string, meta: Record<string, string>): Promise<void> {
  const out = path.join(tmp, `${name}.flist`);
  const made = await g8os(['flist', 'create', tar, '-o', out, '--store', hub.url, '--token', token, ...Object.entries(meta).flatMap(([k, v]) => ['--meta', `${k}=${v}`])]);
  expect(made.code, made.stderr).toBe(0);
  const up = await g8os(['hub', 'upload-flist', out, '--hub', hub.url, '--token', token]);
  expect(up.code, up.stderr).toBe(0);
  expect(up.stdout.trim()).toBe(`${hub.url}/alice/${name}.flist`);
}

// -- set-up ----------------------------------------------------------------------------------

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-web-api-'));
  ns = makeNetns('web');
  agent = await startAgent({ netns: ns, args: ['--cache', path.join(tmp, 'cache'), '--mount-grace', '0'] });
  client = await agent.client();
  const port = await freePort(); // free on the host: the relay takes it there, the hub in the namespace
  hub = await startHub({ netns: ns, port, args: ['--agent', agent.socket] });
  relay = await exposeNetnsPort(ns, port);
  plain = await startHub();
  alice = hub.token('alice');
  bob = hub.token('bob');
  hub.token('carol'); // a repository with nothing in it

  // busybox, uploaded as a tarball (no entrypoint: the hub takes none from a tarball)
  const busybox = path.join(tmp, 'busybox.tar.gz');
  await busyboxRootfsTar(busybox, { gzip: true });
  const up = await g8os(['hub', 'upload', busybox, '--hub', hub.url, '--token', alice, '--name', 'busybox'], { timeoutMs: 120_000 });
  expect(up.code, up.stderr).toBe(0);
  // busybox again, built here with an entrypoint
  await publish(alice, 'busybox-entry', busybox, { entrypoint: JSON.stringify(['/bin/sh', '-c', 'echo from the entrypoint; echo "$GREETING"']), environ: JSON.stringify({ GREETING: 'hello from environ' }) });
  // every kind of entry, with a readme and the other well-known metadata
  const fixture = path.join(tmp, 'fixture.tar');
  await writeTarFile(fixture, everyTypeEntries());
  await publish(alice, 'fixture', fixture, {
    readme: JSON.stringify({ readme: README }),
    entrypoint: JSON.stringify(ENTRYPOINT),
    environ: JSON.stringify({ GREETING: 'hi', EMPTY: '' }),
    port: JSON.stringify({ 'tcp/80': 8080 }),
    volume: JSON.stringify({ '/data': {}, '/logs': { host: '/var/log' } }),
  });
  fixtureLocal = path.join(tmp, 'fixture-downloaded.flist');
  const dl = await get('/alice/fixture.flist');
  expect(dl.status).toBe(200);
  fs.writeFileSync(fixtureLocal, dl.body);

  // links and tags, through the 0-hub API
  for (const [token, p] of [
    [alice, '/api/flist/me/fixture.flist/link/latest.flist'],
    [alice, '/api/flist/me/v1/fixture.flist/tag/alice/fixture.flist'],
    [bob, '/api/flist/me/bb.flist/crosslink/alice/busybox.flist'],
    [bob, '/api/flist/me/alice-v1/crosstag/alice/v1'],
  ]) {
    const r = await get(p, token);
    expect(r.status, `${p}: ${r.text}`).toBe(200);
  }
}, 300_000);

// a failing test must not leave its containers to the next one's "nothing left" checks
afterEach(async () => {
  if (!client) return;
  const list = await client.json<Record<string, unknown>>('corex.list', {});
  await Promise.all(Object.keys(list).map((id) => client.json('corex.terminate', { container: Number(id) }, 60).catch(() => undefined)));
});

afterAll(async () => {
  await relay?.close();
  await agent?.stop();
  await hub?.stop();
  await plain?.stop();
  // no request ended in an unexpected server error
  expect(hub?.log() ?? '').not.toMatch(/hub: /);
  if (tmp && !readMounts().some((m) => m.mountPoint.startsWith(tmp))) fs.rmSync(tmp, { recursive: true, force: true });
}, 120_000);

// -- pages and files -------------------------------------------------------------------------

describe('pages and static files', () => {
  const index = (): Buffer => fs.readFileSync(path.join(WEB, 'index.html'));

  it('page routes answer web/index.html, with the CSP, nosniff, no-cache and an ETag (304 when unchanged)', async () => {
    for (const p of ['/', '/search', '/upload', '/me', '/node', '/login', '/alice', '/nobody', '/alice/tags/v1', '/alice/fixture.flist.md', '/bob/bb.flist.md']) {
      const r = await get(p);
      expect(r.status, p).toBe(200);
      expect(r.headers.get('content-type'), p).toBe('text/html; charset=utf-8');
      expect(r.body.equals(index()), p).toBe(true);
      expect(r.headers.get('content-security-policy'), p).toBe(CSP);
      expect(r.headers.get('x-content-type-options'), p).toBe('nosniff');
      expect(r.headers.get('cache-control'), p).toBe('no-cache');
    }
    const first = await get('/');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[^"]+"$/);
    const again = await call('GET', '/node', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(again.text).toBe('');
    const head = await call('HEAD', '/search');
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(index().length);
  });

  it('the pages never shadow downloads, the JSON API, /listen or the block endpoints', async () => {
    const fl = await get('/alice/fixture.flist');
    expect(fl.status).toBe(200);
    expect(fl.headers.get('content-type')).toBe('application/octet-stream');
    const md5 = crypto.createHash('md5').update(fl.body).digest('hex');
    expect((await get('/alice/fixture.flist.md5')).text).toBe(`${md5}\n`);
    expect((await get('/alice/latest.flist')).body.equals(fl.body)).toBe(true); // a link, followed
    expect((await get('/alice/fixture.json')).json).toMatchObject({ flist: 'fixture.flist', checksum: md5 });
    expect((await get('/alice/fixture.txt')).text).toContain(`Checksum: ${md5}`);
    expect((await get('/alice/tags/v1/fixture.flist')).body.equals(fl.body)).toBe(true);
    expect((await get('/bob/alice-v1/fixture.flist')).body.equals(fl.body)).toBe(true); // through a crosstag
    const missing = await get('/alice/nope.flist');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ status: 'error', message: 'source not found' });
    expect((await get('/api/flist/alice')).json).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'fixture.flist', type: 'regular' })]));
    expect((await get('/api/flist/me', alice)).json).toEqual({ status: 'success', payload: { username: 'alice' } });
    const listen = await get('/listen/no-such-job-id');
    expect(listen.status).toBe(404);
    expect(listen.json).toEqual({ status: 'error', message: 'job id not found' });
    expect((await call('HEAD', `/api/blocks/${'0'.repeat(32)}`)).status).toBe(404);
    expect((await get('/api/stats')).json).toHaveProperty('blocks');
    const unknownApi = await get('/api/nothing/here');
    expect(unknownApi.status).toBe(404);
    expect(unknownApi.json).toEqual({ status: 'error', message: 'not found' });
  });

  it('serves every file under web/ with its content type, and the vendored modules', async () => {
    const types: Record<string, RegExp> = {
      '.html': /^text\/html; charset=utf-8$/, '.js': /^text\/javascript; charset=utf-8$/, '.css': /^text\/css; charset=utf-8$/,
      '.svg': /^image\/svg\+xml$/, '.md': /^text\/markdown; charset=utf-8$/, '.json': /^application\/json/, '.png': /^image\/png$/,
    };
    const files = filesUnder(WEB);
    expect(files).toEqual(expect.arrayContaining(['index.html', 'README.md']));
    for (const f of files) {
      const r = await get(`/web/${f.split('/').map(encodeURIComponent).join('/')}`);
      expect(r.status, f).toBe(200);
      expect(r.body.equals(fs.readFileSync(path.join(WEB, f))), f).toBe(true);
      const want = types[path.extname(f)];
      if (want) expect(r.headers.get('content-type'), f).toMatch(want);
      expect(r.headers.get('content-security-policy'), f).toBe(CSP);
      expect(r.headers.get('x-content-type-options'), f).toBe('nosniff');
      expect(r.headers.get('etag'), f).toBeTruthy();
    }
    for (const [url, file] of [
      ['/web/vendor/marked.js', 'node_modules/marked/lib/marked.esm.js'],
      ['/web/vendor/purify.js', 'node_modules/dompurify/dist/purify.es.mjs'],
    ]) {
      const r = await get(url);
      expect(r.status, url).toBe(200);
      expect(r.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
      expect(r.headers.get('content-security-policy')).toBe(CSP);
      expect(r.body.equals(fs.readFileSync(path.join(ROOT, file))), url).toBe(true);
      expect(r.text).toMatch(/export\s*\{/); // an ES module the pages import
    }
    expect((await get('/web/vendor/jquery.js')).status).toBe(404);
    expect((await get('/web/no-such-file.js')).status).toBe(404);
  });

  it('nothing outside web/ (traversal, encoded dots, hidden files) is served', async () => {
    for (const p of ['/web/../package.json', '/web/%2e%2e/package.json', '/web/..%2fpackage.json', '/web/js/..%2f..%2fpackage.json', '/web/%2e%2e%2f%2e%2e%2fpackage.json', '/web/.hidden', '/web/%00']) {
      const r = await rawGet(p);
      // "/web/../package.json" is "/package.json" to the server: a page route (index.html), never the file
      expect(r.body, p).not.toContain('"name": "g8os"');
      if (p !== '/web/../package.json') expect(r.status, p).toBe(404);
    }
  });
});

// -- the read-only JSON ----------------------------------------------------------------------

describe('/api/ui', () => {
  it('repositories: counts, sizes, last update, newest first; q filters names', async () => {
    const r = await get('/api/ui/repositories');
    expect(r.status).toBe(200);
    const repos = r.json.repositories as Array<{ name: string; flists: number; links: number; tags: number; size: number; updated: number }>;
    expect(repos.map((x) => x.name).sort()).toEqual(['alice', 'bob', 'carol']);
    const byName = Object.fromEntries(repos.map((x) => [x.name, x]));
    const aliceRepo = (await get('/api/ui/repository/alice')).json;
    const regularSize = aliceRepo.flists.filter((f: { type: string }) => f.type === 'regular').reduce((s: number, f: { size: number }) => s + f.size, 0);
    expect(byName.alice).toMatchObject({ flists: 3, links: 1, tags: 1, size: regularSize });
    expect(byName.alice.size).toBeGreaterThan(fs.statSync(fixtureLocal).size);
    expect(byName.bob).toMatchObject({ flists: 0, links: 2, tags: 0, size: 0 });
    expect(byName.carol).toMatchObject({ flists: 0, links: 0, tags: 0, size: 0 });
    const now = Date.now() / 1000;
    for (const x of repos) expect(x.updated).toBeGreaterThan(now - 600);
    for (let i = 1; i < repos.length; i++) expect(repos[i - 1].updated).toBeGreaterThanOrEqual(repos[i].updated);
    expect((await get('/api/ui/repositories?q=ALI')).json.repositories.map((x: { name: string }) => x.name)).toEqual(['alice']);
    expect((await get('/api/ui/repositories?q=zzz')).json).toEqual({ repositories: [] });
  });

  it('repository: every entry with its type, target, size, date and md5; tags; 404 and 400', async () => {
    const a = (await get('/api/ui/repository/alice')).json;
    const fixture = a.flists.find((f: { name: string }) => f.name === 'fixture.flist');
    const md5 = crypto.createHash('md5').update(fs.readFileSync(fixtureLocal)).digest('hex');
    expect(fixture).toEqual({ name: 'fixture.flist', type: 'regular', size: fs.statSync(fixtureLocal).size, updated: expect.any(Number), md5 });
    expect(a).toEqual({
      name: 'alice',
      flists: [
        expect.objectContaining({ name: 'busybox-entry.flist', type: 'regular' }),
        expect.objectContaining({ name: 'busybox.flist', type: 'regular' }),
        fixture,
        { ...fixture, name: 'latest.flist', type: 'symlink', target: 'alice/fixture.flist' }, // a link shows what it ends at
      ],
      tags: ['v1'],
    });
    const b = (await get('/api/ui/repository/bob')).json;
    const busybox = a.flists.find((f: { name: string }) => f.name === 'busybox.flist');
    expect(b.flists).toEqual([
      { name: 'alice-v1', type: 'taglink', target: 'alice/tags/v1', size: 0, updated: expect.any(Number) },
      { ...busybox, name: 'bb.flist', type: 'crosslink', target: 'alice/busybox.flist' },
    ]);
    expect(b.tags).toEqual([]);
    expect((await get('/api/ui/repository/carol')).json).toEqual({ name: 'carol', flists: [], tags: [] });
    const unknown = await get('/api/ui/repository/nobody');
    expect(unknown.status).toBe(404);
    expect(unknown.json).toEqual({ status: 'error', message: 'user not found' });
    expect((await get('/api/ui/repository/bad%20name')).status).toBe(400);
  });

  it('search: names containing q, case-insensitive, best matches first, at most 200', async () => {
    const busy = (await get('/api/ui/search?q=BUSY')).json.results;
    expect(busy.map((x: { user: string; name: string }) => `${x.user}/${x.name}`).sort()).toEqual(['alice/busybox-entry.flist', 'alice/busybox.flist']);
    const r = (await get('/api/ui/search?q=BusyBox')).json.results;
    expect(r).toHaveLength(2);
    expect(r[0]).toEqual({ user: 'alice', name: 'busybox.flist', type: 'regular', size: expect.any(Number), updated: expect.any(Number) }); // exact name first
    expect((await get('/api/ui/search?q=bb')).json.results).toEqual([{ user: 'bob', name: 'bb.flist', type: 'crosslink', size: r[0].size, updated: r[0].updated }]);
    expect((await get('/api/ui/search?q=alice-v')).json.results).toEqual([expect.objectContaining({ user: 'bob', name: 'alice-v1', type: 'taglink' })]);
    expect((await get('/api/ui/search?q=no-such-name')).json).toEqual({ results: [] });
    // many matches: at most 200 come back
    const dave = hub.token('dave');
    expect((await get('/api/flist/me/promote/alice/busybox.flist/many-0.flist', dave)).status).toBe(200);
    for (let i = 1; i <= 204; i++) expect((await get(`/api/flist/me/many-0.flist/link/many-${i}.flist`, dave)).status).toBe(200);
    const many = (await get('/api/ui/search?q=many-')).json.results;
    expect(many).toHaveLength(200);
    expect(many.every((x: { user: string; name: string }) => x.user === 'dave' && x.name.startsWith('many-'))).toBe(true);
    const exact = (await get('/api/ui/search?q=many-42')).json.results;
    expect(exact[0].name).toBe('many-42.flist');
    expect(exact.map((x: { name: string }) => x.name).sort()).toEqual(['many-42.flist']);
    expect((await get('/api/ui/search')).json.results.length).toBeLessThanOrEqual(200); // no q: the newest
  });

  it('flist: metadata (entrypoint, environ, ports, volumes, readme, backend), stats, download URL; links followed', async () => {
    const bytes = fs.readFileSync(fixtureLocal);
    const md5 = crypto.createHash('md5').update(bytes).digest('hex');
    const r = await get('/api/ui/flist/alice/fixture.flist');
    expect(r.status).toBe(200);
    const stats = JSON.parse((await g8os(['flist', 'stats', fixtureLocal, '--json'])).stdout);
    expect(r.json).toEqual({
      user: 'alice', name: 'fixture.flist', type: 'regular', size: bytes.length, md5, updated: expect.any(Number),
      url: `${hub.url}/alice/fixture.flist`,
      metadata: {
        entrypoint: ENTRYPOINT,
        environ: { GREETING: 'hi', EMPTY: '' },
        port: { 'tcp/80': 8080 },
        volume: ['/data', '/logs'],
        readme: README,
        backend: hub.url,
      },
      // counted below the root (`flist stats` counts the root as a directory)
      stats: { files: stats.files, dirs: stats.dirs - 1, symlinks: stats.symlinks, specials: stats.specials, bytes: stats.bytes },
    });
    expect(r.json.stats).toMatchObject({ symlinks: 5, specials: 4 });
    expect(r.json.stats.bytes).toBeGreaterThan(5 * 1024 * 1024);
    // the download URL works
    expect((await fetch(r.json.url).then((x) => x.arrayBuffer()).then((x) => Buffer.from(x))).equals(bytes)).toBe(true);
    // through a link: the link's own name, type and target, the flist it ends at
    const link = (await get('/api/ui/flist/alice/latest.flist')).json;
    expect(link).toEqual({ ...r.json, name: 'latest.flist', type: 'symlink', target: 'alice/fixture.flist', url: `${hub.url}/alice/latest.flist` });
    const cross = (await get('/api/ui/flist/bob/bb.flist')).json;
    expect(cross).toMatchObject({ user: 'bob', name: 'bb.flist', type: 'crosslink', target: 'alice/busybox.flist', metadata: { backend: hub.url } });
    expect(cross.metadata).not.toHaveProperty('entrypoint');
    expect(cross.metadata).not.toHaveProperty('readme');
    expect(cross.stats).toMatchObject({ files: 4, symlinks: 19, specials: 0 });
    // an image-like entrypoint and environ, as the agent reads them
    expect((await get('/api/ui/flist/alice/busybox-entry.flist')).json.metadata).toMatchObject({
      entrypoint: ['/bin/sh', '-c', 'echo from the entrypoint; echo "$GREETING"'], environ: { GREETING: 'hello from environ' },
    });
    // a name without ".flist" is the same flist (the hub's naming rule)
    expect((await get('/api/ui/flist/alice/fixture')).json.md5).toBe(md5);
    for (const [p, status, message] of [
      ['/api/ui/flist/alice/nope.flist', 404, 'source not found'],
      ['/api/ui/flist/nobody/x.flist', 404, 'user not found'],
      ['/api/ui/flist/bob/alice-v1', 404, 'source not found'], // a tag link is no one flist
    ] as const) {
      const e = await get(p);
      expect(e.status, p).toBe(status);
      expect(e.json, p).toEqual({ status: 'error', message });
    }
  });

  it('tree: one directory read from the flist, dirs first; modes, owners, link targets, devices; 404 and 400', async () => {
    const tree = async (p?: string): Promise<Reply> => get(`/api/ui/flist/alice/fixture.flist/tree${p === undefined ? '' : `?path=${encodeURIComponent(p)}`}`);
    const root = (await tree()).json;
    expect(root.path).toBe('/');
    expect(root.entries.map((e: { name: string }) => e.name)).toEqual(['bin', 'dev', 'etc', 'files', 'home', 'implied', 'links', 'long', 'names', 'opt', 'run', 'srv', 'tmp', 'usr']);
    expect((await tree('/')).json).toEqual(root);
    expect(root.entries.find((e: { name: string }) => e.name === 'tmp')).toMatchObject({ path: '/tmp', type: 'dir', modeText: 'drwxrwxrwt', mode: 0o41777, size: 0, user: 'root', group: 'root' });

    // dirs first, then files, each by name
    const long = (await tree('/long')).json.entries;
    expect(long.map((e: { type: string }) => e.type)).toEqual(['dir', 'dir', 'file']);
    expect(long.map((e: { name: string }) => e.name)).toEqual([...long.slice(0, 2).map((e: { name: string }) => e.name).sort(), expect.stringMatching(/^long-name-x+\.txt$/)]);

    const one = async (dir: string, name: string): Promise<Record<string, unknown>> => (await tree(dir)).json.entries.find((e: { name: string }) => e.name === name);
    expect(await one('/srv', 'www')).toEqual({ name: 'www', path: '/srv/www', type: 'dir', size: 0, mode: 0o42755, modeText: 'drwxr-sr-x', uid: 33, gid: 33, user: 'www-data', group: 'www-data', mtime: 1_700_000_000 });
    expect(await one('/srv/www', 'index.html')).toEqual({ name: 'index.html', path: '/srv/www/index.html', type: 'file', size: 12, mode: 0o100644, modeText: '-rw-r--r--', uid: 33, gid: 33, user: 'www-data', group: 'www-data', mtime: 1_600_000_000 });
    expect(await one('/home', 'user')).toMatchObject({ modeText: 'drwx------', user: 'user', uid: 1000 });
    expect(await one('/usr/bin', 'setuid-tool')).toMatchObject({ modeText: '-rwsr-xr-x', type: 'file' });
    expect(await one('/usr/bin', 'setgid-tool')).toMatchObject({ modeText: '-rwxr-sr-x', group: 'staff', gid: 50 });
    expect(await one('/opt/anon', 'data')).toMatchObject({ user: '4242', group: '4243', uid: 4242, gid: 4243, modeText: '-rw-r-----' });
    expect(await one('/links', 'absolute')).toMatchObject({ type: 'symlink', target: '/etc/hostname', modeText: 'lrwxrwxrwx', size: '/etc/hostname'.length });
    expect(await one('/links', 'dangling')).toMatchObject({ type: 'symlink', target: '../does/not/exist' });
    expect(await one('/dev', 'null')).toMatchObject({ type: 'char', rdev: '1,3', modeText: 'crw-rw-rw-', size: 0 });
    expect(await one('/dev', 'nvme0n1p300')).toMatchObject({ type: 'block', rdev: '259,300', modeText: 'brw-rw----', group: 'disk' });
    expect(await one('/run', 'fifo')).toMatchObject({ type: 'fifo', modeText: 'prw--w----' });
    expect(await one('/names', 'ünïcødé ✓.txt')).toMatchObject({ path: '/names/ünïcødé ✓.txt', type: 'file' });
    expect((await tree('/implied/a/b')).json).toEqual({ path: '/implied/a/b', entries: [expect.objectContaining({ name: 'c.txt', path: '/implied/a/b/c.txt', size: 16 })] });
    expect((await tree('implied/a/')).json.path).toBe('/implied/a'); // normalised

    // the same entries `g8os flist ls --json` reads from the downloaded file
    for (const dir of ['/', '/files', '/links', '/dev', '/usr/bin', '/home/user']) {
      const cli = JSON.parse((await g8os(['flist', 'ls', fixtureLocal, dir, '--json'])).stdout) as Array<Record<string, any>>;
      const ui = (await tree(dir)).json.entries as Array<Record<string, any>>;
      expect(ui.map((e) => e.path).sort(), dir).toEqual(cli.map((e) => e.path).sort());
      for (const c of cli) {
        const u = ui.find((e) => e.path === c.path)!;
        expect((u.mode & 0o7777).toString(8).padStart(4, '0'), c.path).toBe(c.mode);
        expect([u.uid, u.gid, u.mtime, u.target], c.path).toEqual([c.uid, c.gid, c.mtime, c.target]);
        expect(u.type, c.path).toBe(c.type === 'link' ? 'symlink' : c.type);
        if (c.type === 'file') expect(u.size, c.path).toBe(c.size);
      }
    }

    for (const [p, status, message] of [
      ['/nope', 404, '/nope: no such file or directory'],
      ['/etc/nope/deeper', 404, '/etc/nope/deeper: no such file or directory'],
      ['/etc/hostname', 400, '/etc/hostname: not a directory'],
      ['/links/to-dir', 400, '/links/to-dir: not a directory'], // a link is not followed
    ] as const) {
      const e = await tree(p);
      expect(e.status, p).toBe(status);
      expect(e.json, p).toEqual({ status: 'error', message });
    }
    expect((await tree('/etc/../etc')).status).toBe(400);
    expect((await get('/api/ui/flist/alice/nope.flist/tree')).status).toBe(404);
    // through a link
    expect((await get('/api/ui/flist/alice/latest.flist/tree?path=/srv')).json).toEqual((await tree('/srv')).json);
  });
});

// -- the node --------------------------------------------------------------------------------

describe('the node API', () => {
  const containers = async (): Promise<Array<Record<string, any>>> => {
    const r = await get('/api/node/containers', alice);
    expect(r.status, r.text).toBe(200);
    return r.json.containers;
  };

  it('without an agent: available false and 404 everywhere; with one: 401 without a valid token', async () => {
    expect((await get('/api/node', undefined, plain)).json).toEqual({ available: false });
    const plainToken = plain.token('alice');
    for (const [method, p] of [['GET', '/api/node/containers'], ['POST', '/api/node/containers'], ['DELETE', '/api/node/containers/1'], ['GET', '/api/node/jobs'], ['GET', '/api/node/jobs/x/output']]) {
      for (const token of [plainToken, undefined]) {
        const r = await call(method, p, { h: plain, token, body: method === 'POST' ? '{"flist":"alice/x.flist"}' : undefined });
        expect(r.status, `${method} ${p}`).toBe(404);
        expect(r.json, `${method} ${p}`).toEqual({ status: 'error', message: 'no agent beside this hub' });
      }
    }

    expect((await get('/api/node')).json).toEqual({ available: true });
    for (const [method, p] of [['GET', '/api/node/containers'], ['POST', '/api/node/containers'], ['DELETE', '/api/node/containers/1'], ['GET', '/api/node/jobs'], ['GET', '/api/node/jobs/x/output']]) {
      const none = await call(method, p, { body: method === 'POST' ? '{"flist":"alice/busybox.flist","command":"true"}' : undefined });
      expect(none.status, `${method} ${p}`).toBe(401);
      expect(none.json).toEqual({ status: 'error', message: 'no authorization provided' });
      const wrong = await call(method, p, { token: 'g8h_not-a-token' });
      expect(wrong.status, `${method} ${p}`).toBe(401);
      expect(wrong.json).toEqual({ status: 'error', message: 'invalid or expired token' });
    }
    expect(await containers()).toEqual([]); // nothing was started by the refused requests
  });

  it('start `echo hello` in busybox: output over SSE then end with exit 0; listed with uptime; late listeners replay; delete leaves nothing', async () => {
    const t0 = Date.now();
    const r = await post('/api/node/containers', { flist: 'alice/busybox.flist', command: ['echo', 'hello'], name: 'hello' });
    expect(r.status, r.text).toBe(200);
    expect(r.json).toEqual({ id: expect.any(Number), job: expect.any(String) });
    const { id, job } = r.json;
    const s = sse(`/api/node/jobs/${job}/output`, { token: alice });
    expect(await s.done).toEqual({ status: 200 });
    expect(shape(s.events)).toEqual([['message', { stream: 1, line: 'hello' }], ['end', { state: 'SUCCESS', code: 0, exit: 0 }]]);
    expect(s.events[0].id).toBe('1');

    // the container stays (the command ended, the container did not) and is listed
    const [c] = await containers();
    expect(c).toEqual({
      id, flist: `${hub.url}/alice/busybox.flist`, tags: ['hello'], hostname: 'hello', pid: expect.any(Number),
      starttime: expect.any(Number), uptime: expect.any(Number), cpu: expect.any(Number), memory: expect.any(Number), job,
    });
    expect(c.pid).toBeGreaterThan(1);
    expect(c.starttime).toBeGreaterThanOrEqual(t0 - 1000);
    expect(c.starttime).toBeLessThanOrEqual(Date.now());
    await new Promise((res) => setTimeout(res, 1100));
    expect((await containers())[0].uptime).toBeGreaterThanOrEqual(1);

    // late listeners, with the token in the header or (EventSource) in the query
    const late = sse(`/api/node/jobs/${job}/output`, { token: alice });
    await late.done;
    expect(shape(late.events)).toEqual(shape(s.events));
    const byQuery = sse(`/api/node/jobs/${job}/output?token=${encodeURIComponent(bob)}`);
    await byQuery.done;
    expect(shape(byQuery.events)).toEqual(shape(s.events));
    // a reconnect with Last-Event-ID gets what came after it
    const resumed = sse(`/api/node/jobs/${job}/output`, { token: alice, headers: { 'last-event-id': '1' } });
    await resumed.done;
    expect(shape(resumed.events)).toEqual([['end', { state: 'SUCCESS', code: 0, exit: 0 }]]);

    const del = await call('DELETE', `/api/node/containers/${id}`, { token: alice });
    expect(del.status, del.text).toBe(200);
    expect(del.json).toEqual({ status: 'success' });
    expect(await containers()).toEqual([]);
    expect(leftovers(agent)).toEqual([]);
  }, 120_000);

  it('a shell command: stdout and stderr live to several listeners, the jobs list shows it, then its exit status', async () => {
    const cmd = 'echo first; sleep 3; echo second >&2; exit 3';
    const r = await post('/api/node/containers', { flist: `${hub.url}/alice/busybox.flist`, command: cmd });
    expect(r.status, r.text).toBe(200);
    const { id, job } = r.json;
    const a = sse(`/api/node/jobs/${job}/output`, { token: alice });
    const b = sse(`/api/node/jobs/${job}/output`, { token: bob });
    await until('the first line', () => a.events.length > 0 && b.events.length > 0);
    expect(shape(a.events)).toEqual([['message', { stream: 1, line: 'first' }]]);

    // while it runs: in the jobs list (inside its container), without the hub's own queries
    const jobs = (await get('/api/node/jobs', alice)).json.jobs as Array<Record<string, any>>;
    const mine = jobs.find((j) => j.id === job);
    expect(mine).toEqual({ id: job, command: `sh -c ${cmd}`, container: id, starttime: expect.any(Number), cpu: expect.any(Number), rss: expect.any(Number) });
    expect(mine!.rss).toBeGreaterThan(0);
    expect(jobs.filter((j) => /^(job\.list|corex\.(list|dispatch))$/.test(j.command))).toEqual([]);
    expect(jobs.every((j) => typeof j.id === 'string' && Number.isInteger(j.container))).toBe(true);
    expect((await containers()).map((c) => c.flist)).toEqual([`${hub.url}/alice/busybox.flist`]);

    await Promise.all([a.done, b.done]);
    const want = [['message', { stream: 1, line: 'first' }], ['message', { stream: 2, line: 'second' }], ['end', { state: 'ERROR', code: 1003, exit: 3 }]];
    expect(shape(a.events)).toEqual(want);
    expect(shape(b.events)).toEqual(want);
    expect(a.events[2].at - a.events[0].at).toBeGreaterThan(2000); // "first" came while the command still ran
    expect((await get('/api/node/jobs', alice)).json.jobs.find((j: { id: string }) => j.id === job)).toBeUndefined();

    expect((await call('DELETE', `/api/node/containers/${id}`, { token: alice })).status).toBe(200);
    expect(leftovers(agent)).toEqual([]);
  }, 120_000);

  it("no command: the flist's entrypoint (with its environ); none there is a 400 and no container", async () => {
    const r = await post('/api/node/containers', { flist: 'alice/busybox-entry.flist', command: '' });
    expect(r.status, r.text).toBe(200);
    const s = sse(`/api/node/jobs/${r.json.job}/output`, { token: alice });
    await s.done;
    expect(shape(s.events)).toEqual([
      ['message', { stream: 1, line: 'from the entrypoint' }],
      ['message', { stream: 1, line: 'hello from environ' }],
      ['end', { state: 'SUCCESS', code: 0, exit: 0 }],
    ]);
    expect((await call('DELETE', `/api/node/containers/${r.json.id}`, { token: alice })).status).toBe(200);

    const none = await post('/api/node/containers', { flist: 'alice/busybox.flist' });
    expect(none.status).toBe(400);
    expect(none.json).toEqual({ status: 'error', message: 'alice/busybox.flist has no entrypoint: give a command' });
    expect(await containers()).toEqual([]);
    expect(leftovers(agent)).toEqual([]);
  }, 120_000);

  it('terminating a container while its command runs ends the output stream; nothing is left', async () => {
    const r = await post('/api/node/containers', { flist: 'alice/busybox.flist', command: 'echo started; sleep 120', name: 'sleeper' });
    expect(r.status, r.text).toBe(200);
    const s = sse(`/api/node/jobs/${r.json.job}/output`, { token: alice });
    await until('the first line', () => s.events.length > 0);
    const t0 = Date.now();
    const del = await call('DELETE', `/api/node/containers/${r.json.id}`, { token: alice });
    expect(del.status, del.text).toBe(200);
    await s.done;
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(shape(s.events)).toEqual([['message', { stream: 1, line: 'started' }], ['end', { state: expect.stringMatching(/^(ERROR|KILLED)$/), code: expect.any(Number), exit: expect.any(Number) }]]);
    expect(s.events[1].data.exit).not.toBe(0); // killed with the container (SIGTERM: 143)
    expect(await containers()).toEqual([]);
    expect(leftovers(agent)).toEqual([]);
  }, 120_000);

  it('a command that does not exist ends with 127 and its error on stderr', async () => {
    const r = await post('/api/node/containers', { flist: 'alice/busybox.flist', command: ['/no/such/cmd'] });
    expect(r.status, r.text).toBe(200);
    const s = sse(`/api/node/jobs/${r.json.job}/output`, { token: alice });
    await s.done;
    const end = s.events[s.events.length - 1];
    expect(end.event).toBe('end');
    expect(end.data).toMatchObject({ exit: 127, state: 'ERROR' });
    expect(s.events.some((e) => e.data.stream === 2 && e.data.line.includes('/no/such/cmd'))).toBe(true);
  }, 120_000);

  it('bad flists: an unreachable URL is a 502 with the agent message; an unknown hub flist a 400; nothing left', async () => {
    const down = await post('/api/node/containers', { flist: 'http://127.0.0.1:1/x/y.flist', command: 'true' });
    expect(down.status).toBe(502);
    expect(down.json.status).toBe('error');
    expect(down.json.message).toMatch(/^corex\.create: ERROR: .*127\.0\.0\.1:1/);
    const unknown = await post('/api/node/containers', { flist: 'alice/nope.flist', command: 'true' });
    expect(unknown.status).toBe(400);
    expect(unknown.json).toEqual({ status: 'error', message: 'flist: no flist alice/nope.flist on this hub' });
    expect(await containers()).toEqual([]);
    expect(leftovers(agent)).toEqual([]);
  }, 120_000);

  it('bad bodies and ids are 400s, unknown containers and jobs 404s', async () => {
    for (const body of [
      'not json',
      '[1, 2]',
      '"alice/busybox.flist"',
      {},
      { flist: '' },
      { flist: 42 },
      { flist: 'just-a-name' },
      { flist: 'a/b/c.flist' },
      { flist: 'alice/busybox.flist', command: 42 },
      { flist: 'alice/busybox.flist', command: ['echo', 1] },
      { flist: 'alice/busybox.flist', command: [''] },
      { flist: 'alice/busybox.flist', command: 'true', name: 'no spaces' },
      { flist: 'alice/busybox.flist', command: 'true', name: 7 },
    ]) {
      const r = await post('/api/node/containers', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.status).toBe('error');
      expect(r.json.message.length).toBeGreaterThan(5);
    }
    expect(await containers()).toEqual([]);
    for (const id of ['abc', '0', '-1', '1.5']) expect((await call('DELETE', `/api/node/containers/${id}`, { token: alice })).status, id).toBe(400);
    const gone = await call('DELETE', '/api/node/containers/999', { token: alice });
    expect(gone.status).toBe(404);
    expect(gone.json).toEqual({ status: 'error', message: "corex.terminate: ERROR: no container with id '999'" });
    const noJob = await get('/api/node/jobs/no-such-job/output', alice);
    expect(noJob.status).toBe(404);
    expect(noJob.json.message).toMatch(/^job not found/);
  });
});
