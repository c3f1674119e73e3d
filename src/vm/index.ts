// The VM table (disks-vms.md §1.5): one qemu process per VM driven over QMP, VMs in memory plus
// <dir>/<uuid>/state.json so a restarted agent sweeps what a crashed one left (qemu, taps,
// leases, forwards). The small interface the kvm.* built-ins call.
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { conflict, G8osError, invalid, notFound, oneLine, unavailable } from '../errors';
import type { Lease, MountService } from '../mountd';
import { findBoot } from './boot';
import { type Drive, type Media, resolveMedia } from './media';
import { alive, type Nic, type NicState, VmNet } from './net';
import { Qmp, type QmpEvent } from './qmp';
import { type Boot, findQemu, hostMemoryMiB, isOurQemu, probeAccel, qemuArgs } from './qemu';

export type VmState = 'starting' | 'running' | 'paused' | 'shutdown' | 'crashed' | 'migrating';

export interface CreateSpec {
  name: string;
  media: Media[];
  cpu: number;
  memory: number;
  nics: Nic[];
  port?: Record<string, number> | null;
  flist?: string | null;
  /** migration target: qemu waits for the incoming state on this URI */
  incoming?: string;
}

export interface VmsOptions {
  dir: string;
  mounts?: MountService;
  storage?: string;
  /** tags tap names so agents sharing a network namespace do not collide */
  instance: string;
  log?: (l: string) => void;
}

interface Saved {
  uuid: string;
  seq: number;
  name: string;
  pid?: number;
  nics: NicState[];
}

