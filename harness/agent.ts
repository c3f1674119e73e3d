// `g8os agent` (node agent + its own redis-server) with its data where the caller says,
// optionally inside a network namespace; reached by its unix socket from any namespace.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { log, onCleanup, sleepSync } from './cleanup';
import { type Daemon, type Exit, startDaemon } from './daemon';
import { G8OS } from './paths';
import { freePort } from './ports';
import { cmdline, procStatus } from './procs';

export interface AgentOptions {
  data: string;
  port?: number;
  /** its block cache (--cache) */
  cache?: string;
  args?: string[];
  password?: string;
  config?: string;
  netns?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** stop() also removes what the agent left (its redis-server, container cgroups), with a log line */
  sweepOnStop?: boolean;
}

export interface Agent {
  data: string;
  /** unix socket of the bus (reachable from any network namespace) */
  socket: string;
  /** redis://127.0.0.1:port (only from the namespace the agent runs in) */
  url: string;
  port: number;
  netns?: string;
  daemon: Daemon;
  pid: number;
  log(): string;
  /** the agent process's VmHWM / VmRSS, MiB */
  memory(field: 'VmHWM' | 'VmRSS'): number;
  redisPid(): number;
  /** SIGTERM, SIGKILL of all it started after 60 s */
  stop(): Promise<Exit>;
  /** SIGKILL (a crash: its redis-server and containers outlive it) */
  kill(): Promise<Exit>;
  /** Kills a leftover redis-server, removes leftover container cgroups (also done on exit); returns the cgroups found. */
  sweep(): string[];
}

/** The redis-server of an agent that was SIGKILLed outlives it. */
export function killLeftoverRedis(data: string): void {
  try {
    const pid = Number(fs.readFileSync(path.join(data, 'redis.pid'), 'utf8'));
    if (cmdline(pid).join(' ').includes('redis-server')) process.kill(pid, 'SIGKILL');
  } catch {
    // none left
  }
}

/** The cgroup name prefix of an agent's containers (src/agent/agent.ts: g8os-<sha1(data dir)>). */
export const cgroupInstance = (data: string): string => `g8os-${crypto.createHash('sha1').update(data).digest('hex').slice(0, 8)}`;

/** Container cgroups of that agent still present (agents nest theirs under their own cgroup, i.e. ours). */
export function agentCgroups(data: string): string[] {
  const prefix = `${cgroupInstance(data)}-c`;
  const out = new Set<string>();
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, names, p] = line.split(':');
    for (const name of names?.split(',') ?? []) {
      if (!name || name.startsWith('name=')) continue;
      const dir = path.join('/sys/fs/cgroup', name, p || '/', 'g8os');
      try {
        for (const e of fs.readdirSync(dir)) if (e.startsWith(prefix)) out.add(fs.realpathSync(path.join(dir, e)));
      } catch {
        // no such controller or nothing there
      }
    }
  }
  return [...out];
}

/** Kills what is left in those cgroups and removes them (after an agent was killed). */
export function removeCgroups(dirs: string[]): void {
  for (const d of dirs) {
    for (let i = 0; i < 20; i++) {
      try {
        for (const pid of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
        fs.rmdirSync(d);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') break;
        sleepSync(50);
      }
    }
  }
}

export async function startAgent(opts: AgentOptions): Promise<Agent> {
  const { data } = opts;
  fs.mkdirSync(data, { recursive: true });
  const port = opts.port ?? (await freePort());
  const sweepNow = (): string[] => {
    killLeftoverRedis(data);
    const left = agentCgroups(data);
    removeCgroups(left);
    return left;
  };
  const unregister = onCleanup(() => void sweepNow());
  let d: Daemon | undefined;
  const sweep = (): string[] => {
    const left = sweepNow();
    if (d && !d.alive()) unregister(); // nothing more can appear
    return left;
  };
  const args = [G8OS, 'agent', '--data', data, '--redis-port', String(port)];
  if (opts.cache) args.push('--cache', opts.cache);
  args.push(...(opts.args ?? []));
  if (opts.password) args.push('--password', opts.password);
  if (opts.config) args.push('--config', opts.config);
  try {
    d = await startDaemon({ label: 'g8os agent', cmd: process.execPath, args, env: opts.env, netns: opts.netns, ready: 'agent ready', timeoutMs: opts.timeoutMs ?? 60_000, graceMs: 60_000 });
  } catch (e) {
    killLeftoverRedis(data);
    unregister();
    throw e;
  }
  const daemon = d;
  return {
    data,
    socket: path.join(data, 'redis.sock'),
    url: `redis://127.0.0.1:${port}`,
    port,
    netns: opts.netns,
    daemon,
    pid: daemon.pid,
    log: daemon.log,
    memory: (field) => procStatus(daemon.pid, field),
    redisPid() {
      try {
        return Number(fs.readFileSync(path.join(data, 'redis.pid'), 'utf8'));
      } catch {
        return NaN;
      }
    },
    async stop() {
      const exit = await daemon.stop();
      if (opts.sweepOnStop) {
        const left = sweep();
        if (left.length) log(`agent: ${left.length} container cgroups left after the agent stopped; removing them`);
      }
      return exit;
    },
    kill: () => daemon.kill(),
    sweep,
  };
}
