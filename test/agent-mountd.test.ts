// The node's mount service with real parts: one `g8os mount --ro` process per distinct flist
// (real FUSE), a kernel overlay per container, real containers through dist/g8init. Sharing,
// the grace period, a killed lower process, two agents on one host, an agent SIGKILLed. No mocks.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Containers, type ContainersOptions } from '../src/agent/containers';
import { leftovers } from '../src/agent/containers/cgroup';
import { FUSE_TYPE, readMounts } from '../src/fs/mount-table';
import { g8os, ROOT } from './helpers/cli';
import { g8initBuilt, RemoteContainers, type RunResult } from './helpers/netns';
import { BUSYBOX_APPLETS, type FixtureEntry, randomBytes, T0, writeTarFile } from './helpers/tarballs';

const INSTANCE = `g8m${process.pid}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

let tmp: string;
let flist: string;
/** data/<name> of the flist and their sha256 */
const data = new Map<string, string>();
const dataDirs = new Set<string>();

async function setup(): Promise<void> {
  if (tmp) return;
  if (!g8initBuilt()) {
    execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', path.join(ROOT, 'dist/g8init'), path.join(ROOT, 'src/agent/native/g8init.c')]);
  }
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), `g8os-mountd-${process.pid}-`));
  const root = { uid: 0, gid: 0, uname: 'root', gname: 'root' };
  const entries: FixtureEntry[] = [
    { path: 'bin', type: 'dir', mode: 0o755, ...root, mtime: T0 },
    { path: 'bin/busybox', type: 'file', mode: 0o755, ...root, mtime: T0, content: fs.readFileSync('/bin/busybox') },
    ...BUSYBOX_APPLETS.map((a): FixtureEntry => ({ path: `bin/${a}`, type: 'symlink', mode: 0o777, ...root, mtime: T0, linkname: 'busybox' })),
    ...['etc', 'tmp', 'proc', 'sys', 'dev', 'data'].map((d): FixtureEntry => ({ path: d, type: 'dir', mode: 0o755, ...root, mtime: T0 })),
  ];
  // files of 1.5 MiB (several blocks each), each read at a known moment
  for (const [i, name] of ['a', 'b', 'c', 'd', 'e', 'f'].entries()) {
    const content = randomBytes(3 * 512 * 1024 + 1000, 100 + i);
    data.set(name, sha(content));
    entries.push({ path: `data/${name}`, type: 'file', mode: 0o644, ...root, mtime: T0, content });
  }
  await writeTarFile(path.join(tmp, 'rootfs.tar'), entries);
  flist = path.join(tmp, 'data.flist');
  const r = await g8os(['flist', 'create', path.join(tmp, 'rootfs.tar'), '-o', flist, '--store', `dir://${path.join(tmp, 'store')}`]);
  expect(r.code, r.stderr).toBe(0);
}

afterAll(async () => {
  for (const dataDir of dataDirs) await new Containers({ dataDir, instance: INSTANCE, log: () => undefined }).init();
  if (tmp && !readMounts().some((m) => m.mountPoint.startsWith(tmp))) fs.rmSync(tmp, { recursive: true, force: true });
});

function containers(name: string, o: Partial<ContainersOptions> = {}): Containers {
  const dataDir = path.join(tmp, name);
  dataDirs.add(dataDir);
  return new Containers({ dataDir, cacheDir: path.join(tmp, 'cache'), instance: `${INSTANCE}${name}`, log: () => undefined, ...o });
}

/** The g8ufs lowers mounted for this data dir, from /proc/self/mountinfo. */
const lowers = (dataDir: string): string[] =>
  readMounts().filter((m) => m.fstype === FUSE_TYPE && m.mountPoint.startsWith(`${dataDir}-mounts/`)).map((m) => m.mountPoint);

/** Mounts, processes, cgroups and directories a data dir (and its mount service) can leave. */
function leftoversOf(dataDir: string, instance: string): string[] {
  const out: string[] = [];
  for (const m of readMounts()) if (m.mountPoint.startsWith(`${dataDir}/`) || m.mountPoint.startsWith(`${dataDir}-mounts/`)) out.push(`mount ${m.mountPoint}`);
  for (const n of leftovers(`${instance}-`)) out.push(`cgroup ${n}`);
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cmd.includes(`${dataDir}/`) || cmd.includes(`${dataDir}-mounts/`)) out.push(`process ${p} ${cmd.replace(/\0/g, ' ').slice(0, 100)}`);
    } catch {
      // gone
    }
  }
  for (const d of [dataDir, `${dataDir}-mounts`]) if (fs.existsSync(d)) for (const n of fs.readdirSync(d)) if (n !== 'tmp') out.push(`dir ${d}/${n}`);
  return out;
}