class Vm {
  state: VmState = 'starting';
  child?: ChildProcess;
  qmp?: Qmp;
  drives: Drive[] = [];
  nics: NicState[] = [];
  lease?: Lease;
  vnc = -1;
  exited!: Promise<void>;
  released = false;
  shutdownSeen = false;
  constructor(readonly uuid: string, readonly seq: number, readonly spec: CreateSpec, readonly dir: string) {}
  get serial(): string {
    return path.join(this.dir, 'serial.log');
  }
  get qmpPath(): string {
    return path.join(this.dir, 'qmp.sock');
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export class Vms {
  private readonly vms = new Map<string, Vm>();
  private readonly names = new Set<string>();
  private readonly net: VmNet;
  private accel?: Promise<'kvm' | 'tcg'>;
  private readonly log: (l: string) => void;

  constructor(private readonly o: VmsOptions) {
    this.log = o.log ?? ((l) => process.stderr.write(`${l}\n`));
    this.net = new VmNet(path.join(o.dir, 'net'), this.log);
  }

  /** Sweeps what a crashed agent left, then probes the accelerator in the background. */
  async init(): Promise<void> {
    fs.mkdirSync(this.o.dir, { recursive: true });
    for (const e of fs.readdirSync(this.o.dir)) {
      const file = path.join(this.o.dir, e, 'state.json');
      if (!fs.existsSync(file)) continue;
      let s: Saved;
      try {
        s = JSON.parse(fs.readFileSync(file, 'utf8')) as Saved;
      } catch {
        fs.rmSync(path.join(this.o.dir, e), { recursive: true, force: true });
        continue;
      }
      if (s.pid && isOurQemu(s.pid, s.uuid)) {
        process.kill(s.pid, 'SIGKILL');
        for (let i = 0; i < 50 && alive(s.pid); i++) await sleep(100);
      }
      await this.net.remove(s.uuid, s.nics ?? []);
      fs.rmSync(path.join(this.o.dir, e), { recursive: true, force: true });
      this.log(`vm ${s.name} (${s.uuid}) swept after an agent restart`);
    }
    await this.net.teardown();
    try {
      const q = findQemu();
      this.accel = probeAccel(q, this.log);
      this.accel.catch(() => undefined);
    } catch {
      // no qemu: kvm.create says so
    }
  }

  private get(uuid: unknown): Vm {
    const vm = typeof uuid === 'string' ? this.vms.get(uuid) : undefined;
    if (!vm) throw notFound(`no vm with uuid '${String(uuid)}'`);
    return vm;
  }

  private live(uuid: unknown): Vm & { qmp: Qmp } {
    const vm = this.get(uuid);
    if (!vm.qmp || vm.qmp.closed || vm.state === 'shutdown' || vm.state === 'crashed')
      throw unavailable(`vm '${vm.spec.name}' is not running (${vm.state === 'starting' ? 'starting' : vm.state})`);
    return vm as Vm & { qmp: Qmp };
  }

  private nextSeq(): number {
    const used = new Set([...this.vms.values()].map((v) => v.seq));
    for (let n = 2; n < 0xffff; n++) if (!used.has(n)) return n;
    throw unavailable('no free vm sequence number');
  }

  private async vncPort(): Promise<number> {
    const used = new Set([...this.vms.values()].map((v) => v.vnc));
    for (let p = 5900; p < 6900; p++) if (!used.has(p) && (await portFree(p))) return p;
    return -1;
  }

  async create(spec: CreateSpec): Promise<string> {
    if (!spec.name) throw invalid("argument 'name' must be a non-empty string");
    if (this.names.has(spec.name)) throw conflict(`a vm named '${spec.name}' exists`);
    if (!Number.isInteger(spec.cpu) || spec.cpu < 1) throw invalid(`cpu ${spec.cpu}: must be at least 1`);
    const host = hostMemoryMiB();
    if (!Number.isInteger(spec.memory) || spec.memory < 16) throw invalid(`memory ${spec.memory} MiB: must be at least 16`);
    if (spec.memory > host) throw invalid(`memory ${spec.memory} MiB is more than the host has (${host} MiB)`);
    if (!spec.flist && !spec.media.length) throw invalid('nothing to boot: give media or an flist');
    const qemu = findQemu();
    this.names.add(spec.name);
    const uuid = crypto.randomUUID();
    const vm = new Vm(uuid, this.nextSeq(), spec, path.join(this.o.dir, uuid));
    this.vms.set(uuid, vm);
    try {
      fs.mkdirSync(vm.dir, { recursive: true });
      let boot: Boot | undefined;
      if (spec.flist) {
        if (!this.o.mounts) throw unavailable('no mount service for flist vms');
        vm.lease = await this.o.mounts.acquire(spec.flist, this.o.storage).catch((e: unknown) => {
          throw new G8osError(e instanceof G8osError ? e.kind : 'invalid', `flist '${spec.flist}': ${oneLine(e)}`, { cause: e });
        });
        boot = findBoot(vm.lease.path, spec.flist);
      }
      let disks = 0;
      let cds = 0;
      for (const m of spec.media) {
        const cd = m.type === 'cdrom';
        const d = await resolveMedia(m, { id: `${cd ? cds : disks}`, n: cd ? cds : disks, flistRoot: vm.lease?.path, dir: vm.dir });
        if (cd) cds++;
        else disks++;
        vm.drives.push(d);
      }
      for (const [i, n] of spec.nics.entries()) vm.nics.push(await this.net.add(n, vm.seq, i, uuid, this.o.instance));
      vm.vnc = await this.vncPort();
      const accel = this.accel ? await this.accel : 'tcg';
      this.save(vm);
      await this.spawn(vm, qemu, qemuArgs({ uuid, name: spec.name, cpu: spec.cpu, memory: spec.memory, accel, qmp: vm.qmpPath, serial: vm.serial, vnc: vm.vnc, drives: vm.drives, nics: vm.nics, boot, incoming: !!spec.incoming }));
      if (spec.incoming) {
        await vm.qmp!.execute('migrate-incoming', { uri: spec.incoming });
        vm.state = 'migrating';
      } else vm.state = 'running';
      const ip = vm.nics.find((n) => n.type === 'default')?.ip;
      if (spec.port && Object.keys(spec.port).length) {
        if (!ip) throw invalid('port forwards need a default nic');
        await this.net.forward(uuid, ip, spec.port);
      }
      return uuid;
    } catch (e) {
      await this.remove(vm);
      throw e;
    }
  }

  private save(vm: Vm): void {
    const s: Saved = { uuid: vm.uuid, seq: vm.seq, name: vm.spec.name, pid: vm.child?.pid, nics: vm.nics };
    fs.writeFileSync(path.join(vm.dir, 'state.json.tmp'), JSON.stringify(s));
    fs.renameSync(path.join(vm.dir, 'state.json.tmp'), path.join(vm.dir, 'state.json'));
  }

  private async spawn(vm: Vm, qemu: string, argv: string[]): Promise<void> {
    let err = '';
    const child = spawn(qemu, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    vm.child = child;
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    vm.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', (code, sig) => void this.exited(vm, code, sig, err));
    const spawned = await new Promise<Error | undefined>((r) => {
      child.once('spawn', () => r(undefined));
      child.once('error', (e) => r(e));
    });
    if (spawned) throw unavailable(`${qemu}: ${spawned.message}`);
    this.save(vm);
    // the QMP socket appears once qemu has parsed its command line and opened every drive
    for (let i = 0; ; i++) {
      if (child.exitCode !== null || child.signalCode !== null) {
        const line = err.trim().split('\n').filter(Boolean).pop() ?? `exit ${child.exitCode}`;
        throw invalid(`qemu did not start: ${line.replace(/^qemu-system-x86_64: /, '')}`);
      }
      if (fs.existsSync(vm.qmpPath)) break;
      if (i > 600) throw unavailable('qemu did not open its QMP socket within 60 s');
      await sleep(100);
    }
    vm.qmp = await Qmp.connect(vm.qmpPath);
    vm.qmp.on('event', (ev: QmpEvent) => this.event(vm, ev));
  }

  private event(vm: Vm, ev: QmpEvent): void {
    if (ev.event === 'STOP' && vm.state === 'running') vm.state = 'paused';
    else if (ev.event === 'RESUME') vm.state = 'running';
    else if (ev.event === 'SHUTDOWN') vm.shutdownSeen = true;
  }

  private async exited(vm: Vm, code: number | null, sig: NodeJS.Signals | null, err: string): Promise<void> {
    vm.qmp?.close();
    if (vm.state !== 'migrating' || code !== 0) vm.state = vm.shutdownSeen && code === 0 ? 'shutdown' : 'crashed';
    if (vm.state === 'crashed') this.log(`vm ${vm.spec.name}: qemu ended (${sig ?? code}) ${err.trim().split('\n').pop() ?? ''}`);
    await this.release(vm);
  }

  /** What a stopped VM holds on the host: taps, lease, forwards, flist lease, overlays. */
  private async release(vm: Vm): Promise<void> {
    if (vm.released) return;
    vm.released = true;
    await this.net.remove(vm.uuid, vm.nics).catch((e: Error) => this.log(`vm ${vm.spec.name} nics: ${e.message}`));
    for (const d of vm.drives) if (d.overlay) fs.rmSync(d.overlay, { force: true });
    await vm.lease?.release().catch((e: Error) => this.log(`vm ${vm.spec.name} flist: ${e.message}`));
    vm.lease = undefined;
    fs.rmSync(path.join(vm.dir, 'state.json'), { force: true });
    if (![...this.vms.values()].some((v) => !v.released && v.nics.some((n) => n.type === 'default'))) await this.net.teardown().catch(() => undefined);
  }

  private async remove(vm: Vm): Promise<void> {
    const c = vm.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      if (vm.qmp && !vm.qmp.closed) await vm.qmp.execute('quit', undefined, 2000).catch(() => undefined);
      const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await vm.exited;
      clearTimeout(t);
    }
    await this.release(vm);
    this.vms.delete(vm.uuid);
    this.names.delete(vm.spec.name);
    fs.rmSync(vm.dir, { recursive: true, force: true });
  }

  async destroy(uuid: unknown): Promise<void> {
    await this.remove(this.get(uuid));
  }

  async qmp(uuid: unknown, command: string, args?: Record<string, unknown>): Promise<unknown> {
    return this.live(uuid).qmp.execute(command, args);
  }

  async pause(uuid: unknown): Promise<void> {
    const vm = this.live(uuid);
    await vm.qmp.execute('stop');
    vm.state = 'paused';
  }

  async resume(uuid: unknown): Promise<void> {
    const vm = this.live(uuid);
    await vm.qmp.execute('cont');
    vm.state = 'running';
  }

  list(): { id: number; uuid: string; name: string; state: string; vnc: number }[] {
    return [...this.vms.values()].map((v) => ({ id: v.seq, uuid: v.uuid, name: v.spec.name, state: v.state === 'starting' || v.state === 'migrating' ? 'paused' : v.state, vnc: v.vnc }));
  }

  /** The serial console so far. */
  console(uuid: unknown): string {
    const vm = this.get(uuid);
    return fs.existsSync(vm.serial) ? fs.readFileSync(vm.serial, 'utf8') : '';
  }

  details(uuid: unknown): { uuid: string; name: string; state: string; pid?: number; vnc: number; serial: string; nics: NicState[]; media: string[] } {
    const vm = this.get(uuid);
    return { uuid: vm.uuid, name: vm.spec.name, state: vm.state, pid: vm.child?.pid, vnc: vm.vnc, serial: vm.serial, nics: vm.nics, media: vm.drives.map((d) => d.url) };
  }

  async attachDisk(uuid: unknown, m: Media): Promise<void> {
    const vm = this.live(uuid);
    if (vm.drives.some((d) => d.url === m.url)) throw conflict(`media '${m.url}' is attached already`);
    const n = vm.drives.filter((d) => !d.cdrom).length;
    let id = n;
    while (vm.drives.some((d) => d.node === `disk${id}`)) id++;
    const d = await resolveMedia({ ...m, type: 'disk' }, { id: String(id), n, flistRoot: vm.lease?.path, dir: vm.dir });
    await vm.qmp.execute('blockdev-add', d.blockdev);
    try {
      await vm.qmp.execute('device_add', d.device);
    } catch (e) {
      await vm.qmp.execute('blockdev-del', { 'node-name': d.node }).catch(() => undefined);
      if (d.overlay) fs.rmSync(d.overlay, { force: true });
      throw e;
    }
    vm.drives.push(d);
  }

  async detachDisk(uuid: unknown, m: Media): Promise<void> {
    const vm = this.live(uuid);
    const d = vm.drives.find((x) => x.url === m.url);
    if (!d) throw notFound(`media '${m.url}' is not attached to vm '${vm.spec.name}'`);
    const gone = new Promise<void>((resolve) => {
      const on = (ev: QmpEvent): void => {
        if (ev.event === 'DEVICE_DELETED' && ev.data?.device === d.device.id) {
          vm.qmp.off('event', on);
          resolve();
        }
      };
      vm.qmp.on('event', on);
    });
    await vm.qmp.execute('device_del', { id: d.device.id });
    // the guest acknowledges the unplug (ACPI); without it the disk stays
    const ok = await Promise.race([gone.then(() => true), sleep(30_000).then(() => false)]);
    if (!ok) throw unavailable(`media '${m.url}': the guest did not release the disk within 30 s`);
    await vm.qmp.execute('blockdev-del', { 'node-name': d.node });
    if (d.overlay) fs.rmSync(d.overlay, { force: true });
    vm.drives.splice(vm.drives.indexOf(d), 1);
  }

  async addNic(uuid: unknown, nic: Nic): Promise<void> {
    const vm = this.live(uuid);
    const i = vm.nics.length ? Math.max(...vm.nics.map((n) => Number(/n(\d+)$/.exec(n.tap)?.[1] ?? 0))) + 1 : 0;
    const n = await this.net.add(nic, vm.seq, i, vm.uuid, this.o.instance);
    try {
      await vm.qmp.execute('netdev_add', { type: 'tap', id: `net${i}`, ifname: n.tap, script: 'no', downscript: 'no' });
      await vm.qmp.execute('device_add', { driver: 'virtio-net-pci', id: `dev-net${i}`, netdev: `net${i}`, mac: n.mac });
    } catch (e) {
      await vm.qmp.execute('netdev_del', { id: `net${i}` }).catch(() => undefined);
      await this.net.removeTap(n.tap);
      throw e;
    }
    vm.nics.push(n);
    this.save(vm);
  }

  async removeNic(uuid: unknown, nic: Nic): Promise<void> {
    const vm = this.live(uuid);
    const n = vm.nics.find((x) => x.type === nic.type && (nic.hwaddr ? x.mac === nic.hwaddr : true) && (nic.id ? x.id === nic.id : true));
    if (!n) throw notFound(`vm '${vm.spec.name}' has no such nic (type ${nic.type}${nic.id ? `, id ${nic.id}` : ''}${nic.hwaddr ? `, hwaddr ${nic.hwaddr}` : ''})`);
    const i = /n(\d+)$/.exec(n.tap)![1];
    await vm.qmp.execute('device_del', { id: `dev-net${i}` });
    for (let k = 0; k < 100; k++) {
      const devs = (await vm.qmp.execute('qom-list', { path: '/machine/peripheral' })) as { name: string }[];
      if (!devs.some((d) => d.name === `dev-net${i}`)) break;
      await sleep(100);
    }
    await vm.qmp.execute('netdev_del', { id: `net${i}` }).catch(() => undefined);
    await this.net.removeTap(n.tap);
    vm.nics.splice(vm.nics.indexOf(n), 1);
    this.save(vm);
  }

  async limitDiskIo(uuid: unknown, url: string, tune: Record<string, number>): Promise<void> {
    const vm = this.live(uuid);
    const d = vm.drives.find((x) => x.url === url);
    if (!d) throw notFound(`media '${url}' is not attached to vm '${vm.spec.name}'`);
    // the guest device's QOM path (virtio-blk keeps its backend one level down)
    const id = d.cdrom ? String(d.device.id) : `/machine/peripheral/${String(d.device.id)}/virtio-backend`;
    await vm.qmp.execute('block_set_io_throttle', { id, bps: 0, bps_rd: 0, bps_wr: 0, iops: 0, iops_rd: 0, iops_wr: 0, ...tune });
  }

  async info(uuid: unknown): Promise<Record<string, unknown>> {
    const vm = this.live(uuid);
    const cpus = (await vm.qmp.execute('query-cpus-fast')) as { 'thread-id': number }[];
    const blocks = (await vm.qmp.execute('query-blockstats')) as { qdev?: string; 'node-name'?: string; stats: Record<string, number> }[];
    const Vcpu = cpus.map((c) => ({ State: vm.state === 'running' ? 1 : 3, Time: threadTime(vm.child?.pid, c['thread-id']) }));
    const Net = vm.nics.map((n) => ({ Name: n.tap, ...tapCounters(n.tap) }));
    const Block = blocks.map((b) => {
      const d = vm.drives.find((x) => x.node === b['node-name'] || (b.qdev ?? '').includes(`/${String(x.device.id)}/`) || b.qdev === x.device.id);
      return { Name: d?.target ?? String(b.qdev ?? b['node-name'] ?? ''), RdBytes: b.stats.rd_bytes, RdTimes: b.stats.rd_operations, WrBytes: b.stats.wr_bytes, WrTimes: b.stats.wr_operations };
    });
    return { Vcpu, Net, Block };
  }

  /** I/O limits in force per disk target (query-block), for kvm.infops. */
  async throttles(uuid: unknown): Promise<Record<string, Record<string, number>>> {
    const vm = this.live(uuid);
    const blocks = (await vm.qmp.execute('query-block')) as { qdev?: string; inserted?: Record<string, unknown> & { 'node-name'?: string } }[];
    const out: Record<string, Record<string, number>> = {};
    for (const b of blocks) {
      const d = vm.drives.find((x) => (b.qdev ?? '').includes(String(x.device.id)));
      if (!d || !b.inserted) continue;
      const t: Record<string, number> = {};
      for (const k of ['bps', 'bps_rd', 'bps_wr', 'iops', 'iops_rd', 'iops_wr']) t[k] = Number(b.inserted[k] ?? 0);
      out[d.target] = t;
    }
    return out;
  }

  /** Live migration to a target prepared by kvm.prepare_migration_target; the source ends. */
  async migrate(uuid: unknown, desturi: string): Promise<void> {
    const vm = this.live(uuid);
    if (!/^(tcp:|unix:)/.test(desturi)) throw invalid(`desturi '${desturi}': expected tcp:<host>:<port> or unix:<path>`);
    await vm.qmp.execute('migrate', { uri: desturi });
    vm.state = 'migrating';
    for (;;) {
      const s = (await vm.qmp.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
      if (s.status === 'completed') break;
      if (s.status === 'failed' || s.status === 'cancelled') {
        await vm.qmp.execute('cont').catch(() => undefined);
        vm.state = 'running';
        throw unavailable(`migration to ${desturi} ${s.status}: ${s['error-desc'] ?? ''}`.trim());
      }
      await sleep(200);
    }
    await this.remove(vm);
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.vms.values()].map((v) => this.remove(v).catch((e: Error) => this.log(`vm ${v.spec.name}: ${e.message}`))));
    await this.net.teardown().catch(() => undefined);
  }
}

function threadTime(pid: number | undefined, tid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(parts[11]) + Number(parts[12])) * 1e7; // ticks (1/100 s) → ns
  } catch {
    return 0;
  }
}

function tapCounters(tap: string): Record<string, number> {
  const r = (k: string): number => {
    try {
      return Number(fs.readFileSync(`/sys/class/net/${tap}/statistics/${k}`, 'utf8'));
    } catch {
      return 0;
    }
  };
  // the tap's rx is what the guest sent: report from the guest's side like libvirt does
  return {
    RxBytes: r('tx_bytes'), RxPkts: r('tx_packets'), RxErrs: r('tx_errors'), RxDrop: r('tx_dropped'),
    TxBytes: r('rx_bytes'), TxPkts: r('rx_packets'), TxErrs: r('rx_errors'), TxDrop: r('rx_dropped'),
  };
}
