// VM nics (disks-vms.md §1.3): one tap per nic. `default` = bridge kvm0 172.19.0.1/16, NAT and
// port forwards in our own nftables table `ip g8os-kvm`, dnsmasq with a static lease per VM
// sequence; `bridge` = an existing bridge named by id.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../agent/containers/net';
import { invalid, notFound } from '../errors';

export const BRIDGE = 'kvm0';
const TABLE = 'g8os-kvm';

export interface Nic {
  type: string;
  id?: string | null;
  hwaddr?: string | null;
}

/** A nic as set up for one VM. */
export interface NicState {
  type: string;
  id?: string | null;
  tap: string;
  mac: string;
  bridge: string;
  ip?: string;
}

const hex = (n: number): string => n.toString(16).padStart(2, '0');
/** MAC and address of VM sequence n (skips 0, 1, 0xffff upstream). */
export const seqMac = (n: number): string => `00:28:06:82:${hex(n >> 8)}:${hex(n & 0xff)}`;
export const seqIp = (n: number): string => `172.19.${n >> 8}.${n & 0xff}`;

async function linkExists(name: string): Promise<boolean> {
  return run('ip', ['link', 'show', 'dev', name]).then(() => true, () => false);
}

export class VmNet {
  private dnsmasq?: number;

  constructor(private readonly dir: string, private readonly log: (l: string) => void) {}

  private get hosts(): string {
    return path.join(this.dir, 'hosts.d');
  }

  private get pidFile(): string {
    return path.join(this.dir, 'dnsmasq.pid');
  }

