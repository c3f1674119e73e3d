// kvm.* with real guests: qemu under TCG (KVM here cannot boot Linux, disks-vms.md §7.4) booting
// a busybox kernel+initramfs flist built by the test, agents in a network namespace the test
// makes. One shared guest image; guests are 128 MiB, timeouts generous. No mocks.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../src/agent/client';
import { seqIp } from '../src/vm/net';
import { type AgentProcess, makeNetns, startAgent } from './helpers/agent';
import { g8os } from './helpers/cli';
import { buildGuest, type GuestFlists, MARKER } from './helpers/guest';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const BOOT_MS = 90_000;

let tmp: string;
let guest: GuestFlists;
let netns: string;
let a: AgentProcess;
let c: Client;
const extra: ChildProcess[] = [];

interface Listed { id: number; uuid: string; name: string; state: string; vnc: number }

async function err(cl: Client, command: string, args: unknown): Promise<{ code: number; msg: string }> {
  const r = await (await cl.raw(command, args)).get(120);
  expect(r.state, r.data).toBe('ERROR');
  return { code: r.code, msg: JSON.parse(r.data) as string };
}

async function waitConsole(cl: Client, uuid: string, re: RegExp, ms = BOOT_MS): Promise<RegExpMatchArray> {
  const end = Date.now() + ms;
  let text = '';
  while (Date.now() < end) {
    text = await cl.json<string>('kvm.console', { uuid });
    const m = re.exec(text);
    if (m) return m;
    await sleep(300);
  }
  throw new Error(`serial console never matched ${re}:\n${text.slice(-2000)}`);
}

async function waitState(cl: Client, uuid: string, state: string, ms = BOOT_MS): Promise<void> {
  const end = Date.now() + ms;
  let got: Listed | undefined;
  while (Date.now() < end) {
    got = (await cl.json<Listed[]>('kvm.list', {})).find((v) => v.uuid === uuid);
    if (got?.state === state) return;
    await sleep(300);
  }
  throw new Error(`vm ${uuid} never reached ${state} (last ${got?.state})`);
}

const ticks = async (cl: Client, uuid: string): Promise<number> => {
  const all = [...(await cl.json<string>('kvm.console', { uuid })).matchAll(/G8TICK (\d+)/g)];
  return all.length ? Number(all[all.length - 1][1]) : 0;
};

/** What VMs leave on the host: qemu processes of the agent, taps, kvm0, our nft table, dnsmasq. */
/** leftovers() once it has settled: the stop path removes bridges and taps after the state changes (bounded, 10 s). */
async function settled(ag: AgentProcess, want: string[]): Promise<string[]> {
  let got = leftovers(ag);
  for (let i = 0; i < 100 && JSON.stringify(got) !== JSON.stringify(want); i++) {
    await new Promise((r) => setTimeout(r, 100));
    got = leftovers(ag);
  }
  return got;
}

function leftovers(ag: AgentProcess): string[] {
  const out: string[] = [];
  const links = execFileSync('ip', ['-n', netns, '-o', 'link'], { encoding: 'utf8' });
  for (const l of links.split('\n')) if (/\b(g8v|kvm0)/.test(l)) out.push(`link ${l.split(':')[1].trim()}`);
  const nft = execFileSync('ip', ['netns', 'exec', netns, 'nft', 'list', 'tables'], { encoding: 'utf8' });
  if (nft.includes('g8os-kvm')) out.push('nft table g8os-kvm');
  for (const p of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(path.join(ag.data, 'vms'))) out.push(`process ${p} ${cmd.split('\0')[0]}`);
  }
  const vms = path.join(ag.data, 'vms');
  if (fs.existsSync(vms)) for (const d of fs.readdirSync(vms)) if (d !== 'net') out.push(`dir vms/${d}`);
  return out;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-vm-'));
  guest = await buildGuest(tmp);
  netns = makeNetns('vm');
  a = await startAgent({ netns, args: ['--mount-grace', '0'] });
  c = await a.client();
}, 120_000);

