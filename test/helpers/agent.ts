// A real agent process (bin/g8os agent, with its own real redis-server) for tests
// (harness/agent.ts), optionally inside a network namespace the test creates, so containers'
// bridge, veths and nftables rules never touch the host's network; cleaned up after the file.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { Client } from '../../src/agent/client';
import { type Agent, killLeftoverRedis, startAgent as start } from '../../harness/agent';
import { mountsUnder } from '../../harness/mounts';
import { makeNetns as make } from '../../harness/netns';

export { inNetns } from '../../harness/netns';
export { killLeftoverRedis };

export interface AgentProcess extends Agent {
  child: Agent['daemon']['child'];
  /** a connected client (closed after the file) */
  client(password?: string): Promise<Client>;
  /** resolves when the process has exited */
  exited: Agent['daemon']['exited'];
}

const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/** A network namespace for this test file, deleted after it. */
export function makeNetns(tag: string): string {
  const ns = make(`t-${tag}`);
  cleanups.push(() => ns.remove());
  return ns.name;
}

/** What an agent's containers leave behind: mounts under its data dir, veths in its namespace, cgroups, container dirs. */
export function leftovers(a: Pick<AgentProcess, 'data' | 'netns'>): string[] {
  const out: string[] = [];
  for (const m of mountsUnder(a.data)) out.push(`mount ${m}`);
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
  const a = await start({ ...opts, data, timeoutMs: 30_000 });
  const clients: Client[] = [];
  const closeClients = (): void => {
    clients.forEach((c) => c.close());
    clients.length = 0;
  };
  const agent: AgentProcess = {
    ...a,
    child: a.daemon.child,
    exited: a.daemon.exited,
    async client(password = opts.password) {
      const c = await new Client(a.socket, password).open();
      clients.push(c);
      return c;
    },
    stop: () => (closeClients(), a.stop()),
    kill: () => (closeClients(), a.kill()),
  };
  cleanups.push(async () => {
    await agent.stop();
    a.sweep();
  });
  return agent;
}
