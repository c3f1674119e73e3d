// The user's journey through a real agent: a real hub and agent (with its own redis-server)
// inside a network namespace this test creates, real FUSE mounts, real namespaces and cgroups.
// `g8os container run <flist URL> -- …` from the CLI, the protocol seen by clients, and what the
// issue lists as bad input. The CLI reaches the agent through its unix socket (any namespace).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../src/agent/client';
import type { Result } from '../src/agent/types';
import { readMounts } from '../src/fs/mount-table';
import { type AgentProcess, inNetns, leftovers, makeNetns, startAgent } from './helpers/agent';
import { BIN, g8os } from './helpers/cli';
import { type HubProcess, startHub } from './helpers/hub';
import { busyboxRootfsTar } from './helpers/tarballs';

let ns: string;
let hub: HubProcess;
let agent: AgentProcess;
let client: Client;
let tmp: string;
let url: string; // busybox rootfs flist on the hub

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function run(argv: string[], opts: { timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string; firstOut: number; end: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let firstOut = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (d: Buffer) => {
      if (!firstOut) firstOut = Date.now() - t0;
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, firstOut, end: Date.now() - t0 });
    });
  });
}

/** `g8os container …` against the test agent. */
const cli = (args: string[], opts?: { timeoutMs?: number }) => run([process.execPath, BIN, ...args.slice(0, 2), '--agent', agent.socket, ...args.slice(2)], opts);


async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-e2e-'));
  ns = makeNetns('e2e');
  hub = await startHub({ netns: ns });
  const tar = path.join(tmp, 'busybox.tar.gz');
  await busyboxRootfsTar(tar, { gzip: true });
  const token = hub.token('alice');
  const up = await run(inNetns(ns, [process.execPath, BIN, 'hub', 'upload', tar, '--hub', hub.url, '--token', token, '--name', 'busybox']));
  expect(up.code, up.stderr).toBe(0);
  url = up.stdout.trim().split('\n').pop()!;
  expect(url).toBe(`${hub.url}/alice/busybox.flist`);
  agent = await startAgent({ netns: ns, args: ['--cache', path.join(tmp, 'cache'), '--mount-grace', '0'] });
  client = await agent.client();
}, 180_000);

// one failing test must not leave its containers to the next one's "nothing left" checks
afterEach(async () => {
  if (!client) return;
  const list = await client.json<Record<string, unknown>>('corex.list', {});
  await Promise.all(Object.keys(list).map((id) => client.json('corex.terminate', { container: Number(id) }, 60).catch(() => undefined)));
});

