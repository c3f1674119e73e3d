// Tarball uploads against a real hub process: curl-style multipart in, flist out, every file
// read back through the hub's block endpoint; progress events; the CLI; and bad input, after
// which nothing may be published, earlier flists stay as they were and the hub keeps serving.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeFromBackend } from '../src/flist/backend';
import { Jobs } from '../src/hub/progress';
import { fileContent } from '../src/flist/content';
import { openGen2 } from '../src/flist/reader';
import type { Entry } from '../src/flist/types';
import { openStore } from '../src/store';
import type { BlockStore } from '../src/store/types';
import { g8os } from './helpers/cli';
import { startHub, type HubProcess } from './helpers/hub';
import { freePort, startRedis } from './helpers/redis';
import { badTarballs, everyTypeEntries, randomBytes, T0, writeTar, type FixtureEntry } from './helpers/tarballs';

const HAVE_CURL = spawnSync('curl', ['--version']).status === 0;

let tmp: string;
let hub: HubProcess;
let token: string;
let keepBytes: Buffer; // the earlier flist every bad upload must leave alone

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-hub-upload-'));
  hub = await startHub();
  token = hub.token('alice');
  const keep = file('keep.tar', await writeTar([fileEntry('etc/keep.txt', 'keep me\n')]));
  const r = await upload(hub, keep, { name: 'keep' });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  keepBytes = await download(hub, 'alice', 'keep.flist');
});

afterAll(async () => {
  await hub?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// helpers

function file(name: string, bytes: Buffer): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
}

function fileEntry(p: string, content: string | Buffer): FixtureEntry {
  return { path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from(content) };
}

interface Answer {
  status: number;
  body: { status: string; message?: string; payload?: Record<string, unknown> & { files: Record<string, number> } };
}

interface UploadOpts {
  token?: string | null;
  name?: string;
  filename?: string;
  headers?: Record<string, string>;
  fields?: Record<string, string>;
}

/** The multipart upload `curl -F file=@… -F metadata-…=…` makes (fetch + FormData without curl). */
async function upload(h: HubProcess, p: string, o: UploadOpts = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  const tok = o.token === undefined ? token : o.token;
  if (tok !== null) headers.Authorization = `Bearer ${tok}`;
  const fields = { ...(o.name ? { name: o.name } : {}), ...(o.fields ?? {}) };
  const url = `${h.url}/api/flist/me/upload`;
  if (HAVE_CURL) {
    const args = ['-sS', '-o', '-', '-w', '\n%{http_code}', '-X', 'POST'];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    for (const [k, v] of Object.entries(fields)) args.push('--form-string', `${k}=${v}`);
    args.push('-F', `file=@${p}${o.filename ? `;filename=${o.filename}` : ''}`, url);
    const r = spawnSync('curl', args, { encoding: 'utf8' });
    const i = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(i + 1)), body: JSON.parse(r.stdout.slice(0, i) || '{}') };
  }
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', await fs.openAsBlob(p), o.filename ?? path.basename(p));
  const res = await fetch(url, { method: 'POST', headers, body: form });
  return { status: res.status, body: await res.json() };
}

/** Entries of a repository (GET /api/flist/<user>); [] for a user with nothing published. */
async function published(h: HubProcess, user = 'alice'): Promise<string[]> {
  const res = await fetch(`${h.url}/api/flist/${user}`);
  const body = (await res.json()) as Array<{ name: string; updated: number }> | { message: string };
  if (!Array.isArray(body)) {
    expect(body.message).toBe('user not found');
    return [];
  }
  return body.map((e) => `${e.name}@${e.updated}`).sort();
}

