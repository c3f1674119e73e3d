// `g8os mount` / `g8os umount` end to end: a real hub serves the flist and its blocks, every
// mount runs in its own `bin/g8os mount` child process (a process touching its own FUSE mount
// deadlocks), and every mount is torn down after each test even when it fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mountAt, processAlive, readMounts } from '../src/fs/mount-table';
import { BIN, g8os, ROOT } from './helpers/cli';
import { startHub, type HubProcess } from './helpers/hub';
import { freePort, startRedis } from './helpers/redis';
import { everyTypeEntries, T0, writeTar, type FixtureEntry } from './helpers/tarballs';
import { forceUnmount, isMounted, type MountProc, spawnMount as startMount, stopChildren } from './helpers/fuse-child';

let tmp: string;
let hub: HubProcess;
let token: string;
let everyUrl: string; // the every-type flist on the hub
let cacheDir: string;

// ---------------------------------------------------------------------------------------------
// mount processes and cleanup

const procs = new Set<ChildProcess>();
const paths = new Set<string>(); // every target and backend/ro a test used

const spawnMount = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<MountProc> => startMount(args, procs, env);

interface Setup {
  target: string;
  backend: string;
  ro: string;
}

let seq = 0;
function setup(name = 'm'): Setup {
  const dir = path.join(tmp, `${name}-${++seq}`);
  const target = path.join(dir, 'target');
  const backend = path.join(dir, 'backend');
  fs.mkdirSync(target, { recursive: true });
  paths.add(target);
  paths.add(path.join(backend, 'ro'));
  return { target, backend, ro: path.join(backend, 'ro') };
}