  /** Bridge kvm0 with NAT and dnsmasq, made once per agent. */
  async ensureDefault(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    if (!(await linkExists(BRIDGE))) {
      await run('ip', ['-b', '-'], `link add ${BRIDGE} type bridge\naddr add 172.19.0.1/16 dev ${BRIDGE}\nlink set ${BRIDGE} up\n`);
      await run('nft', ['-f', '-'], [
        `add table ip ${TABLE}`,
        `add chain ip ${TABLE} pre { type nat hook prerouting priority dstnat; policy accept; }`,
        `add chain ip ${TABLE} out { type nat hook output priority -100; policy accept; }`,
        `add chain ip ${TABLE} post { type nat hook postrouting priority srcnat; policy accept; }`,
        `add rule ip ${TABLE} post ip saddr 172.19.0.0/16 ip daddr != 172.19.0.0/16 masquerade`,
        '',
      ].join('\n'));
      fs.writeFileSync('/proc/sys/net/ipv4/ip_forward', '1\n');
    }
    if (this.dnsmasq && alive(this.dnsmasq)) return;
    fs.mkdirSync(this.hosts, { recursive: true });
    const child = spawn('dnsmasq', [
      '--keep-in-foreground', '--conf-file=/dev/null', '--user=root', '--group=root', `--interface=${BRIDGE}`, '--bind-interfaces', '--except-interface=lo',
      '--port=0', '--dhcp-range=172.19.0.0,static,255.255.0.0,1h', `--dhcp-hostsdir=${this.hosts}`,
      `--dhcp-leasefile=${path.join(this.dir, 'leases')}`, `--pid-file=${this.pidFile}`, '--dhcp-option=3,172.19.0.1',
    ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => this.log(`dnsmasq: ${e.message}`));
    child.on('exit', (c) => c && this.log(`dnsmasq exited ${c}: ${err.trim().split('\n')[0]}`));
    child.unref();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    this.dnsmasq = child.pid;
  }

  /** A tap for one nic of VM `seq` (nic index i). */
  async add(nic: Nic, seq: number, i: number, uuid: string, instance: string): Promise<NicState> {
    let bridge: string;
    let ip: string | undefined;
    let mac = nic.hwaddr ?? undefined;
    if (nic.type === 'default') {
      await this.ensureDefault();
      bridge = BRIDGE;
      if (!mac) {
        mac = seqMac(seq);
        ip = seqIp(seq);
      }
    } else if (nic.type === 'bridge') {
      if (!nic.id) throw invalid("nic of type bridge needs 'id' (the bridge name)");
      if (!(await linkExists(nic.id))) throw notFound(`nic: no bridge named '${nic.id}'`);
      bridge = nic.id;
    } else throw invalid(`nic type '${nic.type}' is not supported (default or bridge)`);
    if (mac && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw invalid(`nic hwaddr '${mac}' is not a MAC address`);
    mac ??= seqMac(seq);
    // IFNAMSIZ: g8v + 4 of the agent's instance + sequence + n + index
    const tap = `g8v${instance.slice(-4)}${seq}n${i}`;
    await run('ip', ['-b', '-'], `tuntap add dev ${tap} mode tap\nlink set ${tap} master ${bridge}\nlink set ${tap} up\n`);
    if (ip) this.lease(uuid, mac, ip, true);
    return { type: nic.type, id: nic.id, tap, mac, bridge, ip };
  }

  /** One file per VM in dnsmasq's hosts directory (new files are read at once, removals on SIGHUP). */
  private lease(uuid: string, mac: string, ip: string, on: boolean): void {
    const f = path.join(this.hosts, uuid);
    if (on) {
      fs.mkdirSync(this.hosts, { recursive: true });
      fs.writeFileSync(f, `${mac},${ip}\n`);
    } else if (fs.existsSync(f)) {
      fs.rmSync(f);
      if (this.dnsmasq && alive(this.dnsmasq)) process.kill(this.dnsmasq, 'SIGHUP');
    }
  }

  /** host port → guest port on the VM's default address, until the VM stops. */
  async forward(uuid: string, ip: string, ports: Record<string, number>): Promise<void> {
    const c = `comment "g8os vm ${uuid}"`;
    const rules = Object.entries(ports).flatMap(([h, g]) => [
      `add rule ip ${TABLE} pre tcp dport ${Number(h)} dnat to ${ip}:${Number(g)} ${c}`,
      `add rule ip ${TABLE} out ip daddr 127.0.0.1 tcp dport ${Number(h)} dnat to ${ip}:${Number(g)} ${c}`,
    ]);
    if (rules.length) await run('nft', ['-f', '-'], `${rules.join('\n')}\n`);
  }

  async removeTap(tap: string): Promise<void> {
    await run('ip', ['link', 'del', tap]).catch(() => undefined);
  }

  /** Removes a VM's taps, lease and forwards (each step on its own: a gone tap is fine). */
  async remove(uuid: string, nics: NicState[]): Promise<void> {
    for (const n of nics) await run('ip', ['link', 'del', n.tap]).catch(() => undefined);
    if (fs.existsSync(this.hosts)) this.lease(uuid, '', '', false);
    try {
      const doc = JSON.parse(await run('nft', ['-j', '-a', 'list', 'table', 'ip', TABLE])) as { nftables: { rule?: { chain: string; handle: number; comment?: string } }[] };
      const mine = doc.nftables.flatMap((x) => (x.rule?.comment === `g8os vm ${uuid}` ? [x.rule] : []));
      if (mine.length) await run('nft', ['-f', '-'], mine.map((r) => `delete rule ip ${TABLE} ${r.chain} handle ${r.handle}\n`).join(''));
    } catch {
      // no table: nothing of ours
    }
  }

  /** Everything of the default network (agent stop or sweep). */
  async teardown(): Promise<void> {
    // only what this agent made (another agent in the namespace may own kvm0)
    if (!fs.existsSync(this.dir) && !this.dnsmasq) return;
    const pid = this.dnsmasq ?? readPid(this.pidFile);
    if (pid && alive(pid)) process.kill(pid, 'SIGTERM');
    this.dnsmasq = undefined;
    await run('nft', ['delete', 'table', 'ip', TABLE]).catch(() => undefined);
    if (await linkExists(BRIDGE)) await run('ip', ['link', 'del', BRIDGE]).catch(() => undefined);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function readPid(file: string): number | undefined {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
