// Per-container cgroup v1 directories: <controller mount><agent's own cgroup>/g8os/<name>.
// Nested under the agent's own cgroup (the root on a real node), so a parent's limits still
// hold for containers when the agent itself runs confined.
import fs from 'node:fs';
import path from 'node:path';

const BASE = '/sys/fs/cgroup';
/** cpuacct only for the usage figure; devices only for unprivileged containers. */
const CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'devices'] as const;
type Controller = (typeof CONTROLLERS)[number];

export interface Limits {
  /** memory.limit_in_bytes */
  memory?: number;
  /** cpu.shares (relative weight, default 1024) */
  cpu?: number;
  /** CPU time bound in cores (cfs quota), e.g. 0.5 */
  cpus?: number;
  /** pids.max */
  pids?: number;
}

/**
 * The devices an unprivileged container may use (core0-protocol.md §10.6): null, zero, full,
 * random, urandom, tty, console, ptmx, pts, tun, and mknod of any char device.
 */
const ALLOWED_DEVICES = [
  'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm',
  'c 136:* rwm', 'c 10:200 rwm', 'c *:* m',
];

/** Where the agent itself sits in a controller's hierarchy (from /proc/self/cgroup). */
function ownPath(controller: Controller): string {
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, names, p] = line.split(':');
    if (names?.split(',').includes(controller)) return p || '/';
  }
  return '/';
}

/** The directory that holds every container cgroup of one controller. */
export function parentDir(controller: Controller): string {
  return path.join(BASE, controller, ownPath(controller), 'g8os');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Cgroup {
  readonly dirs: Record<Controller, string>;

  constructor(readonly name: string, readonly devices: boolean) {
    this.dirs = Object.fromEntries(CONTROLLERS.map((c) => [c, path.join(parentDir(c), name)])) as Record<Controller, string>;
  }

  private get used(): Controller[] {
    return CONTROLLERS.filter((c) => c !== 'devices' || this.devices);
  }

  /** The cgroup.procs files a process writes its pid into to join. */
  get procs(): string[] {
    return this.used.map((c) => path.join(this.dirs[c], 'cgroup.procs'));
  }

  create(limits: Limits, pidsMax: number): void {
    for (const c of this.used) {
      // e.g. under `ip netns exec`, which mounts a fresh /sys without the cgroup hierarchies
      if (!fs.existsSync(path.join(BASE, c, 'cgroup.procs'))) throw new Error(`the cgroup v1 controller '${c}' is not mounted at ${path.join(BASE, c)}`);
      // another agent may remove the shared g8os directory between our two mkdirs: retry
      for (let i = 0; ; i++) {
        try {
          fs.mkdirSync(this.dirs[c], { recursive: true });
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || i === 3) throw e;
        }
      }
    }
    const set = (c: Controller, file: string, value: string | number): void => {
      try {
        fs.writeFileSync(path.join(this.dirs[c], file), `${value}\n`);
      } catch (e) {
        throw new Error(`cgroup ${c} ${file}=${value}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    };
    set('pids', 'pids.max', limits.pids ?? pidsMax);
    if (limits.memory !== undefined) set('memory', 'memory.limit_in_bytes', limits.memory);
    if (limits.cpu !== undefined) set('cpu', 'cpu.shares', limits.cpu);
    if (limits.cpus !== undefined) {
      const period = 100_000;
      set('cpu', 'cpu.cfs_period_us', period);
      set('cpu', 'cpu.cfs_quota_us', Math.max(1000, Math.round(limits.cpus * period)));
    }
    if (this.devices) {
      set('devices', 'devices.deny', 'a');
      for (const d of ALLOWED_DEVICES) set('devices', 'devices.allow', d);
    }
  }

  /** Memory and CPU figures; zeros when the cgroup is gone. */
  stats(): { memory: number; rss: number; swap: number; cpuNs: number } {
    const read = (c: Controller, f: string): string => {
      try {
        return fs.readFileSync(path.join(this.dirs[c], f), 'utf8');
      } catch {
        return '';
      }
    };
    const stat = new Map(read('memory', 'memory.stat').split('\n').map((l) => l.split(' ') as [string, string]));
    return {
      memory: Number(read('memory', 'memory.usage_in_bytes')) || 0,
      rss: Number(stat.get('total_rss')) || 0,
      swap: Number(stat.get('total_swap')) || 0,
      cpuNs: Number(read('cpuacct', 'cpuacct.usage')) || 0,
    };
  }

  /** Host pids still in the container's pids cgroup. */
  tasks(): number[] {
    try {
      return fs.readFileSync(path.join(this.dirs.pids, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /** Kills what is left in the cgroup and removes its directories (retrying while tasks die). */
  async remove(timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (const c of CONTROLLERS) {
      const dir = this.dirs[c];
      for (;;) {
        if (!fs.existsSync(dir)) break;
        try {
          for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              // already gone
            }
          }
          fs.rmdirSync(dir);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (Date.now() > until) throw new Error(`cannot remove cgroup ${dir}: ${code ?? (e as Error).message}`);
          await sleep(50);
        }
      }
      // the shared g8os directory goes too once empty (another agent may still use it: EBUSY)
      try {
        fs.rmdirSync(path.dirname(dir));
      } catch {
        // in use or gone
      }
    }
  }
}

/** Cgroups named <prefix>… left by an agent that died (their names, devices or not). */
export function leftovers(prefix: string): string[] {
  const names = new Set<string>();
  for (const c of CONTROLLERS) {
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(parentDir(c));
    } catch {
      continue;
    }
    for (const n of entries) if (n.startsWith(prefix)) names.add(n);
  }
  return [...names];
}
