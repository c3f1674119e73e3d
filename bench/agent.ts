// The node agent: core.ping round trips through the bus (TypeScript client) vs a raw redis PING
// on the same redis-server; jobs per second (K core.system `true` / core.ping at once) vs
// spawning `true` K times from Node; container start (`g8os container run <flist> -- /bin/echo
// hello` to its first line, cold and warm block cache) vs `runc run` of the same rootfs on disk;
// 50 concurrent corex.create. Agent and hub run in a network namespace made here (entered with
// `nsenter --net` only: `ip netns exec` would also give them a private /sys without the cgroup
// mounts), so container bridges and NAT never touch the host's network; the CLI reaches the agent
// by its unix socket.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Redis from 'ioredis';
import { Client } from '../src/agent/client';
import { defaultConfig } from '../src/agent/config';
import type { Result } from '../src/agent/types';
import { busyboxRootfsTar } from '../test/helpers/tarballs';
import { type Bar, type Plot } from './plot';
import { type BenchResult, type Context, fmtSpread, freePort, log, measure, MiB, onCleanup, REPO, repeat, roundSpread, spread, type Table, withTmpfs } from './lib';

const G8OS = path.join(REPO, 'bin', 'g8os');
const MAX_JOBS = defaultConfig().main.max_jobs; // the agent's concurrency bound; the spawn baseline gets the same
const CONCURRENT = 50;

export const secondsSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;


export function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Every process below `root` (by /proc ppid links). */
export function descendants(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) for (const k of kids.get(todo.pop()!) ?? []) out.push(k), todo.push(k);
  return out;
}

function cmdline(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Mount points at or below dir (deepest first), from this mount namespace's mountinfo. */
export function mountsUnder(dir: string): string[] {
  const unescape = (p: string): string => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
    .map((l) => unescape(l.split(' ')[4]))
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Lazily detaches whatever a killed agent or mount process left mounted below dir. */
export function detachUnder(dir: string): void {
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
}

/** The cgroup name prefix of an agent's containers (src/agent/agent.ts: g8os-<sha1(data dir)>). */
const cgroupInstance = (data: string): string => `g8os-${crypto.createHash('sha1').update(data).digest('hex').slice(0, 8)}`;

/** Container cgroups of that agent still present (agents nest theirs under their own cgroup, i.e. ours). */
function cgroupsOf(data: string): string[] {
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
function removeCgroups(dirs: string[]): void {
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
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      }
    }
  }
}

/** The last non-empty lines of a process's output, for error messages. */
export const tail = (s: string, n = 1): string => s.trim().split('\n').filter(Boolean).slice(-n).join(' / ');

// ---------------------------------------------------------------------------
// Network namespace, hub and agent processes

export interface Netns {
  name: string;
  exec(argv: string[]): string[];
  remove(): void;
}

export function makeNetns(): Netns {
  const name = `g8b-${process.pid}`;
  const remove = (): void => {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'pipe' });
    } catch {
      // not there
    }
  };
  remove(); // a leftover of an earlier run with this pid
  execFileSync('ip', ['netns', 'add', name], { stdio: 'pipe' });
  const unregister = onCleanup(remove);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { stdio: 'pipe' });
  return {
    name,
    exec: (argv) => ['nsenter', `--net=/run/netns/${name}`, ...argv],
    remove() {
      unregister();
      remove();
    },
  };
}