/** The flist bytes, downloaded as a user would (GET /<user>/<name>). */
async function download(h: HubProcess, user: string, name: string): Promise<Buffer> {
  const res = await fetch(`${h.url}/${user}/${name}`);
  if (res.status !== 200) throw new Error(`${user}/${name}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

const tempFiles = (h: HubProcess): string[] => fs.readdirSync(path.join(h.data, 'tmp'));

/** After a refused upload: nothing new published, the earlier flist intact, no temp files, still serving. */
async function expectNothingChanged(h: HubProcess, before: string[]): Promise<void> {
  expect(await published(h)).toEqual(before);
  if (h === hub) expect((await download(h, 'alice', 'keep.flist')).equals(keepBytes)).toBe(true);
  expect(tempFiles(h)).toEqual([]);
  const res = await fetch(`${h.url}/listen/no-such-job`);
  expect(res.status).toBe(404);
  expect(await res.json()).toEqual({ status: 'error', message: 'job id not found' });
}

async function refused(o: { bytes: Buffer; filename: string; status: number; message: RegExp; h?: HubProcess; upload?: UploadOpts }): Promise<void> {
  const h = o.h ?? hub;
  const before = await published(h);
  const r = await upload(h, file(`bad-${crypto.randomBytes(4).toString('hex')}`, o.bytes), { name: 'keep', filename: o.filename, ...o.upload });
  expect(r.body.status).toBe('error');
  expect(r.body.message).toMatch(o.message);
  expect(r.status).toBe(o.status);
  await expectNothingChanged(h, before);
}

async function readAll(store: BlockStore, e: Entry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of fileContent(store, e, 'gen2')) parts.push(c);
  return Buffer.concat(parts);
}

/** A multipart upload we control byte by byte (slow senders, disconnects). */
function slowUpload(h: HubProcess, body: Buffer, o: { filename: string; name?: string; jobId?: string; token?: string }) {
  const boundary = `b${crypto.randomBytes(8).toString('hex')}`;
  const name = o.name === undefined ? '' : `--${boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n${o.name}\r\n`;
  const head = Buffer.from(`${name}--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${o.filename}"\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const req = http.request(`${h.url}/api/flist/me/upload`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${o.token ?? token}`,
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(head.length + body.length + tail.length),
      ...(o.jobId ? { 'x-job-id': o.jobId } : {}),
    },
  });
  const response = new Promise<Answer | Error>((resolve) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(parts).toString()) }));
    });
    req.on('error', (e) => resolve(e));
  });
  req.write(head);
  let off = 0;
  return {
    response,
    async send(n: number): Promise<void> {
      const chunk = body.subarray(off, off + n);
      off += chunk.length;
      if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
    },
    async finish(): Promise<Answer | Error> {
      req.end(Buffer.concat([body.subarray(off), tail]));
      return response;
    },
    abort(): void {
      req.destroy();
    },
  };
}

type Event = { status: string; message?: string; progress?: number; info?: { filename: string; flist: Record<string, number> } };

/** Follow /listen/<job>: events as they come, `ended` when the hub closes the stream. */
function listen(h: HubProcess, job: string) {
  const events: Event[] = [];
  let onEvent: () => void = () => undefined;
  const ended = new Promise<{ status: number; type: string; events: Event[] }>((resolve, reject) => {
    http
      .get(`${h.url}/listen/${job}`, (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          buf += d;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (frame.startsWith('data: ')) events.push(JSON.parse(frame.slice(6)));
            onEvent();
          }
        });
        res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), events }));
      })
      .on('error', reject);
  });
  return {
    ended,
    /** resolves once the listener has seen at least n events */
    seen: (n: number) =>
      new Promise<void>((resolve) => {
        onEvent = () => events.length >= n && resolve();
        onEvent();
      }),
  };
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const threads = (pid: number): number => Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

// ---------------------------------------------------------------------------------------------

