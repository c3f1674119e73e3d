// The container table (core0-protocol.md §10): create (validate.ts, start.ts; roots from the
// node's mount service, src/mountd), list/find/place, bridges, and the end of each container on
// every exit path (release.ts). init() sweeps what a crashed agent left, from the state files.
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../lib/paths';
import { MountService } from '../../mountd';
import { CommandError, type Place } from '../types';
import { Cgroup, leftovers } from './cgroup';
import { Container, type ContainerStats, type CreateArgs, readState, startTime } from './container';
import { checkRange, type DhcpRange, Dnsmasq, sweepDnsmasq } from './dnsmasq';
import * as net from './net';
import { release } from './release';
import { startContainer } from './start';
import { bad, validate } from './validate';

export type { Limits } from './cgroup';
export type { ContainerStats, CreateArgs, Nic } from './container';

export interface ContainersOptions {
  /** one directory per container, <dataDir>/<id> */
  dataDir: string;
  /** block cache shared by every mount (default /var/cache/g8os/cache) */
  cacheDir?: string;
  /** block store for flists when `storage` is not given (globals.storage) */
  storage?: string;
  /** the default nic's bridge, created with NAT on first use (default core0, 172.18.0.1/16) */
  bridge?: string;
  cidr?: string;
  /** cgroups are named <instance>-c<id> (default g8os) */
  instance?: string;
  /** pids.max of a container unless its limits say otherwise (default 4096) */
  pidsMax?: number;
  /** how long a flist mount may take to come up (default 120 s) */
  mountTimeoutMs?: number;
  /** the mount service's directory (default <dataDir>-mounts) */
  mountDir?: string;
  /** how long an flist stays mounted after its last container (default 30 s) */
  mountGraceMs?: number;
  /** lease and pid files of the bridges' dnsmasq (default <dataDir>-dnsmasq) */
  dnsmasqDir?: string;
  log?: (line: string) => void;
  /** a container ended (terminated or its PID 1 exited) and is torn down */
  onExit?: (id: number) => void;
}

export class Containers {
  private readonly table = new Map<number, Container>();
  private readonly creating = new Set<Promise<unknown>>();
  private next = 0;
  private closed = false;
  private bridgeReady?: Promise<net.Cidr>;
  /** the default bridge is ours to remove at shutdown (the host had none) */
  private madeBridge = false;
  private readonly g8init = path.join(repoRoot(), 'dist/g8init');
  /** dnsmasq of each bridge made with network mode dnsmasq */
  private readonly dhcp = new Map<string, Dnsmasq>();
  private readonly dnsmasqDir: string;
  private readonly o: Required<Omit<ContainersOptions, 'storage' | 'onExit' | 'mountDir' | 'mountGraceMs' | 'dnsmasqDir'>> & Pick<ContainersOptions, 'storage' | 'onExit'>;
  /** the node's shared read-only flist mounts */
  readonly mounts: MountService;

  constructor(opts: ContainersOptions) {
    this.o = {
      dataDir: path.resolve(opts.dataDir),
      cacheDir: opts.cacheDir ?? '/var/cache/g8os/cache',
      storage: opts.storage,
      bridge: opts.bridge ?? 'core0',
      cidr: opts.cidr ?? '172.18.0.1/16',
      instance: opts.instance ?? 'g8os',
      pidsMax: opts.pidsMax ?? 4096,
      mountTimeoutMs: opts.mountTimeoutMs ?? 120_000,
      log: opts.log ?? ((l) => process.stderr.write(`${l}\n`)),
      onExit: opts.onExit,
    };
    this.dnsmasqDir = path.resolve(opts.dnsmasqDir ?? `${this.o.dataDir}-dnsmasq`);
    this.mounts = new MountService({
      dir: opts.mountDir ?? `${this.o.dataDir}-mounts`, cacheDir: this.o.cacheDir, graceMs: opts.mountGraceMs,
      timeoutMs: this.o.mountTimeoutMs, log: this.o.log,
    });
  }

  /** Removes what a crashed agent left: its containers' processes, veths, cgroups, mounts, dirs. */
  async init(): Promise<void> {
    fs.mkdirSync(this.o.dataDir, { recursive: true });
    for (const name of fs.readdirSync(this.o.dataDir)) {
      const dir = path.join(this.o.dataDir, name);
      if (!/^\d+$/.test(name)) continue;
      const state = readState(dir);
      if (state && state.agent.pid !== process.pid && startTime(state.agent.pid) === state.agent.start) {
        this.o.log(`containers: ${dir} belongs to the running agent ${state.agent.pid}; left alone`);
        continue;
      }
      this.o.log(`containers: sweeping ${dir} left by a previous agent`);
      const errors = await release(dir, state);
      for (const e of errors) this.o.log(`containers: sweep ${dir}: ${e}`);
    }
    for (const name of leftovers(`${this.o.instance}-c`)) {
      await new Cgroup(name, true).remove().catch((e: Error) => this.o.log(`containers: sweep: ${e.message}`));
    }
    sweepDnsmasq(this.dnsmasqDir, this.o.log);
    // after the containers: their overlays sat on these lowers
    await this.mounts.init();
  }

