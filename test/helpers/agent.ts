// Starts a real agent process (bin/g8os agent, with its own real redis-server) for tests,
// optionally inside a network namespace the test creates, so containers' bridge, veths and
// nftables rules never touch the host's network.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { Client } from '../../src/agent/client';
import { readMounts } from '../../src/fs/mount-table';
import { BIN } from './cli';
import { freePort } from './redis';

export interface AgentProcess {
  data: string;
  /** unix socket of the bus (reachable from any network namespace) */
  socket: string;
  /** redis://127.0.0.1:port (only from the namespace the agent runs in) */
  url: string;
  port: number;
  netns?: string;
  child: ChildProcess;
  log(): string;
  /** a connected client (closed after the file) */
  client(password?: string): Promise<Client>;
  stop(): Promise<void>;
  /** SIGKILL (crash simulation) */
  kill(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/** A network namespace for this test file, deleted after it. */
export function makeNetns(tag: string): string {
  const name = `g8t-${tag}-${process.pid}`;
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  cleanups.push(() => {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });
  return name;
}

/** What an agent's containers leave behind: mounts under its data dir, veths in its namespace, cgroups, container dirs. */
export function leftovers(a: Pick<AgentProcess, 'data' | 'netns'>): string[] {
  const out: string[] = [];
  for (const m of readMounts()) if (m.mountPoint.startsWith(`${a.data}/`)) out.push(`mount ${m.mountPoint}`);
  const links = execFileSync('ip', [...(a.netns ? ['-n', a.netns] : []), '-o', 'link'], { encoding: 'utf8' });
  for (const l of links.split('\n')) if (/\bg8c/.test(l)) out.push(`link ${l.split(':')[1].trim()}`);
  const instance = `g8os-${crypto.createHash('sha1').update(a.data).digest('hex').slice(0, 8)}-c`;
  for (const ctl of ['pids', 'memory', 'cpu']) {
    const dir = `/sys/fs/cgroup/${ctl}/g8os`;
    if (fs.existsSync(dir)) for (const n of fs.readdirSync(dir)) if (n.startsWith(instance)) out.push(`cgroup ${ctl}/${n}`);
  }
  const cdir = path.join(a.data, 'containers');
  if (fs.existsSync(cdir)) for (const n of fs.readdirSync(cdir)) out.push(`dir ${n}`);
  return out;
}

/** The redis-server of an agent that was SIGKILLed outlives it. */
export function killLeftoverRedis(data: string): void {
  try {
    const pid = Number(fs.readFileSync(path.join(data, 'redis.pid'), 'utf8'));
    if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('redis-server')) process.kill(pid, 'SIGKILL');
  } catch {
    // none left
  }
}

/**
 * Runs argv inside the namespace (or directly without one). nsenter, not `ip netns exec`: that
 * one also remounts /sys, which hides the cgroup hierarchies the agent needs.
 */
export function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ['nsenter', `--net=/run/netns/${netns}`, '--', ...argv] : argv;
}

export async function startAgent(opts: { data?: string; port?: number; args?: string[]; netns?: string; password?: string; config?: string; env?: NodeJS.ProcessEnv } = {}): Promise<AgentProcess> {
  let data = opts.data;
  if (!data) {
    data = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-agent-'));
    const d = data;
    cleanups.push(() => {
      killLeftoverRedis(d);
      fs.rmSync(d, { recursive: true, force: true });
    });
  }
  const port = opts.port ?? (await freePort());
  const args = [BIN, 'agent', '--data', data, '--redis-port', String(port), ...(opts.args ?? [])];
  if (opts.password) args.push('--password', opts.password);
  if (opts.config) args.push('--config', opts.config);
  const argv = inNetns(opts.netns, [process.execPath, ...args]);
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start within 30 s:\n${out}`)), 30_000);
    const check = (): void => {
      if (out.includes('agent ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited (${code}) before it was ready:\n${out}`));
    });
  });
  const clients: Client[] = [];
  const socket = path.join(data, 'redis.sock');
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const agent: AgentProcess = {
    data,
    socket,
    url: `redis://127.0.0.1:${port}`,
    port,
    netns: opts.netns,
    child,
    log: () => out,
    async client(password = opts.password) {
      const c = await new Client(socket, password).open();
      clients.push(c);
      return c;
    },
    async stop() {
      clients.forEach((c) => c.close());
      if (alive()) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
        await exited;
        clearTimeout(t);
      }
    },
    async kill() {
      clients.forEach((c) => c.close());
      if (alive()) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  cleanups.push(() => agent.stop());
  return agent;
}