describe('upload → flist → bytes through the hub', () => {
  const README = '# every type\n\nfixture tree for the hub tests\n';

  for (const gzip of [false, true]) {
    it(`every file type in a ${gzip ? '.tar.gz' : '.tar'} reads back byte-identical through openGen2 and the hub's block endpoint`, async () => {
      const entries = [...everyTypeEntries(), fileEntry('.README.md', README)];
      const name = gzip ? 'every-gz' : 'every';
      const p = file(`${name}.${gzip ? 'tar.gz' : 'tar'}`, await writeTar(entries, { gzip }));
      const r = await upload(hub, p, { fields: { 'metadata-color': 'blue', 'metadata-entrypoint': '["/bin/evil"]', 'metadata-backend': '{"host":"evil"}' } });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const payload = r.body.payload!;
      expect(payload.name).toBe(`${name}.flist`);
      expect(payload.url).toBe(`${hub.url}/alice/${name}.flist`);
      expect(payload.job).toMatch(/^[0-9a-f-]{36}$/);
      const files = entries.filter((e) => e.type === 'file' || e.type === 'hardlink');
      expect(payload.files).toMatchObject({
        regular: files.length,
        symlink: entries.filter((e) => e.type === 'symlink').length,
        special: entries.filter((e) => ['char', 'block', 'fifo'].includes(e.type)).length,
        failure: 0,
        fullsize: files.reduce((n, e) => n + (e.content ?? entries.find((x) => x.path === e.linkname)!.content!).length, 0),
      });
      expect(Object.keys(payload.files).sort()).toEqual(['directory', 'failure', 'fullsize', 'regular', 'special', 'symlink', 'uploaded_bytes', 'uploaded_chunks']);

      const local = path.join(tmp, `${name}.flist`);
      fs.writeFileSync(local, await download(hub, 'alice', `${name}.flist`));
      const reader = await openGen2(local);
      // the store is whatever the flist's backend names: this hub's block endpoint
      const meta = reader.metadata();
      expect(storeFromBackend(meta.backend)).toBe(hub.url);
      const store = await openStore(storeFromBackend(meta.backend)!);
      try {
        expect(meta.color).toBe('blue');
        expect(meta.entrypoint).toBeUndefined(); // protected: users cannot set it
        expect(JSON.parse(meta.readme)).toEqual({ readme: README });
        for (const want of entries) {
          const got = reader.stat(want.path);
          expect(got, want.path).toBeDefined();
          const e = got!;
          expect(e.mode & 0o7777, want.path).toBe(want.type === 'symlink' ? 0o777 : want.mode);
          expect([e.uid, e.gid, e.uname, e.gname], want.path).toEqual([want.uid, want.gid, want.uname || String(want.uid), want.gname || String(want.gid)]);
          expect(e.mtime, want.path).toBe(want.mtime);
          if (want.type === 'symlink') expect(e.target, want.path).toBe(want.linkname);
          if (want.type === 'char' || want.type === 'block') expect([e.special, e.rdev], want.path).toEqual([want.type, { major: want.devmajor, minor: want.devminor }]);
          if (want.type === 'fifo') expect(e.special).toBe('fifo');
          if (want.type === 'dir') expect(e.kind).toBe('dir');
          if (want.type === 'file' || want.type === 'hardlink') {
            const content = want.content ?? entries.find((x) => x.path === want.linkname)!.content!;
            expect(e.kind, want.path).toBe('file');
            expect((await readAll(store, e)).equals(content), want.path).toBe(true);
          }
        }
      } finally {
        reader.close();
        await store.close();
      }
      expect(tempFiles(hub)).toEqual([]);
    });
  }

  it('uploading the same tarball again (another name) writes zero new blocks', async () => {
    const p = file('dedup.tar', await writeTar(everyTypeEntries()));
    const first = await upload(hub, p, { name: 'dedup-1' });
    expect(first.status).toBe(200);
    const again = await upload(hub, p, { name: 'dedup-2' });
    expect(again.status).toBe(200);
    expect(again.body.payload!.files).toMatchObject({ uploaded_chunks: 0, uploaded_bytes: 0 });
    expect(again.body.payload!.files.regular).toBe(first.body.payload!.files.regular);
  });

  it('names: X-Original-Name and the name field win over the file name; .tgz and odd file names work', async () => {
    const tar = await writeTar([fileEntry('a.txt', 'a\n')], { gzip: true });
    const viaHeader = await upload(hub, file('x1.tgz', tar), { headers: { 'X-Original-Name': 'from-header.tar.gz' } });
    expect(viaHeader.body.payload?.name).toBe('from-header.flist');
    const viaField = await upload(hub, file('x2.tar.gz', tar), { name: 'from-field' });
    expect(viaField.body.payload?.name).toBe('from-field.flist');
    const spaced = await upload(hub, file('my root fs.tgz', tar));
    expect(spaced.body.payload?.name).toBe('my_root_fs.flist');
  });
});

