// The node agent: core.ping round trips through the bus (TypeScript client) vs a raw redis PING
// on the same redis-server; jobs per second (K core.system `true` / core.ping at once) vs
// spawning `true` K times from Node; container start (`g8os container run <flist> -- /bin/echo
// hello` to its first line, cold and warm block cache) vs `runc run` of the same rootfs on disk;
// 50 concurrent corex.create. Agent and hub run in a network namespace made here (entered with
// `nsenter --net` only: `ip netns exec` would also give them a private /sys without the cgroup
// mounts), so container bridges and NAT never touch the host's network; the CLI reaches the agent
// by its unix socket.
import { spawn } from 'node:child_process';
import path from 'node:path';
import Redis from 'ioredis';
import { Client } from '../src/agent/client';
import { defaultConfig } from '../src/agent/config';
import type { Result } from '../src/agent/types';
import { log } from '../harness/cleanup';
import { MiB } from '../harness/paths';
import { procStatus } from '../harness/procs';
import { containerStarts } from './agent-containers';
import { agentIn, inScratchNetns, secondsSince } from './container-start';
import { type BenchResult, type Context, fmtSpread, repeat, roundSpread, spread, type Table, type Target } from './lib';
import { type Plot } from './plot';

const MAX_JOBS = defaultConfig().main.max_jobs; // the agent's concurrency bound; the spawn baseline gets the same

// ---------------------------------------------------------------------------
// 1. Ping round trips, 2. jobs per second

const percentile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];

interface Latency {
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

function summary(xs: number[]): Latency {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), mean: s.reduce((a, b) => a + b, 0) / s.length, max: s[s.length - 1] };
}

/** n calls of each, alternating one of a and one of b (both see the same machine load); ms. */
async function pairedLatencies(n: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[Latency, Latency]> {
  const xa: number[] = [];
  const xb: number[] = [];
  for (let i = 0; i < n; i++) {
    for (const [fn, xs] of [[a, xa], [b, xb]] as const) {
      const t0 = process.hrtime.bigint();
      await fn();
      xs.push(secondsSince(t0) * 1000);
    }
  }
  return [summary(xa), summary(xb)];
}

/** K jobs pushed at once; seconds until every result is in (all must be SUCCESS). */
async function burst(client: Client, k: number, kind: 'system' | 'ping'): Promise<number> {
  const t0 = process.hrtime.bigint();
  const resps = await Promise.all(Array.from({ length: k }, () => (kind === 'system' ? client.system(['true']) : client.raw('core.ping', {}))));
  const results: Result[] = await Promise.all(resps.map((r) => r.get(300)));
  const s = secondsSince(t0);
  const bad = results.filter((r) => r.state !== 'SUCCESS');
  if (bad.length) throw new Error(`${bad.length} of ${k} ${kind} jobs did not succeed, e.g. ${JSON.stringify(bad[0]).slice(0, 300)}`);
  return s;
}

/** The baseline: `true` spawned K times from Node, at most `limit` at once, stdio piped as the agent does. */
async function spawnBurst(k: number, limit: number): Promise<number> {
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const c = spawn('true', [], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
      c.stdout!.resume();
      c.stderr!.resume();
      c.stdin!.on('error', () => undefined);
      c.stdin!.end();
      c.once('error', reject);
      c.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`true exited with ${code}`))));
    });
  const worker = async (): Promise<void> => {
    while (next < k) {
      next++;
      await one();
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(limit, k) }, worker));
  return secondsSince(t0);
}

// ---------------------------------------------------------------------------

const ms = (x: number): string => x.toFixed(3);