function run(c: Containers, id: number, script: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = c.place(id).spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** sha256sum of data/<name> in the container: the right hash, or a failure — never another hash. */
async function readsRightOrFails(c: Containers, id: number, name: string): Promise<'right' | 'failed'> {
  const r = await run(c, id, `sha256sum /data/${name}`);
  if (r.code !== 0) return 'failed';
  expect(r.stdout.split(' ')[0]).toBe(data.get(name));
  return 'right';
}

async function until(what: string, fn: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('mount service', () => {
  it('two containers from one flist share one lower; each has its own writes; the lower goes after the last terminate + grace', async () => {
    await setup();
    const c = containers('share', { mountGraceMs: 1500 });
    const dataDir = path.join(tmp, 'share');
    await c.init();
    try {
      const a = await c.create({ root: flist, host_network: true });
      const b = await c.create({ root: flist, host_network: true });
      expect(lowers(dataDir)).toHaveLength(1);
      expect(c.mounts.list()).toMatchObject([{ leases: 2, restarts: 0 }]);
      // each root is its own overlay on that lower
      const roots = readMounts().filter((m) => m.fstype === 'overlay' && m.mountPoint.startsWith(`${dataDir}/`));
      expect(roots.map((m) => m.mountPoint).sort()).toEqual([`${dataDir}/${a}/root`, `${dataDir}/${b}/root`]);
      expect((await run(c, a, 'echo mine > /data/a && echo new > /data/only-a && cat /data/a')).stdout).toBe('mine\n');
      expect(await readsRightOrFails(c, b, 'a')).toBe('right');
      expect((await run(c, b, 'ls /data')).stdout.split('\n')).not.toContain('only-a');
      const pid = c.mounts.list()[0].pid;

      await c.terminate(a);
      await c.terminate(b);
      // within the grace period the lower stays, and a new container uses it warm
      expect(lowers(dataDir)).toHaveLength(1);
      const t0 = Date.now();
      const d = await c.create({ root: flist, host_network: true });
      const warmMs = Date.now() - t0;
      expect(c.mounts.list()).toMatchObject([{ pid, leases: 1 }]);
      expect(await readsRightOrFails(c, d, 'a')).toBe('right'); // the lower was never changed
      await c.terminate(d);
      await until('the lower to go after the grace period', () => c.mounts.list().length === 0, 10_000);
      expect(lowers(dataDir)).toEqual([]);
      expect(leftoversOf(dataDir, `${INSTANCE}share`)).toEqual([]);
      expect(warmMs).toBeLessThan(5000);
    } finally {
      await c.shutdown();
    }
    expect(leftoversOf(dataDir, `${INSTANCE}share`)).toEqual([]);
  }, 120_000);

  it('a killed lower process is restarted; running containers keep their files or fail, never wrong bytes', async () => {
    await setup();
    const c = containers('crash', { mountGraceMs: 0 });
    const dataDir = path.join(tmp, 'crash');
    await c.init();
    try {
      const a = await c.create({ root: flist, host_network: true });
      expect(await readsRightOrFails(c, a, 'a')).toBe('right');
      expect((await run(c, a, 'echo kept > /tmp/mine')).code).toBe(0);
      const [before] = c.mounts.list();
      process.kill(before.pid!, 'SIGKILL');
      await until('the lower to be restarted', () => {
        const [l] = c.mounts.list();
        return !!l && l.restarts === 1 && l.pid !== before.pid && lowers(dataDir).length >= 1;
      });
      // the container's own writes stay in its upper dir; inside, each read is right or fails
      // (even exec of /bin/sh needs the lower, whose connection died with its process)
      expect(fs.readFileSync(path.join(dataDir, String(a), 'rw/tmp/mine'), 'utf8')).toBe('kept\n');
      const mine = await run(c, a, 'cat /tmp/mine');
      if (mine.code === 0) expect(mine.stdout).toBe('kept\n');
      expect(['right', 'failed']).toContain(await readsRightOrFails(c, a, 'a'));
      expect(['right', 'failed']).toContain(await readsRightOrFails(c, a, 'b'));
      // new containers get the restarted lower, with every byte right
      const b = await c.create({ root: flist, host_network: true });
      expect(await readsRightOrFails(c, b, 'c')).toBe('right');
      expect(c.mounts.list()).toMatchObject([{ leases: 2 }]);
      await c.terminate(a);
      await c.terminate(b);
      expect(leftoversOf(dataDir, `${INSTANCE}crash`)).toEqual([]);
    } finally {
      await c.shutdown();
    }
  }, 120_000);

  it('an flist whose blocks are missing fails clearly and leaves no lower', async () => {
    await setup();
    const c = containers('missing', { mountGraceMs: 0 });
    const dataDir = path.join(tmp, 'missing');
    await c.init();
    try {
      const empty = path.join(tmp, 'empty-store');
      fs.mkdirSync(empty, { recursive: true });
      const e = await c.create({ root: flist, storage: `dir://${empty}`, host_network: true }).catch((x: Error) => x);
      expect((e as Error).message).toMatch(/^cannot use flist: \d+ of \d+ blocks of .*data\.flist are missing from dir:\/\//);
      expect(c.mounts.list()).toEqual([]);
      expect(leftoversOf(dataDir, `${INSTANCE}missing`)).toEqual([]);
    } finally {
      await c.shutdown();
    }
  }, 60_000);

  it('two agents on one host (different data dirs, one block cache) do not break each other', async () => {
    await setup();
    const one = containers('one', { mountGraceMs: 60_000 });
    const two = containers('two', { mountGraceMs: 60_000 });
    await one.init();
    await two.init();
    try {
      const a = await one.create({ root: flist, host_network: true });
      const b = await two.create({ root: flist, host_network: true });
      expect(lowers(path.join(tmp, 'one'))).toHaveLength(1);
      expect(lowers(path.join(tmp, 'two'))).toHaveLength(1);
      expect((await run(one, a, 'echo one > /tmp/who')).code).toBe(0);
      expect((await run(two, b, 'cat /tmp/who 2>&1')).code).not.toBe(0);
      // one agent going (its lower unmounted at once) leaves the other's container whole
      await one.shutdown();
      expect(leftoversOf(path.join(tmp, 'one'), `${INSTANCE}one`)).toEqual([]);
      expect(await readsRightOrFails(two, b, 'd')).toBe('right');
      // and a new agent on the first data dir sweeps nothing of the second's
      const again = containers('one', { mountGraceMs: 0 });
      await again.init();
      await again.shutdown();
      expect(await readsRightOrFails(two, b, 'e')).toBe('right');
    } finally {
      await one.shutdown();
      await two.shutdown();
    }
    expect(leftoversOf(path.join(tmp, 'two'), `${INSTANCE}two`)).toEqual([]);
  }, 120_000);

  it('an agent SIGKILLed with containers and a lower in its grace period: the next one sweeps it all', async () => {
    await setup();
    const dataDir = path.join(tmp, 'killed');
    dataDirs.add(dataDir);
    const opts = { dataDir, cacheDir: path.join(tmp, 'cache'), instance: `${INSTANCE}killed`, mountGraceMs: 60_000 };
    let agent: RemoteContainers | undefined = await RemoteContainers.start(null, opts);
    try {
      await agent.call('init');
      const id = await agent.call<number>('create', { root: flist, host_network: true });
      await agent.call('create', { root: flist, host_network: true });
      await agent.call('terminate', id); // its lower stays: the other container, then the grace period
      agent.child.kill('SIGKILL');
      await agent.exited;
      agent = undefined;
      const left = leftoversOf(dataDir, opts.instance);
      expect(left.filter((l) => l.startsWith('process')).length).toBeGreaterThanOrEqual(3); // g8init, PID 1, the lower
      expect(lowers(dataDir)).toHaveLength(1);

      agent = await RemoteContainers.start(null, opts);
      await agent.call('init');
      expect(leftoversOf(dataDir, opts.instance)).toEqual([]);
      const again = await agent.call<number>('create', { root: flist, host_network: true });
      expect(again).toBe(1);
      const r = await agent.run(again, ['sh', '-c', 'sha256sum /data/f']);
      expect(r.stdout.split(' ')[0], JSON.stringify(r) + agent.stderr).toBe(data.get('f'));
      await agent.stop();
      agent = undefined;
      expect(leftoversOf(dataDir, opts.instance)).toEqual([]);
    } finally {
      await agent?.stop();
    }
  }, 120_000);
});
