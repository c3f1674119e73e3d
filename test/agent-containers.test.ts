// The container runtime end to end with real parts: a busybox rootfs flist in a dir:// store,
// real g8ufs mounts (one shared `g8os mount --ro` process per flist, an overlay per container), real namespaces through dist/g8init,
// real cgroups. Networking tests run their Containers inside a network namespace made for the
// test (helpers/netns.ts), so the host's links, nftables and sysctls never change. No mocks.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { corexHandlers } from '../src/agent/builtins/corex';
import { Containers } from '../src/agent/containers';
import { leftovers, parentDir } from '../src/agent/containers/cgroup';
import { CommandError, type JobContext } from '../src/agent/types';
import { readMounts } from '../src/fs/mount-table';
import { g8os, ROOT } from './helpers/cli';
import { g8initBuilt, Netns, RemoteContainers, RemoteError, type RunResult } from './helpers/netns';
import { busyboxRootfsTar } from './helpers/tarballs';

let tmp: string;
let flist: string; // the busybox rootfs
let store: string; // its dir:// store
let flistUrl: string; // the same flist over http
let httpServer: http.Server;
const INSTANCE = `g8t${process.pid}`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  if (!g8initBuilt()) {
    execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', path.join(ROOT, 'dist/g8init'), path.join(ROOT, 'src/agent/native/g8init.c')]);
  }
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), `g8os-ctest-${process.pid}-`));
  store = path.join(tmp, 'store');
  flist = path.join(tmp, 'busybox.flist');
  await busyboxRootfsTar(path.join(tmp, 'rootfs.tar'));
  const r = await g8os(['flist', 'create', path.join(tmp, 'rootfs.tar'), '-o', flist, '--store', `dir://${store}`]);
  expect(r.code, r.stderr).toBe(0);
  httpServer = http.createServer((req, res) => {
    const f = path.join(tmp, path.basename(req.url ?? ''));
    if (!fs.existsSync(f)) return res.writeHead(404).end();
    fs.createReadStream(f).pipe(res);
  });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  flistUrl = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}/busybox.flist`;
}, 120_000);

const dataDirs = new Set<string>();

afterAll(async () => {
  await new Promise((r) => httpServer?.close(r));
  // whatever a failed test left: the crash sweep of a fresh Containers removes it
  for (const dataDir of dataDirs) {
    if (fs.existsSync(dataDir)) await new Containers({ dataDir, instance: INSTANCE, log: () => undefined }).init();
  }
  if (tmp && !readMounts().some((m) => m.mountPoint.startsWith(tmp))) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Everything a container can leave behind, for the given data dir. */
function leftoversOf(dataDir: string): string[] {
  const out: string[] = [];
  // the container dirs and the mount service's (shared lowers: these tests use no grace period)
  const mountd = `${dataDir}-mounts`;
  for (const m of readMounts()) if (m.mountPoint.startsWith(`${dataDir}/`) || m.mountPoint.startsWith(`${mountd}/`)) out.push(`mount ${m.mountPoint}`);
  for (const n of leftovers(`${INSTANCE}-`)) out.push(`cgroup ${n}`);
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cmd.includes(dataDir)) out.push(`process ${p} ${cmd.replace(/\0/g, ' ').slice(0, 100)}`);
    } catch {
      // gone
    }
  }
  if (fs.existsSync(dataDir)) for (const n of fs.readdirSync(dataDir)) out.push(`dir ${n}`);
  if (fs.existsSync(mountd)) for (const n of fs.readdirSync(mountd)) if (n !== 'tmp') out.push(`lower ${n}`);
  return out;
}

async function expectNothingLeft(dataDir: string, ns?: Netns): Promise<void> {
  expect(leftoversOf(dataDir)).toEqual([]);
  if (ns) expect((await ns.links()).filter((l) => l.startsWith('g8c'))).toEqual([]);
}

function run(c: Containers, id: number, argv: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = c.place(id).spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
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

const hostRun = (file: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) => execFile(file, args, { timeout: 10_000 }, (e, out) => (e ? reject(e) : resolve(out))));

/** The error a promise rejects with. */
async function failure(p: Promise<unknown>): Promise<Error & { code?: unknown }> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

// ---------------------------------------------------------------------------------------------

describe('containers on the host network namespace (no nics)', () => {
  let c: Containers;
  let dataDir: string;
  let exits: number[];

  beforeEach(async () => {
    dataDir = path.join(tmp, 'data');
    dataDirs.add(dataDir);
    exits = [];
    c = new Containers({
      dataDir, cacheDir: path.join(tmp, 'cache'), instance: INSTANCE, mountGraceMs: 0, log: () => undefined, onExit: (id) => exits.push(id),
    });
    await c.init();
  });

  afterEach(async () => {
    await c.shutdown();
    await expectNothingLeft(dataDir);
  });

  it('runs echo hello with its stdout, exit 0, the hostname set, /etc files written, in ~1 s', async () => {
    const t0 = Date.now();
    const id = await c.create({ root: flist, hostname: 'box1' });
    const createMs = Date.now() - t0;
    expect(id).toBe(1);
    expect(createMs).toBeLessThan(10_000);
    const r = await run(c, id, ['echo', 'hello']);
    expect(r).toMatchObject({ code: 0, stdout: 'hello\n', stderr: '' });
    const h = await run(c, id, ['sh', '-c', 'hostname; cat /etc/hostname; grep box1 /etc/hosts; echo $PATH; pwd']);
    expect(h.stdout.split('\n').slice(0, 2)).toEqual(['box1', 'box1']);
    expect(h.stdout).toContain('127.0.1.1\tbox1');
    expect(h.stdout).toContain('/usr/bin:/sbin:/bin');
    // the cwd goes through g8init, not the host spawn
    expect((await run(c, id, ['sh', '-c', 'pwd'], { cwd: '/etc' })).stdout).toBe('/etc\n');
    // the host's /etc/hostname is untouched
    expect(fs.readFileSync('/etc/hostname', 'utf8')).not.toContain('box1');
    const t1 = Date.now();
    await c.terminate(id);
    console.log(`container create ${createMs} ms, terminate ${Date.now() - t1} ms`);
    expect(exits).toEqual([1]);
    await expectNothingLeft(dataDir);
  });

  it('propagates exit codes and signals; exec failures are 127 with one clear line', async () => {
    const id = await c.create({ root: flist });
    expect((await run(c, id, ['sh', '-c', 'exit 7'])).code).toBe(7);
    expect((await run(c, id, ['sh', '-c', 'kill -9 $$'])).signal).toBe('SIGKILL');
    expect((await run(c, id, ['sh', '-c', 'kill -TERM $$'])).signal).toBe('SIGTERM');
    const r = await run(c, id, ['nosuch', 'arg']);
    expect(r.code).toBe(127);
    expect(r.stderr).toBe('g8init: exec nosuch: No such file or directory\n');
    const cwd = await run(c, id, ['true'], { cwd: '/no/such/dir' });
    expect(cwd.code).toBe(127);
    expect(cwd.stderr).toContain('g8init: chdir /no/such/dir: No such file or directory');
    // environment: the place's env, or what the caller passes
    expect(c.place(id).env.HOME).toBe('/');
    expect((await run(c, id, ['sh', '-c', 'echo $FOO'], { env: { FOO: 'bar', PATH: '/bin' } })).stdout).toBe('bar\n');
  });

  it('PID 1 reaps orphans: a backgrounded sleep leaves no zombie', async () => {
    const id = await c.create({ root: flist });
    expect((await run(c, id, ['sh', '-c', 'sleep 0.3 & echo started'])).stdout).toBe('started\n');
    await sleep(800);
    const ps = await run(c, id, ['ps', '-o', 'pid,stat,comm']);
    expect(ps.stdout).not.toMatch(/\sZ/);
    expect(ps.stdout).not.toContain('sleep');
    // and from the host: no zombie in the container's cgroup
    const pids = fs.readFileSync(path.join(parentDir('pids'), `${INSTANCE}-c${id}`, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    for (const p of pids) expect(fs.readFileSync(`/proc/${p}/stat`, 'utf8')).not.toMatch(/\) Z /);
    // SIGKILL of what place.spawn returned (a job killed) takes the command inside with it
    const long = c.place(id).spawn('sleep', ['100'], { stdio: 'ignore' });
    await sleep(300);
    long.kill('SIGKILL');
    await sleep(300);
    // dead: at most a zombie, which the host's init reaps (its parent was outside the namespace)
    const after = (await run(c, id, ['ps', '-o', 'stat,comm'])).stdout.split('\n').filter((l) => l.includes('sleep'));
    for (const l of after) expect(l.trim()).toMatch(/^Z/);
  });

  it('a dispatched command sees only the container: its processes, its root, its mounts', async () => {
    const id = await c.create({ root: flist });
    const ps = await run(c, id, ['ps', '-o', 'pid,comm']);
    const pids = ps.stdout.trim().split('\n').slice(1).map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(pids).toContain(1);
    expect(pids.length).toBeLessThanOrEqual(3); // PID 1, ps (and nothing of the host)
    expect(ps.stdout).not.toContain('node');
    expect((await run(c, id, ['cat', `/proc/${process.pid}/cmdline`])).code).not.toBe(0);
    const ls = await run(c, id, ['ls', '/']);
    expect(ls.stdout.split('\n')).toContain('bin');
    expect(ls.stdout).not.toContain('work'); // the host root is not reachable
    const root = c.place(id).root;
    expect(root).toMatch(/^\/proc\/\d+\/root$/);
    expect(fs.readFileSync(path.join(root, 'etc/hostname'), 'utf8')).toBe('corex\n');
  });

  it('unprivileged containers get the devices allow-list and fewer capabilities; privileged ones do not', async () => {
    const id = await c.create({ root: flist });
    // loop device 7:0: not on the list (mknod itself is allowed for char devices only)
    const r = await run(c, id, ['sh', '-c', 'mknod /tmp/blk b 7 0; echo x > /dev/null && echo null-ok']);
    expect(r.stdout).toBe('null-ok\n');
    expect(r.stderr).toContain('Operation not permitted');
    // and a reduced capability set: no mounts (CAP_SYS_ADMIN), no link changes (CAP_NET_ADMIN)
    const caps = await run(c, id, ['sh', '-c', 'mkdir -p /mnt; grep CapBnd /proc/self/status; mount -t tmpfs x /mnt; ip link set lo down']);
    expect(caps.stdout).toBe('CapBnd:\t00000000a80425fb\n');
    expect(caps.stderr).toMatch(/mount: permission denied/);
    expect(caps.stderr).toMatch(/Operation not permitted/);
    const id2 = await c.create({ root: flist, privileged: true });
    const p = await run(c, id2, ['sh', '-c', 'mknod /tmp/blk b 7 0 && echo made; mkdir -p /mnt && mount -t tmpfs x /mnt && echo mounted']);
    expect(p.stdout).toBe('made\nmounted\n');
  });

  it('host_network shares the host links and resolv.conf; cgroup limits are applied', async () => {
    const id = await c.create({ root: flist, host_network: true, cgroups: { memory: 64 << 20, cpu: 512, cpus: 0.5 } });
    const r = await run(c, id, ['sh', '-c', 'ls /sys/class/net; cat /etc/resolv.conf']);
    for (const l of fs.readdirSync('/sys/class/net')) expect(r.stdout).toContain(l);
    expect(r.stdout).toContain(fs.readFileSync('/etc/resolv.conf', 'utf8').trim().split('\n')[0]);
    const read = (ctl: string, f: string): string => fs.readFileSync(path.join(parentDir(ctl as 'memory'), `${INSTANCE}-c${id}`, f), 'utf8').trim();
    expect(read('memory', 'memory.limit_in_bytes')).toBe(String(64 << 20));
    expect(read('cpu', 'cpu.shares')).toBe('512');
    expect(read('cpu', 'cpu.cfs_quota_us')).toBe('50000');
    // a process started in the container is in all of them
    const cg = await run(c, id, ['cat', '/proc/self/cgroup']);
    expect(cg.stdout).toMatch(new RegExp(`pids:/g8os/${INSTANCE}-c${id}\n`));
    expect(cg.stdout).toMatch(new RegExp(`memory:.*/g8os/${INSTANCE}-c${id}\n`));
  });

  it('bounds a fork bomb by pids.max; the host and the agent stay responsive; terminate cleans it', async () => {
    const id = await c.create({ root: flist, cgroups: { pids: 64 } });
    const pidsDir = path.join(parentDir('pids'), `${INSTANCE}-c${id}`);
    expect(fs.readFileSync(path.join(pidsDir, 'pids.max'), 'utf8').trim()).toBe('64');
    // ash runs its special built-in ':' before a function of that name, so the bomb is named f
    const bomb = c.place(id).spawn('sh', ['-c', 'f(){ f | f & }; f'], { stdio: 'ignore' });
    bomb.on('error', () => undefined);
    // ash exits when a fork fails, so the bomb burns out at the bound; watch it closely
    let peak = 0;
    const maxed = (): number => Number(fs.readFileSync(path.join(pidsDir, 'pids.events'), 'utf8').split(' ')[1]);
    for (let i = 0; i < 1000 && maxed() === 0; i++) {
      peak = Math.max(peak, Number(fs.readFileSync(path.join(pidsDir, 'pids.current'), 'utf8')));
      await sleep(2);
    }
    expect(maxed()).toBeGreaterThan(0); // forks were refused at the bound
    expect(peak).toBeLessThanOrEqual(64);
    const t = Date.now();
    expect(await hostRun('/bin/true', [])).toBe('');
    expect(Date.now() - t).toBeLessThan(2000);
    expect(c.list()[String(id)].container.pid).toBeGreaterThan(0);
    // a dispatch into the full container comes back (it may not get a process slot: g8init says so)
    const r = await run(c, id, ['true']);
    if (r.code !== 0) expect(r.stderr).toContain('g8init: fork: Resource temporarily unavailable');
    const t2 = Date.now();
    await c.terminate(id);
    expect(Date.now() - t2).toBeLessThan(15_000);
    expect(fs.existsSync(pidsDir)).toBe(false);
  }, 60_000);

  it('binds a host directory (writable) and a file read-only; mounts an flist URL read-only', async () => {
    const host = path.join(tmp, 'shared');
    fs.mkdirSync(host, { recursive: true });
    fs.writeFileSync(path.join(host, 'from-host'), 'hi\n');
    const file = path.join(tmp, 'config.txt');
    fs.writeFileSync(file, 'cfg\n');
    try {
      const id = await c.create({ root: flist, mount: { [host]: '/data', [flistUrl]: '/opt/bb' } });
      const r = await run(c, id, ['sh', '-c', 'cat /data/from-host && echo written > /data/from-container && ls /opt/bb/bin/busybox && touch /opt/bb/x']);
      expect(r.stdout).toBe('hi\n/opt/bb/bin/busybox\n');
      expect(r.stderr).toContain('Read-only file system');
      expect(fs.readFileSync(path.join(host, 'from-container'), 'utf8')).toBe('written\n');
      await c.terminate(id);
      // the bound directory is the host's, untouched by the teardown
      expect(fs.readdirSync(host).sort()).toEqual(['from-container', 'from-host']);
      // a root given as an http URL works as well
      const id2 = await c.create({ root: flistUrl, mount: { [file]: '/etc/app.conf' } });
      expect((await run(c, id2, ['cat', '/etc/app.conf'])).stdout).toBe('cfg\n');
    } finally {
      fs.rmSync(host, { recursive: true, force: true });
      fs.rmSync(file, { force: true });
    }
  });

  it('refuses bad arguments (400) and leaves nothing', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ root: flist, mount: { '/no/such/dir': '/x' } }, /host path '\/no\/such\/dir' does not exist/],
      [{ root: flist, mount: { [tmp]: 'relative' } }, /not an absolute path/],
      [{ root: flist, nics: [{ type: 'zerotier', id: 'abc' }] }, /nic type zerotier is not supported/],
      [{ root: flist, nics: [{ type: 'default' }, { type: 'default' }] }, /only one nic of type default/],
      [{ root: flist, nics: [{ type: 'bridge', id: 'core0' }] }, /may not name the default bridge/],
      [{ root: flist, nics: [{ type: 'default' }], port: { '70000': 80 } }, /host port '70000' is not within 0-65535/],
      [{ root: flist, port: { '8080': 80 } }, /port forwards need a nic of type default/],
      [{ root: flist, hostname: 'bad name' }, /hostname 'bad name' is not valid/],
    ];
    for (const [args, msg] of cases) {
      const e = await failure(c.create(args as never));
      expect(e).toBeInstanceOf(CommandError);
      expect(e.message).toMatch(msg);
      expect((e as CommandError).code).toBe(400);
    }
    await expectNothingLeft(dataDir);
  });

  it('an unreachable flist URL and an flist whose blocks are missing fail clearly, leaving nothing', async () => {
    const dead = `http://127.0.0.1:1/nothing.flist`;
    const e1 = await failure(c.create({ root: dead }));
    expect(e1).toBeInstanceOf(CommandError);
    expect(e1.message).toMatch(/^cannot use flist: cannot download flist http:\/\/127\.0\.0\.1:1\/nothing\.flist: /);
    await expectNothingLeft(dataDir);
    const empty = path.join(tmp, 'empty-store');
    fs.mkdirSync(empty, { recursive: true });
    const e2 = await failure(c.create({ root: flist, storage: `dir://${empty}` }));
    expect(e2.message).toMatch(/cannot use flist: \d+ of \d+ blocks of .*busybox\.flist are missing from dir:\/\//);
    await expectNothingLeft(dataDir);
    // a failure after the root is mounted (the flist mount's blocks are missing) also unwinds
    const e3 = await failure(c.create({ root: flist, mount: { 'http://127.0.0.1:1/x.flist': '/x' } }));
    expect(e3.message).toMatch(/cannot download flist http:\/\/127\.0\.0\.1:1\/x\.flist/);
    await expectNothingLeft(dataDir);
    // a failure in PID 1's set-up (after the mounts and cgroups are made) unwinds too
    const e4 = await failure(c.create({ root: flist, mount: { [tmp]: '/bin/busybox/inside' } }));
    expect(e4.message).toBe('cannot start the container: mkdir /bin/busybox/inside: Not a directory');
    await expectNothingLeft(dataDir);
    // ids are never reused, failed ones included
    const id = await c.create({ root: flist });
    expect(id).toBe(5);
  });

  it('a PID 1 that dies on its own ends the container: torn down, onExit called', async () => {
    const id = await c.create({ root: flist });
    const pid1 = c.list()[String(id)].container.pid;
    process.kill(pid1, 'SIGKILL');
    for (let i = 0; i < 100 && !exits.includes(id); i++) await sleep(50);
    expect(exits).toEqual([id]);
    expect(c.list()).toEqual({});
    await expectNothingLeft(dataDir);
    await expect(c.terminate(id)).rejects.toThrow(`no container with id '${id}'`);
    expect(() => c.place(id)).toThrow('container does not exist');
  });

  it('corex.* handlers: create, list and find shapes, dispatch ids, terminate errors', async () => {
    const dispatched: [number, string][] = [];
    const h = corexHandlers(c, (id, cmd) => {
      dispatched.push([id, cmd.command]);
      return cmd.id;
    });
    const ctx = {} as JobContext;
    const id = (await h['corex.create']({ root: flist, tags: ['web', 'prod'], hostname: 'h1', nics: [] }, ctx)) as number;
    expect(id).toBe(1);
    const list = (await h['corex.list']({}, ctx)) as Record<string, { container: { arguments: { tags: string[] }; pid: number; root: string } }>;
    expect(Object.keys(list)).toEqual(['1']);
    expect(list['1']).toMatchObject({ debug: '', container: { arguments: { root: flist, hostname: 'h1', tags: ['web', 'prod'] } } });
    for (const k of ['cpu', 'rss', 'vms', 'swap']) expect(typeof (list['1'] as unknown as Record<string, number>)[k]).toBe('number');
    // the original's types field by field: debug a string as in job.list, pid an int, root a string
    expect(typeof list['1'].container.pid).toBe('number');
    expect(typeof list['1'].container.root).toBe('string');
    expect(Object.keys(list['1']).sort()).toEqual(['container', 'cpu', 'debug', 'rss', 'swap', 'vms']);
    expect(Object.keys((await h['corex.find']({ tags: ['web'] }, ctx)) as object)).toEqual(['1']);
    expect((await h['corex.find']({ tags: ['web', 'dev'] }, ctx)) as object).toEqual({});
    expect(await h['corex.dispatch']({ container: id, command: { command: 'core.ping', arguments: {}, id: 'mine' } }, ctx)).toBe('mine');
    expect(await h['corex.dispatch']({ container: id, command: { command: 'core.ping', arguments: {}, id: '' } }, ctx)).toMatch(/^[0-9a-f-]{36}$/);
    expect(dispatched).toEqual([[1, 'core.ping'], [1, 'core.ping']]);
    await expect(async () => h['corex.dispatch']({ container: 0, command: { command: 'x' } }, ctx)).rejects.toThrow('invalid container id');
    await expect(async () => h['corex.dispatch']({ container: 9, command: { command: 'x' } }, ctx)).rejects.toThrow('container does not exist');
    await expect(async () => h['corex.create']({ hostname: 'x' }, ctx)).rejects.toThrow("argument 'root' is missing");
    expect(await h['corex.terminate']({ container: id }, ctx)).toBeNull();
    await expect(async () => h['corex.terminate']({ container: id }, ctx)).rejects.toThrow(`no container with id '${id}'`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('container networking (inside a test network namespace)', () => {
  let ns: Netns;
  let agent: RemoteContainers | undefined;
  let dataDir: string;
  let opts: Record<string, unknown>;

  beforeEach(async () => {
    ns = await Netns.create();
    dataDir = path.join(tmp, `ndata-${path.basename(ns.name)}`);
    dataDirs.add(dataDir);
    opts = { dataDir, cacheDir: path.join(tmp, 'cache'), instance: INSTANCE, mountGraceMs: 0 };
    agent = await RemoteContainers.start(ns, opts);
    await agent.call('init');
  });

  afterEach(async () => {
    await agent?.stop();
    try {
      await expectNothingLeft(dataDir, ns);
    } finally {
      await ns.delete();
    }
  });

  it('a default nic: the address, the route, the bridge IP reachable, a port forward into the container', async () => {
    const a = agent!;
    const id = await a.call<number>('create', { root: flist, nics: [{ type: 'default' }], port: { '8080': 80 } });
    // the first default nic made the bridge; a server listens on its address
    const port = await a.call<number>('serve', '172.18.0.1', 0, 'bridge-ok');
    expect(await a.call('address', id)).toBe('172.18.0.2');
    const r = await a.run(id, ['sh', '-c', `ip -o -4 addr show eth0; ip route; cat /etc/resolv.conf; wget -qO- http://172.18.0.1:${port}/`]);
    expect(r.stdout).toContain('inet 172.18.0.2/16');
    expect(r.stdout).toContain('default via 172.18.0.1 dev eth0');
    expect(r.stdout).toContain('nameserver 172.18.0.1');
    expect(r.stdout).toMatch(/bridge-ok$/);
    // httpd inside; the forward listens in the agent's namespace on 0.0.0.0:8080
    await a.run(id, ['sh', '-c', 'mkdir -p /www && echo served-inside > /www/index.html && httpd -p 80 -h /www']);
    const got = await ns.exec('/bin/busybox', ['wget', '-qO-', 'http://127.0.0.1:8080/index.html']);
    expect(got.stdout).toBe('served-inside\n');
    await a.call('terminate', id);
    expect(await ns.links()).toContain('core0'); // the bridge stays
    expect((await ns.exec('nft', ['list', 'table', 'ip', 'g8os'])).stdout).toContain('masquerade');
  });

  it('a host port in use fails the create clearly and leaves nothing', async () => {
    const a = agent!;
    const port = await a.call<number>('serve', '0.0.0.0', 0, 'busy');
    const e = await failure(a.call('create', { root: flist, nics: [{ type: 'default' }], port: { [String(port)]: 80 } }));
    expect(e.message).toBe(`host port ${port} is in use`);
    expect((e as RemoteError).code).toBe(400);
    await expectNothingLeft(dataDir, ns);
  });

  it('bridge.* handlers: create with NAT, overlap refused, a bridge nic with a static address, delete', async () => {
    const a = agent!;
    expect(await a.call('handler', 'bridge.create', { name: 'br1', network: { mode: 'static', nat: true, settings: { cidr: '10.20.0.1/24' } } })).toBeNull();
    expect(await a.call('handler', 'bridge.list', {})).toEqual(['br1']);
    await expect(a.call('handler', 'bridge.create', { name: 'br2', network: { mode: 'static', settings: { cidr: '10.20.0.200/16' } } })).rejects.toThrow(
      '10.20.0.200/16 overlaps 10.20.0.1/24 on br1',
    );
    await expect(a.call('handler', 'bridge.create', { name: 'br1', network: null })).rejects.toThrow("a link named 'br1' already exists");
    const id = await a.call<number>('create', { root: flist, nics: [{ type: 'bridge', id: 'br1', config: { cidr: '10.20.0.10/24', gateway: '10.20.0.1' } }] });
    const r = await a.run(id, ['sh', '-c', 'ip -o -4 addr show eth0; ping -c1 -W2 10.20.0.1 >/dev/null && echo reach']);
    expect(r.stdout).toContain('inet 10.20.0.10/24');
    expect(r.stdout).toContain('reach');
    await expect(a.call('handler', 'bridge.delete', { name: 'br1' })).rejects.toThrow("bridge 'br1' is in use by container 1");
    await a.call('terminate', id);
    expect(await a.call('handler', 'bridge.delete', { name: 'br1' })).toBeNull();
    await expect(a.call('handler', 'bridge.delete', { name: 'br1' })).rejects.toThrow("no bridge named 'br1'");
    expect(await ns.links()).toEqual(['lo']);
    expect((await ns.exec('nft', ['list', 'tables'])).stdout.trim()).toBe('');
  });

  it('creates 24 containers concurrently; each has its own address and reaches the bridge; shutdown cleans all', async () => {
    const a = agent!;
    expect(await a.call('handler', 'bridge.create', { name: 'core0', network: { mode: 'static', nat: true, settings: { cidr: '172.18.0.1/16' } } })).toBeNull();
    const port = await a.call<number>('serve', '172.18.0.1', 0, 'bridge-ok');
    const t0 = Date.now();
    const ids = await Promise.all(
      Array.from({ length: 24 }, (_, i) => a.call<number>('create', { root: flist, hostname: `c${i}`, nics: [{ type: 'default' }] })),
    );
    const createMs = Date.now() - t0;
    expect([...ids].sort((x, y) => x - y)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    const results = await Promise.all(
      ids.map((id) => a.run(id, ['sh', '-c', `hostname; ip -o -4 addr show eth0; wget -qO- http://172.18.0.1:${port}/`], 60_000)),
    );
    const addrs = new Set<string>();
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/bridge-ok$/);
      addrs.add(/inet (\S+)/.exec(r.stdout)![1]);
    }
    expect(addrs.size).toBe(24);
    expect(Object.keys(await a.call<object>('list'))).toHaveLength(24);
    const t1 = Date.now();
    await a.call('shutdown');
    console.log(`24 containers: created concurrently in ${createMs} ms, shut down in ${Date.now() - t1} ms`);
    await expectNothingLeft(dataDir, ns);
  }, 240_000);

  it('after the agent is SIGKILLed, init() of a new Containers on the same data dir sweeps everything', async () => {
    const a = agent!;
    const host = path.join(tmp, 'swept-bind');
    fs.mkdirSync(host, { recursive: true });
    try {
      // the flist over http from inside the namespace
      const port = await a.call<number>('serve', '127.0.0.1', 0, '', flist);
      const url = `http://127.0.0.1:${port}/busybox.flist`;
      await a.call('create', { root: flist, nics: [{ type: 'default' }], port: { '8081': 80 } });
      await a.call('create', { root: url, mount: { [host]: '/data', [url]: '/opt/bb' }, cgroups: { memory: 256 << 20 } });
      a.child.kill('SIGKILL');
      await a.exited;
      agent = undefined;
      const left = leftoversOf(dataDir);
      expect(left.filter((l) => l.startsWith('mount')).length).toBeGreaterThanOrEqual(3);
      expect(left.filter((l) => l.startsWith('process')).length).toBeGreaterThanOrEqual(3);
      expect(left.some((l) => l.startsWith('cgroup'))).toBe(true);
      expect((await ns.links()).filter((l) => l.startsWith('g8c'))).toHaveLength(1);

      agent = await RemoteContainers.start(ns, opts);
      await agent.call('init');
      await expectNothingLeft(dataDir, ns);
      expect(fs.readdirSync(host)).toEqual([]); // the bound host dir is intact (and was not emptied by the sweep)
      // the new agent works, and its ids start again at 1
      expect(await agent.call('create', { root: flist, nics: [{ type: 'default' }] })).toBe(1);
    } finally {
      fs.rmSync(host, { recursive: true, force: true });
    }
  }, 120_000);
});
