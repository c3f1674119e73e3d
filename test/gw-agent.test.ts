// gw.* through a real agent (in a namespace this file makes, holding the bridges): the commands
// a pool forwards 1:1, their sub-resources reaching the running gateway's nft table, refusals
// as ERROR results of the right code with nothing changed, and nothing left after stop/delete
// or after the agent stops.
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../src/agent/client';
import { type AgentProcess, makeNetns, startAgent } from './helpers/agent';

let agent: AgentProcess;
let client: Client;
let ns: string;
let gwNs: string;

const ip = (...a: string[]): string => execFileSync('ip', a, { encoding: 'utf8' });
const table = (): string => spawnSync('nsenter', [`--net=/run/netns/${gwNs}`, '--', 'nft', 'list', 'table', 'inet', 'gw'], { encoding: 'utf8' }).stdout;
const call = async (cmd: string, a: unknown): Promise<{ state: string; code: number; data: string }> => (await client.raw(cmd, a)).get(60) as never;

const config = {
  name: 'ga',
  domain: 'lan',
  nics: [
    { name: 'pub', type: 'bridge', id: 'apub0', cidr: '10.78.0.10/24', config: { gateway: '10.78.0.1' } },
    { name: 'lan', type: 'bridge', id: 'alan0', cidr: '192.168.51.1/24', dhcpserver: { hosts: [] } },
  ],
  portforwards: [],
  httpproxies: [],
};

beforeAll(async () => {
  ns = makeNetns('gwa');
  for (const b of ['apub0', 'alan0']) {
    ip('-n', ns, 'link', 'add', b, 'type', 'bridge');
    ip('-n', ns, 'link', 'set', b, 'up');
  }
  agent = await startAgent({ netns: ns });
  client = await agent.client();
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  // the agent's stop stops its gateways
  if (gwNs) expect(ip('netns', 'list')).not.toContain(gwNs);
});

