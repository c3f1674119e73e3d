// The hub's 0-hub JSON API against a real hub process: listings, inspection, downloads,
// links/tags, management (rename, promote, delete, merge), upload-flist, and bad input.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFromTar } from '../src/flist/builder';
import { fileContent } from '../src/flist/content';
import { hashReady } from '../src/flist/hash';
import { openGen2 } from '../src/flist/reader';
import { writeFlist } from '../src/flist/writer';
import { openStore } from '../src/store';
import { startHub, type HubProcess } from './helpers/hub';
import { everyTypeEntries, T0, writeTar, type FixtureEntry } from './helpers/tarballs';

let tmp: string;
let hub: HubProcess;
let alice: string;
let bob: string;

beforeAll(async () => {
  await hashReady();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-hub-api-'));
  hub = await startHub();
  alice = hub.token('alice');
  bob = hub.token('bob');
});
afterAll(async () => {
  await hub?.stop();
  // no request ended in an unexpected server error
  expect(hub?.log() ?? '').not.toMatch(/hub: |block api: /);
  fs.rmSync(tmp, { recursive: true, force: true });
  if (hub) fs.rmSync(hub.data, { recursive: true, force: true });
});

// -- helpers ---------------------------------------------------------------------------------

const file = (p: string, content: string): FixtureEntry => ({
  path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from(content),
});
const dir = (p: string): FixtureEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0 });

/** Build an flist from entries, its blocks written to `storeUrl` (default: the hub's own store). */
async function makeFlist(name: string, entries: FixtureEntry[], opts: { storeUrl?: string; metadata?: Record<string, string> } = {}): Promise<string> {
  const store = await openStore(opts.storeUrl ?? `dir://${hub.data}/blocks`);
  try {
    const { tree } = await buildFromTar(Readable.from(await writeTar(entries)), { store });
    const out = path.join(tmp, name);
    await writeFlist(tree, out, opts.metadata ?? {});
    return out;
  } finally {
    await store.close();
  }
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

async function call(method: string, url: string, opts: { token?: string; auth?: string; body?: string | FormData; h?: HubProcess; headers?: Record<string, string> } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.auth) headers.authorization = opts.auth;
  const res = await fetch(`${(opts.h ?? hub).url}${url}`, { method, headers, body: opts.body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

async function uploadFlist(token: string, localFile: string, filename: string, h?: HubProcess): Promise<Reply> {
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(localFile)]), filename);
  return call('POST', '/api/flist/me/upload-flist', { token, body: form, h });
}

/** A request with the path sent exactly as given (fetch would normalise "..") or a custom method. */
function raw(method: string, p: string, token?: string, h: HubProcess = hub): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(h.port, '127.0.0.1', () => {
      sock.write(`${method} ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}\r\n`);
    });
    let out = '';
    sock.on('data', (d: Buffer) => (out += d.toString('utf8')));
    sock.on('error', reject);
    sock.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(out)?.[1] ?? 0);
      resolve({ status, body: out.slice(out.indexOf('\r\n\r\n') + 4) });
    });
  });
}

const md5 = (buf: Buffer): string => crypto.createHash('md5').update(buf).digest('hex');
const flistFiles = (h: HubProcess = hub): string[] => fs.readdirSync(path.join(h.data, 'flists'));

async function readBack(flistBytes: Buffer, p: string): Promise<Buffer> {
  const local = path.join(tmp, `readback-${crypto.randomBytes(4).toString('hex')}.flist`);
  fs.writeFileSync(local, flistBytes);
  const r = await openGen2(local);
  const store = await openStore(hub.url); // blocks through the hub's block endpoint
  try {
    const e = r.stat(p)!;
    const parts: Buffer[] = [];
    for await (const c of fileContent(store, e, 'gen2')) parts.push(c);
    return Buffer.concat(parts);
  } finally {
    r.close();
    await store.close();
  }
}

// -- the tests -------------------------------------------------------------------------------

let appFile: string;
let appBytes: Buffer;

