// bridge.create with network mode dnsmasq (core0-protocol.md §9.7): the agent runs inside a
// network namespace this file creates; a second namespace, joined to the bridge by a veth, is
// the DHCP client (busybox udhcpc). The dnsmasq is supervised (restarted when killed) and goes,
// with its lease file, with the bridge and with the agent.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentProcess, killLeftoverRedis, makeNetns, startAgent } from './helpers/agent';

let agent: AgentProcess;
let ns: string;
let clientNs: string;

beforeAll(async () => {
  ns = makeNetns('dhcp');
  clientNs = makeNetns('dhcpc');
  agent = await startAgent({ netns: ns });
}, 60_000);

/** dnsmasq processes started for this agent (their lease file is under its data dir). */
function ourDnsmasq(): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cmd.startsWith('dnsmasq') && cmd.includes(agent.data)) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

afterAll(async () => {
  await agent?.stop();
  // the agent's stop ends its dnsmasq; anything still running is a defect, killed so nothing stays
  const left = agent ? ourDnsmasq() : [];
  for (const p of left) process.kill(p, 'SIGKILL');
  expect(left).toEqual([]);
});

function py(...calls: [string, string, unknown[], Record<string, unknown>?][]): { ok?: any; error?: string }[] {
  const r = spawnSync('/usr/bin/python3', [path.join(__dirname, 'conformance/alpha2_client.py'), agent.socket, 'calls', JSON.stringify(calls.map((c) => [c[0], c[1], c[2], c[3] ?? {}]))], {
    encoding: 'utf8', timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`python client: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const dnsDir = (): string => path.join(agent.data, 'dnsmasq');
const pidOf = (bridge: string): number => Number(fs.readFileSync(path.join(dnsDir(), `${bridge}.pid`), 'utf8').trim());
const alive = (pid: number): boolean => fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
const links = (n: string): string[] => (JSON.parse(execFileSync('ip', ['-n', n, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);

/** One DHCP exchange from the client namespace; the leased address. */
function lease(): string {
  const r = spawnSync('nsenter', [`--net=/run/netns/${clientNs}`, 'busybox', 'udhcpc', '-i', 'vc0', '-n', '-q', '-f', '-t', '10', '-T', '1', '-s', '/bin/true'], { encoding: 'utf8', timeout: 30_000 });
  const m = /lease of ([\d.]+) obtained/.exec(r.stdout + r.stderr);
  if (!m) throw new Error(`no lease: ${r.stdout}${r.stderr}`);
  return m[1];
}

async function waitFor(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const inRange = (ip: string): boolean => /^10\.231\.0\.(\d+)$/.test(ip) && Number(ip.split('.')[3]) >= 100 && Number(ip.split('.')[3]) <= 120;

describe('bridge.create network mode dnsmasq', () => {
  it('serves DHCP within start..end, is restarted when it dies, and goes with the bridge and its lease file', async () => {
    const settings = { cidr: '10.231.0.1/24', start: '10.231.0.100', end: '10.231.0.120' };
    expect(py(['bridge', 'create', ['dh0'], { network: 'dnsmasq', settings }])).toEqual([{ ok: null }]);
    expect(py(['bridge', 'list', []])[0].ok).toContain('dh0');
    const first = pidOf('dh0');
    expect(fs.readFileSync(`/proc/${first}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['--interface=dh0', '--dhcp-range=10.231.0.100,10.231.0.120,255.255.255.0,1h']));
    const addr = JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'addr', 'show', 'dh0'], { encoding: 'utf8' }))[0].addr_info.find((a: any) => a.family === 'inet');
    expect(`${addr.local}/${addr.prefixlen}`).toBe('10.231.0.1/24');

    execFileSync('ip', ['-n', ns, 'link', 'add', 'vh0', 'type', 'veth', 'peer', 'name', 'vc0', 'netns', clientNs]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'vh0', 'master', 'dh0', 'up']);
    execFileSync('ip', ['-n', clientNs, 'link', 'set', 'vc0', 'up']);
    const mac = JSON.parse(execFileSync('ip', ['-n', clientNs, '-j', 'link', 'show', 'vc0'], { encoding: 'utf8' }))[0].address as string;

    const ip = lease();
    expect(inRange(ip)).toBe(true);
    const leases = path.join(dnsDir(), 'dh0.leases');
    await waitFor('the lease in the lease file', () => fs.readFileSync(leases, 'utf8').includes(`${mac} ${ip}`));

    // supervised: killed, it comes back and serves again
    process.kill(first, 'SIGKILL');
    await waitFor('a restarted dnsmasq', () => {
      try {
        const p = pidOf('dh0');
        return p !== first && alive(p);
      } catch {
        return false;
      }
    });
    expect(inRange(lease())).toBe(true);
    const second = pidOf('dh0');

    // bridge.add_host (internal in the original, for VMs): a static lease, re-read without a restart
    const c = await agent.client();
    expect(await c.json('bridge.add_host', { bridge: 'dh0', mac, ip: '10.231.0.50' })).toBeNull();
    expect(lease()).toBe('10.231.0.50');
    expect(pidOf('dh0')).toBe(second);
    await expect(c.json('bridge.add_host', { bridge: 'dh0', mac: '02:00:00:00:00:01', ip: '10.231.0.50' })).rejects.toThrow(`10.231.0.50 is already the static address of ${mac}`);
    await expect(c.json('bridge.add_host', { bridge: 'dh0', mac: '02:00:00:00:00:01', ip: '10.9.0.5' })).rejects.toThrow("argument 'ip': 10.9.0.5 is not a host address of 10.231.0.1/24");
    await expect(c.json('bridge.add_host', { bridge: 'dh0', mac: 'zz', ip: '10.231.0.51' })).rejects.toThrow("argument 'mac': 'zz' is not a MAC address");
    await expect(c.json('bridge.add_host', { bridge: 'nope', mac, ip: '10.231.0.51' })).rejects.toThrow("no dnsmasq bridge named 'nope'");
    expect(fs.readFileSync(path.join(dnsDir(), 'dh0.hosts'), 'utf8')).toBe(`${mac},10.231.0.50\n`);

    expect(py(['bridge', 'delete', ['dh0']])).toEqual([{ ok: null }]);
    expect(alive(second)).toBe(false);
    expect(fs.existsSync(leases)).toBe(false);
    expect(fs.existsSync(path.join(dnsDir(), 'dh0.pid'))).toBe(false);
    expect(fs.existsSync(path.join(dnsDir(), 'dh0.hosts'))).toBe(false);
    expect(links(ns)).not.toContain('dh0');
    expect(ourDnsmasq()).toEqual([]);
  }, 90_000);

  it('bad settings are refused in one line and leave no bridge and no dnsmasq', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ cidr: '10.232.0.1/24', end: '10.232.0.9' }, /'network\.settings\.start' is missing \(dnsmasq mode needs it\)$/],
      [{ cidr: '10.232.0.1/24', start: '10.232.1.5', end: '10.232.0.9' }, /10\.232\.1\.5 is not a host address of 10\.232\.0\.1\/24$/],
      [{ cidr: '10.232.0.1/24', start: '10.232.0.9', end: '10.232.0.5' }, /start 10\.232\.0\.9 is after end 10\.232\.0\.5$/],
      [{ cidr: '10.232.0.1/24', start: '10.232.0.1', end: '10.232.0.5' }, /is the bridge's own address$/],
      [{ start: '10.232.0.2', end: '10.232.0.5' }, /'network\.settings\.cidr' is missing/],
    ];
    for (const [settings, want] of cases) {
      const [r] = py(['bridge', 'create', ['dh1'], { network: 'dnsmasq', settings }]);
      expect(r.error?.trimEnd()).toMatch(want);
      expect(r.error?.trimEnd()).not.toContain('\n');
    }
    expect(links(ns)).not.toContain('dh1');
    expect(ourDnsmasq()).toEqual([]);
    expect(fs.existsSync(dnsDir()) ? fs.readdirSync(dnsDir()) : []).toEqual([]);
  });

  it('a dnsmasq left by a SIGKILLed agent is stopped by the next one on the same data dir', async () => {
    expect(py(['bridge', 'create', ['dh3'], { network: 'dnsmasq', settings: { cidr: '10.234.0.1/24', start: '10.234.0.10', end: '10.234.0.20' } }])).toEqual([{ ok: null }]);
    const pid = pidOf('dh3');
    await agent.kill();
    killLeftoverRedis(agent.data);
    expect(alive(pid)).toBe(true);
    agent = await startAgent({ data: agent.data, netns: ns });
    expect(alive(pid)).toBe(false);
    expect(fs.readdirSync(dnsDir())).toEqual([]);
    // the bridge outlives agents (as static ones do); it is deleted as any bridge
    expect(py(['bridge', 'delete', ['dh3']])).toEqual([{ ok: null }]);
  }, 60_000);

  it('the agent stops its dnsmasq when it stops', async () => {
    expect(py(['bridge', 'create', ['dh2'], { network: 'dnsmasq', settings: { cidr: '10.233.0.1/24', start: '10.233.0.10', end: '10.233.0.20' } }])).toEqual([{ ok: null }]);
    const pid = pidOf('dh2');
    expect(alive(pid)).toBe(true);
    await agent.stop();
    expect(alive(pid)).toBe(false);
    expect(ourDnsmasq()).toEqual([]);
    expect(fs.readdirSync(dnsDir())).toEqual([]);
  }, 60_000);
});