describe('progress events', () => {
  it('/listen/<job> replays to several and late listeners: non-decreasing progress to 100, then info', async () => {
    const jobId = crypto.randomUUID();
    const body = await writeTar([fileEntry('big.bin', randomBytes(6 * 1024 * 1024, 11)), fileEntry('small.txt', 'small\n')]);
    const up = slowUpload(hub, body, { filename: 'progress.tar', jobId });
    await up.send(256 * 1024);
    let early: ReturnType<typeof listen> | undefined;
    await waitFor(async () => {
      const l = listen(hub, jobId);
      const first = await Promise.race([l.seen(1).then(() => true), l.ended.then(() => false)]);
      if (first) early = l;
      return first;
    }, 'the job to appear');
    const second = listen(hub, jobId);
    for (let i = 0; i < 12; i++) {
      await up.send(512 * 1024);
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = (await up.finish()) as Answer;
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.payload!.job).toBe(jobId);
    const late = await listen(hub, jobId).ended; // after the end: a full replay

    for (const { events, status, type } of [await early!.ended, await second.ended, late]) {
      expect([status, type]).toEqual([200, 'text/event-stream']);
      const updates = events.filter((e) => e.status === 'update');
      const progress = updates.map((e) => e.progress!);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(progress[progress.length - 1]).toBe(100);
      expect(new Set(progress).size).toBeGreaterThan(5); // it moved while bytes arrived
      expect(events[events.length - 1]).toEqual({ status: 'info', info: { filename: 'progress.flist', flist: r.body.payload!.files } });
    }
    expect(late.events).toEqual((await second.ended).events);
  });

  it('finished jobs are dropped after a while; events after the end are ignored', async () => {
    const jobs = new Jobs(50); // in-process: the hub keeps them for minutes
    const job = jobs.create();
    job.update('one', 10);
    job.update('two', 5); // never backwards
    job.finish({ ok: true });
    job.update('late', 99);
    expect(job.events).toEqual([
      { status: 'update', message: 'one', progress: 10 },
      { status: 'update', message: 'two', progress: 10 },
      { status: 'info', info: { ok: true } },
    ]);
    expect(jobs.get(job.id)).toBe(job);
    await new Promise((r) => setTimeout(r, 120));
    expect(jobs.get(job.id)).toBeUndefined();
  });

  it('unknown jobs are 404, bad or reused client job ids are refused', async () => {
    const res = await fetch(`${hub.url}/listen/00000000-0000-0000-0000-000000000000`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ status: 'error', message: 'job id not found' });
    const p = file('job.tar', await writeTar([fileEntry('j.txt', 'j\n')]));
    const bad = await upload(hub, p, { headers: { 'X-Job-Id': 'bad id!' } });
    expect([bad.status, bad.body.message]).toEqual([400, expect.stringMatching(/^invalid job id/)]);
    const id = crypto.randomUUID();
    expect((await upload(hub, p, { headers: { 'X-Job-Id': id } })).status).toBe(200);
    const reused = await upload(hub, p, { headers: { 'X-Job-Id': id } });
    expect([reused.status, reused.body.message]).toEqual([409, `job id ${id} is already in use`]);
  });
});