afterAll(async () => {
  await agent?.stop();
  await hub?.stop();
  if (tmp && !readMounts().some((m) => m.mountPoint.startsWith(tmp))) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('container run (the CLI)', () => {
  it('g8os container run <flist URL> -- echo hello prints hello and exits 0, leaving nothing', async () => {
    const r = await cli(['container', 'run', url, '--', 'echo', 'hello']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hello\n');
    expect(r.code).toBe(0);
    expect(leftovers(agent)).toEqual([]);
  });

  it('streams output live and exits with the command status', async () => {
    const r = await cli(['container', 'run', url, '--', 'sh', '-c', 'echo first; sleep 2; echo second >&2; exit 4']);
    expect(r.stdout).toBe('first\n');
    expect(r.stderr).toBe('second\n');
    expect(r.code).toBe(4);
    expect(r.end - r.firstOut).toBeGreaterThan(1500); // "first" arrived while the command still ran
  });

  it("a local flist: its entrypoint and environ are honoured; --env adds to them", async () => {
    // the hub keeps entrypoint/environ for image imports, so this flist is built locally
    const local = path.join(tmp, 'entry.flist');
    const made = await g8os(['flist', 'create', path.join(tmp, 'busybox.tar.gz'), '-o', local, '--store', `dir://${path.join(tmp, 'entry-store')}`,
      '--meta', 'environ={"GREETING":"from the flist"}', '--meta', 'entrypoint=["/bin/sh","-c","echo entry $GREETING"]']);
    expect(made.code, made.stderr).toBe(0);
    const r = await cli(['container', 'run', local]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('entry from the flist\n');
    const e = await cli(['container', 'run', local, '--env', 'EXTRA=1', '--', 'sh', '-c', 'echo "$GREETING/$EXTRA/$PATH"']);
    expect(e.stdout).toMatch(/^from the flist\/1\/.*\/bin/);
  });

  it('a glibc rootfs works too: a dynamically linked bash with only its own libraries in the flist', async () => {
    // copied from this machine's Debian: bash, its libraries (ldd) and the loader; nothing else
    const root = path.join(tmp, 'glibc-root');
    const libs = execFileSync('ldd', ['/bin/bash'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => /(\/\S+) \(0x/.exec(l)?.[1])
      .filter((x): x is string => !!x);
    for (const f of ['/bin/bash', ...libs]) {
      const real = fs.realpathSync(f);
      fs.mkdirSync(path.join(root, path.dirname(f)), { recursive: true });
      fs.copyFileSync(real, path.join(root, f));
      fs.chmodSync(path.join(root, f), 0o755);
    }
    for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) fs.mkdirSync(path.join(root, d), { recursive: true });
    const fl = path.join(tmp, 'glibc.flist');
    const made = await g8os(['flist', 'create', root, '-o', fl, '--store', `dir://${path.join(tmp, 'glibc-store')}`]);
    expect(made.code, made.stderr).toBe(0);
    const r = await cli(['container', 'run', fl, '--', '/bin/bash', '-c', 'echo "bash $BASH_VERSION in $(< /etc/hostname)"']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^bash 5\.\S+ in corex\n$/);
    expect(r.code).toBe(0);
  });

  it('a command that exits at once, and one that does not exist', async () => {
    const t = await cli(['container', 'run', url, '--', 'true']);
    expect(t.code).toBe(0);
    const missing = await cli(['container', 'run', url, '--', '/no/such/cmd']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/\/no\/such\/cmd/);
    expect(leftovers(agent)).toEqual([]);
  });

  it('detached: ls, exec, logs, rm; a port forward reaches a server inside; the bridge IP is reachable', async () => {
    const d = await cli(['container', 'run', '-d', '--name', 'web', '-p', '18080:80', url, '--', 'sh', '-c', 'echo hi > /index.html; echo serving; httpd -f -p 80 -h /']);
    expect(d.code, d.stderr).toBe(0);
    const id = Number(d.stdout.trim());
    expect(id).toBeGreaterThan(0);
    const ls = await cli(['container', 'ls']);
    expect(ls.stdout).toMatch(new RegExp(`^${id}\\s+\\d+\\s+\\d+M\\s+web\\s+${url.replace(/[.]/g, '\\.')}$`, 'm'));
    await until('the server to answer', () => {
      const w = spawnSync('nsenter', [`--net=/run/netns/${ns}`, '/bin/busybox', 'wget', '-q', '-O', '-', 'http://127.0.0.1:18080/index.html'], { encoding: 'utf8' });
      return w.stdout === 'hi\n';
    });
    const ex = await cli(['container', 'exec', String(id), '--', 'sh', '-c', 'hostname; ip -4 -o addr show eth0; ping -c 1 -W 2 172.18.0.1 >/dev/null && echo bridge-ok']);
    expect(ex.code, ex.stderr).toBe(0);
    expect(ex.stdout).toMatch(/^web\n.*inet 172\.18\.\d+\.\d+\/16.*\nbridge-ok\n$/s);
    const logs = await cli(['container', 'logs', String(id)]);
    expect(logs.stdout).toContain('serving');
    const rm = await cli(['container', 'rm', String(id)]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(leftovers(agent)).toEqual([]);
  });

  it('bad input: unreachable flist URL, an flist whose blocks are missing, an unknown container — clear errors, nothing left', async () => {
    const down = await cli(['container', 'run', 'http://127.0.0.1:1/x/y.flist', '--', 'true']);
    expect(down.code).toBe(1);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toMatch(/^g8os: corex\.create: ERROR: .*127\.0\.0\.1:1/);
    // an flist published with its blocks on a store that no longer has them
    const lost = path.join(tmp, 'lost.flist');
    const tar = path.join(tmp, 'lost.tar');
    await busyboxRootfsTar(tar);
    const store = path.join(tmp, 'lost-store');
    expect((await g8os(['flist', 'create', tar, '-o', lost, '--store', `dir://${store}`])).code).toBe(0);
    fs.rmSync(store, { recursive: true });
    const gone = await cli(['container', 'run', lost, '--', 'echo', 'x']);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/^g8os: /);
    const rm = await cli(['container', 'rm', '999']);
    expect(rm.stderr.trim()).toBe("g8os: corex.terminate: ERROR: no container with id '999'");
    expect(leftovers(agent)).toEqual([]);
  });
});

describe('containers through the protocol', () => {
  it('create, list, dispatch (results carry container: <id>), filesystem inside, terminate', async () => {
    const id = await client.json<number>('corex.create', { root: url, mount: null, host_network: false, nics: [{ type: 'default' }], port: null, hostname: 'proto', privileged: false, storage: null, tags: ['t1', 't2'] }, 120);
    expect(Number.isInteger(id)).toBe(true);
    const list = await client.json<Record<string, { container: { root: string; pid: number; arguments: { tags: string[] } } }>>('corex.list', {});
    expect(list[String(id)].container).toMatchObject({ arguments: { root: url, tags: ['t1', 't2'] } });
    expect(list[String(id)].container.pid).toBeGreaterThan(1);
    expect(Object.keys(await client.json('corex.find', { tags: ['t2'] }))).toEqual([String(id)]);
    expect(Object.keys(await client.json('corex.find', { tags: ['t2', 'nope'] }))).toEqual([]);

    const resp = await client.dispatch(id, 'core.system', { name: 'sh', args: ['-c', 'echo $$; hostname'], dir: '', stdin: '', env: null });
    const r = await resp.get(30);
    expect(r).toMatchObject({ state: 'SUCCESS', container: id, code: 0 });
    expect(r.streams![0]).toMatch(/^\d+\nproto\n$/);
    // a caller-chosen inner id is kept; the flag/result keys follow the same lifecycle
    const mine = crypto.randomUUID();
    const kept = await client.dispatch(id, 'core.ping', {}, { id: mine });
    expect(kept.id).toBe(mine);
    expect((await kept.get()).container).toBe(id);

    // filesystem.* inside the container: written through the protocol, read by a process in it
    const fd = await (await client.dispatch(id, 'filesystem.open', { file: '/tmp/note', mode: 'w', perm: 0o644 })).get();
    const handle = JSON.parse(fd.data) as string;
    await (await client.dispatch(id, 'filesystem.write', { fd: handle, block: Buffer.from('inside\n').toString('base64') })).get();
    await (await client.dispatch(id, 'filesystem.close', { fd: handle })).get();
    const cat = await (await client.dispatch(id, 'core.system', { name: 'cat', args: ['/tmp/note'] })).get();
    expect(cat.streams![0]).toBe('inside\n');
    const ps = await (await client.dispatch(id, 'process.list', { pid: null })).get();
    expect((JSON.parse(ps.data) as { pid: number }[]).some((p) => p.pid === 1)).toBe(true);

    await expect(client.json('corex.dispatch', { container: 0, command: { command: 'core.ping', arguments: {} } })).rejects.toThrow('invalid container id');
    await expect(client.json('corex.dispatch', { container: 4242, command: { command: 'core.ping', arguments: {} } })).rejects.toThrow('container does not exist');
    const unknown = await (await client.dispatch(id, 'corex.create', {})).get();
    expect(unknown.state).toBe('UNKNOWN_CMD'); // a container runs only the generic built-ins

    expect(await client.json('corex.terminate', { container: id }, 60)).toBeNull();
    expect(leftovers(agent)).toEqual([]);
  }, 120_000);

  it('a fork bomb inside a container is held by its pids limit; the agent stays responsive', async () => {
    const id = await client.json<number>('corex.create', { root: url, nics: [], host_network: false, cgroups: { pids: 64 } }, 120);
    const bomb = await client.dispatch(id, 'core.system', { name: 'sh', args: ['-c', 'f() { f | f & }; f; sleep 5'] }, { max_time: 4 });
    await sleep(1500);
    const t0 = Date.now();
    expect(await client.ping()).toMatch(/^PONG/);
    expect(Date.now() - t0).toBeLessThan(2000);
    const pidsDir = fs.readdirSync('/sys/fs/cgroup/pids/g8os').find((n) => n.endsWith(`-c${id}`))!;
    expect(Number(fs.readFileSync(`/sys/fs/cgroup/pids/g8os/${pidsDir}/pids.current`, 'utf8'))).toBeLessThanOrEqual(64);
    expect(['TIMEOUT', 'ERROR', 'SUCCESS']).toContain((await bomb.get(30)).state);
    expect(await client.json('corex.terminate', { container: id }, 60)).toBeNull();
    expect(leftovers(agent)).toEqual([]);
  }, 120_000);

  it('a Python client written from the spec creates a container and dispatches to it', () => {
    const py = spawnSync('/usr/bin/python3', [path.join(__dirname, 'conformance/alpha2_client.py'), agent.socket, 'container', url], { encoding: 'utf8', timeout: 120_000 });
    expect(py.stderr).toBe('');
    const out = JSON.parse(py.stdout) as Record<string, any>;
    expect(out).toMatchObject({ create_state: 'SUCCESS', create_level: 20, terminate: 'SUCCESS' });
    expect(out.list_keys).toContain(String(out.id));
    // corex.list field types as the original's (debug a string as in job.list; cpu may be a whole number)
    expect(out.list_types).toMatchObject({ rss: 'int', vms: 'int', swap: 'int', debug: 'str', container: 'dict' });
    expect(['int', 'float']).toContain(out.list_types.cpu);
    expect(out.list_container_types).toMatchObject({ arguments: 'dict', root: 'str', pid: 'int' });
    expect(out.dispatch).toEqual({ state: 'SUCCESS', stdout: 'py\n', container: out.id });
  }, 120_000);

  it('50 containers created at once all start (no stall at a job limit) and all terminate cleanly', async () => {
    const resps = await Promise.all(
      Array.from({ length: 50 }, () => client.raw('corex.create', { root: url, mount: null, host_network: false, nics: [{ type: 'default' }], port: null, privileged: false, tags: ['fifty'] })),
    );
    const results: Result[] = await Promise.all(resps.map((r) => r.get(300)));
    const failed = results.filter((r) => r.state !== 'SUCCESS').map((r) => r.data);
    expect(failed).toEqual([]);
    const ids = results.map((r) => JSON.parse(r.data) as number);
    expect(new Set(ids).size).toBe(50);
    const found = await client.json<Record<string, unknown>>('corex.find', { tags: ['fifty'] });
    expect(Object.keys(found)).toHaveLength(50);
    // each answers, through its own namespaces
    const outs = await Promise.all(ids.map(async (id) => (await (await client.dispatch(id, 'core.system', { name: 'hostname', args: [] })).get(60)).state));
    expect(outs.every((s) => s === 'SUCCESS')).toBe(true);
    await Promise.all(ids.map((id) => client.json('corex.terminate', { container: id }, 120)));
    expect(leftovers(agent)).toEqual([]);
  }, 600_000);

  it('agent killed with containers running, then restarted: the restart sweeps everything; new containers work', async () => {
    const a = await startAgent({ netns: ns, args: ['--cache', path.join(tmp, 'cache'), '--mount-grace', '0'] });
    const c = await a.client();
    const ids = await Promise.all([1, 2].map(() => c.json<number>('corex.create', { root: url, nics: [{ type: 'default' }] }, 120)));
    expect(ids.sort()).toEqual([1, 2]);
    expect(leftovers(a).length).toBeGreaterThan(0);
    await a.kill();
    const again = await startAgent({ netns: ns, data: a.data, port: a.port, args: ['--cache', path.join(tmp, 'cache'), '--mount-grace', '0'] });
    expect(again.log()).toMatch(/sweeping/);
    expect(leftovers(again)).toEqual([]);
    const c2 = await again.client();
    const id = await c2.json<number>('corex.create', { root: url, nics: [{ type: 'default' }] }, 120);
    expect(id).toBe(1);
    const r = await (await c2.dispatch(id, 'core.system', { name: 'echo', args: ['back'] })).get(30);
    expect(r.streams![0]).toBe('back\n');
    await again.stop();
    expect(leftovers(again)).toEqual([]);
  }, 240_000);
});

describe('agent shutdown', () => {
  it('terminates its containers and removes the bridge and NAT table it made', async () => {
    const id = await client.json<number>('corex.create', { root: url, nics: [{ type: 'default' }] }, 120);
    expect(id).toBeGreaterThan(0);
    client = undefined as unknown as Client; // the afterEach clean-up has nothing to do
    await agent.stop();
    expect(leftovers(agent)).toEqual([]);
    expect(spawnSync('ip', ['-n', ns, 'link', 'show', 'core0']).status).not.toBe(0);
    expect(spawnSync('nsenter', [`--net=/run/netns/${ns}`, 'nft', 'list', 'tables'], { encoding: 'utf8' }).stdout).not.toMatch(/g8os/);
    expect(fs.existsSync(agent.socket)).toBe(false);
  }, 120_000);
});