describe('upload-flist and the public endpoints', () => {
  it('publishes an flist whose blocks are all in the store', async () => {
    appFile = await makeFlist('app.flist', everyTypeEntries());
    appBytes = fs.readFileSync(appFile);
    const r = await uploadFlist(alice, appFile, 'app.flist');
    expect(r.status, r.text).toBe(200);
    expect(r.json.status).toBe('success');
    expect(r.json.payload.name).toBe('app.flist');
    expect(r.json.payload.files).toMatchObject({ failure: 0, missing: 0, regular: expect.any(Number), directory: expect.any(Number) });
    expect(r.json.payload.files.blocks).toBeGreaterThan(5);
    expect(r.headers.get('content-type')).toMatch(/application\/json/);
    expect(r.text.endsWith('\n')).toBe(true);
    expect(fs.readdirSync(path.join(hub.data, 'tmp'))).toEqual([]);
  });

  it('refuses an flist with a block missing from the store, publishing nothing', async () => {
    const elsewhere = fs.mkdtempSync(path.join(tmp, 'other-store-'));
    const f = await makeFlist('stray.flist', [dir('x'), file('x/only-elsewhere', 'these bytes are nowhere in the hub\n')], { storeUrl: `dir://${elsewhere}` });
    const before = flistFiles();
    const r = await uploadFlist(alice, f, 'stray.flist');
    expect(r.status).toBe(400);
    expect(r.json).toEqual({ status: 'error', message: 'unauthorized upload, contents is not fully present on backend (1 of 1 blocks missing)' });
    expect((await call('GET', '/api/flist/alice/stray')).status).toBe(404);
    expect(flistFiles()).toEqual(before);
    expect(fs.readdirSync(path.join(hub.data, 'tmp'))).toEqual([]);
  });

  it('refuses uploads that are not flists or lack the file field', async () => {
    const junk = path.join(tmp, 'junk.flist');
    fs.writeFileSync(junk, 'this is not an flist at all');
    const r1 = await uploadFlist(alice, junk, 'junk.flist');
    expect(r1.status).toBe(400);
    expect(r1.json.message).toMatch(/^not a valid flist: /);
    const r2 = await uploadFlist(alice, appFile, 'app.tar.gz');
    expect(r2.status).toBe(400);
    expect(r2.json.message).toMatch(/^this file is not allowed/);
    const form = new FormData();
    form.append('other', new Blob([appBytes]), 'app.flist');
    const r3 = await call('POST', '/api/flist/me/upload-flist', { token: alice, body: form });
    expect(r3.status).toBe(400);
    expect(r3.json.message).toMatch(/unexpected file field "other"/);
    const r4 = await call('POST', '/api/flist/me/upload-flist', { token: alice, body: 'plain' });
    expect(r4.json).toEqual({ status: 'error', message: 'no file found' });
    expect((await call('GET', '/api/flist/alice')).json.map((e: { name: string }) => e.name)).toEqual(['app.flist']);
  });

  it('sanitises the uploaded file name', async () => {
    const r = await uploadFlist(alice, appFile, '../../etc/My App.flist');
    expect(r.status, r.text).toBe(200);
    expect(r.json.payload.name).toBe('My_App.flist');
    expect((await call('DELETE', '/api/flist/me/My_App', { token: alice })).status).toBe(200);
  });

  it('lists repositories and flists', async () => {
    const list = await call('GET', '/api/flist');
    expect(list.json).toEqual(['alice/app.flist']);
    expect(list.headers.get('access-control-allow-origin')).toBe('*');
    const repos = await call('GET', '/api/repositories');
    expect(repos.json).toEqual([
      { name: 'alice', official: false, updated: expect.any(Number) },
      { name: 'bob', official: false, updated: expect.any(Number) },
    ]);
    const mine = await call('GET', '/api/flist/alice');
    expect(mine.json).toEqual([{ name: 'app.flist', size: `${(appBytes.length / 1024).toFixed(2)} KB`, updated: expect.any(Number), type: 'regular' }]);
    expect((await call('GET', '/api/flist/bob')).json).toEqual([]);
    const all = await call('GET', '/api/fileslist');
    expect(all.json).toEqual({ alice: mine.json, bob: [] });
  });

  it('dumps the contents computed from the flist itself', async () => {
    const r = await call('GET', '/api/flist/alice/app.flist');
    expect(r.status).toBe(200);
    const local = await openGen2(appFile);
    const expected = [...local.walk()].filter((e) => e.path !== '');
    local.close();
    expect(r.json.content).toHaveLength(expected.length);
    const byPath = new Map(r.json.content.map((c: { path: string }) => [c.path, c]));
    for (const e of expected) {
      const c = byPath.get(`/${e.path}`) as { size: number; target?: string };
      expect(c, e.path).toBeDefined();
      expect(c.size).toBe(e.kind === 'file' ? e.size : 0);
      if (e.kind === 'link') expect(c.target).toBe(e.target);
    }
    const count = (k: string): number => expected.filter((e) => e.kind === k).length;
    expect(r.json).toMatchObject({ regular: count('file'), symlink: count('link'), directory: count('dir'), special: count('special'), failure: 0 });
    expect(r.json.fullsize).toBe(expected.filter((e) => e.kind === 'file').reduce((n, e) => n + e.size, 0));
    // name without .flist works the same
    expect((await call('GET', '/api/flist/alice/app')).json).toEqual(r.json);
  });

  it('answers /light and the INFO method with the info object', async () => {
    const light = await call('GET', '/api/flist/alice/app/light');
    expect(light.json).toEqual({ name: 'app.flist', size: appBytes.length, updated: expect.any(Number), type: 'regular', md5: md5(appBytes) });
    const info = await raw('INFO', '/api/flist/alice/app.flist');
    expect(info.status).toBe(200);
    expect(JSON.parse(info.body)).toEqual(light.json);
    const missing = await raw('INFO', '/api/flist/alice/nope');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toEqual({ status: 'error', message: 'source not found' });
    // other unknown methods still get Node's plain 400, and the hub keeps serving
    expect((await raw('BREW', '/api/flist')).status).toBe(400);
    expect((await call('GET', '/api/flist')).status).toBe(200);
  });

  it('returns metadata rows decoded, with backend-forced when there is no backend row', async () => {
    const r = await call('GET', '/api/flist/alice/app/metadata');
    expect(r.json).toEqual({ 'backend-forced': { url: hub.url } });
    const withMeta = await makeFlist('meta.flist', [file('a', 'a\n')], {
      metadata: { backend: JSON.stringify({ url: hub.url }), readme: 'plain text', entrypoint: '["/bin/sh","-c","true"]' },
    });
    expect((await uploadFlist(alice, withMeta, 'meta.flist')).status).toBe(200);
    const m = await call('GET', '/api/flist/alice/meta/metadata');
    expect(m.json).toEqual({ backend: { url: hub.url }, readme: 'plain text', entrypoint: ['/bin/sh', '-c', 'true'] });
    expect((await call('DELETE', '/api/flist/me/meta', { token: alice })).status).toBe(200);
  });

  it('serves the flist bytes, md5, json and txt', async () => {
    const res = await fetch(`${hub.url}/alice/app.flist`);
    const body = Buffer.from(await res.arrayBuffer());
    expect(res.status).toBe(200);
    expect(body.equals(appBytes)).toBe(true);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-length')).toBe(String(appBytes.length));
    expect(res.headers.get('etag')).toBe(`"${md5(appBytes)}"`);
    const again = await fetch(`${hub.url}/alice/app.flist`, { headers: { 'if-none-match': `"${md5(appBytes)}"` } });
    expect(again.status).toBe(304);
    const head = await fetch(`${hub.url}/alice/app.flist`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(appBytes.length));

    const sum = await call('GET', '/alice/app.flist.md5');
    expect(sum.text).toBe(`${md5(appBytes)}\n`);
    expect(sum.headers.get('content-type')).toMatch(/^text\/plain/);
    const json = await call('GET', '/alice/app.json');
    expect(json.json).toEqual({ flist: 'app.flist', uploader: 'alice', source: `${hub.url}/alice/app.flist`, storage: hub.url, checksum: md5(appBytes) });
    const txt = await call('GET', '/alice/app.txt');
    expect(txt.text).toBe(
      `File:     app.flist\nUploader: alice\nSource:   ${hub.url}/alice/app.flist\nStorage:  ${hub.url}\nChecksum: ${md5(appBytes)}\n`,
    );
    // the downloaded flist reads back through the hub's block endpoint
    const want = everyTypeEntries().find((e) => e.path === 'files/multi-block.bin')!.content!;
    expect((await readBack(body, 'files/multi-block.bin')).equals(want)).toBe(true);
  });

  it('answers 404 envelopes for unknown users and flists', async () => {
    const cases: Array<[string, string]> = [
      ['/api/flist/nobody', 'user not found'],
      ['/api/flist/nobody/app', 'user not found'],
      ['/api/flist/alice/nope', 'source not found'],
      ['/api/flist/alice/nope/light', 'source not found'],
      ['/api/flist/alice/nope/metadata', 'source not found'],
      ['/api/flist/alice/tags/none', 'tag not found'],
      ['/nobody/app.flist', 'user not found'],
      ['/alice/nope.flist', 'source not found'],
      ['/alice/nope.flist.md5', 'source not found'],
      ['/alice/nope.json', 'source not found'],
      ['/alice/nope.txt', 'source not found'],
      ['/alice/tags/none/app.flist', 'source not found'],
    ];
    for (const [url, message] of cases) {
      const r = await call('GET', url);
      expect([url, r.status, r.json]).toEqual([url, 404, { status: 'error', message }]);
    }
  });
});