  /** corex.create: validates, starts the container, returns its id; nothing is left on failure. */
  async create(args: CreateArgs): Promise<number> {
    if (this.closed) throw new CommandError('unavailable', 'the agent is shutting down');
    const plan = validate(args, { bridge: this.o.bridge, storage: this.o.storage });
    const id = ++this.next;
    const c = new Container(id, path.join(this.o.dataDir, String(id)));
    c.args = plan.args;
    c.tags = plan.tags;
    const p = (async () => {
      // a directory of an earlier agent under this id was swept by init(); this is a fresh one
      if (fs.existsSync(c.dir)) await release(c.dir, undefined);
      await startContainer(c, plan, {
        ...this.o, g8init: this.g8init, mounts: this.mounts,
        defaultBridge: () => this.defaultBridge(),
        end: (x) => void this.end(x),
        spawnIn: (x, file, a, opts, full) => this.spawnIn(x, file, a, opts, full),
      });
    })();
    this.creating.add(p);
    try {
      await p;
    } catch (e) {
      const errors = await release(c.dir, c.state, c);
      for (const x of errors) this.o.log(`container ${id}: clean-up after a failed create: ${x}`);
      if (e instanceof CommandError) throw e;
      throw new CommandError('internal', (e as Error).message);
    } finally {
      this.creating.delete(p);
    }
    this.table.set(id, c);
    if (this.closed) {
      await this.end(c);
      throw new CommandError('unavailable', 'the agent is shutting down');
    }
    return id;
  }

  /** The default bridge, created (with NAT) on first use; its address. */
  private defaultBridge(): Promise<net.Cidr> {
    const make = async (): Promise<net.Cidr> => {
      const have = await net.bridgeAddress(this.o.bridge);
      if (have) return have;
      if (have === null) throw new Error(`bridge ${this.o.bridge} has no IPv4 address`);
      await net.createBridge({ name: this.o.bridge, cidr: this.o.cidr, nat: true });
      this.madeBridge = true;
      this.o.log(`containers: created bridge ${this.o.bridge} (${this.o.cidr}, NAT)`);
      return net.parseCidr(this.o.cidr);
    };
    const p = (this.bridgeReady ?? Promise.resolve()).then(make, make);
    this.bridgeReady = p.catch(() => undefined) as Promise<net.Cidr>;
    return p;
  }

  // -------------------------------------------------------------------------------------------
  // bridges (bridge.*)

  /** With `dhcp`, a supervised dnsmasq serves that range on the bridge; no bridge is left if it cannot start. */
  async createBridge(spec: net.BridgeSpec & { dhcp?: DhcpRange }): Promise<void> {
    const netmask = spec.dhcp ? checkRange(spec.cidr ?? '', spec.dhcp) : undefined;
    if (spec.dhcp && this.dhcp.has(spec.name)) bad(`a link named '${spec.name}' already exists`);
    await net.createBridge(spec).catch((e: Error) => bad(e.message));
    if (!spec.dhcp) return;
    const d = new Dnsmasq(spec.name, this.dnsmasqDir, { ...spec.dhcp, netmask: netmask! }, this.o.log);
    try {
      await d.start();
    } catch (e) {
      await d.stop();
      await net.deleteBridge(spec.name).catch((x: Error) => this.o.log(`bridge ${spec.name}: ${x.message}`));
      throw e;
    }
    this.dhcp.set(spec.name, d);
  }

  /** bridge.add_host: a static DHCP lease on a dnsmasq bridge. */
  async addHost(name: string, mac: string, ip: string): Promise<void> {
    const d = this.dhcp.get(name);
    if (!d) throw new CommandError('not_found', `no dnsmasq bridge named '${name}'`);
    const cidr = await net.bridgeAddress(name);
    if (!cidr) throw new CommandError('not_found', `bridge '${name}' has no IPv4 address`);
    d.addHost(mac, ip, net.cidrText(cidr));
  }

  /** The pid of a bridge's dnsmasq and its lease file (tests, info). */
  dnsmasq(name: string): { pid?: number; leases: string } | undefined {
    const d = this.dhcp.get(name);
    return d && { pid: d.pid, leases: d.leases };
  }

  listBridges(): Promise<string[]> {
    return net.listBridges();
  }