describe('gw.* agent commands', () => {
  it('create, list, get and the sub-resources apply to the running gateway', async () => {
    expect((await client.json('gw.create', config)) as object).toMatchObject({ name: 'ga' });
    const got = (await client.json('gw.get', { name: 'ga' })) as { running: boolean; netns: string };
    expect(got.running).toBe(true);
    gwNs = got.netns;
    expect(await client.json('gw.list', {})).toEqual([{ name: 'ga', running: true }]);

    await client.json('gw.forward.add', { name: 'ga', forward: { protocols: ['tcp', 'udp'], srcip: 'pub', srcport: 2222, dstip: '192.168.51.5', dstport: 22 } });
    expect(table()).toContain('tcp dport 2222 dnat ip to 192.168.51.5:22');
    expect(table()).toContain('udp dport 2222 dnat ip to 192.168.51.5:22');
    await client.json('gw.dhcp.add', { name: 'ga', interface: 'lan', host: { macaddress: '02:00:00:00:01:05', ipaddress: '192.168.51.5', hostname: 'vm5' } });
    expect(await client.json('gw.dhcp.list', { name: 'ga', interface: 'lan' })).toEqual([{ macaddress: '02:00:00:00:01:05', ipaddress: '192.168.51.5', hostname: 'vm5' }]);
    await client.json('gw.proxy.add', { name: 'ga', proxy: { host: 'Web.Example', destinations: ['http://192.168.51.5:80'] } });
    expect(await client.json('gw.proxy.get', { name: 'ga', host: 'web.example' })).toEqual({ host: 'web.example', destinations: ['http://192.168.51.5:80'] });
    expect(table()).toContain('ip daddr 10.78.0.10 tcp dport 80 accept');
  });

  it('refuses bad input as an ERROR of the right code and changes nothing', async () => {
    const before = table();
    const cfg = await client.json('gw.get', { name: 'ga' });
    const cases: [string, unknown, number][] = [
      ['gw.forward.add', { name: 'ga', forward: { srcip: 'pub', srcport: 0, dstip: '192.168.51.5', dstport: 22 } }, 400],
      ['gw.forward.add', { name: 'ga', forward: { srcip: 'eth9', srcport: 80, dstip: '192.168.51.5', dstport: 22 } }, 400],
      ['gw.forward.add', { name: 'ga', forward: { protocols: ['tcp'], srcip: 'pub', srcport: 2222, dstip: '192.168.51.6', dstport: 22 } }, 409],
      ['gw.dhcp.add', { name: 'ga', interface: 'lan', host: { macaddress: '02:00:00:00:01:06', ipaddress: '10.1.1.1', hostname: 'x' } }, 400],
      ['gw.dhcp.add', { name: 'ga', interface: 'nope', host: { macaddress: '02:00:00:00:01:06', ipaddress: '192.168.51.6', hostname: 'x' } }, 404],
      ['gw.proxy.add', { name: 'ga', proxy: { host: 'a b', destinations: ['http://192.168.51.5:80'] } }, 400],
      ['gw.update', { name: 'ga', config: { ...config, nics: [config.nics[0], { ...config.nics[1], cidr: '10.78.0.99/24' }] } }, 400],
      ['gw.forward.delete', { name: 'ga', srcip: 'pub', srcport: 1 }, 404],
      ['gw.get', { name: 'nosuch' }, 404],
      ['gw.create', { ...config }, 409],
    ];
    for (const [cmd, a, code] of cases) {
      const r = await call(cmd, a);
      expect(r, `${cmd} ${JSON.stringify(a)}`).toMatchObject({ state: 'ERROR', code });
      expect(JSON.parse(r.data).split('\n')).toHaveLength(1);
    }
    expect(table()).toBe(before);
    expect(await client.json('gw.get', { name: 'ga' })).toEqual(cfg);
  });

  it('stop removes the namespace, start brings the stored configuration back, delete forgets it', async () => {
    await client.json('gw.stop', { name: 'ga' });
    expect(ip('netns', 'list')).not.toContain(gwNs);
    await client.json('gw.start', { name: 'ga' });
    expect(table()).toContain('tcp dport 2222 dnat ip to 192.168.51.5:22');
    await client.json('gw.forward.delete', { name: 'ga', srcip: 'pub', srcport: 2222 });
    expect(table()).not.toContain('dport 2222');
    await client.json('gw.delete', { name: 'ga' });
    expect(ip('netns', 'list')).not.toContain(gwNs);
    expect(await client.json('gw.list', {})).toEqual([]);
    // veths went with the gateway's namespace
    expect(ip('-n', ns, '-o', 'link')).not.toMatch(/\bgw[0-9a-f]{6}/);
    // a gateway running at the agent's stop is stopped with it (checked in afterAll)
    await client.json('gw.create', config);
  });

  it('g8os gw: verbs print JSON, a refusal is one line and its exit code', () => {
    const g8 = (...a: string[]) => spawnSync(path.join(__dirname, '../bin/g8os'), ['gw', ...a, '--agent', agent.socket], { encoding: 'utf8', timeout: 60_000 });
    const add = g8('forward', 'add', 'ga', 'pub:8022', '192.168.51.7:22', '--proto', 'tcp,udp');
    expect(add.stderr).toBe('');
    expect(add.status).toBe(0);
    expect(JSON.parse(add.stdout)).toEqual([{ protocols: ['tcp', 'udp'], srcip: '10.78.0.10', srcport: 8022, dstip: '192.168.51.7', dstport: 22 }]);
    expect(JSON.parse(g8('ls').stdout)).toEqual([{ name: 'ga', running: true }]);
    const bad = g8('forward', 'add', 'ga', 'pub:99999', '192.168.51.7:22');
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('not a port');
    expect(g8('get', 'nosuch').status).toBe(1);
    expect(g8('forward', 'add', 'ga', 'nonsense', 'x').status).toBe(2);
  });
});