export interface Daemon {
  child: ChildProcess;
  pid: number;
  output(): string;
  /** SIGTERM, then SIGKILL of its process group after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns argv in its own process group and resolves once `ready` appears on its stdout. */
export async function startDaemon(label: string, argv: string[], ready: string, env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): Promise<Daemon> {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
  const killGroup = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  };
  const unregister = onCleanup(killGroup);
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString();
    if (out.length > 256 * 1024) out = out.slice(-128 * 1024);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label} did not start within ${timeoutMs / 1000} s:\n${tail(out, 20)}`)), timeoutMs);
      child.stdout!.on('data', () => out.includes(ready) && (clearTimeout(timer), resolve()));
      child.once('exit', (code, sig) => (clearTimeout(timer), reject(new Error(`${label} exited (${code ?? sig}) before it was ready:\n${tail(out, 20)}`))));
      child.once('error', (e) => (clearTimeout(timer), reject(e)));
    });
  } catch (e) {
    killGroup();
    unregister();
    throw e;
  }
  return {
    child,
    pid: child.pid!,
    output: () => out,
    async stop(graceMs = 60_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => {
          log(`${label} did not stop within ${graceMs / 1000} s of SIGTERM: killing it and its descendants`);
          const all = descendants(child.pid!);
          killGroup();
          for (const p of all) {
            try {
              process.kill(p, 'SIGKILL');
            } catch {
              // gone
            }
          }
        }, graceMs);
        await exited;
        clearTimeout(t);
      }
      killGroup(); // anything of its group left behind
      unregister();
    },
  };
}

export interface Hub {
  url: string;
  token: string;
  stop(): Promise<void>;
}

/** bench/hub-ingest.ts's startHub, but inside the namespace (its loopback is the agent's). */
export async function startHubIn(ns: Netns, dir: string): Promise<Hub> {
  const data = path.join(dir, 'hub');
  const tmp = path.join(dir, 'hub-tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const port = await freePort(); // a fresh namespace has nothing listening at all
  const d = await startDaemon('hub', ns.exec([process.execPath, G8OS, 'hub', '--listen', `127.0.0.1:${port}`, '--data', data]), 'hub listening', { ...process.env, TMPDIR: tmp }, 15_000);
  const add = spawnSync(process.execPath, [G8OS, 'hub', 'user', 'add', 'bench', '--data', data], { encoding: 'utf8' });
  if (add.status !== 0) {
    await d.stop();
    throw new Error(`hub user add: ${add.stderr}`);
  }
  return { url: `http://127.0.0.1:${port}`, token: add.stdout.trim().split('\n').pop()!, stop: () => d.stop(15_000) };
}

export interface Agent {
  pid: number;
  socket: string;
  data: string;
  /** the agent process's VmHWM / VmRSS, MiB */
  memory(field: 'VmHWM' | 'VmRSS'): number;
  redisPid(): number;
  output(): string;
  stop(): Promise<void>;
}

/** The redis-server of an agent that was SIGKILLed outlives it. */
function killLeftoverRedis(data: string): void {
  try {
    const pid = Number(fs.readFileSync(path.join(data, 'redis.pid'), 'utf8'));
    if (cmdline(pid).join(' ').includes('redis-server')) process.kill(pid, 'SIGKILL');
  } catch {
    // none left
  }
}

/** `g8os agent` in the namespace with its data and block cache where we say. */
export async function startAgent(ns: Netns, data: string, cache: string): Promise<Agent> {
  fs.mkdirSync(data, { recursive: true });
  const port = await freePort();
  const unregister = onCleanup(() => {
    killLeftoverRedis(data);
    removeCgroups(cgroupsOf(data));
  });
  let d: Daemon;
  try {
    d = await startDaemon('g8os agent', ns.exec([process.execPath, G8OS, 'agent', '--data', data, '--redis-port', String(port), '--cache', cache]), 'agent ready');
  } catch (e) {
    killLeftoverRedis(data);
    unregister();
    throw e;
  }
  const redisPid = (): number => {
    try {
      return Number(fs.readFileSync(path.join(data, 'redis.pid'), 'utf8'));
    } catch {
      return NaN;
    }
  };
  return {
    pid: d.pid,
    socket: path.join(data, 'redis.sock'),
    data,
    memory: (field) => procStatus(d.pid, field),
    redisPid,
    output: d.output,
    async stop() {
      await d.stop();
      killLeftoverRedis(data);
      const left = cgroupsOf(data);
      if (left.length) {
        log(`agent: ${left.length} container cgroups left after the agent stopped; removing them`);
        removeCgroups(left);
      }
      unregister();
    },
  };
}

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
// 3. Container start