describe('links and tags', () => {
  let app2Bytes: Buffer;

  it('links inside my repository, resolved in listings and downloads', async () => {
    const app2 = await makeFlist('app2.flist', [dir('v'), file('v/version', '2\n')]);
    app2Bytes = fs.readFileSync(app2);
    expect((await uploadFlist(alice, app2, 'app2.flist')).status).toBe(200);
    const r = await call('GET', '/api/flist/me/app/link/latest', { token: alice });
    expect(r.json).toEqual({ status: 'success' });
    const list = (await call('GET', '/api/flist/alice')).json;
    expect(list.find((e: { name: string }) => e.name === 'latest.flist')).toEqual({
      name: 'latest.flist', size: `${(appBytes.length / 1024).toFixed(2)} KB`, updated: expect.any(Number), linktime: expect.any(Number),
      type: 'symlink', target: 'app.flist',
    });
    expect((await call('GET', '/api/flist/alice/latest/light')).json).toMatchObject({ name: 'latest.flist', type: 'symlink', target: 'app.flist', size: appBytes.length, md5: md5(appBytes) });
    expect(Buffer.from(await (await fetch(`${hub.url}/alice/latest.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
    expect((await call('GET', '/alice/latest.flist.md5')).text).toBe(`${md5(appBytes)}\n`);
    // POST works too, and replaces the link
    expect((await call('POST', '/api/flist/me/app2/link/latest', { token: alice })).status).toBe(200);
    expect(Buffer.from(await (await fetch(`${hub.url}/alice/latest.flist`)).arrayBuffer()).equals(app2Bytes)).toBe(true);
    expect((await call('GET', '/api/flist')).json).toEqual(['alice/app.flist', 'alice/app2.flist', 'alice/latest.flist']);
  });

  it('never overwrites a regular flist with a link, refuses loops and missing sources', async () => {
    const r = await call('GET', '/api/flist/me/app2/link/app', { token: alice });
    expect([r.status, r.json]).toEqual([401, { status: 'error', message: 'link destination is already a file' }]);
    expect(Buffer.from(await (await fetch(`${hub.url}/alice/app.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
    expect((await call('GET', '/api/flist/me/latest/link/newest', { token: alice })).status).toBe(200);
    const loop = await call('GET', '/api/flist/me/newest/link/latest', { token: alice });
    expect(loop.status).toBe(400);
    expect(loop.json.message).toMatch(/would point at itself/);
    const missing = await call('GET', '/api/flist/me/nope/link/x', { token: alice });
    expect([missing.status, missing.json.message]).toEqual([404, 'source not found']);
    expect((await call('DELETE', '/api/flist/me/newest', { token: alice })).status).toBe(200);
  });

  it('crosslinks into another repository', async () => {
    expect((await call('GET', '/api/flist/me/alice-app/crosslink/alice/app', { token: bob })).status).toBe(200);
    expect((await call('GET', '/api/flist/bob')).json).toEqual([
      { name: 'alice-app.flist', size: expect.any(String), updated: expect.any(Number), linktime: expect.any(Number), type: 'symlink', target: 'alice/app.flist' },
    ]);
    expect((await call('GET', '/api/flist/bob/alice-app/light')).json.target).toBe('../alice/app.flist');
    expect(Buffer.from(await (await fetch(`${hub.url}/bob/alice-app.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
    expect((await call('GET', '/api/flist/bob/alice-app')).json.regular).toBeGreaterThan(10);
    const noRepo = await call('GET', '/api/flist/me/x/crosslink/nobody/app', { token: bob });
    expect([noRepo.status, noRepo.json.message]).toEqual([404, 'source repository not found']);
    const noSrc = await call('GET', '/api/flist/me/x/crosslink/alice/nope', { token: bob });
    expect([noSrc.status, noSrc.json.message]).toEqual([404, 'source not found']);
  });

  it('tags, crosstags and untagging', async () => {
    expect((await call('GET', '/api/flist/me/v1/app/tag/alice/app', { token: alice })).status).toBe(200);
    expect((await call('POST', '/api/flist/me/v1/extra/tag/alice/latest', { token: alice })).status).toBe(200);
    expect((await call('GET', '/api/flist')).json).toEqual(['alice/.tag-v1', 'alice/app.flist', 'alice/app2.flist', 'alice/latest.flist', 'bob/alice-app.flist']);
    expect((await call('GET', '/api/flist/alice')).json[0]).toEqual({ name: 'v1', size: '0 KB', updated: expect.any(Number), type: 'tag' });
    expect((await call('GET', '/api/flist/alice/tags/v1')).json).toEqual([
      { name: 'app.flist', size: `${(appBytes.length / 1024).toFixed(2)} KB`, updated: expect.any(Number), linktime: expect.any(Number), type: 'symlink', target: 'alice/app.flist' },
      { name: 'extra.flist', size: `${(app2Bytes.length / 1024).toFixed(2)} KB`, updated: expect.any(Number), linktime: expect.any(Number), type: 'symlink', target: 'alice/latest.flist' },
    ]);
    expect(Buffer.from(await (await fetch(`${hub.url}/alice/tags/v1/app.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
    expect(Buffer.from(await (await fetch(`${hub.url}/alice/tags/v1/extra.flist`)).arrayBuffer()).equals(app2Bytes)).toBe(true);

    // bob links to alice's tag
    expect((await call('GET', '/api/flist/me/alice-v1/crosstag/alice/v1', { token: bob })).status).toBe(200);
    expect((await call('GET', '/api/flist/bob')).json).toContainEqual({
      name: 'alice-v1', size: '0.00 KB', updated: expect.any(Number), linktime: expect.any(Number), type: 'taglink', target: 'alice/tags/v1',
    });
    expect((await call('GET', '/api/flist/bob/alice-v1/taglink')).json).toEqual({ target: 'alice/tags/v1' });
    // a regular flist (or link) is not a tag link: 0-hub's 401 text; a missing one is a 404
    const notTag = await call('GET', '/api/flist/bob/alice-app/taglink');
    expect([notTag.status, notTag.json.message]).toEqual([401, 'could not read tag link']);
    const missing = await call('GET', '/api/flist/bob/nothing-here/taglink');
    expect([missing.status, missing.json.message]).toEqual([404, 'source not found']);
    expect(Buffer.from(await (await fetch(`${hub.url}/bob/alice-v1/app.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
    const suffix = await call('GET', '/api/flist/me/x.flist/crosstag/alice/v1', { token: bob });
    expect([suffix.status, suffix.json.message]).toEqual([401, 'tag symlink cannot ends with .flist']);
    const clash = await call('GET', '/api/flist/me/alice-app/crosstag/alice/v1', { token: bob });
    expect([clash.status, clash.json.message]).toEqual([401, 'there is a .flist file with the same name existing already']);
    const noTag = await call('GET', '/api/flist/me/x/crosstag/alice/v9', { token: bob });
    expect([noTag.status, noTag.json.message]).toEqual([404, 'source tag not found']);

    // untag: the emptied tag disappears
    expect((await call('DELETE', '/api/flist/me/v1/extra/tag/alice/latest', { token: alice })).status).toBe(200);
    const again = await call('DELETE', '/api/flist/me/v1/extra/tag/alice/latest', { token: alice });
    expect([again.status, again.json.message]).toEqual([404, 'target not found on this tag']);
    expect((await call('DELETE', '/api/flist/me/v1/app/tag/alice/app', { token: alice })).status).toBe(200);
    expect((await call('GET', '/api/flist/alice/tags/v1')).status).toBe(404);
    expect((await call('GET', '/bob/alice-v1/app.flist')).status).toBe(404);
    // a crosstag link is deleted by its bare name
    expect((await call('DELETE', '/api/flist/me/alice-v1', { token: bob })).status).toBe(200);
    expect((await call('GET', '/api/flist/bob')).json.map((e: { name: string }) => e.name)).toEqual(['alice-app.flist']);
  });
});

describe('rename, promote, delete, merge', () => {
  it('renames inside my repository', async () => {
    expect((await call('GET', '/api/flist/me/app2/rename/app3', { token: alice })).json).toEqual({ status: 'success' });
    expect((await call('GET', '/alice/app2.flist')).status).toBe(404);
    expect((await call('GET', '/alice/app3.flist')).status).toBe(200);
    expect((await call('POST', '/api/flist/me/app3/rename/app2', { token: alice })).status).toBe(200);
    const r = await call('GET', '/api/flist/me/nope/rename/x', { token: alice });
    expect([r.status, r.json.message]).toEqual([404, 'source not found']);
  });

  it('promotes (copies) another repository\'s flist without copying bytes', async () => {
    const files = flistFiles();
    const r = await call('GET', '/api/flist/me/promote/alice/latest/promoted', { token: bob });
    expect(r.json).toEqual({
      status: 'success',
      payload: { source: { username: 'alice', filename: 'latest.flist' }, destination: { username: 'bob', filename: 'promoted.flist' } },
    });
    expect((await call('GET', '/api/flist/bob/promoted/light')).json.type).toBe('regular');
    expect((await call('GET', '/bob/promoted.flist.md5')).text).toBe((await call('GET', '/alice/app2.flist.md5')).text);
    expect(flistFiles()).toEqual(files);
    // a later change of alice's link does not move bob's copy
    expect((await call('GET', '/api/flist/me/app/link/latest', { token: alice })).status).toBe(200);
    expect((await call('GET', '/bob/promoted.flist.md5')).text).toBe((await call('GET', '/alice/app2.flist.md5')).text);
    const r2 = await call('GET', '/api/flist/me/promote/nobody/x/y', { token: bob });
    expect([r2.status, r2.json.message]).toEqual([404, 'user not found']);
  });

  it('deletes flists and links; unused flist files go away', async () => {
    const only = await makeFlist('lonely.flist', [file('lonely', 'only here\n')]);
    expect((await uploadFlist(bob, only, 'lonely.flist')).status).toBe(200);
    const sha = crypto.createHash('sha256').update(fs.readFileSync(only)).digest('hex');
    expect(flistFiles()).toContain(`${sha}.flist`);
    expect((await call('GET', '/api/flist/me/lonely/link/lonely-link', { token: bob })).status).toBe(200);
    expect((await call('DELETE', '/api/flist/me/lonely-link', { token: bob })).status).toBe(200);
    expect(flistFiles()).toContain(`${sha}.flist`);
    expect((await call('DELETE', '/api/flist/me/lonely.flist', { token: bob })).json).toEqual({ status: 'success' });
    expect(flistFiles()).not.toContain(`${sha}.flist`);
    const r = await call('DELETE', '/api/flist/me/lonely', { token: bob });
    expect([r.status, r.json.message]).toEqual([404, 'source not found']);
    // bob's promoted copy shares alice's file: deleting it keeps the file
    const shared = flistFiles();
    expect((await call('DELETE', '/api/flist/me/promoted', { token: bob })).status).toBe(200);
    expect(flistFiles()).toEqual(shared);
    expect((await call('GET', '/alice/app2.flist')).status).toBe(200);
  });

  it('merges flists, the first source winning', async () => {
    const a = await makeFlist('base.flist', [dir('etc'), file('etc/conf', 'from base\n'), file('base-only', 'b\n')], { metadata: { readme: 'base readme' } });
    const b = await makeFlist('layer.flist', [dir('etc'), file('etc/conf', 'from the layer, longer\n'), file('etc/extra', 'x\n')]);
    expect((await uploadFlist(alice, a, 'base.flist')).status).toBe(200);
    expect((await uploadFlist(bob, b, 'layer.flist')).status).toBe(200);
    const r = await call('POST', '/api/flist/me/merge/merged', { token: alice, body: JSON.stringify(['alice/base', 'bob/layer.flist']), headers: { 'content-type': 'application/json' } });
    expect(r.json).toEqual({ status: 'success' });
    const dump = (await call('GET', '/api/flist/alice/merged')).json;
    expect(dump.content.map((c: { path: string }) => c.path).sort()).toEqual(['/base-only', '/etc', '/etc/conf', '/etc/extra']);
    const bytes = Buffer.from(await (await fetch(`${hub.url}/alice/merged.flist`)).arrayBuffer());
    expect((await readBack(bytes, 'etc/conf')).toString()).toBe('from base\n');
    expect((await readBack(bytes, 'etc/extra')).toString()).toBe('x\n');
    expect((await call('GET', '/api/flist/alice/merged/metadata')).json.readme).toBe('base readme');

    const bad: Array<[string, number, string]> = [
      ['{not json', 400, 'malformed json request'],
      ['{"a":1}', 400, 'malformed json request'],
      ['[]', 400, 'no source found'],
      ['["noslash"]', 400, 'malformed source filename'],
      ['["alice/nope"]', 404, 'alice/nope does not exists'],
    ];
    for (const [body, status, message] of bad) {
      const res = await call('POST', '/api/flist/me/merge/m2', { token: alice, body });
      expect([body, res.status, res.json]).toEqual([body, status, { status: 'error', message }]);
    }
    expect((await call('GET', '/alice/m2.flist')).status).toBe(404);
  });
});

describe('bad input', () => {
  it('needs a valid token for every /api/flist/me call', async () => {
    const none = await call('GET', '/api/flist/me');
    expect([none.status, none.json]).toEqual([401, { status: 'error', message: 'no authorization provided' }]);
    const wrong = await call('DELETE', '/api/flist/me/app', { token: 'g8h_not-a-real-token' });
    expect(wrong.status).toBe(401);
    const malformed = await call('GET', '/api/flist/me', { auth: 'Token abc def' });
    expect([malformed.status, malformed.json.message]).toEqual([400, 'invalid authorization header']);
    const noUpload = await uploadFlist('nope', appFile, 'app.flist');
    expect(noUpload.status).toBe(401);
    expect((await call('GET', '/api/flist/me', { token: alice })).json).toEqual({ status: 'success', payload: { username: 'alice' } });
    expect((await call('GET', '/api/flist/me', { auth: `bearer ${alice}` })).status).toBe(200);
    expect((await call('GET', '/api/flist/alice/app')).status).toBe(200);
  });

  it('changes only the caller\'s own repository', async () => {
    // bob acts on "me" = bob: alice's app is out of reach
    const del = await call('DELETE', '/api/flist/me/app', { token: bob });
    expect([del.status, del.json.message]).toEqual([404, 'source not found']);
    const ren = await call('GET', '/api/flist/me/app/rename/stolen', { token: bob });
    expect(ren.status).toBe(404);
    expect((await call('GET', '/alice/app.flist')).status).toBe(200);
    expect((await call('GET', '/api/flist/me/app', { token: alice })).status).toBe(200);
    expect((await call('GET', '/api/flist/me/app', { token: bob })).status).toBe(404);
  });

  it('rejects "/", "..", NUL and leading dots in every name component', async () => {
    const urls = [
      '/api/flist/me/a%2Fb/link/x',
      '/api/flist/me/app/link/a%2Fb',
      '/api/flist/me/app/link/%2E%2E',
      '/api/flist/me/app/link/..%2Fx',
      '/api/flist/me/app/link/a%00b',
      '/api/flist/me/app/link/.hidden',
      '/api/flist/me/app/rename/%2E%2E%2Fbob%2Fx',
      '/api/flist/me/x/crosslink/..%2Fbob/app',
      '/api/flist/me/x/crosstag/alice/.v1',
      '/api/flist/me/.tag-v1/app/tag/alice/app',
      '/api/flist/me/promote/alice/app/%2E%2E',
      '/api/flist/me/promote/%2E%2E/app/x',
    ];
    // raw requests: fetch would resolve "%2E%2E" and ".." segments before sending
    for (const url of urls) {
      const r = await raw('GET', url, alice);
      expect([url, r.status]).toEqual([url, 400]);
      expect(JSON.parse(r.body).message).toMatch(/^invalid /);
    }
    expect((await raw('DELETE', '/api/flist/me/%2E%2E%2Fapp', alice)).status).toBe(400);
    const merge = await call('POST', '/api/flist/me/merge/a%2Fb', { token: alice, body: '["alice/app"]' });
    expect(merge.status).toBe(400);
    expect((await raw('GET', '/api/flist/me/../link/x', alice)).status).toBe(400);
    expect((await raw('GET', '/api/flist/alice/..')).status).toBe(400);
    expect((await raw('GET', '/api/flist/%2E%2E')).status).toBe(400);
    expect((await raw('GET', '/alice/%2E%2E%2Fbob.flist')).status).toBe(400);
    expect((await raw('GET', '/alice/tags/%2E%2E/app.flist')).status).toBe(400);
    // nothing changed
    expect((await call('GET', '/api/flist')).json).toEqual(['alice/app.flist', 'alice/app2.flist', 'alice/base.flist', 'alice/latest.flist', 'alice/merged.flist', 'bob/alice-app.flist', 'bob/layer.flist']);
  });

  it('cleans up after a client that disconnects mid-upload', async () => {
    const boundary = 'xxBOUNDARYxx';
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${hub.url}/api/flist/me/upload-flist`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': '10000000' },
      });
      req.on('error', () => resolve());
      req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.flist"\r\nContent-Type: application/octet-stream\r\n\r\n`);
      req.write(appBytes.subarray(0, 4096), async () => {
        // wait until the hub is writing the part to its temp dir, then vanish
        for (let i = 0; i < 100 && fs.readdirSync(path.join(hub.data, 'tmp')).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
        expect(fs.readdirSync(path.join(hub.data, 'tmp'))).toHaveLength(1);
        req.destroy();
        resolve();
      });
      req.on('response', () => reject(new Error('unexpected response')));
    });
    for (let i = 0; i < 50 && fs.readdirSync(path.join(hub.data, 'tmp')).length; i++) await new Promise((r) => setTimeout(r, 100));
    expect(fs.readdirSync(path.join(hub.data, 'tmp'))).toEqual([]);
    expect((await call('GET', '/api/flist/alice/half')).status).toBe(404);
    expect((await call('GET', '/api/flist')).status).toBe(200);
  });
});

describe('GET /api/stats', () => {
  it('counts block GETs, HEADs, body bytes and 404s', async () => {
    const { blake2b128 } = await import('../src/flist/hash');
    const stats = async (): Promise<{ get: number; head: number; bytes: number; missing: number }> => {
      const res = await fetch(`${hub.url}/api/stats`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { blocks: { get: number; head: number; bytes: number; missing: number }; uptime: number };
      expect(body.uptime).toBeGreaterThanOrEqual(0);
      return body.blocks;
    };
    const data = crypto.randomBytes(1000);
    const id = blake2b128(data).toString('hex');
    const missing = crypto.randomBytes(16).toString('hex');
    const before = await stats();
    expect((await fetch(`${hub.url}/api/block/${missing}`)).status).toBe(404);
    expect((await fetch(`${hub.url}/api/blocks/${missing}`, { method: 'HEAD' })).status).toBe(404);
    const put = await fetch(`${hub.url}/api/block/${id}`, { method: 'PUT', headers: { authorization: `Bearer ${alice}` }, body: data });
    expect(put.status).toBe(201);
    const got = await fetch(`${hub.url}/api/block/${id}`);
    expect(Buffer.from(await got.arrayBuffer()).equals(data)).toBe(true);
    expect((await fetch(`${hub.url}/api/block/${id}`, { method: 'HEAD' })).status).toBe(200);
    const after = await stats();
    expect({
      get: after.get - before.get, head: after.head - before.head, bytes: after.bytes - before.bytes, missing: after.missing - before.missing,
    }).toEqual({ get: 2, head: 2, bytes: 1000, missing: 2 });
  });
});

describe('readonly mode and restarts', () => {
  it('a readonly hub serves reads and refuses every write with 400', async () => {
    const listing = (await call('GET', '/api/fileslist')).json;
    await hub.stop();
    const ro = await startHub({ data: hub.data, args: ['--readonly'] });
    try {
      expect((await call('GET', '/api/fileslist', { h: ro })).json).toEqual(listing);
      expect(Buffer.from(await (await fetch(`${ro.url}/alice/app.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
      expect((await call('GET', '/api/flist/alice/app/light', { h: ro })).status).toBe(200);
      const writes: Array<[string, string]> = [
        ['GET', '/api/flist/me'],
        ['DELETE', '/api/flist/me/app'],
        ['GET', '/api/flist/me/app/link/l'],
        ['POST', '/api/flist/me/app/link/l'],
        ['GET', '/api/flist/me/l/crosslink/bob/layer'],
        ['GET', '/api/flist/me/l/crosstag/alice/v1'],
        ['GET', '/api/flist/me/v2/app/tag/alice/app'],
        ['DELETE', '/api/flist/me/v2/app/tag/alice/app'],
        ['GET', '/api/flist/me/app/rename/x'],
        ['GET', '/api/flist/me/promote/bob/layer/x'],
        ['POST', '/api/flist/me/merge/x'],
        ['POST', '/api/flist/me/upload-flist'],
      ];
      for (const [method, url] of writes) {
        const r = await call(method, url, { token: alice, h: ro, body: method === 'POST' ? '[]' : undefined });
        expect([method, url, r.status, r.json]).toEqual([method, url, 400, { status: 'error', message: 'readonly mode' }]);
      }
      const up = await uploadFlist(alice, appFile, 'again.flist', ro);
      expect([up.status, up.json.message]).toEqual([400, 'readonly mode']);
      expect((await call('GET', '/api/fileslist', { h: ro })).json).toEqual(listing);
    } finally {
      await ro.stop();
    }
  });

  it('a restarted hub keeps flists, links, tags and tokens', async () => {
    let h = await startHub({ data: hub.data });
    try {
      expect((await call('GET', '/api/flist/me/v3/app/tag/alice/app', { token: alice, h })).status).toBe(200);
      expect((await call('GET', '/api/flist/me/app-tag/crosstag/alice/v3', { token: bob, h })).status).toBe(200);
      const before = (await call('GET', '/api/fileslist', { h })).json;
      const names = (await call('GET', '/api/flist', { h })).json;
      await h.stop();
      h = await startHub({ data: hub.data });
      expect((await call('GET', '/api/fileslist', { h })).json).toEqual(before);
      expect((await call('GET', '/api/flist', { h })).json).toEqual(names);
      expect(Buffer.from(await (await fetch(`${h.url}/alice/latest.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
      expect(Buffer.from(await (await fetch(`${h.url}/bob/app-tag/app.flist`)).arrayBuffer()).equals(appBytes)).toBe(true);
      expect((await call('GET', '/api/flist/me', { token: bob, h })).json.payload).toEqual({ username: 'bob' });
    } finally {
      await h.stop();
    }
  });

  it('refuses an flist over --max-upload with 413 and publishes nothing', async () => {
    const h = await startHub({ data: hub.data, args: ['--max-upload', '1K'] });
    try {
      const r = await uploadFlist(alice, appFile, 'toobig.flist', h);
      expect(r.status).toBe(413);
      expect(r.json.message).toMatch(/flist larger than 1024 bytes/);
      expect((await call('GET', '/api/flist/alice/toobig', { h })).status).toBe(404);
      expect(fs.readdirSync(path.join(h.data, 'tmp'))).toEqual([]);
      expect((await call('GET', '/api/flist/alice/app/light', { h })).status).toBe(200);
    } finally {
      await h.stop();
    }
  });
});
