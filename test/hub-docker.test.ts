// Docker/OCI import (issue #3 item 5): images built by hand (test/helpers/oci.ts) are uploaded
// to a real hub process, and the published flists are read back through src/flist and the
// hub's block endpoint.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileContent } from '../src/flist/content';
import { openGen2 } from '../src/flist/reader';
import { S_IFMT, type Entry } from '../src/flist/types';
import { convertImage, ImageError } from '../src/flist/oci';
import { openStore } from '../src/store';
import type { BlockStore } from '../src/store/types';
import { g8os } from './helpers/cli';
import { startHub, type HubProcess } from './helpers/hub';
import { dockerSave, MT, ociLayout, packImage, type ImageSpec } from './helpers/oci';
import { badTarballs, busyboxRootfsTar, mixedBytes, randomBytes, T0, writeTar, type FixtureEntry } from './helpers/tarballs';

// -- the two-layer image ------------------------------------------------------------------------

const ROOT = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0 };
const dir = (p: string, mode = 0o755, o = ROOT): FixtureEntry => ({ path: p, type: 'dir', mode, ...o });
const file = (p: string, content: string | Buffer, mode = 0o644, o = ROOT): FixtureEntry => ({ path: p, type: 'file', mode, ...o, content: Buffer.from(content) });
const BIG = mixedBytes(1_300_000, 11); // three blocks

const LOWER: FixtureEntry[] = [
  dir('etc'),
  file('etc/hostname', 'lower\n'),
  { path: 'etc/hostname-hl', type: 'hardlink', mode: 0o644, ...ROOT, linkname: 'etc/hostname' },
  { path: 'etc/link', type: 'symlink', mode: 0o777, ...ROOT, linkname: 'hostname' },
  file('etc/deleted.conf', 'gone\n'),
  dir('etc/deleted-dir'),
  file('etc/deleted-dir/x', 'x\n'),
  file('etc/re.conf', 'old re\n'),
  dir('opt'),
  dir('opt/app', 0o750, { ...ROOT, uid: 1000, gid: 1000, uname: 'app', gname: 'app' }),
  file('opt/app/old.txt', 'old\n'),
  dir('opt/app/sub'),
  file('opt/app/sub/deep', 'deep\n'),
  dir('var', 0o711),
  dir('var/lib'),
  file('keep.bin', BIG, 0o755),
];

const UPPER: FixtureEntry[] = [
  file('etc/.wh.deleted.conf', ''),
  file('etc/.wh.deleted-dir', ''),
  file('etc/hostname', 'upper\n'),
  // whiteout and re-creation in one layer: the layer's own file stays
  file('etc/.wh.re.conf', ''),
  file('etc/re.conf', 'new re\n'),
  dir('opt/app', 0o755),
  file('opt/app/.wh..wh..opq', ''),
  file('opt/app/new.txt', 'new\n'),
  { path: 'opt/app/new-hl', type: 'hardlink', mode: 0o644, ...ROOT, linkname: 'opt/app/new.txt' },
  // parents var/ and var/lib/ not listed: the lower directories keep their metadata
  file('var/lib/data.bin', mixedBytes(200_000, 12)),
  file('.wh.never-existed', ''),
];

const CONFIG = {
  Entrypoint: ['/bin/app', '--serve'],
  Cmd: ['--port', '80'],
  Env: ['PATH=/usr/bin:/bin', 'GREETING=a=b "c"'],
  WorkingDir: '/opt/app',
  ExposedPorts: { '80/tcp': {}, '53/udp': {}, '8080': {} },
  Volumes: { '/data': {} },
};

const TWO_LAYERS: ImageSpec = { layers: [{ entries: LOWER }, { entries: UPPER, gzip: true }], config: CONFIG, ref: 'example/app:1.0' };

const STARTUP = `[startup.entry]
name = "core.system"

[startup.entry.args]
name = "/bin/app"
args = ["--serve", "--port", "80"]
dir = "/opt/app"

[startup.entry.args.env]
PATH = "/usr/bin:/bin"
GREETING = "a=b \\"c\\""
`;