export interface FirstLine {
  /** spawn to the expected first line, seconds */
  firstS: number;
  /** spawn to exit */
  totalS: number;
}

/** Spawns argv; times the first stdout line equal to `expect`, then the exit (which must be 0). */
export function firstLine(label: string, argv: string[], expect: string, timeoutMs: number): Promise<FirstLine> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const kill = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    };
    const unregister = onCleanup(kill);
    let out = '';
    let err = '';
    let firstS = NaN;
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`${label}: no exit within ${timeoutMs / 1000} s${err || out ? `; last output: ${tail(err || out, 3)}` : ', no output'}`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      if (!Number.isNaN(firstS)) return;
      out += d.toString();
      if (out.split('\n').slice(0, -1).some((l) => l.trimEnd() === expect)) firstS = secondsSince(t0);
    });
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-16384)));
    child.once('error', (e) => (clearTimeout(timer), unregister(), reject(e)));
    child.once('close', (code, sig) => {
      const totalS = secondsSince(t0);
      clearTimeout(timer);
      unregister();
      if (code !== 0) reject(new Error(`${label}: exit ${code ?? sig}: ${tail(err || out, 3)}`));
      else if (Number.isNaN(firstS)) reject(new Error(`${label}: no "${expect}" line in its output: ${tail(out + err, 3)}`));
      else resolve({ firstS, totalS });
    });
  });
}

/** An OCI bundle of the rootfs tarball for runc: `runc spec`, then args, terminal and root path. */
export function runcBundle(tar: string, bundle: string, args = ['/bin/echo', 'hello']): void {
  const rootfs = path.join(bundle, 'rootfs');
  fs.mkdirSync(rootfs, { recursive: true });
  execFileSync('tar', ['-xf', tar, '-C', rootfs, '--same-owner', '--numeric-owner']);
  runcConfig(bundle, args, rootfs);
}

/** `runc spec` in the bundle, then args, no terminal and the root path (relative: inside the bundle). */
export function runcConfig(bundle: string, args: string[], root = 'rootfs'): void {
  fs.mkdirSync(bundle, { recursive: true });
  execFileSync('runc', ['spec', '--bundle', bundle], { stdio: 'pipe' });
  const file = path.join(bundle, 'config.json');
  const c = JSON.parse(fs.readFileSync(file, 'utf8')) as { process: { terminal: boolean; args: string[] }; root: { path: string } };
  c.process.terminal = false;
  c.process.args = args;
  c.root.path = root;
  fs.writeFileSync(file, JSON.stringify(c, null, 1));
}

export async function runcRun(bundle: string, id: string, expect = 'hello'): Promise<FirstLine> {
  const del = (): void => {
    spawnSync('runc', ['delete', '-f', id], { stdio: 'ignore' });
  };
  const unregister = onCleanup(del);
  try {
    return await firstLine('runc run', ['runc', 'run', '--bundle', bundle, id], expect, 60_000);
  } finally {
    del();
    unregister();
  }
}

const CONTAINER_TIMEOUT_MS = 120_000;

