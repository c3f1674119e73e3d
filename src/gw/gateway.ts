// A node's gateways, host side: each is a network namespace of its own with one veth per nic
// (the host end on the nic's bridge) and the gateway daemon (daemon.ts) running inside it.
// Configurations are kept as JSON in the data dir; every change goes through the running
// daemon, which validates and applies it as a whole, so a refused change leaves both the
// running gateway and the stored configuration as they were.
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { G8osError } from '../errors';
import { run } from '../agent/containers/net';
import { type GwConfig, validate } from './model';

export interface GatewaysOptions {
  /** where configurations and each gateway's files live */
  dataDir: string;
  /** the bridge a `default` nic joins (the agent's container bridge) */
  defaultBridge?: string;
  /** network namespace holding the bridges (tests); the current one when absent */
  hostNetns?: string;
  log?: (l: string) => void;
}

interface Running {
  child: ChildProcess;
  netns: string;
  exited: Promise<void>;
}

function repoRoot(): string {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json'))) d = path.dirname(d);
  return d;
}

const enter = (netns: string, argv: string[]): [string, string[]] => ['nsenter', [`--net=/run/netns/${netns}`, '--', ...argv]];

export class Gateways {
  private readonly running = new Map<string, Running>();
  private readonly tag: string;

  constructor(private readonly o: GatewaysOptions) {
    fs.mkdirSync(this.dir(), { recursive: true });
    this.tag = crypto.createHash('sha1').update(o.dataDir).digest('hex').slice(0, 6);
  }

  private dir(name?: string): string {
    return name ? path.join(this.o.dataDir, 'gw', name) : path.join(this.o.dataDir, 'gw');
  }

  private stored(name: string): GwConfig {
    const f = path.join(this.dir(name), 'config.json');
    if (!fs.existsSync(f)) throw new G8osError('not_found', `no gateway '${name}'`);
    return JSON.parse(fs.readFileSync(f, 'utf8')) as GwConfig;
  }

  private store(c: GwConfig): void {
    fs.mkdirSync(this.dir(c.name), { recursive: true });
    const f = path.join(this.dir(c.name), 'config.json');
    fs.writeFileSync(`${f}.new`, JSON.stringify(c, null, 1));
    fs.renameSync(`${f}.new`, f);
  }

  /** the gateway's network namespace name */
  netnsOf(name: string): string {
    return `g8gw-${this.tag}-${name}`;
  }

  list(): { name: string; running: boolean }[] {
    return fs.readdirSync(this.dir()).filter((n) => fs.existsSync(path.join(this.dir(n), 'config.json'))).sort().map((name) => ({ name, running: this.running.has(name) }));
  }

  async get(name: string): Promise<{ config: GwConfig; running: boolean; netns: string; status: unknown }> {
    const config = this.stored(name);
    const r = this.running.get(name);
    return { config, running: !!r, netns: this.netnsOf(name), status: r ? await this.call(name, 'GET', '/status') : null };
  }

  /** Stores a new gateway and starts it; a gateway that cannot start is not kept. */
  async create(raw: unknown): Promise<GwConfig> {
    const c = validate(raw);
    if (fs.existsSync(path.join(this.dir(c.name), 'config.json'))) throw new G8osError('conflict', `gateway '${c.name}' exists already`);
    this.store(c);
    try {
      await this.start(c.name);
    } catch (e) {
      fs.rmSync(this.dir(c.name), { recursive: true, force: true });
      throw e;
    }
    return c;
  }

  /** Replaces the configuration (the running gateway applies it first; refused = nothing changed). */
  async update(name: string, raw: unknown): Promise<GwConfig> {
    this.stored(name);
    const c = validate(raw);
    if (c.name !== name) throw new G8osError('invalid', `gateway name: '${c.name}' is not '${name}' (a gateway is not renamed)`);
    const applied = this.running.has(name) ? ((await this.call(name, 'PUT', '/config', c)) as GwConfig) : c;
    this.store(applied);
    return applied;
  }

  /** Read-modify-write of the stored configuration through update. */
  async change(name: string, f: (c: GwConfig) => void): Promise<GwConfig> {
    const c = structuredClone(this.stored(name));
    f(c);
    return this.update(name, c);
  }

  async delete(name: string): Promise<void> {
    this.stored(name);
    await this.stop(name);
    fs.rmSync(this.dir(name), { recursive: true, force: true });
  }