describe('g8os hub upload', () => {
  it('streams the file, prints the flist URL as its last line and a summary on stderr', async () => {
    const p = file('cli-root.tar.gz', await writeTar([fileEntry('etc/hostname', 'cli\n'), fileEntry('big.bin', randomBytes(700_000, 333))], { gzip: true }));
    const r = await g8os(['hub', 'upload', p, '--hub', hub.url, '--meta', 'owner=ops', '--meta', 'note=a=b'], { env: { G8OS_TOKEN: token } });
    expect(r.stderr).toMatch(/^uploaded cli-root\.tar\.gz: .* 2 files, 2 directories, 3 new blocks/m);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').pop()).toBe(`${hub.url}/alice/cli-root.flist`);
    const local = path.join(tmp, 'cli.flist');
    fs.writeFileSync(local, await download(hub, 'alice', 'cli-root.flist'));
    const reader = await openGen2(local);
    expect(reader.metadata()).toMatchObject({ owner: 'ops', note: 'a=b' });
    reader.close();

    const named = await g8os(['hub', 'upload', p, '--hub', `${hub.url}/`, '--token', token, '--name', 'renamed']);
    expect(named.stdout.trim()).toBe(`${hub.url}/alice/renamed.flist`);

    // the printed URL is all a user needs: the flist verbs read it, blocks come from the hub
    const url = r.stdout.trim().split('\n').pop()!;
    expect((await g8os(['flist', 'find', url])).stdout).toBe('/\n/etc\n/big.bin\n/etc/hostname\n');
    expect((await g8os(['flist', 'cat', url, '/etc/hostname'])).stdout).toBe('cli\n');
    expect((await g8os(['flist', 'cat', url, 'big.bin'])).out.equals(randomBytes(700_000, 333))).toBe(true);
    expect((await g8os(['flist', 'check', url])).stdout).toBe('3 blocks: 3 ok, 0 missing, 0 corrupt\n');
  });

  it('a refusal is one line naming the hub and its message, exit 1', async () => {
    const p = file('cli-bad.tar', Buffer.from('not a tarball at all\n'.repeat(100)));
    const r = await g8os(['hub', 'upload', p, '--hub', hub.url, '--token', 'nope']);
    expect(r.stderr).toBe(`g8os: upload refused by ${hub.url}: invalid or expired token\n`);
    expect(r.code).toBe(1);
    const bad = await g8os(['hub', 'upload', p, '--hub', hub.url, '--token', token]);
    expect(bad.stderr).toBe(`g8os: upload refused by ${hub.url}: cli-bad.tar: not a tar archive (invalid tar header)\n`);
    expect(bad.code).toBe(1);
    const noToken = await g8os(['hub', 'upload', p, '--hub', hub.url], { env: { G8OS_TOKEN: '' } });
    expect([noToken.code, noToken.stderr]).toEqual([2, 'g8os: no token: pass --token or set G8OS_TOKEN\n']);
    const port = await freePort();
    const down = await g8os(['hub', 'upload', p, '--hub', `http://127.0.0.1:${port}`, '--token', token]);
    expect([down.code, down.stderr]).toEqual([1, `g8os: cannot upload to http://127.0.0.1:${port}: ECONNREFUSED\n`]);
  });
});

