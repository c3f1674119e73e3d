// The gateway end to end in network namespaces this file creates (veths and bridges only, the
// host's network is never touched): a "host" namespace holds the bridges pub0 (the public side,
// a server namespace on it) and lan0 (private: a DHCP client namespace, a backends namespace
// with two busybox httpd). The gateway runs in its own namespace with its own nft table.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kindOf } from '../src/errors';
import { Gateways } from '../src/gw/gateway';
import type { GwConfig } from '../src/gw/model';
import { makeNetns, type Netns } from '../harness/netns';

const CLIENT_MAC = '02:00:00:00:00:10';
let hostNs: Netns;
let serverNs: Netns;
let clientNs: Netns;
let backNs: Netns;
let tmp: string;
let gws: Gateways;
const procs: ChildProcess[] = [];
const httpd: Record<string, ChildProcess> = {};

const ip = (...a: string[]): string => execFileSync('ip', a, { encoding: 'utf8' });
const inNs = (ns: Netns, argv: string[], timeout = 15_000) => spawnSync('nsenter', [`--net=${ns.path}`, '--', ...argv], { encoding: 'utf8', timeout });
const curl = (ns: Netns, url: string, ...extra: string[]): { code: number | null; body: string } => {
  const r = inNs(ns, ['curl', '-s', '-m', '5', ...extra, url]);
  return { code: r.status, body: r.stdout };
};
function bg(ns: Netns, argv: string[]): ChildProcess {
  const c = spawn('nsenter', [`--net=${ns.path}`, '--', ...argv], { stdio: 'ignore' });
  procs.push(c);
  return c;
}
async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
/** A veth from bridge `br` in the host namespace to eth0 in `ns`. */
function plug(ns: Netns, br: string, hostEnd: string, mac?: string): void {
  ip('-n', hostNs.name, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name);
  ip('-n', hostNs.name, 'link', 'set', hostEnd, 'master', br, 'up');
  if (mac) ip('-n', ns.name, 'link', 'set', 'eth0', 'address', mac);
  ip('-n', ns.name, 'link', 'set', 'eth0', 'up');
}

const config = (): GwConfig => ({
  name: 'gwt',
  domain: 'lan',
  nics: [
    { name: 'pub', type: 'bridge', id: 'pub0', cidr: '10.77.0.10/24', config: { gateway: '10.77.0.1' } },
    {
      name: 'lan', type: 'bridge', id: 'lan0', cidr: '192.168.50.1/24',
      dhcpserver: { hosts: [{ macaddress: CLIENT_MAC, ipaddress: '192.168.50.10', hostname: 'client', cloudinit: { userdata: '#cloud-config\nhostname: client\n' } }] },
    },
  ],
  portforwards: [{ protocols: ['tcp'], srcip: 'pub', srcport: 8080, dstip: '192.168.50.20', dstport: 8000 }],
  httpproxies: [{ host: 'app.example', destinations: ['http://192.168.50.20:8000', 'http://192.168.50.21:8000'] }],
});

