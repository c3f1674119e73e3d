// The zflist hub verbs (`g8os hub whoami|ls|promote|link|…`, hub-api.md §12) end to end:
// the real CLI against a real hub process; every result is checked through the hub's public
// API (GET /api/flist/<user>, contents, downloads), not through the CLI's own output alone.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../src/cli/util';
import { g8os, type RunResult } from './helpers/cli';
import { startHub, type HubProcess } from './helpers/hub';
import { freePort } from './helpers/redis';
import { randomBytes, T0, writeTar, type FixtureEntry } from './helpers/tarballs';

let tmp: string;
let hub: HubProcess;
let alice: string;
let bob: string;

interface Listed {
  name: string;
  type: string;
  size: string;
  updated: number;
  target?: string;
}

function fileEntry(p: string, content: string | Buffer): FixtureEntry {
  return { path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from(content) };
}

/** `g8os hub <args> --hub <hub> [--token T]`: options after the verb, as users type them. */
function hubCli(args: string[], token?: string, env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return g8os(['hub', ...args, '--hub', hub.url, ...(token ? ['--token', token] : [])], { env: { G8OS_TOKEN: '', G8OS_HUB: '', ...env } });
}

/** A successful run: exit 0, nothing on stderr, stdout's one line. */
async function ok(args: string[], token?: string): Promise<string> {
  const r = await hubCli(args, token);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.replace(/\n$/, '');
}

/** A refusal: exit 1 and exactly the one line naming the hub, the verb and the hub's message. */
async function refused(args: string[], token: string | undefined, verb: string, message: string): Promise<void> {
  const r = await hubCli(args, token);
  expect(r.stderr).toBe(`g8os: ${hub.url} refused ${verb}: ${message}\n`);
  expect(r.stdout).toBe('');
  expect(r.code).toBe(1);
}

async function listing(user: string): Promise<Map<string, Listed>> {
  const res = await fetch(`${hub.url}/api/flist/${user}`);
  expect(res.status).toBe(200);
  return new Map(((await res.json()) as Listed[]).map((e) => [e.name, e]));
}

