// Small /proc readers shared by process.list, job.list and core.state.
import { promises as fsp } from 'node:fs';
import { CommandError, type Place } from './types';

/** USER_HZ: what `getconf CLK_TCK` prints; 100 on every Linux architecture we run on. */
export const CLOCK_TICKS = 100;

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** the short name (`Name:` in status, the comm) */
  name: string;
  /** the arguments joined by spaces, as gopsutil does; "" for kernel threads */
  cmdline: string;
  /** start time, epoch milliseconds */
  createtime: number;
  /** cpu seconds spent in user and kernel mode */
  user: number;
  system: number;
  rss: number;
  vms: number;
  swap: number;
  /** pids of this process in each nested pid namespace, outermost first (`NSpid:`) */
  nspid: number[];
}

export interface Stats {
  /** cpu seconds (user + system) */
  cpu: number;
  rss: number;
  vms: number;
  swap: number;
}

let bootMs: number | null = null;

/** Boot time in epoch milliseconds (`btime` of /proc/stat). */
export async function bootTimeMs(): Promise<number> {
  if (bootMs === null) {
    const m = /^btime\s+(\d+)/m.exec(await fsp.readFile('/proc/stat', 'utf8'));
    bootMs = m ? Number(m[1]) * 1000 : 0;
  }
  return bootMs;
}

/** Every pid in the agent's /proc, ascending. */
export async function listPids(): Promise<number[]> {
  const names = await fsp.readdir('/proc');
  return names.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
}

/** A process's /proc record, or null when it is gone (or never existed). */
export async function procInfo(pid: number): Promise<ProcInfo | null> {
  let stat: string, status: string, cmdline: string;
  try {
    [stat, status, cmdline] = await Promise.all([
      fsp.readFile(`/proc/${pid}/stat`, 'utf8'),
      fsp.readFile(`/proc/${pid}/status`, 'utf8'),
      fsp.readFile(`/proc/${pid}/cmdline`, 'utf8'),
    ]);
  } catch {
    return null;
  }
  // the comm (field 2) is in parentheses and may itself hold spaces and ')'
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): field n is f[n - 3]
  const field = (n: number) => Number(f[n - 3]) || 0;
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  };
  const nspid = /^NSpid:\s+(.*)$/m.exec(status);
  return {
    pid,
    ppid: field(4),
    name: /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '',
    cmdline: cmdline.replace(/\0+$/, '').split('\0').join(' '),
    createtime: Math.round((await bootTimeMs()) + (field(22) * 1000) / CLOCK_TICKS),
    user: field(14) / CLOCK_TICKS,
    system: field(15) / CLOCK_TICKS,
    rss: kb('VmRSS'),
    vms: kb('VmSize'),
    swap: kb('VmSwap'),
    nspid: nspid ? nspid[1].trim().split(/\s+/).map(Number) : [pid],
  };
}

/** cpu seconds and memory bytes of one process, or null when it is gone. */
export async function procStats(pid: number): Promise<Stats | null> {
  const p = await procInfo(pid);
  return p && { cpu: p.user + p.system, rss: p.rss, vms: p.vms, swap: p.swap };
}

/** The sum of procStats over pids; vanished pids count as zero. */
export async function sumStats(pids: Iterable<number>): Promise<Stats> {
  const all = await Promise.all([...pids].map(procStats));
  const sum: Stats = { cpu: 0, rss: 0, vms: 0, swap: 0 };
  for (const s of all) {
    if (!s) continue;
    sum.cpu += s.cpu;
    sum.rss += s.rss;
    sum.vms += s.vms;
    sum.swap += s.swap;
  }
  return sum;
}

/** Inode of a process's pid namespace (what `readlink /proc/<pid>/ns/pid` shows), or null. */
export async function pidNamespace(pid: number): Promise<number | null> {
  try {
    return (await fsp.stat(`/proc/${pid}/ns/pid`)).ino;
  } catch {
    return null;
  }
}

/**
 * The host pid of a container place's PID 1, parsed from its root (`/proc/<pid1>/root`);
 * null for the host (container 0).
 */
export function placeInit(place: Place): number | null {
  if (place.container === 0) return null;
  const m = /^\/proc\/(\d+)\/root\/?$/.exec(place.root);
  if (!m) throw new CommandError('internal', `container ${place.container}: root '${place.root}' is not /proc/<pid>/root`);
  return Number(m[1]);
}

/**
 * The processes of a place: host pid → pid as seen inside the place. On the host every pid of
 * /proc maps to itself; in a container, the processes sharing the pid namespace of its PID 1.
 */
export async function placePids(place: Place): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  const init = placeInit(place);
  const pids = await listPids();
  if (init === null) {
    for (const pid of pids) out.set(pid, pid);
    return out;
  }
  const ns = await pidNamespace(init);
  if (ns === null) throw new CommandError('internal', `container ${place.container}: its init (pid ${init}) is gone`);
  await Promise.all(
    pids.map(async (pid) => {
      if ((await pidNamespace(pid)) !== ns) return;
      const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      const m = /^NSpid:\s+(.*)$/m.exec(status);
      if (m) out.set(pid, Number(m[1].trim().split(/\s+/).pop()));
    }),
  );
  return new Map([...out].sort((a, b) => a[0] - b[0]));
}