const table = (): string => inNs({ path: `/run/netns/${gws.netnsOf('gwt')}` } as Netns, ['nft', 'list', 'table', 'inet', 'gw']).stdout;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-gw-'));
  hostNs = makeNetns('gwh');
  serverNs = makeNetns('gws');
  clientNs = makeNetns('gwc');
  backNs = makeNetns('gwb');
  ip('-n', hostNs.name, 'link', 'add', 'pub0', 'type', 'bridge');
  ip('-n', hostNs.name, 'addr', 'add', '10.77.0.1/24', 'dev', 'pub0');
  ip('-n', hostNs.name, 'link', 'set', 'pub0', 'up');
  ip('-n', hostNs.name, 'link', 'add', 'lan0', 'type', 'bridge');
  ip('-n', hostNs.name, 'link', 'set', 'lan0', 'up');
  plug(serverNs, 'pub0', 'vs0');
  ip('-n', serverNs.name, 'addr', 'add', '10.77.0.2/24', 'dev', 'eth0');
  plug(clientNs, 'lan0', 'vc0', CLIENT_MAC);
  plug(backNs, 'lan0', 'vb0');
  for (const a of ['192.168.50.20/24', '192.168.50.21/24']) ip('-n', backNs.name, 'addr', 'add', a, 'dev', 'eth0');
  ip('-n', backNs.name, 'route', 'add', 'default', 'via', '192.168.50.1');
  // the public server answers with the address it sees the request come from
  bg(serverNs, [process.execPath, '-e', "require('http').createServer((q,s)=>s.end(q.socket.remoteAddress)).listen(9000,'10.77.0.2')"]);
  for (const b of ['b1', 'b2']) {
    fs.mkdirSync(path.join(tmp, b));
    fs.writeFileSync(path.join(tmp, b, 'index.html'), b);
    httpd[b] = bg(backNs, ['busybox', 'httpd', '-f', '-p', `192.168.50.${b === 'b1' ? 20 : 21}:8000`, '-h', path.join(tmp, b)]);
  }
  gws = new Gateways({ dataDir: path.join(tmp, 'data'), hostNetns: hostNs.name });
  await gws.create(config());
}, 60_000);

afterAll(async () => {
  const ns = gws?.netnsOf('gwt');
  await gws?.close();
  for (const p of procs) p.kill('SIGKILL');
  for (const n of [backNs, clientNs, serverNs, hostNs]) n?.remove();
  fs.rmSync(tmp, { recursive: true, force: true });
  if (ns) expect(ip('netns', 'list')).not.toContain(ns);
});

