// The qemu-system-x86_64 process of one VM: its command line, the accelerator probe.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unavailable } from '../errors';
import { deviceArg, type Drive } from './media';
import type { NicState } from './net';

export const QEMU = 'qemu-system-x86_64';

export interface Boot {
  kernel: string;
  initrd?: string;
  cmdline?: string;
}

export interface QemuSpec {
  uuid: string;
  name: string;
  cpu: number;
  memory: number;
  accel: 'kvm' | 'tcg';
  qmp: string;
  serial: string;
  vnc: number;
  drives: Drive[];
  nics: NicState[];
  boot?: Boot;
  /** migration target: wait for migrate-incoming */
  incoming?: boolean;
}

/** Where qemu is on PATH, or a one-line error. */
export function findQemu(envPath = process.env.PATH ?? ''): string {
  for (const d of envPath.split(':')) {
    const f = path.join(d || '.', QEMU);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      // next
    }
  }
  throw unavailable(`${QEMU} is not installed (not found on PATH)`);
}

export function qemuArgs(s: QemuSpec): string[] {
  const a = [
    '-name', `${s.name},process=g8vm-${s.uuid.slice(0, 8)}`, '-uuid', s.uuid,
    '-machine', 'pc', '-accel', s.accel, '-cpu', s.accel === 'kvm' ? 'host' : 'max',
    '-smp', String(s.cpu), '-m', String(s.memory),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-qmp', `unix:${s.qmp},server=on,wait=off`,
    '-chardev', `file,id=serial0,path=${s.serial},append=on`, '-serial', 'chardev:serial0',
    '-vnc', s.vnc >= 5900 ? `127.0.0.1:${s.vnc - 5900}` : 'none',
  ];
  if (s.boot) {
    a.push('-kernel', s.boot.kernel);
    if (s.boot.initrd) a.push('-initrd', s.boot.initrd);
    a.push('-append', s.boot.cmdline ?? 'console=ttyS0');
  }
  for (const d of s.drives) a.push('-blockdev', JSON.stringify(d.blockdev), '-device', deviceArg(d.device));
  s.nics.forEach((n, i) => {
    a.push('-netdev', `tap,id=net${i},ifname=${n.tap},script=no,downscript=no`, '-device', `virtio-net-pci,id=dev-net${i},netdev=net${i},mac=${n.mac}`);
  });
  if (s.incoming) a.push('-incoming', 'defer');
  return a;
}

/**
 * KVM or TCG. /dev/kvm may exist and still not boot Linux (nested virtualisation without the
 * needed CPU features, disks-vms.md §7.4): boot the host kernel under KVM for a few seconds and
 * use KVM only if it printed its banner. Cached per boot of the host (keyed by boot id).
 */
export async function probeAccel(qemu: string, log: (l: string) => void): Promise<'kvm' | 'tcg'> {
  const forced = process.env.G8OS_VM_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  if (!fs.existsSync('/dev/kvm')) return 'tcg';
  const kernel = fs.readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')).sort().pop();
  if (!kernel) return 'tcg';
  let bootId = 'unknown';
  try {
    bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // no procfs entry
  }
  const cache = path.join(os.tmpdir(), `g8os-kvm-probe-${bootId}`);
  try {
    const v = fs.readFileSync(cache, 'utf8').trim();
    if (v === 'kvm' || v === 'tcg') return v;
  } catch {
    // not probed yet
  }
  const ok = await new Promise<boolean>((resolve) => {
    const child = spawn(qemu, ['-accel', 'kvm', '-cpu', 'host', '-m', '128', '-nodefaults', '-display', 'none', '-no-reboot',
      '-serial', 'stdio', '-kernel', path.join('/boot', kernel), '-append', 'console=ttyS0 panic=-1'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    const done = (v: boolean): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 5000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Linux version')) done(true);
    });
    child.on('error', () => done(false));
    child.on('exit', () => done(out.includes('Linux version')));
  });
  const accel = ok ? 'kvm' : 'tcg';
  log(`vm accelerator: ${accel}${ok ? '' : ' (KVM did not boot a Linux kernel)'}`);
  try {
    fs.writeFileSync(cache, accel);
  } catch {
    // probe again next time
  }
  return accel;
}

/** Total memory of the host in MiB. */
export const hostMemoryMiB = (): number => Math.floor(os.totalmem() / 2 ** 20);

/** A qemu process's command line contains this VM's uuid (before signalling a pid from a state file). */
export function isOurQemu(pid: number, uuid: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(uuid);
  } catch {
    return false;
  }
}

export function qemuVersion(qemu: string): string {
  return execFileSync(qemu, ['--version'], { encoding: 'utf8' }).split('\n')[0];
}