  async start(name: string): Promise<void> {
    const c = this.stored(name);
    if (this.running.has(name)) throw new G8osError('conflict', `gateway '${name}' is running already`);
    const ns = this.netnsOf(name);
    const host = this.o.hostNetns ? ['-n', this.o.hostNetns] : [];
    for (const n of c.nics) {
      const br = n.type === 'default' ? (this.o.defaultBridge ?? 'core0') : n.id!;
      const kind = await run('ip', [...host, '-j', '-d', 'link', 'show', 'dev', br]).then((o) => (JSON.parse(o) as { linkinfo?: { info_kind?: string } }[])[0]?.linkinfo?.info_kind, () => undefined);
      if (kind !== 'bridge') throw new G8osError('not_found', `gateway ${name}: nic ${n.name}: no bridge '${br}' on this host`);
    }
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    await run('ip', ['netns', 'add', ns]);
    try {
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      for (const [i, n] of c.nics.entries()) {
        const br = n.type === 'default' ? (this.o.defaultBridge ?? 'core0') : n.id!;
        const hv = this.hostVeth(name, i);
        await run('ip', [...host, 'link', 'add', hv, 'type', 'veth', 'peer', 'name', n.name, 'netns', ns]);
        await run('ip', [...host, 'link', 'set', hv, 'master', br, 'up']);
        await run('ip', ['-n', ns, 'addr', 'add', n.cidr, 'dev', n.name]);
        await run('ip', ['-n', ns, 'link', 'set', n.name, 'up']);
        if (n.config) await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', n.config.gateway, 'dev', n.name]);
      }
      await run(...enter(ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']));
      const d = this.dir(name);
      const [cmd, argv] = enter(ns, [process.execPath, path.join(repoRoot(), 'dist/src/gw/daemon.js'), d]);
      const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      await new Promise<void>((resolve, reject) => {
        let err = '';
        child.stderr!.on('data', (b: Buffer) => {
          err += b.toString();
          this.o.log?.(`gateway ${name}: ${b.toString().trim()}`);
        });
        child.stdout!.once('data', () => resolve());
        child.once('exit', (code) => reject(new G8osError('unavailable', `gateway ${name}: daemon exited (${code}): ${err.trim().split('\n')[0] ?? ''}`)));
      });
      child.once('exit', (code, sig) => {
        if (this.running.get(name)?.child === child) this.o.log?.(`gateway ${name}: daemon exited (${sig ?? code})`);
      });
      this.running.set(name, { child, netns: ns, exited });
      await this.call(name, 'PUT', '/config', c);
    } catch (e) {
      await this.stop(name);
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      throw e;
    }
  }

  private hostVeth(name: string, i: number): string {
    return `gw${crypto.createHash('sha1').update(`${this.o.dataDir}\0${name}`).digest('hex').slice(0, 8)}${i}`;
  }

  /** Stops the daemon, removes the host ends of its veths and the namespace. */
  async stop(name: string): Promise<void> {
    this.stored(name);
    const r = this.running.get(name);
    this.running.delete(name);
    if (r) {
      r.child.kill('SIGTERM');
      const t = setTimeout(() => r.child.kill('SIGKILL'), 5000);
      await r.exited;
      clearTimeout(t);
    }
    // the kernel frees a deleted namespace's veths later, in the background: delete ours now
    const host = this.o.hostNetns ? ['-n', this.o.hostNetns] : [];
    for (let i = 0; i < this.stored(name).nics.length; i++) await run('ip', [...host, 'link', 'del', this.hostVeth(name, i)]).catch(() => undefined);
    await run('ip', ['netns', 'del', this.netnsOf(name)]).catch(() => undefined);
  }

  async close(): Promise<void> {
    for (const name of [...this.running.keys()]) await this.stop(name);
  }

  private call(name: string, method: string, url: string, body?: unknown): Promise<unknown> {
    const socketPath = path.join(this.dir(name), 'control.sock');
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath, method, path: url, headers: { 'content-type': 'application/json' }, timeout: 30_000 }, (res) => {
        let t = '';
        res.on('data', (c: Buffer) => (t += c.toString()));
        res.on('end', () => {
          const v = t ? JSON.parse(t) : null;
          if (res.statusCode === 200) resolve(v);
          else reject(new G8osError(v?.kind ?? 'internal', v?.message ?? `gateway ${name}: HTTP ${res.statusCode}`));
        });
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => reject(new G8osError('unavailable', `gateway ${name}: daemon: ${e.message}`)));
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }
}
