// core0: reads commands from the bus, runs them as jobs on the host or in containers, publishes
// results (core0-protocol.md §3). Owns its redis-server and the container table.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { args, int } from './args';
import { Bus } from './bus';
import { type AgentConfig, LOG_LEVELS, loadConfig } from './config';
import { bridgeHandlers } from './builtins/bridge';
import { btrfsHandlers } from './builtins/btrfs';
import { coreHandlers } from './builtins/core';
import { corexHandlers } from './builtins/corex';
import { diskHandlers } from './builtins/disk';
import { filesystemHandlers } from './builtins/filesystem';
import { gwHandlers } from './builtins/gw';
import { Gateways } from '../gw/gateway';
import { infoHandlers } from './builtins/info';
import { nbdHandlers } from './builtins/nbd';
import { kvmHandlers } from './builtins/kvm';
import { processHandlers } from './builtins/process';
import { extensionHandlers, systemHandlers } from './builtins/system';
import { zerotierHandlers } from './builtins/zerotier';
import { Containers } from './containers';
import { type JobMessage, Jobs } from './jobs';
import { RedisServer } from './redis-server';
import { Vms } from '../vm';
import { CommandError, type Command, type Handler, type Place, type Result } from './types';

export interface AgentOptions {
  dataDir: string;
  configFile?: string;
  /** TCP port of the bus (0: unix socket only) */
  redisPort: number;
  password?: string;
  /** addresses the bus listens on (default 127.0.0.1) */
  bind?: string[];
  /** block cache shared by container mounts */
  cacheDir?: string;
  /** how long an flist stays mounted after its last container (default 30 s) */
  mountGraceMs?: number;
  log?: (line: string) => void;
}

const CONTAINER_LOG_LINES = 1000;
const logsArgs = args({ container: int });

/** Why a parsed command cannot run (field types, §2), or undefined. */
export function envelopeError(c: Record<string, unknown>): string | undefined {
  const intOrNull = (k: string): string | undefined =>
    c[k] === undefined || c[k] === null || Number.isInteger(c[k]) ? undefined : `field '${k}' must be an integer or null`;
  if (typeof c.command !== 'string' || !c.command) return "field 'command' must be a non-empty string";
  if (c.queue !== undefined && c.queue !== null && typeof c.queue !== 'string') return "field 'queue' must be a string or null";
  for (const k of ['max_time', 'max_restart', 'recurring_period', 'stats_interval']) {
    const e = intOrNull(k);
    if (e) return e;
  }
  const t = c.tags;
  if (t !== undefined && t !== null && typeof t !== 'string' && !(Array.isArray(t) && t.every((x) => typeof x === 'string')))
    return "field 'tags' must be a string, a list of strings or null";
  if (c.stream !== undefined && c.stream !== null && typeof c.stream !== 'boolean') return "field 'stream' must be a boolean";
  if (c.log_levels !== undefined && c.log_levels !== null && !(Array.isArray(c.log_levels) && c.log_levels.every((x) => Number.isInteger(x))))
    return "field 'log_levels' must be a list of integers";
  if (c.arguments !== undefined && Buffer.byteLength(JSON.stringify(c.arguments)) > 16 * 2 ** 20) return "field 'arguments' is larger than 16 MiB";
  return undefined;
}

const hostPlace: Place = {
  container: 0,
  root: '/',
  env: {},
  spawn: (file, args, opts) => spawn(file, args, opts),
};

export class Agent {
  readonly config: AgentConfig;
  readonly redis: RedisServer;
  private bus!: Bus;
  private host!: Jobs;
  private containers!: Containers;
  private vms!: Vms;
  private gws?: Gateways;
  private readonly inContainer = new Map<number, Jobs>();
  private readonly logs = new Map<number, string[]>();
  private loop?: Promise<void>;
  private logLevel: number;
  private stopping = false;

  private constructor(private readonly o: AgentOptions) {
    this.config = loadConfig(o.configFile);
    this.logLevel = Math.max(0, LOG_LEVELS.indexOf(this.config.main.log_level.toUpperCase()));
    this.redis = new RedisServer({ dir: o.dataDir, port: o.redisPort, bind: o.bind, password: o.password, log: (l) => this.log('WARNING', l) });
  }

