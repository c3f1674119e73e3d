// The container table and lifecycle (core0-protocol.md §10): validate, mount the root flist,
// start PID 1 in its namespaces (dist/g8init), wire the nics and port forwards, and tear all of
// it down on every exit path. Each container keeps <dataDir>/<id>/state.json naming what it holds,
// written before each resource is taken, so init() can sweep what a crashed agent left.
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { detach, mountAt, readMounts, unmount } from '../../fs/mount-table';
import { CommandError, type Place, type Tags } from '../types';
import { Cgroup, leftovers, type Limits } from './cgroup';
import * as net from './net';
import { forward, type Forward } from './ports';
import { type FlistMount, inspectFlist, mountFlist, repoRoot, stopMount } from './rootfs';

export type { Limits } from './cgroup';

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
  log?: (line: string) => void;
  /** a container ended (terminated or its PID 1 exited) and is torn down */
  onExit?: (id: number) => void;
}

export interface Nic {
  type: string;
  id?: string | null;
  hwaddr?: string | null;
  config?: { dhcp?: boolean | null; cidr?: string | null; gateway?: string | null; dns?: string[] | null } | null;
}

/** corex.create arguments (§9.8), plus `cgroups` (ours: resource limits). */
export interface CreateArgs {
  root: string;
  mount?: Record<string, string> | null;
  host_network?: boolean | null;
  nics?: Nic[] | null;
  port?: Record<string, number | string> | null;
  privileged?: boolean | null;
  hostname?: string | null;
  storage?: string | null;
  tags?: Tags;
  cgroups?: Limits | null;
}

/** One corex.list entry. */
export interface ContainerStats {
  cpu: number;
  rss: number;
  vms: number;
  swap: number;
  debug: boolean;
  container: { arguments: CreateArgs; root: string; pid: number; starttime: number; entrypoint?: string[] };
}

/** What a crash sweep needs, written before each resource is taken. */
interface State {
  id: number;
  /** the agent that made it: pid and start time (a live owner's containers are not swept) */
  agent: { pid: number; start: string };
  cgroup?: string;
  mounts: { target: string; backend: string; pid?: number }[];
  /** the g8init watcher and PID 1 (host pids) */
  g8init?: number;
  pid1?: number;
  veths: string[];
  forwards: number[];
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

class Container {
  state: State;
  args!: CreateArgs;
  tags: string[] = [];
  env: Record<string, string> = {};
  entrypoint?: string[];
  cgroup?: Cgroup;
  mounts: FlistMount[] = [];
  init?: ChildProcess;
  pid1 = 0;
  forwards: Forward[] = [];
  /** the default nic's address */
  ip?: string;
  /** set once the end began: exits from here on are expected */
  stopping = false;
  ending?: Promise<void>;
  cpuMark = { ns: 0, at: Date.now() };
  /** when it was created, epoch ms (uptime in listings) */
  readonly starttime = Date.now();

  constructor(readonly id: number, readonly dir: string) {
    this.state = { id, agent: { pid: process.pid, start: startTime(process.pid) }, mounts: [], veths: [], forwards: [] };
  }

  get root(): string {
    return path.join(this.dir, 'root');
  }

  save(): void {
    const tmp = path.join(this.dir, 'state.json.tmp');
    fs.writeFileSync(tmp, JSON.stringify(this.state));
    fs.renameSync(tmp, path.join(this.dir, 'state.json'));
  }
}

/** Field 22 of /proc/<pid>/stat: tells a pid's current process from an earlier one. */
function startTime(pid: number): string {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const bad = (message: string): never => {
  throw new CommandError(message, 400);
};
const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

/** Whether the process runs the given command line words (a pid from a state file may be reused). */
function runs(pid: number | undefined, ...words: string[]): pid is number {
  if (!pid) return false;
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return words.every((w) => argv.some((a) => a.includes(w)));
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!fs.existsSync(`/proc/${pid}`) || /\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true;
    await sleep(20);
  }
  return false;
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
  private readonly o: Required<Omit<ContainersOptions, 'storage' | 'onExit'>> & Pick<ContainersOptions, 'storage' | 'onExit'>;

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
  }

  // -------------------------------------------------------------------------------------------
  // start-up sweep