afterAll(() => {
  for (const p of extra) p.kill('SIGKILL');
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('kvm.* on qemu', () => {
  it('boots an flist with a default nic: DHCP lease from its sequence, writes its vdisk, powers off; its forward goes', async () => {
    const disk = path.join(tmp, 'vdisk.img');
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', disk, '16M']);
    const uuid = await c.json<string>('kvm.create', { name: 'p1', flist: guest.poweroff, media: [{ url: disk }], nics: [{ type: 'default' }], cpu: 1, memory: 128, port: { 2222: 22 } }, 120);
    const vm = (await c.json<Listed[]>('kvm.list', {})).find((v) => v.uuid === uuid)!;
    expect(vm).toMatchObject({ name: 'p1', state: 'running' });
    expect(vm.id).toBeGreaterThanOrEqual(2);
    expect(vm.vnc).toBeGreaterThanOrEqual(5900);
    const rules = execFileSync('ip', ['netns', 'exec', netns, 'nft', 'list', 'table', 'ip', 'g8os-kvm'], { encoding: 'utf8' });
    expect(rules).toContain(`dnat to ${seqIp(vm.id)}:22`);
    const m = await waitConsole(c, uuid, /G8DHCP (\S*)/);
    expect(m[1]).toBe(seqIp(vm.id));
    await waitConsole(c, uuid, /G8POWEROFF/);
    await waitState(c, uuid, 'shutdown', 30_000);
    expect(fs.readFileSync(disk).subarray(0, MARKER.length).toString()).toBe(MARKER);
    expect(await settled(a, [`dir vms/${uuid}`])).toEqual([`dir vms/${uuid}`]); // the console stays readable until destroy
    await c.json('kvm.destroy', { uuid });
    expect(await c.json('kvm.list', {})).toEqual([]);
    expect(await settled(a, [])).toEqual([]);
  }, 180_000);

  let live = '';
  it('pause and resume stop and continue the vCPUs; info has the upstream shape', async () => {
    live = await c.json<string>('kvm.create', { name: 's1', flist: guest.stay, cpu: 1, memory: 128, nics: [] }, 120);
    await waitConsole(c, live, /G8TICK 2/);
    await c.json('kvm.pause', { uuid: live });
    const state = async (): Promise<string | undefined> => (await c.json<Listed[]>('kvm.list', {})).find((v) => v.uuid === live)?.state;
    expect(await state()).toBe('paused');
    const t0 = await ticks(c, live);
    await sleep(2500);
    expect(await ticks(c, live)).toBe(t0);
    await c.json('kvm.resume', { uuid: live });
    expect(await state()).toBe('running');
    await waitConsole(c, live, new RegExp(`G8TICK ${t0 + 2}\\b`), 30_000);
    const info = await c.json<{ Vcpu: { State: number; Time: number }[]; Net: unknown[]; Block: unknown[] }>('kvm.info', { uuid: live });
    expect(info.Vcpu).toHaveLength(1);
    expect(info.Vcpu[0].Time).toBeGreaterThan(0);
    expect(info.Net).toEqual([]);
    expect(Array.isArray(info.Block)).toBe(true);
  }, 180_000);

  let b: AgentProcess;
  let cb: Client;
  it('migrates to a second agent on this host and keeps running there', async () => {
    b = await startAgent({ netns, args: ['--mount-grace', '0'] });
    cb = await b.client();
    const t = await cb.json<{ uuid: string; uri: string }>('kvm.prepare_migration_target', { name: 's1', flist: guest.stay, cpu: 1, memory: 128, nics: [] }, 120);
    expect(t.uri).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    const before = await ticks(c, live);
    await c.json('kvm.migrate', { uuid: live, desturi: t.uri }, 120);
    expect(await c.json('kvm.list', {})).toEqual([]);
    await waitState(cb, t.uuid, 'running', 30_000);
    // the guest continues its count on the target (its console is the target's from now on)
    await waitConsole(cb, t.uuid, /G8TICK (\d+)/, 30_000);
    expect(await ticks(cb, t.uuid)).toBeGreaterThan(before);
    expect(await settled(a, [])).toEqual([]);
    live = t.uuid;
  }, 180_000);

  it('hot-plugs a file disk and an nbd+unix disk the guest sees, throttles and unplugs one', async () => {
    const file = path.join(tmp, 'hot.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '8M']);
    const sock = path.join(tmp, 'nbd.sock');
    const nbd = spawn('nbdkit', ['-f', '--unix', sock, 'memory', '8M'], { stdio: 'ignore' });
    extra.push(nbd);
    for (let i = 0; i < 50 && !fs.existsSync(sock); i++) await sleep(100);
    await cb.json('kvm.attach_disk', { uuid: live, media: { url: file } }, 60);
    await waitConsole(cb, live, /disks: vda \r?\n/, 30_000);
    await cb.json('kvm.attach_disk', { uuid: live, media: { url: `nbd+unix:///?socket=${sock}` } }, 60);
    await waitConsole(cb, live, /disks: vda vdb \r?\n/, 30_000);
    const info = await cb.json<{ Block: { Name: string }[] }>('kvm.info', { uuid: live });
    expect(info.Block.map((x) => x.Name).sort()).toEqual(['vda', 'vdb']);
    await cb.json('kvm.limit_disk_io', { uuid: live, media: { url: file }, totalbytessec: 1048576, totalbytessecset: true });
    const ops = await cb.json<{ Throttle: Record<string, { bps: number }> }>('kvm.infops', { uuid: live });
    expect(ops.Throttle.vda.bps).toBe(1048576);
    expect(ops.Throttle.vdb.bps).toBe(0);
    expect((await err(cb, 'kvm.limit_disk_io', { uuid: live, media: { url: '/nope' }, totalbytessec: 1 })).code).toBe(404);
    await cb.json('kvm.detach_disk', { uuid: live, media: { url: file } }, 60);
    const at = (await cb.json<string>('kvm.console', { uuid: live })).length;
    await sleep(1500);
    expect((await cb.json<string>('kvm.console', { uuid: live })).slice(at)).toMatch(/disks: vdb \r?\n/);
    const dup = await err(cb, 'kvm.attach_disk', { uuid: live, media: { url: `nbd+unix:///?socket=${sock}` } });
    expect(dup.code).toBe(409);
  }, 180_000);

  it('an agent killed with a VM running: the restarted agent sweeps qemu, taps and state', async () => {
    const pid = (await cb.json<{ pid: number }>('kvm.get', { uuid: live })).pid;
    expect(pid).toBeGreaterThan(0);
    await b.kill();
    expect(fs.existsSync(`/proc/${pid}`)).toBe(true); // qemu outlived its agent
    const b2 = await startAgent({ data: b.data, netns, args: ['--mount-grace', '0'] });
    const c2 = await b2.client();
    expect(await c2.json('kvm.list', {})).toEqual([]);
    expect(fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')).toBe(false);
    expect(leftovers(b2)).toEqual([]);
    expect(b2.log()).toContain('swept after an agent restart');
    await b2.stop();
  }, 120_000);
});

describe('kvm.* bad input: one line each, nothing left behind', () => {
  it('unknown media, missing file, missing kernel, duplicate name, memory beyond the host', async () => {
    let e = await err(c, 'kvm.create', { name: 'x1', media: [{ url: 'foo://bar/baz' }], memory: 128 });
    expect(e.msg).toMatch(/unknown media url scheme 'foo'/);
    expect(e.code).toBe(400);
    e = await err(c, 'kvm.create', { name: 'x1', media: [{ url: path.join(tmp, 'nope.img') }], memory: 128 });
    expect(e.msg).toMatch(/no such file/);
    expect(e.code).toBe(404);
    e = await err(c, 'kvm.create', { name: 'x1', flist: guest.nokernel, memory: 128 });
    expect(e.msg).toMatch(/has no kernel/);
    expect(e.code).toBe(404);
    e = await err(c, 'kvm.create', { name: 'x1', flist: guest.stay, memory: 64 * 1024 * 1024 });
    expect(e.msg).toMatch(/more than the host has/);
    const uuid = await c.json<string>('kvm.create', { name: 'x1', flist: guest.stay, cpu: 1, memory: 128 }, 120);
    e = await err(c, 'kvm.create', { name: 'x1', flist: guest.stay, cpu: 1, memory: 128 });
    expect(e.msg).toBe("a vm named 'x1' exists");
    expect(e.code).toBe(409);
    for (const x of [e.msg]) expect(x).not.toContain('\n');
    await c.json('kvm.destroy', { uuid });
    expect(await c.json('kvm.list', {})).toEqual([]);
    expect(await settled(a, [])).toEqual([]);
  }, 120_000);

  it('QMP socket gone (qemu killed behind the agent): crashed, one-line error, cleaned up', async () => {
    const uuid = await c.json<string>('kvm.create', { name: 'k1', flist: guest.stay, cpu: 1, memory: 128, nics: [{ type: 'default' }] }, 120);
    const { pid } = await c.json<{ pid: number }>('kvm.get', { uuid });
    process.kill(pid, 'SIGKILL');
    await waitState(c, uuid, 'crashed', 30_000);
    const e = await err(c, 'kvm.pause', { uuid });
    expect(e.msg).toBe("vm 'k1' is not running (crashed)");
    expect(e.code).toBe(503);
    expect(await settled(a, [`dir vms/${uuid}`])).toEqual([`dir vms/${uuid}`]);
    await c.json('kvm.destroy', { uuid });
    expect(await settled(a, [])).toEqual([]);
    expect((await err(c, 'kvm.pause', { uuid })).code).toBe(404);
  }, 120_000);

  it('g8os vm create|ls|console|info|rm through the CLI; bad input exits non-zero with one line', async () => {
    const ag = ['--agent', a.socket];
    let r = await g8os(['vm', 'create', 'cli1', '--flist', guest.stay, '--cpu', '1', '--memory', '128', ...ag], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const uuid = r.stdout.trim();
    r = await g8os(['vm', 'ls', ...ag]);
    expect(r.stdout).toMatch(new RegExp(`^\\d+\t${uuid}\tcli1\trunning\t59\\d\\d$`, 'm'));
    await waitConsole(c, uuid, /G8TICK 1/);
    r = await g8os(['vm', 'console', 'cli1', ...ag]);
    expect(r.stdout).toContain('G8GUEST-UP');
    r = await g8os(['vm', 'info', 'cli1', ...ag]);
    expect(JSON.parse(r.stdout)).toMatchObject({ uuid, name: 'cli1', state: 'running' });
    r = await g8os(['vm', 'create', 'cli1', '--flist', guest.stay, '--memory', '128', ...ag]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain("a vm named 'cli1' exists");
    r = await g8os(['vm', 'create', 'cli2', '--cpu', 'two', ...ag]);
    expect(r.code).toBe(2);
    r = await g8os(['vm', 'rm', 'cli1', ...ag]);
    expect(r.code, r.stderr).toBe(0);
    expect(await c.json('kvm.list', {})).toEqual([]);
    expect(await settled(a, [])).toEqual([]);
  }, 120_000);

  it('qemu missing from PATH: one-line error', async () => {
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    for (const d of ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/bin', '/sbin']) {
      for (const f of fs.readdirSync(d)) {
        if (f === 'qemu-system-x86_64' || fs.existsSync(path.join(bin, f))) continue;
        fs.symlinkSync(path.join(d, f), path.join(bin, f));
      }
    }
    const n = await startAgent({ netns, env: { PATH: bin }, args: ['--mount-grace', '0'] });
    const cn = await n.client();
    const e = await err(cn, 'kvm.create', { name: 'q1', flist: guest.stay, cpu: 1, memory: 128 });
    expect(e.msg).toBe('qemu-system-x86_64 is not installed (not found on PATH)');
    expect(e.code).toBe(503);
    expect(leftovers(n)).toEqual([]);
    await n.stop();
  }, 60_000);
});