  static async start(o: AgentOptions): Promise<Agent> {
    fs.mkdirSync(o.dataDir, { recursive: true });
    const a = new Agent(o);
    await a.redis.start();
    try {
      await a.init();
    } catch (e) {
      await a.redis.stop();
      throw e;
    }
    return a;
  }

  get socket(): string {
    return this.redis.socket;
  }

  log(level: string, line: string): void {
    if (LOG_LEVELS.indexOf(level) > this.logLevel) return;
    (this.o.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(`${new Date().toISOString()} ${level} ${line}`);
  }

  private async init(): Promise<void> {
    this.bus = new Bus({ path: this.redis.socket, password: this.o.password || undefined });
    const g = this.config.globals;
    const instance = `g8os-${crypto.createHash('sha1').update(this.o.dataDir).digest('hex').slice(0, 8)}`;
    this.containers = new Containers({
      dataDir: path.join(this.o.dataDir, 'containers'),
      mountDir: path.join(this.o.dataDir, 'mounts'),
      dnsmasqDir: path.join(this.o.dataDir, 'dnsmasq'),
      mountGraceMs: this.o.mountGraceMs,
      cacheDir: this.o.cacheDir ?? g.cache,
      storage: g.storage,
      bridge: this.config.containers.bridge,
      cidr: this.config.containers.cidr,
      // cgroup names of this agent only: several agents (tests, benches) may share a machine
      instance,
      log: (l) => this.log('WARNING', l),
      onExit: (id) => this.containerGone(id),
    });
    await this.containers.init();
    this.vms = new Vms({ dir: path.join(this.o.dataDir, 'vms'), mounts: this.containers.mounts, storage: g.storage, instance, log: (l) => this.log('WARNING', l) });
    await this.vms.init();
    const handlers: Record<string, Handler> = {
      ...systemHandlers(),
      ...extensionHandlers(this.config.extension),
      ...coreHandlers({
        jobs: () => this.host,
        self: true,
        config: () => this.config,
        setLogLevel: (l) => (this.logLevel = LOG_LEVELS.indexOf(l)),
      }),
      ...infoHandlers(),
      ...filesystemHandlers(),
      ...processHandlers(),
      ...bridgeHandlers(this.containers),
      ...nbdHandlers({ storage: () => `redis+unix://${this.redis.socket}?db=1${this.o.password ? `&password=${encodeURIComponent(this.o.password)}` : ''}`, log: (l) => this.log('WARNING', l) }),
      ...diskHandlers(),
      ...btrfsHandlers(),
      ...zerotierHandlers(),
      ...kvmHandlers(this.vms),
      ...corexHandlers(this.containers, (id, cmd) => this.dispatch(id, cmd)),
      ...gwHandlers((this.gws = new Gateways({ dataDir: this.o.dataDir, defaultBridge: this.config.containers.bridge, log: (l) => this.log('WARNING', l) }))),
      'corex.logs': (raw) => this.logs.get(logsArgs(raw).container as number) ?? [],
    };
    this.host = new Jobs({
      place: hostPlace,
      handlers,
      bus: this.bus,
      maxJobs: this.config.main.max_jobs,
      onMessage: (m) => this.message(m),
    });
    this.loop = this.serve();
  }

  /** Handlers a container's jobs can run (what coreX registers, §8.2). */
  private containerHandlers(jobs: () => Jobs): Record<string, Handler> {
    return { ...systemHandlers(), ...coreHandlers({ jobs }), ...infoHandlers(), ...filesystemHandlers(), ...processHandlers() };
  }

  private message(m: JobMessage): void {
    if (m.container > 0 && (m.level === 1 || m.level === 2)) {
      const lines = this.logs.get(m.container) ?? [];
      lines.push(m.text);
      if (lines.length > 2 * CONTAINER_LOG_LINES) lines.splice(0, lines.length - CONTAINER_LOG_LINES);
      this.logs.set(m.container, lines);
    }
    // the [logging.*] loggers of §7.1 (an empty level list records everything)
    for (const l of Object.values(this.config.logging)) {
      if (l.levels.length && !l.levels.includes(m.level)) continue;
      if (l.type === 'console') process.stderr.write(`[${m.container}:${m.job}] ${m.level}:: ${m.text}\n`);
      else if (l.type === 'redis')
        this.bus.log('core.logs', { core: m.container, command: m.job, message: { level: m.level, message: m.text, epoch: m.epoch } }, l.batch_size ?? 100_000);
    }
  }

  private async serve(): Promise<void> {
    for (;;) {
      const raw = await this.bus.next();
      if (raw === null || this.stopping) return;
      try {
        await this.take(raw, this.host);
      } catch (e) {
        this.log('ERROR', `command failed to start: ${(e as Error).message}`);
      }
    }
  }

  /** Steps 3-4 of the lifecycle for one raw command; resolves once it holds a job slot. */
  private async take(raw: string | Command, jobs: Jobs): Promise<void> {
    let doc: Record<string, unknown>;
    if (typeof raw === 'string') {
      try {
        doc = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        this.log('WARNING', `dropped a command that is not JSON: ${raw.slice(0, 120)}`);
        return;
      }
    } else doc = raw as unknown as Record<string, unknown>;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      this.log('WARNING', `dropped a command that is not a JSON object: ${String(raw).slice(0, 120)}`);
      return;
    }
    const id = doc.id;
    if (typeof id !== 'string' || !id) {
      this.log('WARNING', `dropped a command without an id: ${JSON.stringify(doc).slice(0, 120)}`);
      return;
    }
    await this.bus.flag(id, !jobs.has(id));
    const bad = envelopeError(doc);
    if (bad) {
      await this.bus.result(errorResult(doc, bad, jobs.container));
      return;
    }
    await jobs.accept(doc as unknown as Command);
  }