  /** Removes what a crashed agent left: its containers' processes, veths, cgroups, mounts, dirs. */
  async init(): Promise<void> {
    fs.mkdirSync(this.o.dataDir, { recursive: true });
    for (const name of fs.readdirSync(this.o.dataDir)) {
      const dir = path.join(this.o.dataDir, name);
      if (!/^\d+$/.test(name)) continue;
      let state: State | undefined;
      try {
        state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as State;
      } catch {
        // made and not yet recorded: only its directory (and anything mounted in it)
      }
      if (state && state.agent.pid !== process.pid && startTime(state.agent.pid) === state.agent.start) {
        this.o.log(`containers: ${dir} belongs to the running agent ${state.agent.pid}; left alone`);
        continue;
      }
      this.o.log(`containers: sweeping ${dir} left by a previous agent`);
      const errors = await this.release(dir, state);
      for (const e of errors) this.o.log(`containers: sweep ${dir}: ${e}`);
    }
    for (const name of leftovers(`${this.o.instance}-c`)) {
      await new Cgroup(name, true).remove().catch((e: Error) => this.o.log(`containers: sweep: ${e.message}`));
    }
  }

  // -------------------------------------------------------------------------------------------
  // create

  /** corex.create: validates, starts the container, returns its id; nothing is left on failure. */
  async create(args: CreateArgs): Promise<number> {
    if (this.closed) throw new CommandError('the agent is shutting down', 503);
    const plan = this.validate(args);
    const id = ++this.next;
    const c = new Container(id, path.join(this.o.dataDir, String(id)));
    c.args = plan.args;
    c.tags = plan.tags;
    const p = this.start(c, plan);
    this.creating.add(p);
    try {
      await p;
    } catch (e) {
      const errors = await this.release(c.dir, c.state, c);
      for (const x of errors) this.o.log(`container ${id}: clean-up after a failed create: ${x}`);
      if (e instanceof CommandError) throw e;
      throw new CommandError((e as Error).message, 500);
    } finally {
      this.creating.delete(p);
    }
    this.table.set(id, c);
    if (this.closed) {
      await this.end(c);
      throw new CommandError('the agent is shutting down', 503);
    }
    return id;
  }

