// The gateway: HTTP requests/s through its reverse proxy and TCP throughput through a port
// forward (DNAT + conntrack), each against a direct connection over the bridge, in one run.
// Namespaces only: a host namespace with the bridges, a client (on the public bridge, and with
// a second nic on the private one for the direct path), a backend on the private bridge.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Gateways } from '../src/gw/gateway';
import { makeNetns } from '../harness/netns';
import { type BenchResult, type Context, log } from './lib';

const ip = (...a: string[]): string => execFileSync('ip', a, { encoding: 'utf8' });

// a keep-alive load generator: C connections for S seconds; prints requests/s
const LOAD = String.raw`const http=require('http');const [url,host,c,s]=process.argv.slice(1);const a=new http.Agent({keepAlive:true,maxSockets:+c});
let n=0,err=0;const end=Date.now()+s*1000;const one=()=>{if(Date.now()>end)return Promise.resolve();return new Promise((ok)=>{http.get(url,{agent:a,headers:{host}},(r)=>{r.resume();r.on('end',()=>{r.statusCode===200?n++:err++;ok()})}).on('error',()=>{err++;ok()})}).then(one)};
const t=Date.now();Promise.all(Array.from({length:+c},one)).then(()=>{console.log(JSON.stringify({rps:n/((Date.now()-t)/1000),err}));a.destroy()})`;
// TCP: sends M MiB, prints MB/s once the sink closed its side
const SEND = String.raw`const net=require('net');const [h,p,m]=process.argv.slice(1);const buf=Buffer.alloc(1<<20);let left=+m;const t=Date.now();
const s=net.connect(+p,h,()=>{const w=()=>{while(left>0){left--;if(!s.write(buf))return s.once('drain',w)}s.end()};w()});s.resume();s.on('close',()=>console.log(JSON.stringify({mbs:(+m*1048576/1e6)/((Date.now()-t)/1000)})))`;
const BACKEND = String.raw`require('http').createServer((q,s)=>s.end('ok')).listen(8000,'192.168.52.20');require('net').createServer((c)=>{c.resume();c.on('end',()=>c.end())}).listen(9000,'192.168.52.20')`;

function inNs(ns: string, script: string, args: string[], timeout: number): Record<string, number> {
  const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, '-e', script, ...args], { encoding: 'utf8', timeout });
  if (r.status !== 0) throw new Error(`load generator: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout) as Record<string, number>;
}

function daemonHwmKb(dir: string): number {
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cmd.includes('gw/daemon.js') && cmd.includes(dir) && !cmd.startsWith('nsenter')) return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))![1]);
    } catch {
      // gone
    }
  }
  return 0;
}

export async function gwBench(ctx: Context): Promise<BenchResult> {
  const seconds = ctx.quick ? 2 : 5;
  const mib = ctx.quick ? 256 : 1024;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-bench-gw-'));
  const nss = [makeNetns('bgh'), makeNetns('bgc'), makeNetns('bgb')];
  const [host, client, back] = nss.map((n) => n.name);
  const procs: ChildProcess[] = [];
  const gws = new Gateways({ dataDir: tmp, hostNetns: host });
  try {
    for (const b of ['pub0', 'lan0']) {
      ip('-n', host, 'link', 'add', b, 'type', 'bridge');
      ip('-n', host, 'link', 'set', b, 'up');
    }
    const plug = (ns: string, br: string, he: string, dev: string, cidr: string): void => {
      ip('-n', host, 'link', 'add', he, 'type', 'veth', 'peer', 'name', dev, 'netns', ns);
      ip('-n', host, 'link', 'set', he, 'master', br, 'up');
      ip('-n', ns, 'addr', 'add', cidr, 'dev', dev);
      ip('-n', ns, 'link', 'set', dev, 'up');
    };
    plug(client, 'pub0', 'bc0', 'eth0', '10.79.0.2/24');
    plug(client, 'lan0', 'bc1', 'eth1', '192.168.52.50/24');
    plug(back, 'lan0', 'bb0', 'eth0', '192.168.52.20/24');
    ip('-n', back, 'route', 'add', 'default', 'via', '192.168.52.1');
    procs.push(spawn('nsenter', [`--net=/run/netns/${back}`, '--', process.execPath, '-e', BACKEND], { stdio: 'ignore' }));
    await gws.create({
      name: 'bench', domain: 'lan',
      nics: [{ name: 'pub', type: 'bridge', id: 'pub0', cidr: '10.79.0.10/24', config: { gateway: '10.79.0.1' } }, { name: 'lan', type: 'bridge', id: 'lan0', cidr: '192.168.52.1/24' }],
      portforwards: [{ protocols: ['tcp'], srcip: 'pub', srcport: 9090, dstip: '192.168.52.20', dstport: 9000 }],
      httpproxies: [{ host: 'bench.example', destinations: ['http://192.168.52.20:8000'] }],
    });
    await new Promise((r) => setTimeout(r, 300));
    const t = seconds * 1000 + 30_000;
    log('gw: proxy vs direct HTTP');
    const direct = inNs(client, LOAD, ['http://192.168.52.20:8000/', 'bench.example', '32', String(seconds)], t);
    const proxied = inNs(client, LOAD, ['http://10.79.0.10/', 'bench.example', '32', String(seconds)], t);
    log('gw: forward vs direct TCP');
    const tcpDirect = inNs(client, SEND, ['192.168.52.20', '9000', String(mib)], 120_000);
    const tcpFwd = inNs(client, SEND, ['10.79.0.10', '9090', String(mib)], 120_000);
    const hwm = daemonHwmKb(tmp);
    const table = {
      title: 'Gateway: reverse proxy and port forward vs a direct connection (network namespaces, veths)',
      headers: ['path', 'direct', 'through the gateway', 'ratio'],
      rows: [
        ['HTTP requests/s (32 keep-alive connections, tiny body)', Math.round(direct.rps), Math.round(proxied.rps), `${(proxied.rps / direct.rps).toFixed(2)}×`],
        [`TCP MB/s (one connection, ${mib} MiB, DNAT forward)`, Math.round(tcpDirect.mbs), Math.round(tcpFwd.mbs), `${(tcpFwd.mbs / tcpDirect.mbs).toFixed(2)}×`],
      ],
      notes: [`errors: direct ${direct.err}, proxied ${proxied.err}; gateway daemon (proxy + metadata) peak RSS ${Math.round(hwm / 1024)} MiB; the load generator and backend are Node processes on the same 2 cores.`],
    };
    ctx.print(table);
    return { name: 'gw', tables: [table], data: { direct_rps: direct.rps, proxy_rps: proxied.rps, direct_mbs: tcpDirect.mbs, forward_mbs: tcpFwd.mbs, daemon_hwm_kb: hwm } };
  } finally {
    await gws.close();
    for (const p of procs) p.kill('SIGKILL');
    for (const n of nss.reverse()) n.remove();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