describe('bad input', () => {
  let limited: HubProcess;
  let limitedToken: string;
  beforeAll(async () => {
    limited = await startHub({ args: ['--max-upload', '1M', '--max-expanded', '10M'] });
    limitedToken = limited.token('alice');
  });
  afterAll(() => limited?.stop());

  const limitedUpload = (): UploadOpts => ({ token: limitedToken });

  it('an upload over --max-upload is 413 (declared length, and counted while streaming)', async () => {
    const big = await writeTar([fileEntry('big.bin', randomBytes(6 * 1024 * 1024, 21))]);
    await refused({ h: limited, bytes: big, filename: 'big.tar', status: 413, message: /larger than this hub accepts \(--max-upload 1048576 bytes\)/, upload: limitedUpload() });
    const mid = await writeTar([fileEntry('mid.bin', randomBytes(2 * 1024 * 1024, 22))]);
    await refused({ h: limited, bytes: mid, filename: 'mid.tar', status: 413, message: /larger than this hub accepts/, upload: limitedUpload() });
  });

  it('a decompression bomb over --max-expanded is 413', async () => {
    const bomb = await writeTar([fileEntry('zeros.bin', Buffer.alloc(20 * 1024 * 1024))], { gzip: true });
    expect(bomb.length).toBeLessThan(100_000);
    await refused({ h: limited, bytes: bomb, filename: 'bomb.tar.gz', status: 413, message: /expands to more than 10485760 bytes/, upload: limitedUpload() });
  });

  it('not a tar', () => refused({ bytes: badTarballs().notATar, filename: 'junk.tar', status: 400, message: /^junk\.tar: not a tar archive/ }));

  it('not gzip (named .tar.gz, plain text inside)', () =>
    refused({ bytes: Buffer.from('just some text\n'.repeat(200)), filename: 'text.tar.gz', status: 400, message: /not a tar archive .*not gzip data either/ }));

  it('a corrupt gzip stream', () => refused({ bytes: badTarballs().corruptGzip, filename: 'corrupt.tgz', status: 400, message: /corrupt gzip data/ }));

  it('truncated uploads (tar and gzip cut short)', async () => {
    await refused({ bytes: badTarballs().truncatedTar, filename: 'cut.tar', status: 400, message: /truncated|expected 10000/ });
    await refused({ bytes: badTarballs().truncatedGzip, filename: 'cut.tar.gz', status: 400, message: /truncated gzip stream/ });
  });

  it('an empty file, a file that is not an archive by name, and a form without a file', async () => {
    await refused({ bytes: Buffer.alloc(0), filename: 'empty.tar', status: 400, message: /empty/ });
    await refused({ bytes: Buffer.from('x'), filename: 'notes.zip', status: 400, message: /^this file is not allowed: "notes\.zip" is not a \.tar, \.tar\.gz or \.tgz archive$/ });
    const before = await published(hub);
    const res = await fetch(`${hub.url}/api/flist/me/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: new URLSearchParams({ a: 'b' }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/^no file found/);
    await expectNothingChanged(hub, before);
  });

  it('".." members are refused', () => refused({ bytes: badTarballs().dotDotMember, filename: 'dotdot.tar', status: 400, message: /escapes the root with "\.\."/ }));

  it('absolute members are kept inside the flist root', async () => {
    const r = await upload(hub, file('abs.tar', badTarballs().absoluteMember));
    expect(r.status).toBe(200);
    const local = path.join(tmp, 'abs.flist');
    fs.writeFileSync(local, await download(hub, 'alice', 'abs.flist'));
    const reader = await openGen2(local);
    expect([...reader.walk()].map((e) => e.path)).toEqual(['', 'etc', 'etc/passwd2']);
    reader.close();
  });

  it('NUL and invalid UTF-8 in member names are refused', async () => {
    await refused({ bytes: badTarballs().nulInName, filename: 'nul.tar', status: 400, message: /contains a NUL byte/ });
    await refused({ bytes: badTarballs().invalidUtf8Name, filename: 'utf8.tar', status: 400, message: /not valid UTF-8/ });
  });

  it('a wrong, missing or malformed token', async () => {
    const ok = await writeTar([fileEntry('a', 'a')]);
    await refused({ bytes: ok, filename: 'a.tar', status: 401, message: /^invalid or expired token$/, upload: { token: 'g8h_wrong' } });
    await refused({ bytes: ok, filename: 'a.tar', status: 401, message: /^no authorization provided$/, upload: { token: null } });
    await refused({ bytes: ok, filename: 'a.tar', status: 400, message: /^invalid authorization header$/, upload: { token: null, headers: { Authorization: 'Basic abc' } } });
  });

  it('names with "/", "..", NUL or a leading dot', async () => {
    const ok = await writeTar([fileEntry('a', 'a')]);
    const bad = /^invalid flist name .*no "\/", no "\.\."/;
    await refused({ bytes: ok, filename: 'a.tar', status: 400, message: bad, upload: { headers: { 'X-Original-Name': 'other/evil' } } });
    await refused({ bytes: ok, filename: 'a.tar', status: 400, message: bad, upload: { headers: { 'X-Original-Name': '..' } } });
    await refused({ bytes: ok, filename: 'a.tar', status: 400, message: bad, upload: { name: '../keep' } });
    await refused({ bytes: ok, filename: '..hidden.tar', status: 400, message: bad, upload: { name: '' } });
    const before = await published(hub);
    const nul = await slowUpload(hub, ok, { filename: 'a.tar', name: 'a\0b' }).finish();
    expect(nul).toMatchObject({ status: 400, body: { message: expect.stringMatching(bad) } });
    await expectNothingChanged(hub, before);
  });

  it('two concurrent uploads of the same name: the second is 409, the first publishes, the name is free again after', async () => {
    const body = await writeTar([fileEntry('big.bin', randomBytes(3 * 1024 * 1024, 31))]);
    const jobId = crypto.randomUUID();
    const first = slowUpload(hub, body, { filename: 'x.tar', name: 'race', jobId });
    await first.send(64 * 1024);
    await waitFor(async () => {
      const l = listen(hub, jobId);
      return Promise.race([l.seen(1).then(() => true), l.ended.then(() => false)]);
    }, 'the first upload to start');
    const second = await upload(hub, file('race2.tar', body), { name: 'race' });
    expect([second.status, second.body.message]).toEqual([409, 'an upload of race.flist is already in progress']);
    const done = (await first.finish()) as Answer;
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    const third = await upload(hub, file('race3.tar', body), { name: 'race' });
    expect(third.status).toBe(200);
    expect(third.body.payload!.files.uploaded_chunks).toBe(0);
  });

  it('client disconnects mid-upload: nothing published, no temp files, encoder workers released', async () => {
    const pid = hub.child.pid!;
    const body = await writeTar([fileEntry('big.bin', randomBytes(8 * 1024 * 1024, 41))]);
    const ok = file('after-abort.tar', await writeTar([fileEntry('a', 'a')]));
    expect((await upload(hub, ok, { name: 'warm' })).status).toBe(200); // threads any upload leaves (libuv pool)
    const baseline = threads(pid);
    const before = await published(hub);
    for (let i = 0; i < 4; i++) {
      const jobId = crypto.randomUUID();
      const up = slowUpload(hub, body, { filename: 'abort.tar', name: 'keep', jobId });
      await up.send(3 * 1024 * 1024);
      const l = listen(hub, jobId);
      await l.seen(2); // building: the hub has received data
      up.abort();
      const { events } = await l.ended;
      expect(events[events.length - 1]).toEqual({ status: 'error', message: 'client disconnected' });
    }
    await expectNothingChanged(hub, before);
    await waitFor(() => threads(pid) <= baseline, `hub threads back to ${baseline} (now ${threads(pid)})`);
    const r = await upload(hub, ok, { name: 'after-abort' });
    expect(r.status).toBe(200);
    await waitFor(() => threads(pid) <= baseline, 'threads after a good upload');
  });

  it('the hub killed mid-upload restarts clean: nothing published, temp files gone, serving', async () => {
    let h = await startHub();
    const tok = h.token('alice');
    try {
      const body = await writeTar([fileEntry('big.bin', randomBytes(8 * 1024 * 1024, 51))]);
      const jobId = crypto.randomUUID();
      const up = slowUpload(h, body, { filename: 'k.tar', name: 'killed', jobId, token: tok });
      await up.send(4 * 1024 * 1024);
      await listen(h, jobId).seen(2);
      await h.kill();
      expect(await up.response).toBeInstanceOf(Error);
      // what a kill during the final write would leave behind
      fs.writeFileSync(path.join(h.data, 'tmp', 'upload-1234-deadbeef.tmp-1234-1'), 'partial');
      h = await startHub({ data: h.data, port: h.port });
      expect(await published(h)).toEqual([]);
      expect(tempFiles(h)).toEqual([]);
      const r = await upload(h, file('k.tar', body), { name: 'killed', token: tok });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect((await published(h)).map((e) => e.split('@')[0])).toEqual(['killed.flist']);
    } finally {
      await h.stop();
    }
  });
});

describe('a hub keeping its blocks in Redis', () => {
  it('--store redis://… stores the upload in a real redis-server and serves it back', async () => {
    const redis = await startRedis();
    const h = await startHub({ args: ['--store', `${redis.url}/hubblocks`] });
    try {
      const tok = h.token('carol');
      const entries = [fileEntry('etc/motd', 'in redis\n'), fileEntry('big.bin', randomBytes(1_500_000, 77))];
      const r = await upload(h, file('redis.tar', await writeTar(entries)), { name: 'inredis', token: tok });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.payload!.files.uploaded_chunks).toBe(4);
      const flist = file('inredis.flist', await download(h, 'carol', 'inredis.flist'));
      const reader = await openGen2(flist);
      const viaHub = await openStore(storeFromBackend(reader.metadata().backend)!);
      const direct = await openStore(`${redis.url}/hubblocks`);
      try {
        for (const want of entries) {
          const e = reader.stat(want.path)!;
          for (const store of [viaHub, direct]) {
            const parts: Buffer[] = [];
            for await (const c of fileContent(store, e, 'gen2')) parts.push(c);
            expect(Buffer.concat(parts).equals(want.content!), `${want.path} via ${store.url}`).toBe(true);
          }
        }
      } finally {
        reader.close();
        await viaHub.close();
        await direct.close();
      }
    } finally {
      await h.stop();
      await redis.stop();
    }
  });
});

describe('afterwards', () => {
  it('the hub logged no internal errors', () => {
    expect(hub.log()).not.toMatch(/^hub: /m);
  });
});