/** `g8os container run <flist> [-- argv]` to its first `expect` line; an empty argv runs the flist's entrypoint. */
export async function containerRun(agent: Agent, flist: string, argv = ['/bin/echo', 'hello'], expect = 'hello'): Promise<FirstLine> {
  try {
    const cmd = argv.length ? ['--', ...argv] : [];
    return await firstLine('g8os container run', [process.execPath, G8OS, 'container', 'run', flist, '--agent', agent.socket, ...cmd], expect, CONTAINER_TIMEOUT_MS);
  } catch (e) {
    const last = tail(agent.output(), 1);
    throw new Error(`${(e as Error).message}${last ? ` (agent's last log line: ${last})` : ''}`);
  }
}

/** A failure as one line, for a table note. */
export const why = (e: unknown): string => ((e as Error).message ?? String(e)).replace(/\s*\n\s*/g, ' / ').slice(0, 400);

// ---------------------------------------------------------------------------

const ms = (x: number): string => x.toFixed(3);
const one = (xs: number[], digits = 0): string => {
  const s = spread(xs);
  if (!s.n || xs.some(Number.isNaN)) return '–';
  return s.min === s.max ? s.median.toFixed(digits) : fmtSpread(s, digits);
};

export async function agentBench(ctx: Context): Promise<BenchResult> {
  if (process.getuid?.() !== 0) throw new Error('the agent bench needs root (network namespace, containers, runc)');
  const nPing = ctx.quick ? 300 : 2000;
  const k = ctx.quick ? 200 : 1000;
  const rounds = ctx.quick ? 3 : 5;
  const nStart = ctx.quick ? 3 : 5;
  const tables: Table[] = [];
  const data: Record<string, unknown> = {};
  const plots: Plot[] = [];

  await withTmpfs(2048 * MiB, async (dir) => {
    const unregisterMounts = onCleanup(() => detachUnder(dir));
    const ns = makeNetns();
    try {
      // ---- 1 + 2: one agent, one client, the bus over its unix socket
      log('agent: starting an agent for pings and jobs');
      const agent = await startAgent(ns, path.join(dir, 'a-ping'), path.join(dir, 'cache-ping'));
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

      // ---- 3: container start vs runc
      log('agent: busybox rootfs, hub in the namespace, upload');
      const tar = path.join(dir, 'busybox-rootfs.tar');
      await busyboxRootfsTar(tar);
      const hub = await startHubIn(ns, path.join(dir, 'h'));
      try {
        const upArgv = ns.exec([process.execPath, G8OS, 'hub', 'upload', tar, '--hub', hub.url, '--token', hub.token, '--name', 'busybox']);
        const up = spawnSync(upArgv[0], upArgv.slice(1), { encoding: 'utf8' });
        const flist = up.stdout.trim().split('\n').pop() ?? '';
        if (up.status !== 0 || !/^https?:\/\//.test(flist)) throw new Error(`hub upload printed no URL: ${up.stdout}${up.stderr}`);

        // runc runs are interleaved with ours (one before each), so both see the same machine load
        const runc: FirstLine[] = [];
        let runcError = '';
        const bundle = path.join(dir, 'bundle');
        const runcOnce = async (tag: string): Promise<void> => {
          if (runcError) return;
          try {
            runc.push(await runcRun(bundle, `g8b-${process.pid}-${tag}`));
          } catch (e) {
            runcError = why(e);
            log(`agent: runc baseline unavailable: ${runcError}`);
          }
        };
        try {
          runcBundle(tar, bundle);
        } catch (e) {
          runcError = why(e);
          log(`agent: runc baseline unavailable: ${runcError}`);
        }
        await runcOnce('warmup');
        runc.length = 0;

        const cold: FirstLine[] = [];
        const coldHwm: number[] = [];
        const warm: FirstLine[] = [];
        let warmHwm = NaN;
        let containerError = '';
        let conc: Record<string, unknown> | undefined;
        let concError = '';
        let phases: Phases | undefined;
        let phasesError = '';
        try {
          for (let i = 0; i < nStart; i++) {
            log(`agent: runc run, then container run, cold ${i + 1}/${nStart} (fresh agent and block cache)`);
            await runcOnce(`c${i}`);
            const a = await startAgent(ns, path.join(dir, `a-cold${i}`), path.join(dir, `cache-cold${i}`));
            try {
              cold.push(await containerRun(a, flist));
              coldHwm.push(a.memory('VmHWM'));
            } finally {
              await a.stop();
            }
          }
          const a = await startAgent(ns, path.join(dir, 'a-warm'), path.join(dir, 'cache-warm'));
          try {
            log('agent: container run, filling the warm cache');
            await containerRun(a, flist);
            for (let i = 0; i < nStart; i++) {
              log(`agent: runc run, then container run, warm ${i + 1}/${nStart}`);
              await runcOnce(`w${i}`);
              warm.push(await containerRun(a, flist));
            }
            warmHwm = a.memory('VmHWM');
            try {
              log(`agent: where the time goes: ${nStart} × create, dispatch, terminate through the client`);
              phases = await containerPhases(a, flist, nStart);
            } catch (e) {
              phasesError = why(e);
              log(`agent: phases failed: ${phasesError}`);
            }
            // ---- 4: concurrent creates on the warm agent
            try {
              log(`agent: ${CONCURRENT} concurrent corex.create, then corex.terminate`);
              conc = await concurrentCreates(a, flist);
            } catch (e) {
              concError = why(e);
              log(`agent: concurrent creates failed: ${concError}`);
            }
          } finally {
            await a.stop();
          }
        } catch (e) {
          containerError = why(e);
          log(`agent: container start unavailable: ${containerError}`);
        }
        for (let i = runc.length; i < 2 * nStart && !runcError; i++) await runcOnce(`r${i}`); // ours failed early

        const runcFirst = spread(runc.map((r) => r.firstS));
        const row = (what: string, xs: FirstLine[], rss: string, err = ''): Array<string> => {
          if (!xs.length) return [what, err ? 'unavailable (see below)' : 'unavailable', '–', '–', '–'];
          const s = spread(xs.map((r) => r.firstS));
          return [what, fmtSpread(s, 3), runc.length ? `${(s.median / runcFirst.median).toFixed(2)}×` : '–', fmtSpread(spread(xs.map((r) => r.totalS)), 3), rss];
        };
        const t3: Table = {
          title: `Container start: spawn to the first line of \`/bin/echo hello\`, busybox rootfs, ${nStart} runs each (runc ${2 * nStart}, interleaved)`,
          headers: ['what', 's to "hello"', 'vs runc', 's to exit', 'agent peak RSS MiB'],
          rows: [
            row('runc run, rootfs unpacked on tmpfs (baseline)', runc, '–', runcError),
            row('g8os container run <hub flist>, cold (fresh agent, empty block cache)', cold, one(coldHwm), containerError),
            row('g8os container run <hub flist>, warm (block cache filled)', warm, Number.isNaN(warmHwm) ? '–' : warmHwm.toFixed(0), containerError),
          ],
          notes: [
            'Wall from spawning the CLI (`node bin/g8os container run … -- /bin/echo hello`, Node start-up included) or `runc run` to its first output line; "to exit" includes tear-down (corex.terminate: processes, mounts, network, cgroups; `runc run` exit, before `runc delete`).',
            'Agent and hub in their own network namespace, on loopback; hub data, block caches, agent data and the runc rootfs all on a tmpfs. Containers get the default nic (bridge + NAT in that namespace). median [min–max].',
            ...(runcError ? [`runc unavailable: ${runcError}`] : []),
            ...(containerError ? [`g8os container run unavailable: ${containerError}`] : []),
          ],
        };
        ctx.print(t3);
        tables.push(t3);
        const bar = (label: string, xs: FirstLine[], baseline = false): Bar => ({ label, ...spread(xs.map((r) => r.firstS)), baseline });
        plots.push({
          name: 'agent-container', title: 'Container start, busybox rootfs: spawn to the first line of /bin/echo hello', unit: 'seconds', digits: 3,
          bars: [bar('runc run, rootfs unpacked on tmpfs', runc, true), bar('g8os container run <hub flist>, cold', cold), bar('g8os container run <hub flist>, warm', warm)],
        });
        const fl = (xs: FirstLine[]): Record<string, unknown> =>
          xs.length ? { first_line_s: roundSpread(spread(xs.map((r) => r.firstS))), exit_s: roundSpread(spread(xs.map((r) => r.totalS))) } : {};
        data.container_start = {
          runs: nStart,
          runc_runs: runc.length,
          runc: runc.length ? fl(runc) : { error: runcError },
          cold: cold.length ? { ...fl(cold), agent_hwm_mib: roundSpread(spread(coldHwm), 1) } : { error: containerError },
          warm: warm.length ? { ...fl(warm), agent_hwm_mib: Number(warmHwm.toFixed(1)) } : { error: containerError },
          ...(runc.length && cold.length ? { cold_vs_runc: Number((spread(cold.map((r) => r.firstS)).median / runcFirst.median).toFixed(2)) } : {}),
          ...(runc.length && warm.length ? { warm_vs_runc: Number((spread(warm.map((r) => r.firstS)).median / runcFirst.median).toFixed(2)) } : {}),
        };

        if (phases || phasesError) {
          const cli = await repeat(nStart, () => measure(process.execPath, [G8OS, '--help']));
          const prow = (what: string, xs: number[]): Array<string> => [what, phases ? fmtSpread(spread(xs), 3) : 'unavailable (see below)'];
          const t5: Table = {
            title: `Where a warm container start goes: the CLI's steps timed through the TypeScript client, ${nStart} runs`,
            headers: ['step', 's'],
            rows: [
              ['node bin/g8os --help (CLI start-up)', fmtSpread(spread(cli.map((x) => x.wallS)), 3)],
              prow('corex.create (flist check, mount process, namespaces, default nic)', phases?.create ?? []),
              prow('corex.dispatch core.system /bin/echo hello, to its result', phases?.dispatch ?? []),
              prow('corex.terminate', phases?.terminate ?? []),
            ],
            notes: ['Same warm agent and cache as the warm row above. median [min–max].', ...(phasesError ? [`unavailable: ${phasesError}`] : [])],
          };
          ctx.print(t5);
          tables.push(t5);
          data.phases = phases
            ? { cli_start_s: roundSpread(spread(cli.map((x) => x.wallS))), create_s: roundSpread(spread(phases.create)), dispatch_s: roundSpread(spread(phases.dispatch)), terminate_s: roundSpread(spread(phases.terminate)) }
            : { error: phasesError };
        }

        if (conc || concError || containerError) {
          const err = concError || containerError;
          const t4: Table = {
            title: `${CONCURRENT} concurrent corex.create of the busybox flist (warm cache), then corex.terminate of all`,
            headers: ['containers', 'created', 'create s (all)', 'terminate s (all)', 'g8os mount processes / container', 'mount process RSS MiB', 'agent RSS MiB, all running'],
            rows: [
              conc
                ? [
                  CONCURRENT, String(conc.created), (conc.create_s as number).toFixed(2), (conc.terminate_s as number).toFixed(2), String(conc.mounts_per_container),
                  fmtSpread(conc.mount_rss_mib as ReturnType<typeof spread>, 0), (conc.agent_rss_mib as number).toFixed(0),
                ]
                : [CONCURRENT, 'unavailable (see below)', '–', '–', '–', '–', '–'],
            ],
            notes: [
              'All creates pushed at once through one client, each with the default nic; then all terminates at once. Mount processes counted among the agent\'s descendants, their RSS (VmRSS, median [min–max]) and the agent\'s read with all containers up.',
              ...(conc?.first_error ? [`first failed create: ${String(conc.first_error)}`] : []),
              ...(conc ? [] : [`unavailable: ${err}`]),
            ],
          };
          ctx.print(t4);
          tables.push(t4);
          data.concurrent = conc ?? { error: err };
        }
      } finally {
        await hub.stop();
      }
    } finally {
      ns.remove();
      const left = mountsUnder(dir);
      if (left.length) log(`agent: mounts left under the scratch dir, detaching: ${left.join(', ')}`);
      detachUnder(dir);
      unregisterMounts();
    }
  });
  return { name: 'agent', tables, data, plots };
}

interface Phases {
  create: number[];
  dispatch: number[];
  terminate: number[];
}

/** What `g8os container run` does, step by step through one client: create, dispatch, terminate (seconds). */
async function containerPhases(agent: Agent, flist: string, n: number): Promise<Phases> {
  const client = await new Client(agent.socket).open();
  const out: Phases = { create: [], dispatch: [], terminate: [] };
  let id = 0;
  try {
    for (let i = 0; i < n; i++) {
      let t0 = process.hrtime.bigint();
      id = await client.json<number>('corex.create', { root: flist, host_network: false, nics: [{ type: 'default' }], privileged: false }, 300);
      out.create.push(secondsSince(t0));
      t0 = process.hrtime.bigint();
      const r = await (await client.dispatch(id, 'core.system', { name: '/bin/echo', args: ['hello'], dir: '', stdin: '', env: null })).get(60);
      out.dispatch.push(secondsSince(t0));
      if (r.state !== 'SUCCESS' || r.streams?.[0] !== 'hello\n') throw new Error(`echo in container ${id}: ${r.state} ${JSON.stringify(r.streams)}`);
      t0 = process.hrtime.bigint();
      await client.json('corex.terminate', { container: id }, 120);
      out.terminate.push(secondsSince(t0));
      id = 0;
    }
    return out;
  } finally {
    if (id) await client.json('corex.terminate', { container: id }, 60).catch(() => undefined);
    client.close();
  }
}

/** CONCURRENT corex.create at once on a running agent, a look at its process tree, then all terminated. */
async function concurrentCreates(agent: Agent, flist: string): Promise<Record<string, unknown>> {
  const client = await new Client(agent.socket).open();
  let left: number[] = [];
  try {
    const args = { root: flist, mount: null, host_network: false, nics: [{ type: 'default' }], port: null, hostname: null, privileged: false, storage: null, tags: null };
    const t0 = process.hrtime.bigint();
    const got = await Promise.allSettled(Array.from({ length: CONCURRENT }, () => client.json<number>('corex.create', args, 300)));
    const createS = secondsSince(t0);
    const ids = got.flatMap((g) => (g.status === 'fulfilled' ? [g.value] : []));
    left = ids;
    const failed = got.find((g): g is PromiseRejectedResult => g.status === 'rejected');
    const mountPids = descendants(agent.pid).filter((p) => {
      const argv = cmdline(p);
      const i = argv.findIndex((x) => x.endsWith('bin/g8os'));
      return i >= 0 && argv[i + 1] === 'mount';
    });
    const mountProcs = mountPids.length;
    const mountRss = spread(mountPids.map((p) => procStatus(p, 'VmRSS')).filter((x) => !Number.isNaN(x)));
    const rss = agent.memory('VmRSS');
    const t1 = process.hrtime.bigint();
    const term = await Promise.allSettled(ids.map((id) => client.json('corex.terminate', { container: id }, 300)));
    const terminateS = secondsSince(t1);
    left = ids.filter((_, i) => term[i].status === 'rejected');
    return {
      containers: CONCURRENT,
      created: ids.length,
      ...(failed ? { first_error: why(failed.reason) } : {}),
      create_s: Number(createS.toFixed(3)),
      terminate_s: Number(terminateS.toFixed(3)),
      terminate_failed: left.length,
      mount_processes: mountProcs,
      mounts_per_container: ids.length ? Number((mountProcs / ids.length).toFixed(2)) : null,
      mount_rss_mib: roundSpread(mountRss, 1),
      agent_rss_mib: Number(rss.toFixed(1)),
    };
  } finally {
    // a second try for any that would not terminate; the agent's shutdown takes what is left
    for (const id of left) await client.json('corex.terminate', { container: id }, 60).catch(() => undefined);
    client.close();
  }
}