/** A mount expected to come up. */
async function mounted(flist: string, s: Setup, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<MountProc> {
  const p = await spawnMount([flist, s.target, '--backend', s.backend, '--cache', cacheDir, ...extra], env);
  expect(p.stdout(), p.stderr()).toBe('mount starts\n');
  return p;
}

/** A mount expected to fail: exit 1, one line on stderr, nothing mounted. */
async function refused(args: string[], s: Setup | undefined, message: RegExp): Promise<string> {
  const p = await spawnMount(args);
  expect(await p.exited, p.stderr()).toBe(1);
  expect(p.stdout()).toBe('');
  expect(p.stderr()).toMatch(message);
  expect(p.stderr().trim().split('\n')).toHaveLength(1);
  if (s) {
    expect(mountAt(s.target)).toBeUndefined();
    expect(mountAt(s.ro)).toBeUndefined();
  }
  return p.stderr();
}

async function stop(p: MountProc, sig: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
  p.child.kill(sig);
  return p.exited;
}

async function cleanup(): Promise<void> {
  await stopChildren(procs);
  // daemons are not our children: stop them through their pid files
  for (const p of [...paths]) {
    const pidFile = path.join(path.dirname(p), 'pid');
    if (p.endsWith('/ro') && fs.existsSync(pidFile)) {
      const pid = Number(fs.readFileSync(pidFile, 'utf8'));
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  // targets (overlays) before the FUSE layers under them
  const all = [...paths].sort((a, b) => Number(a.endsWith('/ro')) - Number(b.endsWith('/ro')));
  for (const p of all) forceUnmount(p);
  paths.clear();
}

// ---------------------------------------------------------------------------------------------
// the tree as the tarball describes it

const walk = (root: string, rel = ''): string[] =>
  fs.readdirSync(path.join(root, rel), { withFileTypes: true }).flatMap((d) => {
    const r = rel ? `${rel}/${d.name}` : d.name;
    return d.isDirectory() ? [r, ...walk(root, r)] : [r];
  });

const major = (rdev: number): number => ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
const minor = (rdev: number): number => (rdev & 0xff) | ((rdev >> 12) & ~0xff);

/** Every member's type, mode, owner, mtime, size, link target, device and bytes; nothing else there. */
function expectTree(root: string, entries: FixtureEntry[]): void {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  for (const want of entries) {
    const p = path.join(root, want.path);
    const st = fs.lstatSync(p);
    const what = want.path;
    const content = want.type === 'hardlink' ? byPath.get(want.linkname!)!.content! : want.content;
    expect(st.mode & 0o7777, what).toBe(want.type === 'symlink' ? 0o777 : want.mode);
    expect([st.uid, st.gid], what).toEqual([want.uid, want.gid]);
    expect(Math.floor(st.mtimeMs / 1000), what).toBe(want.mtime);
    switch (want.type) {
      case 'dir':
        expect(st.isDirectory(), what).toBe(true);
        break;
      case 'file':
      case 'hardlink':
        expect(st.isFile(), what).toBe(true);
        expect(st.size, what).toBe(content!.length);
        expect(fs.readFileSync(p).equals(content!), what).toBe(true);
        break;
      case 'symlink':
        expect(st.isSymbolicLink(), what).toBe(true);
        expect(fs.readlinkSync(p), what).toBe(want.linkname);
        break;
      case 'char':
      case 'block':
        expect(want.type === 'char' ? st.isCharacterDevice() : st.isBlockDevice(), what).toBe(true);
        expect([major(st.rdev), minor(st.rdev)], what).toEqual([want.devmajor, want.devminor]);
        break;
      case 'fifo':
        expect(st.isFIFO(), what).toBe(true);
        break;
    }
  }
  // anything else is an implied parent directory
  for (const rel of walk(root)) if (!byPath.has(rel)) expect(fs.lstatSync(path.join(root, rel)).isDirectory(), rel).toBe(true);
}

function fileEntry(p: string, content: string, mode = 0o644): FixtureEntry {
  return { path: p, type: 'file', mode, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from(content) };
}

function dirEntry(p: string, mode = 0o755): FixtureEntry {
  return { path: p, type: 'dir', mode, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0 };
}

/** Uploads a tarball to the hub as alice/<name>.flist; returns its URL. */
async function upload(name: string, entries: FixtureEntry[]): Promise<string> {
  const form = new FormData();
  form.append('name', name);
  form.append('file', new Blob([await writeTar(entries)]), `${name}.tar`);
  const res = await fetch(`${hub.url}/api/flist/me/upload`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
  const body = (await res.json()) as { payload?: { url: string }; message?: string };
  if (res.status !== 200) throw new Error(`upload ${name}: HTTP ${res.status} ${body.message}`);
  return body.payload!.url;
}

/** A local flist built with `g8os flist create` into a dir:// store. */
async function localFlist(name: string, entries: FixtureEntry[], extra: string[] = []): Promise<{ flist: string; store: string }> {
  const tar = path.join(tmp, `${name}.tar`);
  fs.writeFileSync(tar, await writeTar(entries));
  const flist = path.join(tmp, `${name}.flist`);
  const store = `dir://${path.join(tmp, `${name}-store`)}`;
  const r = await g8os(['flist', 'create', tar, '-o', flist, '--store', store, ...extra]);
  if (r.code !== 0) throw new Error(`flist create ${name}: ${r.stderr}`);
  return { flist, store };
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-fs-mount-'));
  cacheDir = path.join(tmp, 'cache');
  hub = await startHub();
  token = hub.token('alice');
  everyUrl = await upload('every', everyTypeEntries());
  expect(everyUrl).toBe(`${hub.url}/alice/every.flist`);
});

afterEach(cleanup);

afterAll(async () => {
  await cleanup();
  await hub?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('g8os mount of a hub flist', () => {
  it('shows the uploaded tree byte-identical through the overlay; SIGTERM unmounts both layers', async () => {
    const s = setup();
    const p = await mounted(everyUrl, s);
    const top = mountAt(s.target)!;
    expect(top.fstype).toBe('overlay');
    expect(top.superOptions).toContain(`lowerdir=${s.ro},upperdir=${s.backend}/rw,workdir=${s.backend}/wd`);
    expect(top.superOptions).toContain('redirect_dir=on');
    expect(mountAt(s.ro)).toMatchObject({ fstype: 'fuse.g8ufs', source: `g8ufs-${p.child.pid}` });
    expect(Number(fs.readFileSync(path.join(s.backend, 'pid'), 'utf8'))).toBe(p.child.pid);
    expectTree(s.target, everyTypeEntries());
    expectTree(s.ro, everyTypeEntries());
    // the merged root keeps the flist root's mode and owner
    const root = fs.statSync(s.target);
    expect([root.mode & 0o7777, root.uid, root.gid]).toEqual([fs.statSync(s.ro).mode & 0o7777, 0, 0]);
    expect(await stop(p)).toBe(0);
    expect(p.stdout()).toBe('mount starts\n'); // exactly once
    expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);
    expect(fs.readdirSync(s.target)).toEqual([]);
    expect(fs.existsSync(path.join(s.backend, 'pid'))).toBe(false);
  });

  it('writes, renames (files and directories), deletes and chmods land in rw/; ro/ stays pristine; remount keeps them, --reset drops them', async () => {
    const s = setup();
    const p = await mounted(everyUrl, s);
    const t = (x: string): string => path.join(s.target, x);
    fs.writeFileSync(t('new.txt'), 'new file\n');
    fs.appendFileSync(t('etc/hostname'), 'appended\n');
    fs.renameSync(t('files/hello.txt'), t('files/renamed.txt'));
    fs.renameSync(t('srv/www'), t('srv/web')); // a lower directory: needs redirect_dir
    fs.rmSync(t('etc/secret'));
    fs.rmSync(t('links'), { recursive: true });
    fs.chmodSync(t('bin/run.sh'), 0o700);
    fs.mkdirSync(t('newdir/sub'), { recursive: true });
    fs.writeFileSync(t('files/multi-block.bin'), 'truncated'); // copy-up of a multi-block file

    const check = (): void => {
      expect(fs.readFileSync(t('new.txt'), 'utf8')).toBe('new file\n');
      expect(fs.readFileSync(t('etc/hostname'), 'utf8')).toBe('g8os-fixture\nappended\n');
      expect(fs.existsSync(t('files/hello.txt'))).toBe(false);
      expect(fs.readFileSync(t('files/renamed.txt'), 'utf8')).toBe('hello world\n');
      expect(fs.existsSync(t('srv/www'))).toBe(false);
      expect(fs.readFileSync(t('srv/web/index.html'), 'utf8')).toBe('<h1>hi</h1>\n');
      expect(fs.statSync(t('srv/web')).uid).toBe(33);
      expect(fs.existsSync(t('etc/secret'))).toBe(false);
      expect(fs.existsSync(t('links'))).toBe(false);
      expect(fs.statSync(t('bin/run.sh')).mode & 0o7777).toBe(0o700);
      expect(fs.readFileSync(t('bin/run.sh'), 'utf8')).toBe('#!/bin/sh\necho run\n');
      expect(fs.statSync(t('newdir/sub')).isDirectory()).toBe(true);
      expect(fs.readFileSync(t('files/multi-block.bin'), 'utf8')).toBe('truncated');
    };
    check();
    // the read-only layer never changes; the changes are files in rw/
    expectTree(s.ro, everyTypeEntries());
    expect(fs.readFileSync(path.join(s.backend, 'rw/new.txt'), 'utf8')).toBe('new file\n');
    expect(await stop(p)).toBe(0);

    const again = await mounted(everyUrl, s);
    check();
    expect(await stop(again)).toBe(0);

    const reset = await mounted(everyUrl, s, ['--reset']);
    expectTree(s.target, everyTypeEntries());
    expect(fs.existsSync(t('new.txt'))).toBe(false);
    expect(fs.readdirSync(path.join(s.backend, 'rw'))).toEqual([]);
    expect(await stop(reset)).toBe(0);
  });

  it('--ro mounts the FUSE layer at the target and refuses writes with EROFS; user/name resolves against --hub and G8OS_HUB', async () => {
    const s = setup();
    const p = await mounted('alice/every', s, ['--ro', '--hub', hub.url]);
    expect(mountAt(s.target)).toMatchObject({ fstype: 'fuse.g8ufs', source: `g8ufs-${p.child.pid}` });
    expect(mountAt(s.ro)).toBeUndefined();
    expect(fs.readFileSync(path.join(s.target, 'files/hello.txt'), 'utf8')).toBe('hello world\n');
    const code = (fn: () => void): string | undefined => {
      try {
        fn();
        return undefined;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      }
    };
    expect(code(() => fs.writeFileSync(path.join(s.target, 'new.txt'), 'x'))).toBe('EROFS');
    expect(code(() => fs.writeFileSync(path.join(s.target, 'etc/hostname'), 'x'))).toBe('EROFS');
    expect(code(() => fs.chmodSync(path.join(s.target, 'etc/hostname'), 0o600))).toBe('EROFS');
    expect(code(() => fs.rmSync(path.join(s.target, 'etc/hostname')))).toBe('EROFS');
    expect(code(() => fs.mkdirSync(path.join(s.target, 'd')))).toBe('EROFS');
    expect(await stop(p)).toBe(0);
    expect(isMounted(s.target)).toBe(false);

    const s2 = setup();
    const p2 = await mounted('alice/every.flist', s2, ['--ro'], { G8OS_HUB: hub.url });
    expect(fs.readlinkSync(path.join(s2.target, 'links/relative'))).toBe('../files/hello.txt');
    expect(await stop(p2, 'SIGINT')).toBe(0);
    expect(isMounted(s2.target)).toBe(false);
  });

  it('--layer puts flists on top in order: the last one wins, directories merge, a file above a directory hides it', async () => {
    // layer 1 is local with its own dir:// store; layer 2 lives on the hub
    const one = await localFlist('layer-1', [
      dirEntry('etc'),
      fileEntry('etc/hostname', 'layer-1\n'),
      fileEntry('etc/only-1', 'one\n'),
      fileEntry('files/hello.txt', 'hello from layer 1\n'),
    ]);
    const two = await upload('layer-2', [
      dirEntry('etc', 0o750),
      fileEntry('etc/hostname', 'layer-2\n'),
      fileEntry('etc/only-2', 'two\n'),
      fileEntry('run', 'a file above the directory run/\n'),
    ]);
    const s = setup();
    const p = await mounted(everyUrl, s, ['--layer', one.flist, '--layer', two]);
    const read = (x: string): string => fs.readFileSync(path.join(s.target, x), 'utf8');
    expect(read('etc/hostname')).toBe('layer-2\n');
    expect(read('etc/only-1')).toBe('one\n');
    expect(read('etc/only-2')).toBe('two\n');
    expect(read('etc/secret')).toBe('s3cr3t\n'); // bottom layer, merged directory
    expect(read('files/hello.txt')).toBe('hello from layer 1\n');
    expect(fs.statSync(path.join(s.target, 'files/block.bin')).size).toBe(524288);
    expect(read('run')).toBe('a file above the directory run/\n');
    expect(fs.statSync(path.join(s.target, 'etc')).mode & 0o7777).toBe(0o750); // top layer's attributes
    expect(fs.readdirSync(path.join(s.target, 'etc')).sort()).toEqual(['hostname', 'only-1', 'only-2', 'secret']);
    expect(await stop(p)).toBe(0);

    // the other order: layer 1 on top
    const s2 = setup();
    const p2 = await mounted(everyUrl, s2, ['--layer', two, '--layer', one.flist, '--ro']);
    expect(fs.readFileSync(path.join(s2.target, 'etc/hostname'), 'utf8')).toBe('layer-1\n');
    expect(await stop(p2)).toBe(0);
  });

  it('--prefetch fills the cache in the background: the tree reads back after the hub is gone', async () => {
    const own = await startHub();
    try {
      const form = new FormData();
      form.append('file', new Blob([await writeTar(everyTypeEntries())]), 'every.tar');
      const res = await fetch(`${own.url}/api/flist/me/upload`, { method: 'POST', headers: { authorization: `Bearer ${own.token('bob')}` }, body: form });
      expect(res.status).toBe(200);
      const s = setup();
      const p = await spawnMount([`${own.url}/bob/every.flist`, s.target, '--backend', s.backend, '--cache', path.join(s.backend, 'own-cache'), '--prefetch', '--ro']);
      expect(p.stdout(), p.stderr()).toBe('mount starts\n');
      const until = Date.now() + 20_000;
      while (!p.stderr().includes('prefetch done') && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(p.stderr()).toMatch(/prefetch done: \d+ blocks\n/);
      await own.stop();
      expectTree(s.target, everyTypeEntries());
      expect(await stop(p)).toBe(0);
    } finally {
      await own.stop();
    }
  });

  it('an flist without backend metadata needs --storage-url; a local flist mounts with it', async () => {
    const entries = [dirEntry('etc'), fileEntry('etc/motd', 'local flist\n')];
    const { flist, store } = await localFlist('nobackend', entries, ['--no-backend']);
    const s = setup();
    await refused([flist, s.target, '--backend', s.backend, '--cache', cacheDir], s, /has no backend metadata naming its block store: pass --storage-url/);
    const p = await mounted(flist, s, ['--storage-url', store]);
    expect(fs.readFileSync(path.join(s.target, 'etc/motd'), 'utf8')).toBe('local flist\n');
    expect(await stop(p)).toBe(0);
  });
});

describe('process life cycle', () => {
  it('-d detaches once the mount is up (pid file, log); g8os umount stops the daemon', async () => {
    const s = setup();
    const pidFile = path.join(tmp, `daemon-${seq}.pid`);
    const log = path.join(tmp, `daemon-${seq}.log`);
    const r = await g8os(['mount', everyUrl, s.target, '--backend', s.backend, '--cache', cacheDir, '-d', '--pid', pidFile, '--log', log]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('mount starts\n');
    expect(r.code).toBe(0);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(mountAt(s.ro)!.source).toBe(`g8ufs-${pid}`);
    expect(fs.readFileSync(path.join(s.target, 'etc/hostname'), 'utf8')).toBe('g8os-fixture\n');
    expect(fs.readFileSync(log, 'utf8')).toContain('mount starts');

    const u = await g8os(['umount', s.target]);
    expect(u.stderr).toBe('');
    expect(u.code).toBe(0);
    expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);
    expect(processAlive(pid)).toBe(false); // gone (or a zombie nobody reaps)
    expect(fs.existsSync(pidFile)).toBe(false);
  });

  it('-d reports the mount process error and exits 1', async () => {
    const s = setup();
    const port = await freePort();
    const r = await g8os(['mount', everyUrl, s.target, '--backend', s.backend, '--cache', cacheDir, '-d', '--storage-url', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^g8os: store unreachable for .*ECONNREFUSED.*--lazy-connect/);
    expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);
    // without --log the daemon logs to <backend>/mount.log
    expect(fs.readFileSync(path.join(s.backend, 'mount.log'), 'utf8')).toMatch(/store unreachable/);
  });

  it('SIGTERM with the target busy (a process inside) still unmounts both layers (lazily) and exits 0', async () => {
    const s = setup();
    const p = await mounted(everyUrl, s);
    const holder = spawn('sleep', ['60'], { cwd: path.join(s.target, 'etc'), stdio: 'ignore' });
    procs.add(holder);
    await new Promise((r) => setTimeout(r, 200));
    expect(fs.readlinkSync(`/proc/${holder.pid}/cwd`)).toBe(path.join(s.target, 'etc'));
    expect(await stop(p)).toBe(0);
    expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);
    holder.kill('SIGKILL');
  });

  // The stress run's mount that outlived SIGTERM by 30 s: a reader kept files open and its
  // reads waited on fetches; teardown waited for every running and queued fetch (each up to
  // the cache's 10 s deadline) before exiting.
  it('SIGTERM while readers hold files open and wait on a store that never answers: exits at once, nothing mounted', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    try {
      const s = setup();
      const cold = fs.mkdtempSync(path.join(tmp, 'cold-cache-'));
      const p = await spawnMount([everyUrl, s.target, '--backend', s.backend, '--cache', cold, '--storage-url', url, '--lazy-connect']);
      expect(p.stdout(), p.stderr()).toBe('mount starts\n');
      const file = path.join(s.target, 'files/mixed-5MiB.bin');
      // one holds the file open, one is blocked reading it (its blocks never come)
      const holder = spawn('sh', ['-c', 'exec 3< "$1"; sleep 60', 'sh', file], { stdio: 'ignore' });
      const reader = spawn('cat', [file], { stdio: 'ignore' });
      procs.add(holder);
      procs.add(reader);
      await new Promise((r) => setTimeout(r, 1500));
      expect(fs.readdirSync(`/proc/${holder.pid}/fd`).map((fd) => fs.readlinkSync(`/proc/${holder.pid}/fd/${fd}`))).toContain(file);
      const t0 = Date.now();
      expect(await stop(p)).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);
      expect(fs.existsSync(path.join(s.backend, 'pid'))).toBe(false);
      holder.kill('SIGKILL');
      reader.kill('SIGKILL');
    } finally {
      silent.close();
    }
  }, 30_000);

  it('a target given through a symbolic link mounts (and unmounts) at the real directory', async () => {
    const s = setup();
    const link = path.join(tmp, `link-${seq}`);
    fs.symlinkSync(path.relative(tmp, s.target), link);
    const p = await spawnMount([everyUrl, link, '--backend', s.backend, '--cache', cacheDir, '--ro']);
    expect(p.stdout(), p.stderr()).toBe('mount starts\n');
    expect(mountAt(s.target)?.fstype).toBe('fuse.g8ufs');
    expect(fs.readFileSync(path.join(link, 'etc/hostname'), 'utf8')).toBe('g8os-fixture\n');
    await stop(p, 'SIGKILL'); // stale: umount through the link must not stat the dead mount
    const u = await g8os(['umount', link]);
    expect(u.code, u.stderr).toBe(0);
    expect(isMounted(s.target)).toBe(false);
  });

  it('an external unmount of the target makes the mount process clean up and exit', async () => {
    const s = setup();
    const p = await mounted(everyUrl, s);
    expect(spawnSync('umount', [s.target]).status).toBe(0);
    expect(await p.exited).toBe(0);
    expect(isMounted(s.ro)).toBe(false);
    expect(p.stderr()).toMatch(/unmounted from outside/);
  });

  it('SIGKILL leaves a stale mount; the next mount on the target recovers it', async () => {
    const s = setup();
    const p = await mounted(everyUrl, s);
    expect(await stop(p, 'SIGKILL')).toBe('SIGKILL');
    expect(isMounted(s.target) && isMounted(s.ro)).toBe(true); // stale: both layers still there
    const again = await mounted(everyUrl, s);
    expect(again.stderr()).toMatch(/recovering the stale mount at/);
    expect(fs.readFileSync(path.join(s.target, 'files/hello.txt'), 'utf8')).toBe('hello world\n');
    expect(readMounts().filter((m) => m.mountPoint === s.target || m.mountPoint === s.ro)).toHaveLength(2);
    expect(await stop(again)).toBe(0);
    expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);

    // the same with --ro (a stale FUSE mount right at the target)
    const ro = await mounted(everyUrl, s, ['--ro']);
    expect(await stop(ro, 'SIGKILL')).toBe('SIGKILL');
    expect(isMounted(s.target)).toBe(true);
    const ro2 = await mounted(everyUrl, s, ['--ro']);
    expect(ro2.stderr()).toMatch(/recovering the stale mount/);
    expect(fs.readFileSync(path.join(s.target, 'etc/hostname'), 'utf8')).toBe('g8os-fixture\n');
    expect(await stop(ro2)).toBe(0);
  });

  it('a g8ufs mount served under another name (no pid in its fsname): live is left alone, dead is recovered; umount unmounts it', async () => {
    const s = setup();
    const serve = (): ChildProcess => {
      const c = spawn(process.execPath, [path.join(ROOT, 'dist/src/fs/serve-child.js'), JSON.stringify({ mountpoint: s.target, layers: [{ flist: everyUrl }], name: 'g8ufs-test-other' })], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      procs.add(c);
      return c;
    };
    const started = (c: ChildProcess): Promise<void> =>
      new Promise((resolve, reject) => {
        c.stdout!.on('data', (d: Buffer) => d.toString().includes('mount starts') && resolve());
        c.once('exit', (code) => reject(new Error(`serve-child exited with ${code}`)));
      });
    const other = serve();
    await started(other);
    expect(mountAt(s.target)?.source).toBe('g8ufs-test-other');
    await refused([everyUrl, s.target, '--backend', s.backend, '--cache', cacheDir], undefined, /target .* is already mounted \(fuse.g8ufs g8ufs-test-other\)/);
    const u = await g8os(['umount', s.target]);
    expect(u.code, u.stderr).toBe(0);
    expect(isMounted(s.target)).toBe(false);
    await new Promise<void>((r) => (other.exitCode !== null ? r() : other.once('exit', () => r())));

    const dead = serve();
    await started(dead);
    dead.kill('SIGKILL');
    await new Promise<void>((r) => dead.once('exit', () => r()));
    expect(isMounted(s.target)).toBe(true);
    const p = await mounted(everyUrl, s, ['--ro']);
    expect(p.stderr()).toMatch(/recovering the stale mount/);
    expect(await stop(p)).toBe(0);
  });

  it('g8os umount of a live mount stops its process; of a stale one detaches it; of anything else says so', async () => {
    const s = setup();
    const p = await mounted(everyUrl, s);
    const u = await g8os(['umount', s.target]);
    expect(u.code, u.stderr).toBe(0);
    expect(await p.exited).toBe(0);
    expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);

    const k = await mounted(everyUrl, s);
    await stop(k, 'SIGKILL');
    const u2 = await g8os(['umount', s.target]);
    expect(u2.code).toBe(0);
    expect(u2.stderr).toMatch(/stale/);
    expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);

    const u3 = await g8os(['umount', s.target]);
    expect(u3.code).toBe(1);
    expect(u3.stderr).toBe(`g8os: ${s.target} is not mounted\n`);
    const u4 = await g8os(['umount', path.join(tmp, 'no-such-dir')]);
    expect(u4.code).toBe(1);
    expect(u4.stderr).toMatch(/does not exist/);
    // something that is not ours
    const other = setup();
    expect(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', other.target]).status).toBe(0);
    const u5 = await g8os(['umount', other.target]);
    expect(u5.code).toBe(1);
    expect(u5.stderr).toMatch(/is not a g8os mount \(tmpfs/);
    expect(isMounted(other.target)).toBe(true);
  });
});

describe('bad input: exit 1, one clear line, nothing mounted', () => {
  it('a missing flist file, a corrupt flist, an unreachable flist URL, an unknown user/name without a hub', async () => {
    const s = setup();
    const base = ['--backend', s.backend, '--cache', cacheDir];
    await refused([path.join(tmp, 'missing.flist'), s.target, ...base], s, /missing\.flist.*ENOENT|no such file/i);
    const corrupt = path.join(tmp, 'corrupt.flist');
    fs.writeFileSync(corrupt, Buffer.from('this is not an flist at all, just some text\n'.repeat(50)));
    await refused([corrupt, s.target, ...base], s, /not an flist|corrupt flist/);
    const port = await freePort();
    await refused([`http://127.0.0.1:${port}/alice/every.flist`, s.target, ...base], s, /cannot download flist .*ECONNREFUSED/);
    await refused([`${hub.url}/alice/nope.flist`, s.target, ...base], s, /cannot download flist .*HTTP 404/);
    const noHub = await spawnMount(['alice/nope', s.target, ...base], { G8OS_HUB: '' });
    expect(await noHub.exited).toBe(2);
    expect(noHub.stderr()).toMatch(/pass --hub <url> or set G8OS_HUB/);
    expect(fs.readdirSync(s.target)).toEqual([]);
  });

  it('an unreachable store or a store refusing authentication fails fast unless --lazy-connect', async () => {
    const s = setup();
    const base = [s.target, '--backend', s.backend, '--cache', cacheDir];
    const port = await freePort();
    const t0 = Date.now();
    await refused([everyUrl, ...base, '--storage-url', `http://127.0.0.1:${port}`], s, /store unreachable for .*--lazy-connect/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const redis = await startRedis({ password: 'sesame' });
    try {
      await refused([everyUrl, ...base, '--storage-url', `redis://127.0.0.1:${redis.port}`], s, /store unreachable for .*(NOAUTH|auth)/i);
    } finally {
      await redis.stop();
    }
    await refused([everyUrl, ...base, '--storage-url', `dir://${path.join(tmp, 'no-store')}`], s, /is not a directory/);
    // metadata never needs the store
    const p = await mounted(everyUrl, s, ['--storage-url', `http://127.0.0.1:${port}`, '--lazy-connect', '--ro']);
    expect(fs.readdirSync(path.join(s.target, 'etc')).sort()).toEqual(['hostname', 'secret']);
    expect(fs.statSync(path.join(s.target, 'files/mixed-5MiB.bin')).size).toBe(5 * 1024 * 1024 + 1234);
    expect(await stop(p)).toBe(0);
  });

  it('a store that accepts connections but never answers: the mount gives up after 15 s; a signal interrupts it at once', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    try {
      const s = setup();
      const args = [everyUrl, s.target, '--backend', s.backend, '--cache', cacheDir, '--storage-url', url];
      const t0 = Date.now();
      const p = await spawnMount(args);
      expect(await p.exited).toBe(1);
      expect(Date.now() - t0).toBeGreaterThan(14_000);
      expect(p.stderr()).toMatch(/^g8os: store unreachable for .*no answer within 15 s/);

      const child = spawn(process.execPath, [BIN, 'mount', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      procs.add(child);
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      await new Promise((r) => setTimeout(r, 1500));
      const t1 = Date.now();
      child.kill('SIGTERM');
      expect(await code).toBe(1);
      expect(Date.now() - t1).toBeLessThan(2000);
      expect(err).toBe('g8os: interrupted before the mount was ready\n');
      expect(isMounted(s.target) || isMounted(s.ro)).toBe(false);
      expect(fs.existsSync(path.join(s.backend, 'pid'))).toBe(false);
    } finally {
      silent.close();
    }
  }, 40_000);

  it('an flist whose blocks are missing mounts with a warning; reading those files fails with EIO, the rest works', async () => {
    const link: FixtureEntry = { ...dirEntry('etc/link'), type: 'symlink', mode: 0o777, linkname: 'gone' };
    const { flist, store } = await localFlist('holes', [dirEntry('etc'), fileEntry('etc/gone', 'this block will be deleted\n'), link]);
    const root = store.slice('dir://'.length);
    const r = await g8os(['flist', 'stat', flist, 'etc/gone', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const id = (JSON.parse(r.stdout) as { blocks: { id: string }[] }).blocks[0].id;
    fs.rmSync(path.join(root, id.slice(0, 2), id.slice(2, 4), id));
    const s = setup();
    const p = await mounted(flist, s, ['--ro', '--cache', path.join(s.backend, 'own-cache')]);
    expect(p.stderr()).toMatch(new RegExp(`warning: store .* does not have block ${id}`));
    expect(fs.readdirSync(path.join(s.target, 'etc')).sort()).toEqual(['gone', 'link']);
    expect(fs.readlinkSync(path.join(s.target, 'etc/link'))).toBe('gone');
    expect(fs.statSync(path.join(s.target, 'etc/gone')).size).toBe(27);
    expect(() => fs.readFileSync(path.join(s.target, 'etc/gone'))).toThrow(/EIO/);
    expect(await stop(p)).toBe(0);
  });

  it('a target that is missing, not a directory, not empty or already mounted', async () => {
    const s = setup();
    const base = (t: string): string[] => [everyUrl, t, '--backend', s.backend, '--cache', cacheDir];
    await refused(base(path.join(tmp, 'nowhere', 'x')), undefined, /target .* does not exist/);
    await refused(base(path.join(s.target, 'x')), undefined, /target .* does not exist/);
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    await refused(base(file), undefined, /target .*a-file is not a directory/);
    fs.writeFileSync(path.join(s.target, 'something'), 'x');
    await refused(base(s.target), s, /target .* is not empty/);
    fs.rmSync(path.join(s.target, 'something'));

    const p = await mounted(everyUrl, s);
    const other = setup();
    await refused([everyUrl, s.target, '--backend', other.backend, '--cache', cacheDir], undefined, new RegExp(`already mounted by g8os \\(pid ${p.child.pid}\\)`));
    // the same backend for another target: in use
    await refused([everyUrl, other.target, '--backend', s.backend, '--cache', cacheDir], undefined, new RegExp(`backend ${s.backend} is in use by the mount process ${p.child.pid}`));
    expect(isMounted(other.target)).toBe(false);
    expect(fs.readFileSync(path.join(s.target, 'etc/hostname'), 'utf8')).toBe('g8os-fixture\n'); // untouched
    const tm = setup();
    expect(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', tm.target]).status).toBe(0);
    await refused([everyUrl, tm.target, '--backend', tm.backend, '--cache', cacheDir], undefined, /already mounted \(tmpfs tmpfs\)/);
    expect(await stop(p)).toBe(0);
  });

  it('a backend where overlay cannot put its upper layer: the kernel reason, and the FUSE layer is taken down again', async () => {
    const s = setup();
    const ov = path.join(tmp, `ov-${seq}`);
    for (const d of ['l', 'u', 'w', 'm']) fs.mkdirSync(path.join(ov, d), { recursive: true });
    paths.add(path.join(ov, 'm'));
    const o = `lowerdir=${ov}/l,upperdir=${ov}/u,workdir=${ov}/w`;
    expect(spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', o, path.join(ov, 'm')]).status).toBe(0);
    const backend = path.join(ov, 'm', 'backend');
    paths.add(path.join(backend, 'ro'));
    await refused([everyUrl, s.target, '--backend', backend, '--cache', cacheDir], s, /cannot mount the overlay at .*: overlay: filesystem on .*backend\/rw not supported as upperdir/);
    expect(isMounted(path.join(backend, 'ro'))).toBe(false);
    expect(fs.existsSync(path.join(backend, 'pid'))).toBe(false);
  });

  it('bad options: --cache-size, unknown options', async () => {
    const s = setup();
    const r = await g8os(['mount', everyUrl, s.target, '--cache-size', 'lots']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid size "lots"/);
    const r2 = await g8os(['mount', everyUrl]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/missing required argument 'target'/);
  });
});
