// One container's record: the create arguments as checked, what it holds while it runs, and the
// state file (<dataDir>/<id>/state.json) naming what it holds, written before each resource is
// taken so a later agent can sweep what a crashed one left.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Lease } from '../../mountd';
import { startTime } from '../../mountd/owner';
import type { Tags } from '../types';
import type { Cgroup, Limits } from './cgroup';
import type { Forward } from './ports';

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
  /** as in job.list: a string, empty */
  debug: string;
  container: { arguments: CreateArgs; root: string; pid: number; starttime: number; entrypoint?: string[] };
}

/** The checked create arguments: what start() does. */
export interface Plan {
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

/** What a crash sweep needs, written before each resource is taken. */
export interface State {
  id: number;
  /** the agent that made it: pid and start time (a live owner's containers are not swept) */
  agent: { pid: number; start: string };
  cgroup?: string;
  /** per-container `g8os mount` processes of agents before the mount service (swept only) */
  mounts?: { target: string; backend: string; pid?: number }[];
  /** the g8init watcher and PID 1 (host pids) */
  g8init?: number;
  pid1?: number;
  veths: string[];
  forwards: number[];
}

export class Container {
  state: State;
  args!: CreateArgs;
  tags: string[] = [];
  env: Record<string, string> = {};
  entrypoint?: string[];
  cgroup?: Cgroup;
  /** its root's and flist mounts' lowers, from the mount service */
  leases: Lease[] = [];
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
    this.state = { id, agent: { pid: process.pid, start: startTime(process.pid) }, veths: [], forwards: [] };
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

/** A container directory's state file, or undefined (made and not yet recorded). */
export function readState(dir: string): State | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as State;
  } catch {
    return undefined;
  }
}

export { startTime };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether the process runs the given command line words (a pid from a state file may be reused). */
export function runs(pid: number | undefined, ...words: string[]): pid is number {
  if (!pid) return false;
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return words.every((w) => argv.some((a) => a.includes(w)));
  } catch {
    return false;
  }
}

/** Waits until the pid is gone or a zombie; false when it is still there after `ms`. */
export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!fs.existsSync(`/proc/${pid}`) || /\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true;
    await sleep(20);
  }
  return false;
}
