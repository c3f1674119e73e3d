// DHCP on a bridge (bridge.create with network mode dnsmasq, core0-protocol.md §9.7): one
// supervised dnsmasq per bridge, DHCP only (no DNS), its lease and pid files in the agent's data
// dir. Restarted when it dies; stopped, and its files removed, with the bridge.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CommandError } from '../types';
import { type Cidr, ipNum, ipText, mask, parseCidr } from './net';

export interface DhcpRange {
  start: string;
  end: string;
}

/** Checks start..end against the bridge's cidr; the netmask dnsmasq is told. */
export function checkRange(cidr: string, r: DhcpRange, names: DhcpRange = { start: 'network.settings.start', end: 'network.settings.end' }): string {
  let c: Cidr;
  try {
    c = parseCidr(cidr);
  } catch (e) {
    throw new CommandError('invalid', `argument 'network.settings.cidr': ${(e as Error).message}`);
  }
  const m = mask(c.prefix);
  const net = (c.ip & m) >>> 0;
  const last = (net | ~m) >>> 0;
  const ips: number[] = [];
  for (const k of ['start', 'end'] as const) {
    const ip = ipNum(r[k]);
    if (ip === undefined) throw new CommandError('invalid', `argument '${names[k]}': '${r[k]}' is not an IPv4 address`);
    if (ip <= net || ip >= last) throw new CommandError('invalid', `argument '${names[k]}': ${r[k]} is not a host address of ${cidr}`);
    if (ip === c.ip) throw new CommandError('invalid', `argument '${names[k]}': ${r[k]} is the bridge's own address`);
    ips.push(ip);
  }
  if (ips[0] > ips[1]) throw new CommandError('invalid', `argument 'network.settings': start ${r.start} is after end ${r.end}`);
  if (c.ip >= ips[0] && c.ip <= ips[1]) throw new CommandError('invalid', `argument 'network.settings': the range ${r.start}-${r.end} holds the bridge's own address`);
  return ipText(m);
}

const RESTART_MS = 1000;
/** more restarts than this within a minute: it cannot run, give up */
const MAX_RESTARTS = 10;

export class Dnsmasq {
  private child?: ChildProcess;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private starts: number[] = [];

  constructor(readonly bridge: string, readonly dir: string, private readonly range: DhcpRange & { netmask: string }, private readonly log: (l: string) => void) {}

  get leases(): string {
    return path.join(this.dir, `${this.bridge}.leases`);
  }

  get pidFile(): string {
    return path.join(this.dir, `${this.bridge}.pid`);
  }

  /** static hosts (bridge.add_host): `mac,ip` lines, re-read on SIGHUP */
  get hostsFile(): string {
    return path.join(this.dir, `${this.bridge}.hosts`);
  }

  /** A static lease: `mac` always gets `ip` (an address of the bridge's network). */
  addHost(mac: string, ip: string, cidr: string): void {
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw new CommandError('invalid', `argument 'mac': '${mac}' is not a MAC address`);
    checkRange(cidr, { start: ip, end: ip }, { start: 'ip', end: 'ip' });
    const lines = fs.readFileSync(this.hostsFile, 'utf8').split('\n').filter(Boolean);
    const other = lines.find((l) => l.split(',')[1] === ip && l.split(',')[0] !== mac.toLowerCase());
    if (other) throw new CommandError('conflict', `${ip} is already the static address of ${other.split(',')[0]}`);
    const next = [...lines.filter((l) => l.split(',')[0] !== mac.toLowerCase()), `${mac.toLowerCase()},${ip}`];
    fs.writeFileSync(this.hostsFile, `${next.join('\n')}\n`);
    this.child?.kill('SIGHUP');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts dnsmasq; rejects (one line, its own complaint) when it exits at once. */
  async start(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    fs.writeFileSync(this.hostsFile, '');
    const child = this.spawn();
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const early = (code: number | null): void => {
        clearTimeout(t);
        const line = err.split('\n').map((l) => l.replace(/^dnsmasq:\s*/, '').trim()).find(Boolean) ?? `exit ${code}`;
        reject(new CommandError('invalid', `dnsmasq on ${this.bridge}: ${line}`));
      };
      // dnsmasq checks its options and binds before it settles; an exit within this window is a refusal
      const t = setTimeout(() => {
        child.off('exit', early);
        this.watch(child);
        resolve();
      }, 300);
      child.once('exit', early);
      child.once('error', (e) => {
        clearTimeout(t);
        reject(new CommandError('unavailable', `dnsmasq: ${e.message}`));
      });
    });
  }

  private spawn(): ChildProcess {
    this.starts = [...this.starts.filter((t) => t > Date.now() - 60_000), Date.now()];
    const r = this.range;
    const child = spawn('dnsmasq', [
      '--keep-in-foreground', '--conf-file=/dev/null', '--port=0', '--user=root', '--log-facility=-',
      `--interface=${this.bridge}`, '--bind-interfaces', '--except-interface=lo', '--dhcp-authoritative',
      `--dhcp-range=${r.start},${r.end},${r.netmask},1h`, `--dhcp-leasefile=${this.leases}`, `--pid-file=${this.pidFile}`, `--dhcp-hostsfile=${this.hostsFile}`,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    return child;
  }

  private watch(child: ChildProcess): void {
    child.stderr!.resume();
    child.once('exit', (code, signal) => {
      if (this.stopped || this.child !== child) return;
      if (this.starts.length >= MAX_RESTARTS) {
        this.log(`dnsmasq on ${this.bridge}: exited (${signal ?? code}) ${MAX_RESTARTS} times within a minute; not restarted`);
        return;
      }
      this.log(`dnsmasq on ${this.bridge}: exited (${signal ?? code}); restarting`);
      this.timer = setTimeout(() => {
        if (this.stopped) return;
        const next = this.spawn();
        next.once('error', (e) => this.log(`dnsmasq on ${this.bridge}: ${e.message}`));
        this.watch(next);
      }, RESTART_MS);
    });
  }

  /** Stops it for good and removes its files. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    for (const f of [this.leases, this.pidFile, this.hostsFile]) fs.rmSync(f, { force: true });
  }
}

/** Stops the dnsmasq processes a crashed agent left (by their pid files) and removes their files. */
export function sweepDnsmasq(dir: string, log: (l: string) => void): void {
  if (!fs.existsSync(dir)) return;
  for (const name of fs.readdirSync(dir)) {
    const file = path.join(dir, name);
    if (name.endsWith('.pid')) {
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      try {
        const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmd.startsWith('dnsmasq') && cmd.includes(file)) {
          process.kill(pid, 'SIGKILL');
          log(`dnsmasq: stopped ${pid} left by a previous agent`);
        }
      } catch {
        // not running any more
      }
    }
    fs.rmSync(file, { force: true });
  }
}