describe('gateway', () => {
  it('gives the client its static lease, and the client reaches the public side through SNAT', () => {
    const r = inNs(clientNs, ['busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '10', '-T', '1', '-s', '/bin/true'], 30_000);
    expect(r.stdout + r.stderr).toContain('lease of 192.168.50.10 obtained');
    ip('-n', clientNs.name, 'addr', 'add', '192.168.50.10/24', 'dev', 'eth0');
    ip('-n', clientNs.name, 'route', 'add', 'default', 'via', '192.168.50.1');
    expect(curl(clientNs, 'http://10.77.0.2:9000/').body).toBe('10.77.0.10');
    // the private network is not reachable from outside: only the forwards are
    ip('-n', serverNs.name, 'route', 'add', '192.168.50.0/24', 'via', '10.77.0.10');
    expect(curl(serverNs, 'http://192.168.50.20:8000/', '-m', '2').code).not.toBe(0);
  });

  it('serves the static host names on the gateway domain', () => {
    const r = inNs(clientNs, ['busybox', 'nslookup', 'client.lan', '192.168.50.1']);
    expect(r.stdout).toContain('192.168.50.10');
  });

  it('forwards a public port to a private server', () => {
    expect(curl(serverNs, 'http://10.77.0.10:8080/')).toEqual({ code: 0, body: 'b1' });
  });

  it('serves a client its own cloud-init data, by address and by MAC', () => {
    expect(curl(clientNs, 'http://169.254.169.254/latest/user-data').body).toBe('#cloud-config\nhostname: client\n');
    expect(curl(clientNs, 'http://169.254.169.254/latest/meta-data/local-hostname').body).toBe('client');
    expect(curl(clientNs, `http://169.254.169.254/${CLIENT_MAC}/meta-data`).body).toContain('instance-id: client');
    expect(curl(clientNs, 'http://169.254.169.254/02:00:00:00:00:99/user-data', '-o', '/dev/null', '-w', '%{http_code}').body).toBe('404');
  });

  it('refuses bad rules with an invalid error and leaves the running config untouched', async () => {
    const before = table();
    const stored = (await gws.get('gwt')).config;
    const bad: [string, (c: GwConfig) => void, string][] = [
      ['bad cidr', (c) => (c.nics[1].cidr = '192.168.300.1/24'), 'invalid'],
      ['port out of range', (c) => (c.portforwards[0].srcport = 70000), 'invalid'],
      ['overlapping subnets', (c) => c.nics.push({ name: 'lan2', type: 'bridge', id: 'lan0', cidr: '192.168.50.129/25' }), 'invalid'],
      ['unknown nic', (c) => (c.portforwards[0].srcip = 'nope'), 'invalid'],
      ['raw firewall nft refuses', (c) => (c.advanced = { firewall: 'chain input { type filter hook input priority 0; policy drop; tcp dport 99999 accept }' }), 'invalid'],
    ];
    for (const [what, f, kind] of bad) {
      const e = await gws.change('gwt', f).then(() => undefined, (x: unknown) => x);
      expect(e, what).toBeDefined();
      expect(kindOf(e), `${what}: ${(e as Error).message}`).toBe(kind);
      expect((e as Error).message.split('\n')).toHaveLength(1);
    }
    expect(table()).toBe(before);
    expect((await gws.get('gwt')).config).toEqual(stored);
    expect(curl(serverNs, 'http://10.77.0.10:8080/').body).toBe('b1');
  });

  it('balances the proxy over two backends, keeps connections across a reload and fails over', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(curl(serverNs, 'http://10.77.0.10/', '-H', 'Host: app.example').body);
    expect([...seen].sort()).toEqual(['b1', 'b2']);
    expect(curl(serverNs, 'http://10.77.0.10/', '-H', 'Host: other.example', '-o', '/dev/null', '-w', '%{http_code}').body).toBe('404');

    // one keep-alive connection: a request, a reload adding a host, a request on the same socket
    const flag = path.join(tmp, 'reloaded');
    const script = `const http=require('http');const fs=require('fs');const a=new http.Agent({keepAlive:true,maxSockets:1});
      const get=(h)=>new Promise((ok,no)=>http.get({host:'10.77.0.10',port:80,headers:{host:h},agent:a},(r)=>{const p=r.socket.localPort;let b='';r.on('data',(d)=>b+=d);r.on('end',()=>ok([p,b]))}).on('error',no));
      (async()=>{const x=await get('app.example');console.log('first');while(!fs.existsSync(${JSON.stringify(flag)}))await new Promise(r=>setTimeout(r,50));
      const y=await get('new.example');console.log(JSON.stringify({same:x[0]===y[0],body:y[1]}));a.destroy()})().catch(e=>{console.log('ERR '+e.message);process.exit(1)})`;
    const child = spawn('nsenter', [`--net=${serverNs.path}`, '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until('the first request', () => out.includes('first'));
    await gws.change('gwt', (c) => c.httpproxies.push({ host: 'new.example', destinations: ['http://192.168.50.21:8000'] }));
    fs.writeFileSync(flag, '');
    await until('the second request', () => out.includes('}') || out.includes('ERR'));
    expect(JSON.parse(out.split('\n')[1])).toEqual({ same: true, body: 'b2' });

    httpd.b2.kill('SIGKILL');
    await until('b2 gone', () => httpd.b2.exitCode !== null || httpd.b2.signalCode !== null);
    const after = Array.from({ length: 6 }, () => curl(serverNs, 'http://10.77.0.10/', '-H', 'Host: app.example'));
    expect(after).toEqual(Array(6).fill({ code: 0, body: 'b1' }));
    const status = (await gws.get('gwt')).status as { proxies: Record<string, { url: string; up: boolean }[]> };
    expect(status.proxies['app.example']).toEqual([{ url: 'http://192.168.50.20:8000', up: true }, { url: 'http://192.168.50.21:8000', up: false }]);
  });

  it('refuses a gateway on a bridge that does not exist and leaves nothing behind', async () => {
    const c = { ...config(), name: 'gwx', nics: [config().nics[0], { name: 'lan', type: 'bridge', id: 'nosuch0', cidr: '192.168.60.1/24' }] };
    const e = await gws.create(c).then(() => undefined, (x: unknown) => x);
    expect(kindOf(e)).toBe('not_found');
    expect(gws.list().map((g) => g.name)).toEqual(['gwt']);
    expect(ip('netns', 'list')).not.toContain(gws.netnsOf('gwx'));
  });
});