/** What the flattened image holds: path → content (files) or kind/target. */
const EXPECTED_FILES: Record<string, string | Buffer> = {
  'etc/hostname': 'upper\n',
  'etc/hostname-hl': 'lower\n', // a hard link copy keeps the old content when its peer is replaced above
  'etc/re.conf': 'new re\n',
  'opt/app/new.txt': 'new\n',
  'opt/app/new-hl': 'new\n',
  'keep.bin': BIG,
  'var/lib/data.bin': mixedBytes(200_000, 12),
  '.startup.toml': STARTUP,
};

// -- helpers ------------------------------------------------------------------------------------

let hub: HubProcess;
let token: string;
let tmp: string;
const USER = 'alice';

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-docker-test-'));
  hub = await startHub();
  token = hub.token(USER);
});
afterAll(async () => {
  await hub?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
  if (hub) fs.rmSync(hub.data, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: { status: string; message?: string; payload?: { name: string; url: string; files: Record<string, number> } };
}

async function post(
  target: HubProcess,
  opts: { image?: Buffer; fields?: Record<string, string>; auth?: string | null; filename?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const form = new FormData();
  for (const [k, v] of Object.entries(opts.fields ?? {})) form.append(k, v);
  if (opts.image) form.append('file', new Blob([opts.image]), opts.filename ?? 'image.tar');
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth !== null) headers.authorization = `Bearer ${opts.auth ?? token}`;
  const res = await fetch(`${target.url}/api/flist/me/docker`, { method: 'POST', headers, body: form });
  return { status: res.status, body: (await res.json()) as Answer['body'] };
}

/** name → flist file of every entry the user has, straight from the registry. */
function published(target: HubProcess = hub, user = USER): Map<string, string> {
  const db = new Database(path.join(target.data, 'hub.sqlite3'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT name, file FROM entries WHERE user = ? AND kind = 'regular'").all(user) as Array<{ name: string; file: string }>;
    return new Map(rows.map((r) => [r.name, path.join(target.data, 'flists', `${r.file}.flist`)]));
  } finally {
    db.close();
  }
}

/** The hub's temp dir is empty once the answer arrived (uploads and flists in progress are removed). */
async function expectNoTempFiles(target: HubProcess = hub): Promise<void> {
  const dir = path.join(target.data, 'tmp');
  for (let i = 0; i < 20 && fs.readdirSync(dir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  expect(fs.readdirSync(dir)).toEqual([]);
}

interface Flist {
  entries: Map<string, Entry>;
  meta: Record<string, string>;
  content(p: string): Promise<Buffer>;
}

async function readFlist(file: string, store: BlockStore): Promise<Flist> {
  const r = await openGen2(file);
  try {
    const entries = new Map([...r.walk()].map((e) => [e.path, e]));
    return {
      entries,
      meta: r.metadata(),
      async content(p: string): Promise<Buffer> {
        const e = entries.get(p);
        if (!e) throw new Error(`${p} is not in the flist`);
        const parts: Buffer[] = [];
        for await (const c of fileContent(store, e, 'gen2')) parts.push(c);
        return Buffer.concat(parts);
      },
    };
  } finally {
    r.close();
  }
}

/** A comparable view of a tree: metadata per path and a digest of each file's bytes. */
async function listing(f: Flist): Promise<string[]> {
  const out: string[] = [];
  for (const [p, e] of [...f.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
    let extra = e.target ?? '';
    if (e.kind === 'file') extra = createHash('sha256').update(await f.content(p)).digest('hex');
    out.push(`${p} ${e.kind} ${(e.mode & 0o7777).toString(8)} ${e.uid}:${e.gid} ${e.size} ${extra}`);
  }
  return out;
}

async function importOk(image: Buffer, name?: string): Promise<{ flist: Flist; answer: Answer }> {
  const answer = await post(hub, { image, fields: name ? { name } : {} });
  expect(answer.body.message).toBeUndefined();
  expect(answer.status).toBe(200);
  const file = published().get(answer.body.payload!.name);
  expect(file).toBeDefined();
  const store = await openStore(hub.url);
  try {
    return { flist: await readFlist(file!, store), answer };
  } finally {
    await store.close();
  }
}

// -- tests --------------------------------------------------------------------------------------

describe('OCI image layout → flist on a real hub', () => {
  it('reports the conversion as a job on /listen/<id> (replayed to a late listener)', async () => {
    const built = await ociLayout(TWO_LAYERS);
    const job = `docker-${Date.now()}`;
    const answer = await post(hub, { image: await packImage(built.files), fields: { name: 'with-progress' }, headers: { 'X-Job-Id': job } });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const text = await (await fetch(`${hub.url}/listen/${job}`)).text();
    const events = text.split('\n\n').filter(Boolean).map((f) => JSON.parse(f.replace(/^data: /, '')));
    const updates = events.filter((e) => e.status === 'update').map((e) => e.progress as number);
    expect(updates.length).toBeGreaterThan(2);
    expect(updates).toEqual([...updates].sort((a, b) => a - b));
    expect(updates[updates.length - 1]).toBe(100);
    expect(events[events.length - 1]).toMatchObject({ status: 'info', info: { status: 'success', file: 'with-progress.flist' } });
  });

  let oci: Flist;

  it('flattens two layers honouring whiteouts and opaque directories', async () => {
    const built = await ociLayout(TWO_LAYERS);
    const { flist, answer } = await importOk(await packImage(built.files));
    oci = flist;
    expect(answer.body.payload!.name).toBe('example-app-1.0.flist');
    expect(answer.body.payload!.url).toBe(`${hub.url}/${USER}/example-app-1.0.flist`);
    expect(answer.body.payload!.files).toMatchObject({ layers: 2, whiteouts: 5 });
    const paths = [...flist.entries.keys()];
    expect(paths.filter((p) => path.posix.basename(p).startsWith('.wh.'))).toEqual([]);
    for (const gone of ['etc/deleted.conf', 'etc/deleted-dir', 'etc/deleted-dir/x', 'opt/app/old.txt', 'opt/app/sub', 'opt/app/sub/deep']) {
      expect(flist.entries.has(gone), gone).toBe(false);
    }
    expect(paths.filter((p) => p.startsWith('opt/app/')).sort()).toEqual(['opt/app/new-hl', 'opt/app/new.txt']);
    // the opaque directory's own entry comes from the upper layer
    expect(flist.entries.get('opt/app')!.mode & 0o7777).toBe(0o755);
    expect(flist.entries.get('opt/app')!.uid).toBe(0);
    // implied parents in the upper layer do not replace the lower directories
    expect(flist.entries.get('var')!.mode & 0o7777).toBe(0o711);
    expect(flist.entries.get('etc/link')).toMatchObject({ kind: 'link', target: 'hostname' });
    for (const [p, want] of Object.entries(EXPECTED_FILES)) expect((await flist.content(p)).equals(Buffer.from(want)), p).toBe(true);
    expect(flist.entries.get('keep.bin')!.mode & 0o7777).toBe(0o755);
    const startup = flist.entries.get('.startup.toml')!;
    expect([startup.mode & S_IFMT, startup.mode & 0o7777, startup.uid, startup.gid, startup.uname]).toEqual([0o100000, 0o644, 0, 0, 'root']);
  });

  it('records entrypoint (Entrypoint + Cmd), environ, port, volume and the hub as backend', () => {
    const m = oci.meta;
    expect(JSON.parse(m.entrypoint)).toEqual(['/bin/app', '--serve', '--port', '80']);
    expect(JSON.parse(m.environ)).toEqual({ PATH: '/usr/bin:/bin', GREETING: 'a=b "c"' });
    expect(JSON.parse(m.port)).toEqual({ 'tcp/80': 80, 'udp/53': 53, 'tcp/8080': 8080 });
    expect(JSON.parse(m.volume)).toEqual({ '/data': {} });
    expect(JSON.parse(m.backend)).toEqual({ url: hub.url });
  });

  it('docker save tarballs (docker 25+ and legacy) of the same image give the same tree', async () => {
    const want = await listing(oci);
    const modern = await importOk(await packImage((await dockerSave(TWO_LAYERS, { form: 'oci' })).files));
    expect(modern.answer.body.payload!.name).toBe('example-app-1.0.flist');
    expect(await listing(modern.flist)).toEqual(want);
    // legacy layers are uncompressed tars (checked against the config's diff_ids)
    const legacySpec: ImageSpec = { ...TWO_LAYERS, layers: TWO_LAYERS.layers.map((l) => ({ ...l, gzip: false })) };
    const legacy = await importOk(await packImage((await dockerSave(legacySpec, { form: 'legacy' })).files), 'legacy');
    expect(legacy.answer.body.payload!.name).toBe('legacy.flist');
    expect(await listing(legacy.flist)).toEqual(want);
    expect(legacy.flist.meta.entrypoint).toBe(oci.meta.entrypoint);
  });

  it('legacy docker save: a layer stored as a symlink to an identical earlier layer', async () => {
    const base = await dockerSave({ layers: [{ entries: [file('a.txt', 'a\n')] }, { entries: [file('a.txt', 'a\n')] }], ref: 'twice:latest' }, { form: 'legacy' });
    const layerPaths = [...base.files.keys()].filter((p) => p.endsWith('/layer.tar'));
    base.files.delete(layerPaths[1]);
    const image = await packImage(base.files, [{ path: layerPaths[1], type: 'symlink', mode: 0o777, ...ROOT, linkname: `../${layerPaths[0]}` }]);
    const { flist, answer } = await importOk(image);
    expect(answer.body.payload!.name).toBe('twice-latest.flist');
    expect((await flist.content('a.txt')).toString()).toBe('a\n');
  });

  it('picks linux/amd64 from an image index (gzipped tarball) and names the flist from its annotation', async () => {
    const arm: ImageSpec = { layers: [{ entries: [file('arch', 'arm64\n')] }], config: { Cmd: ['/arm'] } };
    const amd: ImageSpec = { layers: [{ entries: [file('arch', 'amd64\n')], gzip: true, mediaType: MT.dockerLayerGzip }], config: { Cmd: ['/amd', 'x'] }, ref: 'registry.example.org/team/multi:2' };
    // gzipped as a whole, as `docker save | gzip` gives it
    const { flist, answer } = await importOk(gzipSync(await packImage((await ociLayout(amd, { other: arm })).files)));
    expect(answer.body.payload!.name).toBe('registry.example.org-team-multi-2.flist');
    await expectNoTempFiles();
    expect((await flist.content('arch')).toString()).toBe('amd64\n');
    expect(JSON.parse(flist.meta.entrypoint)).toEqual(['/amd', 'x']);
    expect(flist.meta.port).toBeUndefined();
  });

  it('a busybox image (one gzip layer) imports with bin/sh a symlink to busybox', async () => {
    const rootfs = path.join(tmp, 'busybox.tar.gz');
    await busyboxRootfsTar(rootfs, { gzip: true });
    const built = await ociLayout({ layers: [{ blob: fs.readFileSync(rootfs), mediaType: MT.ociLayerGzip }], config: { Cmd: ['/bin/sh'] }, ref: 'busybox:latest' });
    // the diff_id is of the uncompressed layer; this blob's own digest is what the manifest checks
    const { flist, answer } = await importOk(await packImage(built.files));
    expect(answer.body.payload!.name).toBe('busybox-latest.flist');
    expect(flist.entries.get('bin/sh')).toMatchObject({ kind: 'link', target: 'busybox' });
    expect((await flist.content('bin/busybox')).equals(fs.readFileSync('/bin/busybox'))).toBe(true);
    expect((await flist.content('.startup.toml')).toString()).toContain('name = "/bin/sh"\nargs = []\ndir = "/"');
  });

  it('an image without a reference is named after its config digest; re-import writes no new blocks', async () => {
    const built = await ociLayout({ layers: [{ entries: [file('x', 'x\n')] }] });
    const first = await importOk(await packImage(built.files));
    expect(first.answer.body.payload!.name).toBe(`${built.config.digest.slice(7, 19)}.flist`);
    const again = await importOk(await packImage(built.files));
    expect(again.answer.body.payload!.files.uploaded_chunks).toBe(0);
    // no command at all: coreX gets /bin/sh, the metadata states none
    expect(first.flist.meta.entrypoint).toBeUndefined();
  });
});

describe('g8os hub import', () => {
  it('uploads an image and prints the flist URL', async () => {
    const image = path.join(tmp, 'cli.tar');
    fs.writeFileSync(image, await packImage((await dockerSave(TWO_LAYERS, { form: 'oci' })).files));
    const r = await g8os(['hub', 'import', image, '--hub', hub.url, '--token', token, '--name', 'from-cli']);
    expect(r.stderr).toContain('2 layers');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`${hub.url}/${USER}/from-cli.flist`);
    expect(published().has('from-cli.flist')).toBe(true);
  });

  it('reports a refused image as one line and exits 1', async () => {
    const image = path.join(tmp, 'not-an-image.tar');
    fs.writeFileSync(image, badTarballs().notATar);
    const r = await g8os(['hub', 'import', image, '--hub', hub.url, '--token', token]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/g8os: hub refused the image \(HTTP 400\): not a tar archive/);
  });

  it('--local converts without a hub (gzipped image tarball, dir:// store)', async () => {
    const image = path.join(tmp, 'local.tar.gz');
    fs.writeFileSync(image, gzipSync(await packImage((await ociLayout(TWO_LAYERS)).files)));
    const out = path.join(tmp, 'local.flist');
    const storeDir = path.join(tmp, 'local-blocks');
    const r = await g8os(['hub', 'import', image, '--local', '-o', out, '--store', `dir://${storeDir}`]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(out);
    const store = await openStore(`dir://${storeDir}`);
    try {
      const flist = await readFlist(out, store);
      for (const [p, want] of Object.entries(EXPECTED_FILES)) expect((await flist.content(p)).equals(Buffer.from(want)), p).toBe(true);
      expect(flist.entries.has('etc/deleted.conf')).toBe(false);
      expect(JSON.parse(flist.meta.backend)).toEqual({ url: `dir://${storeDir}` });
    } finally {
      await store.close();
    }
  });

  it('usage errors exit 2', async () => {
    const image = path.join(tmp, 'cli.tar');
    expect((await g8os(['hub', 'import', image, '--token', 'x'], { env: { G8OS_HUB: '' } })).code).toBe(2);
    expect((await g8os(['hub', 'import', image, '--local'])).code).toBe(2);
    expect((await g8os(['hub', 'import', path.join(tmp, 'missing.tar'), '--hub', hub.url, '--token', 'x'])).code).toBe(2);
  });
});

describe('bad input: a clear 400, nothing published, no temp files, the hub keeps serving', () => {
  const simple: ImageSpec = { layers: [{ entries: [file('ok.txt', 'ok\n')] }], ref: 'bad:input' };

  const cases: Array<[string, () => Promise<Buffer>, RegExp]> = [
    ['not a tar', async () => badTarballs().notATar, /^not a tar archive/],
    ['an empty file', async () => Buffer.alloc(0), /empty/],
    ['a tar without index.json or manifest.json', async () => {
      const b = await ociLayout(simple);
      b.files.delete('index.json');
      return packImage(b.files);
    }, /neither manifest\.json nor index\.json/],
    ['a missing layer blob', async () => {
      const b = await ociLayout(simple);
      b.files.delete(`blobs/sha256/${b.layers[0].digest.slice(7)}`);
      return packImage(b.files);
    }, /^layer 1 of 1 \(sha256:[0-9a-f]{64}\): blob blobs\/sha256\/[0-9a-f]{64} is missing from the image tarball$/],
    ['a missing config blob (docker save)', async () => {
      const b = await dockerSave(simple, { form: 'legacy' });
      b.files.delete(`${b.config.digest.slice(7)}.json`);
      return packImage(b.files);
    }, /image config [0-9a-f]{64}\.json is missing/],
    ['a layer whose bytes do not match its digest', async () => {
      const b = await ociLayout(simple);
      const key = `blobs/sha256/${b.layers[0].digest.slice(7)}`;
      const bytes = Buffer.from(b.files.get(key)!);
      bytes[600] ^= 0xff; // same size, different content
      b.files.set(key, bytes);
      return packImage(b.files);
    }, /layer 1 of 1 \(sha256:[0-9a-f]{64}\) does not match its digest/],
    ['a legacy layer that does not match its diff_id', async () => {
      const b = await dockerSave(simple, { form: 'legacy' });
      const key = [...b.files.keys()].find((k) => k.endsWith('/layer.tar'))!;
      const bytes = Buffer.from(b.files.get(key)!);
      bytes[600] ^= 0xff;
      b.files.set(key, bytes);
      return packImage(b.files);
    }, /layer 1 of 1 \([0-9a-f]{64}\/layer\.tar\) does not match its digest/],
    ['a manifest whose bytes do not match the index', async () => {
      const b = await ociLayout(simple);
      const key = `blobs/sha256/${b.manifest.digest.slice(7)}`;
      b.files.set(key, Buffer.from(b.files.get(key)!.toString().replace('"schemaVersion":2', '"schemaVersion":3')));
      return packImage(b.files);
    }, /manifest \(sha256:[0-9a-f]{64}\) does not match its digest/],
    ['an image config that is not JSON', async () => packImage((await ociLayout({ ...simple, rawConfig: Buffer.from('{"config": ') })).files), /image config sha256:[0-9a-f]{64} is not valid JSON/],
    ['an Entrypoint that is not a list of strings', async () => packImage((await ociLayout({ ...simple, config: { Entrypoint: '/bin/sh -c x' } })).files), /Entrypoint is not a list of strings/],
    ['".." in a layer member', async () => {
      const bad = badTarballs().dotDotMember;
      return packImage((await ociLayout({ layers: [{ entries: [file('fine', 'fine\n')] }, { blob: bad }], ref: 'bad:input' })).files);
    }, /layer 2 of 2 \(sha256:[0-9a-f]{64}\): member "\.\.\/\.\.\/etc\/evil" escapes the root/],
    ['a zstd layer', async () => {
      const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(60, 1)]);
      return packImage((await ociLayout({ layers: [{ blob: zstd, mediaType: MT.ociLayerZstd }], ref: 'bad:input' })).files);
    }, /layer 1 of 1 \(sha256:[0-9a-f]{64}\): zstd layers are not supported/],
    ['a truncated gzip layer', async () => {
      const gz = gzipSync(await writeTar([file('r', randomBytes(100_000, 5))]));
      return packImage((await ociLayout({ layers: [{ blob: gz.subarray(0, gz.length / 2) }], ref: 'bad:input' })).files);
    }, /layer 1 of 1 \(sha256:[0-9a-f]{64}\): truncated gzip stream/],
    ['two images in one docker save tarball', async () => {
      const b = await dockerSave(simple, { form: 'oci' });
      const m = JSON.parse(b.files.get('manifest.json')!.toString()) as unknown[];
      b.files.set('manifest.json', Buffer.from(JSON.stringify([m[0], m[0]])));
      return packImage(b.files);
    }, /holds 2 images/],
  ];

  for (const [what, make, message] of cases) {
    it(what, async () => {
      const before = [...published().keys()].sort();
      const a = await post(hub, { image: await make() });
      expect(a.body.message).toMatch(message);
      expect(a.status).toBe(400);
      expect(a.body.status).toBe('error');
      expect([...published().keys()].sort()).toEqual(before);
      await expectNoTempFiles();
    });
  }

  it('a registry reference instead of a tarball', async () => {
    const a = await post(hub, { fields: { image: 'alpine:latest' } });
    expect(a).toMatchObject({ status: 400, body: { status: 'error', message: 'pulling images from a registry is not supported on this hub: upload a docker save or OCI layout tarball' } });
    const urlencoded = await fetch(`${hub.url}/api/flist/me/docker`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'image=alpine',
    });
    expect(urlencoded.status).toBe(400);
    expect(((await urlencoded.json()) as { message: string }).message).toMatch(/not supported on this hub/);
    expect((await post(hub, {})).body.message).toMatch(/missing docker image/);
  });

  it('a bad flist name, a wrong file field, no token', async () => {
    const image = await packImage((await ociLayout(simple)).files);
    expect(await post(hub, { image, fields: { name: '../evil' } })).toMatchObject({ status: 400, body: { message: expect.stringMatching(/invalid flist name/) } });
    const form = new FormData();
    form.append('upload', new Blob([image]), 'x.tar');
    const wrong = await fetch(`${hub.url}/api/flist/me/docker`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { message: string }).message).toMatch(/send the image tarball as field "file"/);
    expect((await post(hub, { image, auth: null })).status).toBe(401);
    expect((await post(hub, { image, auth: 'g8h_wrong' })).status).toBe(401);
    expect(published().has('bad-input.flist')).toBe(false);
    await expectNoTempFiles();
  });

  it('a client that disconnects mid-upload leaves no temp file', async () => {
    const socket = net.connect(hub.port, '127.0.0.1');
    await once(socket, 'connect');
    const boundary = 'x-boundary';
    socket.write(
      `POST /api/flist/me/docker HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 10000000\r\n\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="image.tar"\r\n\r\n`,
    );
    socket.write(Buffer.alloc(2_000_000, 1));
    const tmpDir = path.join(hub.data, 'tmp');
    for (let i = 0; i < 50 && fs.readdirSync(tmpDir).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(fs.readdirSync(tmpDir).length).toBe(1); // the upload was being saved
    socket.destroy();
    await expectNoTempFiles();
  });

  it('the hub still imports after all of the above', async () => {
    const { flist } = await importOk(await packImage((await ociLayout(simple)).files));
    expect((await flist.content('ok.txt')).toString()).toBe('ok\n');
  });

  it('an upload over --max-upload is a 413 and leaves nothing behind', async () => {
    const small = await startHub({ args: ['--max-upload', '64K'] });
    try {
      const t = small.token(USER);
      const image = await packImage((await ociLayout({ layers: [{ entries: [file('big', mixedBytes(200_000, 3))] }], ref: 'too:big' })).files);
      const a = await post(small, { image, auth: t });
      expect(a.status).toBe(413);
      expect(a.body.message).toMatch(/larger than this hub accepts \(65536 bytes\)/);
      await expectNoTempFiles(small);
      expect(published(small).size).toBe(0);
      // and it keeps serving
      const ok = await post(small, { image: await packImage((await ociLayout(simple)).files), auth: t });
      expect(ok.status).toBe(200);
    } finally {
      await small.stop();
      fs.rmSync(small.data, { recursive: true, force: true });
    }
  });
});

describe('convertImage (in process)', () => {
  it('an empty gzip layer, a whiteout of a whole tree and a file replacing a directory', async () => {
    const storeDir = path.join(tmp, 'inproc-blocks');
    const store = await openStore(`dir://${storeDir}`);
    try {
      const emptyTarGz = gzipSync(Buffer.alloc(1024)); // how images store an empty changeset
      const image = path.join(tmp, 'inproc.tar');
      fs.writeFileSync(image, await packImage((await ociLayout({
        layers: [
          { entries: [dir('a'), dir('a/b'), file('a/b/c', 'c\n'), file('d/e', 'e\n')] },
          { blob: emptyTarGz, diff: Buffer.alloc(1024), mediaType: MT.ociLayerGzip },
          { entries: [file('.wh.a', ''), file('d', 'now a file\n')] },
          { entries: [file('a/new', 'again\n')] },
        ],
      })).files));
      const r = await convertImage(image, { store });
      const paths = [...r.tree.walk()].map((n) => n.entry.path).sort();
      expect(paths).toEqual(['', '.startup.toml', 'a', 'a/new', 'd']);
      expect(r.tree.get('d')!.entry.kind).toBe('file');
      expect(r.tree.get('a')!.entry.mode & 0o7777).toBe(0o755); // implied again, root-owned
      expect(r.stats).toMatchObject({ layers: 4, regular: 3, directory: 2, whiteouts: 1 });
      expect(r.name).toMatch(/^[0-9a-f]{12}\.flist$/);
      // the decompression-bomb cap covers all layers together
      await expect(convertImage(image, { store, maxExpandedBytes: 4 })).rejects.toThrow(/image expands to more than 4 bytes/);
      await expect(convertImage(image, { store, maxExpandedBytes: 4 })).rejects.toBeInstanceOf(ImageError);
    } finally {
      await store.close();
    }
  });

  it('layer digests are checked before any block is written', async () => {
    const storeDir = path.join(tmp, 'digest-blocks');
    const store = await openStore(`dir://${storeDir}`);
    try {
      const b = await ociLayout({ layers: [{ entries: [file('one', mixedBytes(100_000, 21))] }, { entries: [file('two', 'x')] }] });
      const key = `blobs/sha256/${b.layers[1].digest.slice(7)}`;
      b.files.set(key, Buffer.concat([b.files.get(key)!, Buffer.from('extra')]));
      const image = path.join(tmp, 'digest.tar');
      fs.writeFileSync(image, await packImage(b.files));
      await expect(convertImage(image, { store })).rejects.toThrow(/layer 2 of 2 \(sha256:[0-9a-f]{64}\) is \d+ bytes, its descriptor says \d+/);
      const written = fs.existsSync(storeDir) ? fs.readdirSync(storeDir, { recursive: true }).filter((f) => fs.statSync(path.join(storeDir, String(f))).isFile()) : [];
      expect(written).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