  async deleteBridge(name: string): Promise<void> {
    if ((await net.bridgeAddress(name)) === undefined) throw new CommandError('not_found', `no bridge named '${name}'`);
    const users = [...this.table.values()].filter((c) =>
      (c.args.nics ?? []).some((n) => (n.type === 'default' ? this.o.bridge : n.id) === name) && !c.args.host_network,
    );
    if (users.length) bad(`bridge '${name}' is in use by container ${users.map((c) => c.id).join(', ')}`);
    await this.dhcp.get(name)?.stop();
    this.dhcp.delete(name);
    await net.deleteBridge(name);
  }

  // -------------------------------------------------------------------------------------------
  // the table

  private live(id: number): Container {
    const c = this.table.get(id);
    if (!c || c.stopping) throw new CommandError('not_found', 'container does not exist');
    return c;
  }

  has(id: number): boolean {
    return this.table.has(id) && !this.table.get(id)!.stopping;
  }

  ids(): number[] {
    return [...this.table.keys()];
  }

  private stats(c: Container): ContainerStats {
    const s = c.cgroup?.stats() ?? { memory: 0, rss: 0, swap: 0, cpuNs: 0 };
    const now = Date.now();
    const cpu = now > c.cpuMark.at ? ((s.cpuNs - c.cpuMark.ns) / ((now - c.cpuMark.at) * 1e6)) * 100 : 0;
    c.cpuMark = { ns: s.cpuNs, at: now };
    return {
      cpu: Math.max(0, Math.round(cpu * 100) / 100), rss: s.rss, vms: s.memory, swap: s.swap, debug: '',
      container: { arguments: c.args, root: c.root, pid: c.pid1, starttime: c.starttime, ...(c.entrypoint ? { entrypoint: c.entrypoint } : {}) },
    };
  }

  /** corex.list: every container by id. */
  list(): Record<string, ContainerStats> {
    return Object.fromEntries([...this.table.values()].map((c) => [String(c.id), this.stats(c)]));
  }

  /** corex.find: the containers having all of these tags. */
  find(tags: string[]): Record<string, ContainerStats> {
    const hit = [...this.table.values()].filter((c) => tags.every((t) => c.tags.includes(t)));
    return Object.fromEntries(hit.map((c) => [String(c.id), this.stats(c)]));
  }

  /** The container's default nic address, if it has one (for tests and info). */
  address(id: number): string | undefined {
    return this.live(id).ip;
  }

  /** Where jobs of container `id` run: processes enter its namespaces and cgroups through g8init. */
  place(id: number): Place {
    const c = this.live(id);
    return {
      container: id,
      root: `/proc/${c.pid1}/root`,
      env: { ...c.env },
      spawn: (file, args, opts) => {
        if (c.stopping) throw new CommandError('not_found', 'container does not exist');
        return this.spawnIn(c, file, args, opts);
      },
    };
  }

  /** `full`: all capabilities even in an unprivileged container (the agent's own set-up steps). */
  private spawnIn(c: Container, file: string, args: string[], opts: SpawnOptions & { cwd?: string }, full = false): ChildProcess {
    const { cwd, env, ...rest } = opts;
    const argv = ['enter', '--pid', String(c.pid1), '--cwd', cwd || '/'];
    if (!c.args.privileged && !full) argv.push('--unprivileged');
    for (const p of c.cgroup!.procs) argv.push('--cgroup-procs', p);
    return spawn(this.g8init, [...argv, '--', file, ...args], { ...rest, env: env ?? c.env });
  }

  // -------------------------------------------------------------------------------------------
  // the end

  /** corex.terminate: stops PID 1 (and so everything in the container) and tears it all down. */
  async terminate(id: number): Promise<void> {
    const c = this.table.get(id);
    if (!c) throw new CommandError('not_found', `no container with id '${id}'`);
    await this.end(c);
  }

  /** Terminates every container (waiting for creates in flight first). */
  async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.creating]);
    await Promise.all([...this.table.values()].map((c) => this.end(c)));
    await this.mounts.shutdown();
    // bridges outlive the agent (as before); their DHCP servers are its processes and do not
    await Promise.all([...this.dhcp.values()].map((d) => d.stop()));
    this.dhcp.clear();
    if (this.madeBridge) await net.deleteBridge(this.o.bridge).catch((e: Error) => this.o.log(`containers: removing bridge ${this.o.bridge}: ${e.message}`));
  }

  private end(c: Container): Promise<void> {
    c.ending ??= (async () => {
      const errors = await release(c.dir, c.state, c);
      for (const e of errors) this.o.log(`container ${c.id}: clean-up: ${e}`);
      this.table.delete(c.id);
      try {
        this.o.onExit?.(c.id);
      } catch (e) {
        this.o.log(`container ${c.id}: onExit: ${(e as Error).message}`);
      }
    })();
    return c.ending;
  }
}
