// Suite 5. The node agent with 300 jobs pushed at once: plain core.system jobs, jobs in named
// queues (which must run one after the other, in the order they were pushed), jobs with a
// max_time they outlive (TIMEOUT) or respect (SUCCESS), failing jobs (ERROR with their exit
// status) and built-ins. Every result must arrive with the right state, stdout and stderr, and the
// agent must answer core.ping throughout (a second client pings in a loop the whole time). The
// agent runs in a network namespace of its own, entered with `nsenter --net` only (`ip netns
// exec` would also remount /sys and hide the cgroup hierarchies); we reach it by its unix socket.
import path from 'node:path';
import { Client } from '../src/agent/client';
import type { Result, State } from '../src/agent/types';
import { killLeftoverRedis, startAgent } from '../harness/agent';
import { log } from '../harness/cleanup';
import { withTmpfs } from '../harness/mounts';
import { makeNetns } from '../harness/netns';
import { MiB } from '../harness/paths';
import { by, type Context, type SuiteResult, Tally } from './suite';

interface Planned {
  i: number;
  id: string;
  queue: string | null;
  state: State;
  stdout?: string;
  stderr?: string;
  code?: number;
}

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] : NaN;
};

export async function agentSuite(ctx: Context): Promise<SuiteResult> {
  const t = new Tally('agent');
  const t0 = Date.now();
  const N = 300;
  const rounds = by(ctx, 1, 1, 3);
  await withTmpfs(256 * MiB, async (dir) => {
    const ns = makeNetns('s');
    const data = path.join(dir, 'agent');
    try {
      const agent = await startAgent({ data, port: 6379, cache: path.join(dir, 'cache'), netns: ns.name });
      const { socket } = agent;
      const client = await new Client(socket).open();
      const pinger = await new Client(socket).open();
      try {
        const pings: number[] = [];
        let pingFailures = 0;
        let running = true;
        const pingLoop = (async () => {
          while (running) {
            const s = process.hrtime.bigint();
            try {
              const r = await (await pinger.raw('core.ping', {})).get(10);
              if (r.state !== 'SUCCESS') throw new Error(`state ${r.state}`);
              pings.push(Number(process.hrtime.bigint() - s) / 1e6);
            } catch (e) {
              pingFailures++;
              t.error(`core.ping while the jobs ran: ${(e as Error).message}`);
            }
            await new Promise((r) => setTimeout(r, 20));
          }
        })();
        let slowest = 0;
        for (let round = 0; round < rounds; round++) {
          const plan: Planned[] = [];
          const sent = Date.now();
          const responses = await Promise.all(
            Array.from({ length: N }, async (_, i) => {
              const id = `stress-${ctx.seed}-${round}-${i}`;
              const queue = i % 3 === 0 ? `q${round}-${i % 4}` : null;
              let p: Planned;
              const kind = i % 10;
              let cmd: Promise<Awaited<ReturnType<Client['raw']>>>;
              if (kind === 7) {
                // outlives its max_time
                p = { i, id, queue, state: 'TIMEOUT' };
                cmd = client.system(['sleep', '30'], { id, queue, max_time: 1 });
              } else if (kind === 8) {
                p = { i, id, queue, state: 'ERROR', stdout: `fail-${i}\n`, code: 1003 };
                cmd = client.system(['sh', '-c', `echo fail-${i}; exit 3`], { id, queue });
              } else if (kind === 9) {
                p = { i, id, queue, state: 'SUCCESS' };
                cmd = client.raw('core.ping', {}, { id, queue });
              } else if (kind === 6) {
                // within its max_time
                // (the level-prefix protocol drops empty lines: every line here has text)
                p = { i, id, queue, state: 'SUCCESS', stdout: `slow-${i}\n`, stderr: '' };
                cmd = client.system(['sh', '-c', `sleep 0.2; echo slow-${i}`], { id, queue, max_time: 30 });
              } else {
                // (the level-prefix protocol drops empty lines: every line here has text)
                p = { i, id, queue, state: 'SUCCESS', stdout: `job-${i}\n${'x'.repeat(i + 1)}\n`, stderr: `err-${i}\n` };
                cmd = client.system(['sh', '-c', `echo job-${i}; printf '%${i + 1}s\\n' '' | tr ' ' x; echo err-${i} >&2`], { id, queue });
              }
              plan.push(p);
              return { p, r: await cmd };
            }),
          );
          log(`agent: round ${round + 1}/${rounds}: ${N} jobs pushed`);
          const results = await Promise.all(
            responses.map(async ({ p, r }) => {
              try {
                return { p, res: await r.get(180) };
              } catch (e) {
                t.error(`job ${p.i}: no result: ${(e as Error).message}`);
                return { p, res: undefined };
              }
            }),
          );
          slowest = Math.max(slowest, Date.now() - sent);
          const byQueue = new Map<string, Array<{ p: Planned; res: Result }>>();
          for (const { p, res } of results) {
            if (!res) continue;
            t.ops++;
            const bad: string[] = [];
            if (res.id !== p.id) bad.push(`id ${res.id}`);
            if (res.state !== p.state) bad.push(`state ${res.state}, expected ${p.state}`);
            if (p.code !== undefined && res.code !== p.code) bad.push(`code ${res.code}, expected ${p.code}`);
            if (p.stdout !== undefined) {
              const got = res.streams?.[0] ?? '';
              t.bytesChecked += got.length;
              if (got !== p.stdout) t.wrong(Math.max(1, Math.abs(got.length - p.stdout.length)), `job ${p.i}: stdout ${JSON.stringify(got.slice(0, 80))}, expected ${JSON.stringify(p.stdout.slice(0, 80))}`);
            }
            if (p.stderr !== undefined && (res.streams?.[1] ?? '') !== p.stderr) t.wrong(Math.max(1, p.stderr.length), `job ${p.i}: stderr ${JSON.stringify(res.streams?.[1])}`);
            if (bad.length) t.error(`job ${p.i} (${p.queue ?? 'no queue'}): ${bad.join(', ')}`);
            if (p.queue) byQueue.set(p.queue, [...(byQueue.get(p.queue) ?? []), { p, res }]);
          }
          // Queues: pushed order, one at a time.
          for (const [q, jobs] of byQueue) {
            jobs.sort((a, b) => a.p.i - b.p.i);
            for (let k = 1; k < jobs.length; k++) {
              const prev = jobs[k - 1].res;
              const cur = jobs[k].res;
              if (cur.starttime < prev.starttime + prev.time) t.error(`queue ${q}: job ${jobs[k].p.i} started at ${cur.starttime}, before job ${jobs[k - 1].p.i} ended (${prev.starttime}+${prev.time})`);
            }
          }
        }
        running = false;
        await pingLoop;
        t.ops += pings.length;
        t.data = {
          jobs: N * rounds, rounds, pings: pings.length, ping_failures: pingFailures,
          ping_p50_ms: Number(pct(pings, 0.5).toFixed(2)), ping_p99_ms: Number(pct(pings, 0.99).toFixed(2)), ping_max_ms: Number(pct(pings, 1).toFixed(2)),
          slowest_round_s: Number((slowest / 1000).toFixed(1)),
        };
        if (pings.length < 5) t.error(`only ${pings.length} pings answered while the jobs ran`);
      } finally {
        client.close();
        pinger.close();
        await agent.stop();
      }
    } finally {
      killLeftoverRedis(data);
      ns.remove();
    }
  }, ctx.work);
  return t.result(`${N * rounds} jobs pushed at once (queues, max_time, failures, built-ins), core.ping looped meanwhile`, (Date.now() - t0) / 1000);
}