  private validate(a: CreateArgs): Plan {
    if (typeof a.root !== 'string' || !a.root) bad("argument 'root' is missing (string)");
    const binds: Plan['binds'] = [];
    for (const [src, dst] of Object.entries(a.mount ?? {})) {
      if (typeof dst !== 'string' || !dst.startsWith('/')) bad(`mount target '${dst}' is not an absolute path`);
      if (dst.includes(':') || path.normalize(dst) === '/') bad(`mount target '${dst}' is not allowed`);
      if (isUrl(src)) binds.push({ flist: src, dst });
      else {
        if (!src.startsWith('/')) bad(`mount source '${src}' is neither an absolute host path nor an flist URL`);
        if (src.includes(':')) bad(`mount source '${src}' may not contain ':'`);
        if (!fs.existsSync(src)) bad(`host path '${src}' does not exist`);
        binds.push({ host: src, dst });
      }
    }
    const hostNetwork = a.host_network === true;
    const nics = hostNetwork ? [] : (a.nics ?? []);
    let defaults = 0;
    const seen = new Set<string>();
    for (const n of nics) {
      if (n.type === 'default') defaults++;
      else if (n.type === 'bridge') {
        if (!n.id) bad("nic of type bridge needs 'id' (the bridge name)");
        if (n.id === this.o.bridge) bad(`nic of type bridge may not name the default bridge '${this.o.bridge}'`);
        if (seen.has(n.id!)) bad(`bridge '${n.id}' is used by more than one nic`);
        seen.add(n.id!);
        if (n.config?.cidr) {
          try {
            net.parseCidr(n.config.cidr);
          } catch (e) {
            bad(`nic ${n.id}: ${(e as Error).message}`);
          }
        }
      } else if (['zerotier', 'vlan', 'vxlan'].includes(n.type)) bad(`nic type ${n.type} is not supported`);
      else bad(`unknown nic type '${n.type}'`);
      if (n.hwaddr && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(n.hwaddr)) bad(`nic hwaddr '${n.hwaddr}' is not a MAC address`);
    }
    if (defaults > 1) bad('only one nic of type default is allowed');
    const ports: [number, number][] = [];
    const port = (v: unknown, what: string): number => {
      const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) bad(`${what} port '${String(v)}' is not within 0-65535`);
      return n as number;
    };
    for (const [h, g] of Object.entries(a.port ?? {})) ports.push([port(h, 'host'), port(g, 'guest')]);
    if (ports.length && !defaults) bad('port forwards need a nic of type default');
    const hostname = a.hostname || 'corex';
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(hostname)) bad(`hostname '${hostname}' is not valid`);
    const limits = a.cgroups ?? {};
    for (const [k, v] of Object.entries(limits)) {
      if (!['memory', 'cpu', 'cpus', 'pids'].includes(k)) bad(`unknown cgroups limit '${k}' (memory, cpu, cpus, pids)`);
      if (typeof v !== 'number' || !(v > 0) || (k !== 'cpus' && !Number.isInteger(v))) bad(`cgroups.${k} must be a positive number`);
    }
    const tags = a.tags == null ? [] : Array.isArray(a.tags) ? a.tags : [a.tags];
    return {
      args: {
        root: a.root, mount: a.mount ?? null, host_network: hostNetwork, nics: a.nics ?? [], port: a.port ?? null,
        privileged: a.privileged === true, hostname: a.hostname ?? null, storage: a.storage ?? null, tags: a.tags ?? null,
        ...(a.cgroups ? { cgroups: a.cgroups } : {}),
      },
      tags, binds, nics, ports, hostname, limits, hostNetwork,
      storage: a.storage ?? this.o.storage,
      privileged: a.privileged === true,
    };
  }

  private async start(c: Container, plan: Plan): Promise<void> {
    if (!fs.existsSync(this.g8init)) throw new Error(`${this.g8init} is missing (scripts/setup.sh builds it)`);
    // a directory of an earlier agent under this id was swept by init(); this is a fresh one
    if (fs.existsSync(c.dir)) await this.release(c.dir, undefined);
    fs.mkdirSync(c.dir, { recursive: true });
    c.save();

    // what can fail without touching anything: the flists and their blocks, the bridges
    const flistMounts = plan.binds.filter((b) => b.flist);
    const [info] = await Promise.all([
      inspectFlist(plan.args.root, plan.storage),
      ...flistMounts.map((b) => inspectFlist(b.flist!, plan.storage)),
    ]).catch((e: Error) => bad(`cannot use flist: ${e.message}`));
    c.env = { PATH: DEFAULT_PATH, HOME: '/', ...info.environ };
    c.entrypoint = info.entrypoint;
    const bridgeOf = new Map<Nic, { bridge: string; address?: net.Cidr }>();
    for (const n of plan.nics) {
      if (n.type === 'default') bridgeOf.set(n, { bridge: this.o.bridge, address: await this.defaultBridge() });
      else {
        const address = await net.bridgeAddress(n.id!);
        if (address === undefined) bad(`bridge '${n.id}' does not exist`);
        bridgeOf.set(n, { bridge: n.id! });
      }
    }

    c.state.cgroup = `${this.o.instance}-c${c.id}`;
    c.save();
    c.cgroup = new Cgroup(c.state.cgroup, !plan.privileged);
    c.cgroup.create(plan.limits, this.o.pidsMax);

    // the root and every flist mount, each served by its own process
    const mount = (flist: string, target: string, backend: string, ro: boolean, i: number): Promise<FlistMount> => {
      const rec: State['mounts'][number] = { target, backend };
      c.state.mounts.push(rec);
      c.save();
      return mountFlist(
        {
          flist, target, backend, ro, cache: this.o.cacheDir, storageUrl: plan.storage,
          log: path.join(c.dir, `mount-${i}.log`), timeoutMs: this.o.mountTimeoutMs,
          onExit: (code, sig) => {
            if (c.stopping) return;
            this.o.log(`container ${c.id}: the mount of ${flist} exited (${sig ?? `code ${code}`}); ending the container`);
            void this.end(c);
          },
        },
        (pid) => {
          rec.pid = pid;
          c.save();
        },
      ).then((m) => {
        c.mounts.push(m);
        return m;
      });
    };
    const binds: string[] = [];
    await Promise.all([
      mount(plan.args.root, c.root, path.join(c.dir, 'backend'), false, 0),
      ...plan.binds.map(async (b, i) => {
        if (!b.flist) return binds.push(`${b.host}:${b.dst}`);
        const target = path.join(c.dir, 'mounts', String(i + 1));
        await mount(b.flist, target, path.join(c.dir, 'backends', String(i + 1)), true, i + 1);
        return binds.push(`${target}:${b.dst}:ro`);
      }),
    ]).catch((e: Error) => bad(`cannot mount flist: ${e.message}`));

    const defaultNic = plan.nics.find((n) => n.type === 'default');
    const address = defaultNic ? net.containerAddress(bridgeOf.get(defaultNic)!.address!, c.id) : undefined;
    c.ip = address && net.ipText(address.ip);
    await this.writeEtc(c, plan, address && net.ipText(address.ip), defaultNic && net.ipText(bridgeOf.get(defaultNic)!.address!.ip));

    // PID 1
    const argv = ['run', '--root', c.root, '--hostname', plan.hostname];
    if (!plan.hostNetwork) argv.push('--net');
    for (const b of binds) argv.push('--bind', b);
    for (const p of c.cgroup.procs) argv.push('--cgroup-procs', p);
    const init = spawn(this.g8init, argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    c.init = init;
    if (init.pid) {
      c.state.g8init = init.pid;
      c.save();
    }
    c.pid1 = await new Promise<number>((resolve, reject) => {
      let out = '';
      let err = '';
      init.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      init.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^(pid (\d+)|error (.*))\n/m.exec(out);
        if (m?.[2]) resolve(Number(m[2]));
        else if (m?.[3]) reject(new CommandError(`cannot start the container: ${m[3]}`, 500));
      });
      init.once('error', (e) => reject(new Error(`cannot run ${this.g8init}: ${e.message}`)));
      init.once('exit', (code, sig) =>
        reject(new Error(`cannot start the container: g8init exited (${sig ?? `code ${code}`}) ${(err || out).trim()}`)),
      );
    });
    c.state.pid1 = c.pid1;
    c.save();
    init.once('exit', (code, sig) => {
      if (c.stopping) return;
      this.o.log(`container ${c.id}: its PID 1 exited (${sig ?? `code ${code}`})`);
      void this.end(c);
    });

    // nics, then forwards to the default nic's address
    for (const [i, n] of plan.nics.entries()) {
      const setup: net.NicSetup = {
        host: `g8c${c.id}-${i}`, peer: `g8c${c.id}-${i}p`, index: i, bridge: bridgeOf.get(n)!.bridge, hwaddr: n.hwaddr ?? undefined,
      };
      if (n.type === 'default') {
        setup.cidr = net.cidrText(address!);
        setup.gateway = net.ipText(bridgeOf.get(n)!.address!.ip);
      } else if (!n.config?.dhcp) {
        setup.cidr = n.config?.cidr ?? undefined;
        setup.gateway = n.config?.gateway ?? undefined;
      }
      c.state.veths.push(setup.host);
      c.save();
      await net.createVeth(setup);
      await net.moveIntoContainer(setup, c.pid1);
      if (n.config?.dhcp) await this.dhcp(c, i);
    }
    for (const [h, g] of plan.ports) {
      c.state.forwards.push(h);
      c.save();
      c.forwards.push(await forward(h, net.ipText(address!.ip), g).catch((e: Error) => bad(e.message)));
    }
  }

  /** /etc/hostname, /etc/hosts and /etc/resolv.conf of the writable layer, written from the host. */
  private async writeEtc(c: Container, plan: Plan, ip: string | undefined, nameserver: string | undefined): Promise<void> {
    const etc = path.join(c.root, 'etc');
    await fs.promises.mkdir(etc, { recursive: true });
    // never through a symlink of the flist, which would resolve on the host
    if ((await fs.promises.lstat(etc)).isSymbolicLink() || (await fs.promises.realpath(etc)) !== etc) {
      throw new Error('the flist /etc is a symlink; cannot write /etc/hosts');
    }
    const write = async (name: string, text: string): Promise<void> => {
      const f = path.join(etc, name);
      await fs.promises.rm(f, { force: true, recursive: true });
      await fs.promises.writeFile(f, text, { flag: 'wx' }); // O_EXCL: no symlink is followed
    };
    const h = plan.hostname;
    await write('hostname', `${h}\n`);
    await write('hosts', `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${ip ?? '127.0.1.1'}\t${h}\n`);
    let resolv: string | undefined;
    if (plan.hostNetwork) resolv = await fs.promises.readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    else {
      const servers = [...(nameserver ? [nameserver] : []), ...plan.nics.flatMap((n) => n.config?.dns ?? [])];
      if (servers.length) {
        const st = await fs.promises.lstat(path.join(etc, 'resolv.conf')).catch(() => undefined);
        const old = st?.isFile() ? await fs.promises.readFile(path.join(etc, 'resolv.conf'), 'utf8') : '';
        resolv = `${old}${old && !old.endsWith('\n') ? '\n' : ''}${servers.map((s) => `nameserver ${s}\n`).join('')}`;
      }
    }
    if (resolv !== undefined) await write('resolv.conf', resolv);
  }

  private async dhcp(c: Container, i: number): Promise<void> {
    const child = this.spawnIn(c, 'udhcpc', ['-q', '-n', '-i', `eth${i}`, '-s', '/usr/share/udhcp/simple.script'], { stdio: 'ignore' }, true);
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    if (code !== 0) throw new Error(`dhcp on eth${i} failed (udhcpc exit ${code})`);
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

  async createBridge(spec: net.BridgeSpec): Promise<void> {
    await net.createBridge(spec).catch((e: Error) => bad(e.message));
  }

  listBridges(): Promise<string[]> {
    return net.listBridges();
  }

  async deleteBridge(name: string): Promise<void> {
    if ((await net.bridgeAddress(name)) === undefined) throw new CommandError(`no bridge named '${name}'`, 404);
    const users = [...this.table.values()].filter((c) =>
      (c.args.nics ?? []).some((n) => (n.type === 'default' ? this.o.bridge : n.id) === name) && !c.args.host_network,
    );
    if (users.length) bad(`bridge '${name}' is in use by container ${users.map((c) => c.id).join(', ')}`);
    await net.deleteBridge(name);
  }

  // -------------------------------------------------------------------------------------------
  // the table

  private live(id: number): Container {
    const c = this.table.get(id);
    if (!c || c.stopping) throw new CommandError('container does not exist', 404);
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
      cpu: Math.max(0, Math.round(cpu * 100) / 100), rss: s.rss, vms: s.memory, swap: s.swap, debug: false,
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
        if (c.stopping) throw new CommandError('container does not exist', 404);
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
    if (!c) throw new CommandError(`no container with id '${id}'`, 404);
    await this.end(c);
  }

  /** Terminates every container (waiting for creates in flight first). */
  async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.creating]);
    await Promise.all([...this.table.values()].map((c) => this.end(c)));
    if (this.madeBridge) await net.deleteBridge(this.o.bridge).catch((e: Error) => this.o.log(`containers: removing bridge ${this.o.bridge}: ${e.message}`));
  }

  private end(c: Container): Promise<void> {
    c.ending ??= (async () => {
      const errors = await this.release(c.dir, c.state, c);
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

  /**
   * Releases everything a container holds, from the live object when there is one, else from
   * its state file (crash sweep). Returns the problems; the directory stays if a mount does.
   */
  private async release(dir: string, state: State | undefined, c?: Container): Promise<string[]> {
    const errors: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown> | unknown): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    if (c) c.stopping = true;
    for (const f of c?.forwards ?? []) await attempt(`port ${f.host}`, () => f.close());
    // PID 1 on SIGTERM ends everything in its namespace within 3 s, then the watcher exits
    const root = path.join(dir, 'root');
    const watcher = state?.g8init;
    if (runs(watcher, 'g8init', root)) {
      await attempt('stop PID 1', async () => {
        process.kill(watcher, 'SIGTERM');
        if (await waitGone(watcher, 8000)) return;
        if (runs(state?.pid1, 'g8init', root)) process.kill(state!.pid1!, 'SIGKILL');
        process.kill(watcher, 'SIGKILL');
        if (!(await waitGone(watcher, 3000))) throw new Error(`g8init ${watcher} does not exit`);
      });
    } else if (runs(state?.pid1, 'g8init', root)) {
      await attempt('stop PID 1', async () => {
        process.kill(state!.pid1!, 'SIGKILL');
        await waitGone(state!.pid1!, 3000);
      });
    }
    for (const v of state?.veths ?? []) await attempt(`veth ${v}`, () => net.deleteLink(v));
    if (state?.cgroup) await attempt('cgroup', () => new Cgroup(state.cgroup!, true).remove());
    // flist mounts, then the root; each process unmounts its own
    const mounts = [...(state?.mounts ?? [])].reverse();
    await Promise.all(mounts.map((m) => attempt(`mount ${m.target}`, () => stopMount(m.pid, m.target, m.backend))));
    // anything still mounted below the directory, deepest first
    const below = readMounts().filter((m) => m.mountPoint.startsWith(`${dir}/`)).map((m) => m.mountPoint).sort((a, b) => b.length - a.length);
    for (const p of below) await attempt(`unmount ${p}`, async () => {
      const e = (await unmount(p)) && (await detach(p));
      if (e) throw new Error(e);
    });
    if (readMounts().some((m) => m.mountPoint.startsWith(`${dir}/`) || m.mountPoint === dir) || mountAt(dir)) {
      errors.push(`${dir} still has mounts; left in place`);
    } else await attempt(`remove ${dir}`, () => fs.promises.rm(dir, { recursive: true, force: true }));
    return errors;
  }
}

interface Plan {
  args: CreateArgs;
  tags: string[];
  binds: { host?: string; flist?: string; dst: string }[];
  nics: Nic[];
  ports: [number, number][];
  hostname: string;
  limits: Limits;
  hostNetwork: boolean;
  storage?: string;
  privileged: boolean;
}