async function bytesOf(urlPath: string): Promise<Buffer> {
  const res = await fetch(`${hub.url}/${urlPath}`);
  expect(res.status, urlPath).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

async function contents(user: string, name: string): Promise<string[]> {
  const res = await fetch(`${hub.url}/api/flist/${user}/${name}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { content: Array<{ path: string }> }).content.map((c) => c.path).sort();
}

const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

/** Publish a one-file tarball as user/name through `g8os hub upload`. */
async function publish(token: string, name: string, file: string, content: string | Buffer): Promise<void> {
  const p = path.join(tmp, `${name}-${crypto.randomBytes(4).toString('hex')}.tar`);
  fs.writeFileSync(p, await writeTar([fileEntry(file, content)]));
  const r = await g8os(['hub', 'upload', p, '--hub', hub.url, '--token', token, '--name', name]);
  expect(r.code, r.stderr).toBe(0);
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-hub-cli-'));
  hub = await startHub();
  alice = hub.token('alice');
  bob = hub.token('bob');
  await Promise.all([
    publish(alice, 'app', 'etc/app.conf', 'app v1\n'),
    publish(alice, 'base', 'etc/hostname', 'base\n'),
    publish(bob, 'tool', 'usr/bin/tool', randomBytes(200_000, 7)),
  ]);
});

afterAll(async () => {
  await hub?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('whoami and ls', () => {
  it('whoami prints the token\'s user; --hub and --token default to G8OS_HUB and G8OS_TOKEN', async () => {
    expect(await ok(['whoami'], alice)).toBe('alice');
    const env = await g8os(['hub', 'whoami'], { env: { G8OS_HUB: `${hub.url}/`, G8OS_TOKEN: bob } });
    expect([env.code, env.stdout, env.stderr]).toEqual([0, 'bob\n', '']);
    expect(await ok(['username'], bob)).toBe('bob'); // zflist's name for it
    expect(JSON.parse(await ok(['whoami', '--json'], alice))).toEqual({ status: 'success', payload: { username: 'alice' } });
  });

  it('ls lists your own repository with a token, anyone\'s by name; --json is the hub\'s listing', async () => {
    const own = (await ok(['ls'], alice)).split('\n');
    expect(own[0].split(/\s{2,}/)).toEqual(['NAME', 'TYPE', 'SIZE', 'UPDATED (UTC)', 'TARGET']);
    const row = own.find((l) => l.startsWith('app.flist '))!;
    const app = (await listing('alice')).get('app.flist')!;
    const when = new Date(app.updated * 1000).toISOString().slice(0, 16).replace('T', ' ');
    expect(row.split(/\s{2,}/)).toEqual(['app.flist', 'regular', app.size, when]);

    const theirs = await ok(['ls', 'bob']); // no token needed for a public read
    expect(theirs.split('\n').slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['tool.flist']);
    const json = JSON.parse(await ok(['ls', 'bob', '--json']));
    expect(json).toEqual([...(await listing('bob')).values()]);
  });
});

describe('links, promote, tags', () => {
  it('link makes a symlink in your repository; readlink prints its target', async () => {
    expect(await ok(['link', 'app', 'latest'], alice)).toBe('linked latest.flist -> app.flist');
    expect((await listing('alice')).get('latest.flist')).toMatchObject({ type: 'symlink', target: 'app.flist' });
    expect(await ok(['readlink', 'alice/latest'])).toBe('app.flist');
    // the link is followed for downloads
    expect((await bytesOf('alice/latest.flist')).equals(await bytesOf('alice/app.flist'))).toBe(true);
    // zflist's verb name; re-pointing a link replaces it
    expect(await ok(['symlink', 'base.flist', 'latest.flist'], alice)).toBe('linked latest.flist -> base.flist');
    expect(await ok(['readlink', 'alice/latest.flist'])).toBe('base.flist');
  });

  it('promote copies another repository\'s flist into yours (optionally renamed)', async () => {
    expect(await ok(['promote', 'bob/tool'], alice)).toBe('promoted bob/tool.flist to tool.flist');
    expect(await ok(['promote', 'bob/tool.flist', 'mytool'], alice)).toBe('promoted bob/tool.flist to mytool.flist');
    const l = await listing('alice');
    expect(l.get('tool.flist')).toMatchObject({ type: 'regular' });
    expect(l.get('mytool.flist')).toMatchObject({ type: 'regular' });
    const original = await bytesOf('bob/tool.flist');
    expect((await bytesOf('alice/mytool.flist')).equals(original)).toBe(true);
  });

  it('crosslink points at another repository\'s flist', async () => {
    expect(await ok(['crosslink', 'bob/tool', 'bobtool'], alice)).toBe('linked bobtool.flist -> bob/tool.flist');
    expect((await listing('alice')).get('bobtool.flist')).toMatchObject({ type: 'symlink', target: 'bob/tool.flist' });
    expect(await ok(['readlink', 'alice/bobtool'])).toBe('../bob/tool.flist');
    expect(await contents('alice', 'bobtool.flist')).toEqual(['/usr', '/usr/bin', '/usr/bin/tool']);
  });

  it('tag, crosstag, taglink, untag', async () => {
    expect(await ok(['tag', 'v1', 'alice/app'], bob)).toBe('tagged alice/app.flist as tags/v1/app.flist');
    expect(await ok(['tag', 'v1', 'bob/tool', 'the-tool'], bob)).toBe('tagged bob/tool.flist as tags/v1/the-tool.flist');
    const tag = await (await fetch(`${hub.url}/api/flist/bob/tags/v1`)).json();
    expect((tag as Listed[]).map((e) => [e.name, e.target])).toEqual([['app.flist', 'alice/app.flist'], ['the-tool.flist', 'bob/tool.flist']]);
    expect((await listing('bob')).get('v1')).toMatchObject({ type: 'tag' });

    expect(await ok(['crosstag', 'bob/v1', 'bobv1'], alice)).toBe('linked bobv1 -> bob/tags/v1');
    expect((await listing('alice')).get('bobv1')).toMatchObject({ type: 'taglink', target: 'bob/tags/v1' });
    expect(await ok(['taglink', 'alice/bobv1'])).toBe('bob/tags/v1');
    expect(await ok(['readlink', 'alice/bobv1'])).toBe('../bob/.tag-v1');

    // downloads through the tag and through the tag link
    const app = await bytesOf('alice/app.flist');
    const out = path.join(tmp, 'via-tag.flist');
    expect(await ok(['download', 'bob/tags/v1/app', '-o', out])).toMatch(/^downloaded bob\/tags\/v1\/app\.flist to .*via-tag\.flist \(.*, md5 ok\)$/);
    expect(fs.readFileSync(out).equals(app)).toBe(true);
    await ok(['download', 'alice/bobv1/the-tool', '-o', out]);
    expect(fs.readFileSync(out).equals(await bytesOf('bob/tool.flist'))).toBe(true);

    expect(await ok(['untag', 'v1', 'alice/app'], bob)).toBe('untagged tags/v1/app.flist');
    expect(await ok(['untag', 'v1', 'bob/tool', 'the-tool'], bob)).toBe('untagged tags/v1/the-tool.flist');
    expect((await fetch(`${hub.url}/api/flist/bob/tags/v1`)).status).toBe(404); // emptied tag is gone
    expect((await listing('bob')).has('v1')).toBe(false);
    await refused(['untag', 'v1', 'alice/app'], bob, 'untag', 'target not found on this tag');

    // a tag link is deleted by its bare name
    expect(await ok(['delete', 'bobv1'], alice)).toBe('deleted bobv1');
    expect((await listing('alice')).has('bobv1')).toBe(false);
  });
});

describe('rename, delete, merge, upload-flist, download', () => {
  it('rename and delete', async () => {
    await publish(alice, 'scratch', 'tmp/x', 'x\n');
    const before = (await listing('alice')).get('scratch.flist')!;
    expect(await ok(['rename', 'scratch', 'scratch2'], alice)).toBe('renamed scratch.flist to scratch2.flist');
    const l = await listing('alice');
    expect(l.has('scratch.flist')).toBe(false);
    expect(l.get('scratch2.flist')).toMatchObject({ type: 'regular', size: before.size });
    expect(await ok(['delete', 'scratch2.flist'], alice)).toBe('deleted scratch2.flist');
    expect((await listing('alice')).has('scratch2.flist')).toBe(false);
    expect((await fetch(`${hub.url}/alice/scratch2.flist`)).status).toBe(404);
  });

  it('merge: sources from several repositories into one flist', async () => {
    expect(await ok(['merge', 'merged', 'alice/app', 'bob/tool.flist', 'alice/base'], alice)).toBe('merged 3 flists into merged.flist');
    expect((await listing('alice')).get('merged.flist')).toMatchObject({ type: 'regular' });
    expect(await contents('alice', 'merged.flist')).toEqual(['/etc', '/etc/app.conf', '/etc/hostname', '/usr', '/usr/bin', '/usr/bin/tool']);
    await refused(['merge', 'bad', 'alice/app', 'alice/nope'], alice, 'merge', 'alice/nope does not exists');
    await refused(['merge', 'bad', 'justaname'], alice, 'merge', 'malformed source filename');
    expect((await listing('alice')).has('bad.flist')).toBe(false);
  });

  it('download writes the flist atomically and checks its md5', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'dl-'));
    const out = path.join(dir, 'app-copy.flist');
    const line = await ok(['download', 'alice/app', '-o', out]);
    expect(line).toBe(`downloaded alice/app.flist to ${out} (${formatBytes(fs.statSync(out).size)}, md5 ok)`);
    const want = await bytesOf('alice/app.flist');
    expect(fs.readFileSync(out).equals(want)).toBe(true);
    expect((await (await fetch(`${hub.url}/alice/app.flist.md5`)).text()).trim()).toBe(md5(want));
    expect(JSON.parse(await ok(['download', 'alice/app.flist', '-o', out, '--json']))).toEqual({ flist: 'alice/app.flist', file: out, size: want.length, md5: md5(want) });
    expect(fs.readdirSync(dir)).toEqual(['app-copy.flist']);

    await refused(['download', 'alice/nope', '-o', path.join(dir, 'nope.flist')], undefined, 'download', 'source not found');
    expect(fs.readdirSync(dir)).toEqual(['app-copy.flist']);
  });

  it('download refuses bytes that do not match the hub\'s md5 and leaves no file', async () => {
    await publish(alice, 'fragile', 'etc/fragile', 'fragile\n');
    const good = await bytesOf('alice/fragile.flist');
    // Corrupt the stored flist behind the hub's back (same length): the registry still has its md5.
    const stored = path.join(hub.data, 'flists', `${crypto.createHash('sha256').update(good).digest('hex')}.flist`);
    const bad = Buffer.from(good);
    bad[bad.length - 1] ^= 0xff;
    fs.chmodSync(stored, 0o644);
    fs.writeFileSync(stored, bad);
    const dir = fs.mkdtempSync(path.join(tmp, 'dl-bad-'));
    const r = await hubCli(['download', 'alice/fragile', '-o', path.join(dir, 'f.flist')]);
    expect(r.stderr).toBe(`g8os: alice/fragile.flist: md5 ${md5(bad)} does not match the hub's ${md5(good)}\n`);
    expect(r.code).toBe(1);
    expect(fs.readdirSync(dir)).toEqual([]);
    fs.writeFileSync(stored, good);
  });

  it('upload-flist publishes a downloaded flist under another repository; refused when blocks are missing', async () => {
    const copy = path.join(tmp, 'copied.flist');
    await ok(['download', 'bob/tool', '-o', copy]);
    expect(await ok(['upload-flist', copy], alice)).toBe(`${hub.url}/alice/copied.flist`);
    expect((await listing('alice')).get('copied.flist')).toMatchObject({ type: 'regular' });
    expect((await bytesOf('alice/copied.flist')).equals(fs.readFileSync(copy))).toBe(true);

    // an flist built elsewhere: its blocks never reached this hub
    const src = path.join(tmp, 'elsewhere.tar');
    fs.writeFileSync(src, await writeTar([fileEntry('data.bin', randomBytes(100_000, 99))]));
    const foreign = path.join(tmp, 'foreign.flist');
    const made = await g8os(['flist', 'create', src, '-o', foreign, '--store', `dir://${path.join(tmp, 'other-blocks')}`]);
    expect(made.code, made.stderr).toBe(0);
    await refused(['upload-flist', foreign], alice, 'upload-flist', 'unauthorized upload, contents is not fully present on backend (1 of 1 blocks missing)');
    expect((await listing('alice')).has('foreign.flist')).toBe(false);
  });
});