  /** corex.dispatch: runs a command in a container's job manager; returns its job id. */
  private dispatch(container: number, inner: Command): string {
    const jobs = this.jobsIn(container);
    const cmd = { ...inner, id: typeof inner.id === 'string' && inner.id ? inner.id : crypto.randomUUID() };
    const bad = envelopeError(cmd as unknown as Record<string, unknown>);
    if (bad) throw new CommandError('invalid', `command: ${bad}`);
    if (jobs.has(cmd.id)) throw new CommandError('conflict', `duplicate job id '${cmd.id}'`);
    void this.take(cmd, jobs).catch((e: Error) => this.log('ERROR', `dispatch to container ${container}: ${e.message}`));
    return cmd.id;
  }

  private jobsIn(container: number): Jobs {
    let jobs = this.inContainer.get(container);
    if (!jobs) {
      const place = this.containers.place(container);
      const made: Jobs = new Jobs({ place, handlers: this.containerHandlers(() => made), bus: this.bus, onMessage: (m) => this.message(m) });
      jobs = made;
      this.inContainer.set(container, jobs);
    }
    return jobs;
  }

  /** A container ended (terminated or its init died): its jobs end with it. */
  private containerGone(id: number): void {
    const jobs = this.inContainer.get(id);
    this.inContainer.delete(id);
    this.logs.delete(id);
    if (jobs) void jobs.stop();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.host.stop().catch(() => undefined);
    await Promise.all([...this.inContainer.values()].map((j) => j.stop().catch(() => undefined)));
    await this.vms.shutdown().catch((e: Error) => this.log('ERROR', `vm shutdown: ${e.message}`));
    await this.gws?.close().catch((e: Error) => this.log('ERROR', `gateway shutdown: ${e.message}`));
    await this.containers.shutdown().catch((e: Error) => this.log('ERROR', `container shutdown: ${e.message}`));
    await this.bus.close();
    await this.loop?.catch(() => undefined);
    await this.redis.stop();
  }
}

function errorResult(doc: Record<string, unknown>, why: string, container: number): Result {
  const tags = doc.tags;
  return {
    id: String(doc.id),
    command: typeof doc.command === 'string' ? doc.command : '',
    data: JSON.stringify(why),
    streams: ['', ''],
    level: 20,
    state: 'ERROR',
    starttime: Date.now(),
    time: 0,
    tags: typeof tags === 'string' || Array.isArray(tags) ? (tags as string | string[]) : null,
    container,
    code: 400,
  };
}