export async function agentBench(ctx: Context): Promise<BenchResult> {
  if (process.getuid?.() !== 0) throw new Error('the agent bench needs root (network namespace, containers, runc)');
  const nPing = ctx.quick ? 300 : 2000;
  const k = ctx.quick ? 200 : 1000;
  const rounds = ctx.quick ? 3 : 5;
  const nStart = ctx.quick ? 3 : 5;
  const tables: Table[] = [];
  const data: Record<string, unknown> = {};
  const plots: Plot[] = [];
  const targets: Target[] = [];

  await inScratchNetns('agent', 2048 * MiB, async (dir, ns) => {
    // ---- 1 + 2: one agent, one client, the bus over its unix socket
    log('agent: starting an agent for pings and jobs');
    const agent = await agentIn(ns, path.join(dir, 'a-ping'), path.join(dir, 'cache-ping'));
    let client: Client | undefined;
    let raw: Redis | undefined;
    try {
      client = await new Client(agent.socket).open();
      raw = new Redis({ path: agent.socket, lazyConnect: true, maxRetriesPerRequest: 1 });
      await raw.connect();
      const r = raw;
      const c = client;
      await pairedLatencies(50, () => c.ping(), () => r.ping()); // warm-up
      log(`agent: ${nPing} pings through the agent, alternating with ${nPing} raw redis PINGs`);
      const [ours, base] = await pairedLatencies(nPing, () => c.ping(), () => r.ping());
      const pingHwm = agent.memory('VmHWM');
      const redisHwm = procStatus(agent.redisPid(), 'VmHWM');
      const t1: Table = {
        title: `core.ping round trip, ${nPing} sequential calls over the agent's unix socket`,
        headers: ['what', 'p50 ms', 'p99 ms', 'mean ms', 'max ms', 'vs raw (p50)', 'peak RSS MiB'],
        rows: [
          ['raw redis PING (ioredis, same redis-server)', ms(base.p50), ms(base.p99), ms(base.mean), ms(base.max), '1.00×', redisHwm.toFixed(0)],
          ['Client.ping(): core.ping job (push, flag, result)', ms(ours.p50), ms(ours.p99), ms(ours.mean), ms(ours.max), `${(ours.p50 / base.p50).toFixed(2)}×`, pingHwm.toFixed(0)],
        ],
        notes: [
          'One connection each (the client\'s blocking reads use a second one), one call at a time, alternating ours and raw, after 50 untimed pairs. Peak RSS = VmHWM of redis-server (raw row) and of the agent process (ours).',
        ],
      };
      ctx.print(t1);
      tables.push(t1);
      const rl = (l: Latency): Record<string, number> => Object.fromEntries(Object.entries(l).map(([key, v]) => [`${key}_ms`, Number(v.toFixed(4))]));
      data.ping = { n: nPing, raw: rl(base), agent: rl(ours), p50_ratio: Number((ours.p50 / base.p50).toFixed(2)), p99_ratio: Number((ours.p99 / base.p99).toFixed(2)), mean_ratio: Number((ours.mean / base.mean).toFixed(2)),
        agent_hwm_mib: Number(pingHwm.toFixed(1)), redis_hwm_mib: Number(redisHwm.toFixed(1)) };

      log(`agent: jobs per second, ${k} at once, ${rounds} rounds each`);
      await burst(c, 20, 'system'); // warm-up
      await spawnBurst(20, MAX_JOBS);
      const spawnS: number[] = [];
      const systemS: number[] = [];
      const pingS: number[] = [];
      await repeat(rounds, async () => {
        spawnS.push(await spawnBurst(k, MAX_JOBS));
        systemS.push(await burst(c, k, 'system'));
        pingS.push(await burst(c, k, 'ping'));
      });
      const jobsHwm = agent.memory('VmHWM');
      const rate = (xs: number[]): number[] => xs.map((s) => k / s);
      const baseRate = spread(rate(spawnS)).median;
      const jobRow = (what: string, xs: number[], rss: string): Array<string> => {
        const r2 = spread(rate(xs));
        return [what, fmtSpread(r2, 0), fmtSpread(spread(xs), 3), `${(r2.median / baseRate).toFixed(2)}×`, rss];
      };
      const t2: Table = {
        title: `Jobs per second: ${k} pushed at once, all results awaited, ${rounds} rounds`,
        headers: ['what', 'jobs/s', 'wall s', 'speed vs spawn', 'peak RSS MiB'],
        rows: [
          jobRow(`spawn('true') ×${k} from Node, ≤${MAX_JOBS} at once (baseline)`, spawnS, '–'),
          jobRow('core.system true via the agent', systemS, jobsHwm.toFixed(0)),
          jobRow('core.ping via the agent', pingS, '–'),
        ],
        notes: [
          `The agent runs at most [main] max_jobs = ${MAX_JOBS} jobs at once; the baseline spawns with the same bound and piped stdio, as core.system does.`,
          'Wall = first push to last result, through one TypeScript Client; median [min–max]. Peak RSS = agent VmHWM after all rounds.',
        ],
      };
      ctx.print(t2);
      tables.push(t2);
      data.jobs = {
        k, rounds, max_jobs: MAX_JOBS,
        spawn_jobs_s: roundSpread(spread(rate(spawnS)), 0), system_jobs_s: roundSpread(spread(rate(systemS)), 0), ping_jobs_s: roundSpread(spread(rate(pingS)), 0),
        system_vs_spawn: Number((spread(rate(systemS)).median / baseRate).toFixed(3)), agent_hwm_mib: Number(jobsHwm.toFixed(1)),
      };
    } finally {
      client?.close();
      raw?.disconnect();
      await agent.stop();
    }

    await containerStarts(ctx, ns, dir, nStart, { tables, data, plots, targets });
  });
  return { name: 'agent', tables, data, plots, targets };
}