describe('bad input', () => {
  it('a wrong token: the hub\'s 401 message, exit 1, nothing changed', async () => {
    const before = await listing('alice');
    await refused(['whoami'], 'g8h_wrong', 'whoami', 'invalid or expired token');
    await refused(['delete', 'app'], 'g8h_wrong', 'delete', 'invalid or expired token');
    await refused(['ls'], 'g8h_wrong', 'ls', 'invalid or expired token');
    expect(await listing('alice')).toEqual(before);
  });

  it('a missing token or hub, or a malformed argument, is a usage error (exit 2)', async () => {
    for (const args of [['whoami'], ['delete', 'app'], ['upload-flist', 'x.flist'], ['link', 'a', 'b']]) {
      const r = await hubCli(args);
      expect([r.code, r.stderr], args.join(' ')).toEqual([2, 'g8os: no token: pass --token or set G8OS_TOKEN\n']);
    }
    const noUser = await hubCli(['ls']);
    expect([noUser.code, noUser.stderr]).toEqual([2, 'g8os: no user: name one, or pass --token (or set G8OS_TOKEN) to list your own\n']);
    const noHub = await g8os(['hub', 'whoami', '--token', alice], { env: { G8OS_HUB: '' } });
    expect([noHub.code, noHub.stderr]).toEqual([2, 'g8os: no hub: pass --hub <url> or set G8OS_HUB\n']);
    const badHub = await g8os(['hub', 'ls', 'bob', '--hub', 'ftp://x']);
    expect([badHub.code, badHub.stderr]).toEqual([2, 'g8os: --hub ftp://x: expected an http:// or https:// URL\n']);
    const noRepo = await hubCli(['promote', 'tool'], alice);
    expect([noRepo.code, noRepo.stderr]).toEqual([2, 'g8os: "tool": expected <repo>/<flist>\n']);
    const missingArg = await hubCli(['rename', 'app'], alice);
    expect(missingArg.code).toBe(2);
  });

  it('unknown flists and users: the hub\'s 404 message', async () => {
    await refused(['delete', 'nope'], alice, 'delete', 'source not found');
    await refused(['rename', 'nope', 'other'], alice, 'rename', 'source not found');
    await refused(['link', 'nope', 'other'], alice, 'link', 'source not found');
    await refused(['promote', 'bob/nope'], alice, 'promote', 'source not found');
    await refused(['crosslink', 'nobody/app', 'x'], alice, 'crosslink', 'source repository not found');
    await refused(['crosstag', 'bob/nope', 'x'], alice, 'crosstag', 'source tag not found');
    await refused(['readlink', 'alice/nope'], undefined, 'readlink', 'source not found');
    await refused(['taglink', 'alice/nope'], undefined, 'taglink', 'source not found');
    await refused(['ls', 'nobody'], undefined, 'ls', 'user not found');
  });

  it('conflicts: the hub\'s messages (401s as in 0-hub), readlink of a regular flist', async () => {
    await refused(['link', 'base', 'app'], alice, 'link', 'link destination is already a file');
    await ok(['tag', 'stable', 'bob/tool'], bob);
    await refused(['crosstag', 'bob/stable', 'x.flist'], alice, 'crosstag', 'tag symlink cannot ends with .flist');
    await refused(['crosstag', 'bob/stable', 'app'], alice, 'crosstag', 'there is a .flist file with the same name existing already');
    // a regular flist is not a tag link (0-hub's 401 text)
    await refused(['taglink', 'alice/app'], undefined, 'taglink', 'could not read tag link');
    const r = await hubCli(['readlink', 'alice/app']);
    expect([r.code, r.stderr]).toEqual([1, 'g8os: alice/app.flist is not a link (type regular)\n']);
  });

  it('names with "/" or "..": the hub\'s 400 message, nothing changed', async () => {
    const before = await listing('alice');
    const bobBefore = await listing('bob');
    const rule = 'use letters, digits and . _ - + @ : = , (no "/", no "..", no leading dot)';
    await refused(['rename', 'app', 'sub/dir'], alice, 'rename', `invalid flist name "sub/dir.flist": ${rule}`);
    await refused(['rename', 'app', '../bob/app'], alice, 'rename', `invalid flist name "../bob/app.flist": ${rule}`);
    await refused(['delete', '..'], alice, 'delete', `invalid link name "..": ${rule}`);
    await refused(['delete', '../bob/tool'], alice, 'delete', `invalid link name "../bob/tool": ${rule}`);
    await refused(['promote', 'bob/../alice/app'], alice, 'promote', `invalid flist name "../alice/app.flist": ${rule}`);
    await refused(['crosslink', '../bob/tool', 'x'], alice, 'crosslink', `invalid repository name "..": ${rule}`);
    await refused(['merge', 'a/b', 'alice/app'], alice, 'merge', `invalid flist name "a/b.flist": ${rule}`);
    await refused(['ls', '..'], undefined, 'ls', `invalid user name "..": ${rule}`);
    await refused(['download', '../etc/passwd'], undefined, 'download', `invalid user name "..": ${rule}`);
    expect(await listing('alice')).toEqual(before);
    expect(await listing('bob')).toEqual(bobBefore);
  });

  it('an unreachable hub: one line, exit 1', async () => {
    const port = await freePort();
    for (const args of [['whoami', '--token', alice], ['ls', 'bob'], ['download', 'alice/app', '-o', path.join(tmp, 'never.flist')]]) {
      const r = await g8os(['hub', ...args, '--hub', `http://127.0.0.1:${port}`]);
      expect([r.code, r.stderr], args[0]).toEqual([1, `g8os: cannot reach hub http://127.0.0.1:${port}: ECONNREFUSED\n`]);
    }
    expect(fs.existsSync(path.join(tmp, 'never.flist'))).toBe(false);
  });
});
