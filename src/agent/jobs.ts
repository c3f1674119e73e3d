// The process manager (core0-protocol.md §3, §5): runs accepted commands as jobs with queues,
// max_time, max_restart, recurring_period and a max_jobs bound, and publishes one result per job.
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { STREAM_FLAG, type StreamEntry } from './bus';
import { G8osError, httpStatus } from '../errors';
import { CommandError, type Command, type Handler, type JobContext, type Place, ProcessExit, type Result, type State } from './types';

/** What jobs need from the bus. */
export interface Publisher {
  result(r: Result): Promise<void>;
  stream(id: string, e: StreamEntry): void;
}

/** A message of a job, as loggers and subscribers see it. */
export interface JobMessage {
  job: string;
  container: number;
  level: number;
  text: string;
  /** nanoseconds since the epoch */
  epoch: number;
}

export interface JobsOptions {
  place: Place;
  handlers: Record<string, Handler>;
  bus: Publisher;
  maxJobs?: number;
  /** every message of every job (loggers) */
  onMessage?: (m: JobMessage) => void;
}

const KEEP_LINES = 1000;
const RESTART_DELAY_MS = 1000;

class Lines {
  private lines: string[] = [];
  push(s: string): void {
    this.lines.push(s);
    if (this.lines.length > 2 * KEEP_LINES) this.lines = this.lines.slice(-KEEP_LINES);
  }
  text(): string {
    const l = this.lines.length > KEEP_LINES ? this.lines.slice(-KEEP_LINES) : this.lines;
    return l.map((x) => `${x}\n`).join('');
  }
}

/** One accepted command, from acceptance (possibly queued) to its published result. */
export class Job {
  starttime = Date.now();
  started = false;
  children = new Set<ChildProcess>();
  /** set by job.kill (KILLED) or max_time (TIMEOUT) */
  endAs?: State;
  stopped = false;
  ctl = new AbortController();
  out = new Lines();
  err = new Lines();
  data = '';
  level = 0;
  critical = '';
  listeners = new Set<(m: JobMessage) => void>();
  readonly done: Promise<Result>;
  resolve!: (r: Result) => void;

  constructor(readonly cmd: Command) {
    this.done = new Promise((r) => (this.resolve = r));
  }

  pids(): number[] {
    return [...this.children].map((c) => c.pid).filter((p): p is number => typeof p === 'number' && p > 0);
  }

  signal(sig: NodeJS.Signals): void {
    for (const pid of this.pids()) {
      try {
        process.kill(-pid, sig); // the process group: spawned with setsid
      } catch {
        try {
          process.kill(pid, sig);
        } catch {
          // already gone
        }
      }
    }
  }
}

class Slots {
  private used = 0;
  private waiters: (() => void)[] = [];
  constructor(private readonly max: number) {}
  get busy(): number {
    return this.used;
  }
  async take(): Promise<void> {
    if (this.used < this.max) {
      this.used++;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }
  give(): void {
    const next = this.waiters.shift();
    if (next) next(); // the slot passes straight to the next waiter
    else this.used--;
  }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

export class Jobs {
  readonly place: Place;
  private readonly jobs = new Map<string, Job>();
  private readonly queues = new Map<string, Promise<void>>();
  private readonly slots: Slots;

  constructor(private readonly opts: JobsOptions) {
    this.place = opts.place;
    this.slots = new Slots(opts.maxJobs ?? 4096);
  }

  get container(): number {
    return this.place.container;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  list(): Job[] {
    return [...this.jobs.values()];
  }

  get running(): number {
    return this.slots.busy;
  }

  /**
   * Takes a command whose flag is already set: answers UNKNOWN_CMD / DUPILICATE_ID at once, else
   * starts it. Resolves once the job holds a slot (or is queued): the caller stops reading its
   * inbox meanwhile, which is the back-pressure of max_jobs.
   */
  async accept(cmd: Command): Promise<void> {
    if (!Object.hasOwn(this.opts.handlers, cmd.command)) {
      await this.publishBare(cmd, 'UNKNOWN_CMD', '', 404);
      return;
    }
    if (this.jobs.has(cmd.id)) {
      await this.publishBare(cmd, 'DUPILICATE_ID', 'duplicate job id', 409);
      return;
    }
    const job = new Job(cmd);
    this.jobs.set(cmd.id, job);
    const queue = cmd.queue || '';
    if (queue) {
      const prev = this.queues.get(queue) ?? Promise.resolve();
      const mine = prev.then(async () => {
        await this.slots.take();
        await this.run(job);
      });
      this.queues.set(queue, mine);
      void mine.finally(() => {
        if (this.queues.get(queue) === mine) this.queues.delete(queue);
      });
      return;
    }
    await this.slots.take();
    void this.run(job);
  }

  /** job.kill: SIGTERM and SIGKILL end the job as KILLED (also stopping restarts and recurrences). */
  kill(id: string, sig: NodeJS.Signals = 'SIGTERM'): void {
    const job = this.jobs.get(id);
    if (!job) throw new CommandError('not_found', `Process with id '${id}' doesn't exist`);
    if (sig === 'SIGTERM' || sig === 'SIGKILL') {
      job.endAs ??= 'KILLED';
      job.stopped = true;
      job.ctl.abort();
    }
    job.signal(sig);
  }

  /** job.killall: every job (there are no protected jobs among commands). */
  killAll(): void {
    for (const id of this.jobs.keys()) this.kill(id, 'SIGTERM');
  }

  /** Kills everything and waits for the results to be published. */
  async stop(): Promise<void> {
    const pending = this.list().map((j) => j.done);
    this.killAll();
    const t = setTimeout(() => this.list().forEach((j) => j.signal('SIGKILL')), 3000);
    await Promise.all(pending);
    clearTimeout(t);
  }

  private async run(job: Job): Promise<void> {
    const { cmd } = job;
    let result: Result;
    try {
      const maxRestart = cmd.max_restart ?? 0;
      const period = cmd.recurring_period ?? 0;
      for (let runs = 1; ; runs++) {
        result = await this.runOnce(job);
        if (job.stopped) break;
        if (period > 0) {
          await sleep(period * 1000, job.ctl.signal);
          if (job.stopped) break;
          continue;
        }
        if (result.state === 'SUCCESS' || runs >= maxRestart) break;
        await sleep(RESTART_DELAY_MS, job.ctl.signal);
        if (job.stopped) break;
      }
      if (job.endAs && result.state !== job.endAs) result = { ...result, state: job.endAs, code: result.code || 500 };
    } finally {
      this.jobs.delete(cmd.id);
      this.slots.give();
    }
    await this.opts.bus.result(result).catch(() => undefined);
    this.eof(job, result);
    job.resolve(result);
  }

  private async runOnce(job: Job): Promise<Result> {
    const { cmd } = job;
    job.starttime = Date.now();
    job.started = true;
    job.out = new Lines();
    job.err = new Lines();
    job.data = '';
    job.level = 0;
    job.critical = '';
    job.children.clear();
    if (job.ctl.signal.aborted && !job.stopped) job.ctl = new AbortController();
    const ctx: JobContext = {
      cmd,
      place: this.place,
      signal: job.ctl.signal,
      emit: (level, text) => this.message(job, level, text),
      track: (child) => job.children.add(child),
    };
    let timer: NodeJS.Timeout | undefined;
    if (cmd.max_time && cmd.max_time > 0) {
      timer = setTimeout(() => {
        job.endAs = 'TIMEOUT';
        job.stopped = true;
        job.ctl.abort();
        job.signal('SIGKILL');
      }, cmd.max_time * 1000);
    }
    let state: State;
    let code: number;
    try {
      if (job.stopped) throw new CommandError('internal', 'killed before it started');
      const out = await this.opts.handlers[cmd.command](cmd.arguments, ctx);
      if (out instanceof ProcessExit) {
        state = out.code === 0 ? 'SUCCESS' : 'ERROR';
        code = out.code === 0 ? 0 : 1000 + (out.code ?? 128 + (out.signal ? os.constants.signals[out.signal] : 0));
      } else {
        this.message(job, 20, JSON.stringify(out ?? null));
        state = 'SUCCESS';
        code = 0;
      }
    } catch (e) {
      const err = e as Error;
      state = 'ERROR';
      code = e instanceof G8osError ? httpStatus(e) : 500;
      if (!job.endAs) {
        this.message(job, 20, JSON.stringify(err.message ?? String(e)));
        if (!(e instanceof G8osError)) job.critical = `PANIC(${err.message})`;
      }
    } finally {
      clearTimeout(timer);
    }
    if (job.endAs) state = job.endAs;
    const result: Result = {
      id: cmd.id,
      command: cmd.command,
      data: job.data,
      streams: [job.out.text(), job.err.text()],
      level: job.level,
      state,
      starttime: job.starttime,
      time: Date.now() - job.starttime,
      tags: cmd.tags ?? null,
      container: this.place.container,
      code,
    };
    if (job.critical) result.critical = job.critical;
    return result;
  }

  private message(job: Job, level: number, text: string): void {
    if (level === 1) job.out.push(text);
    else if (level === 2) job.err.push(text);
    else if (level === 9) job.critical = text;
    else if ((level >= 20 && level <= 23) || level === 30) {
      job.data = text;
      job.level = level;
    }
    const m: JobMessage = { job: job.cmd.id, container: this.place.container, level, text, epoch: Date.now() * 1e6 };
    if (job.cmd.stream) {
      this.opts.bus.stream(job.cmd.id, {
        core: m.container,
        command: m.job,
        message: { message: text, epoch: m.epoch, meta: (level << 16) | STREAM_FLAG.MESSAGE },
      });
    }
    for (const l of job.listeners) l(m);
    this.opts.onMessage?.(m);
  }

  /** The last `stream:<id>` entry: EOF with the job's outcome. */
  private eof(job: Job, r: Result): void {
    const flag = r.state === 'SUCCESS' ? STREAM_FLAG.EXIT_SUCCESS : STREAM_FLAG.EXIT_ERROR;
    const m: JobMessage = { job: r.id, container: r.container, level: 50, text: r.state, epoch: Date.now() * 1e6 };
    for (const l of job.listeners) l(m);
    if (!job.cmd.stream) return;
    this.opts.bus.stream(r.id, { core: r.container, command: r.id, message: { message: `${r.state} ${r.code}`, epoch: m.epoch, meta: (50 << 16) | flag } });
  }

  private async publishBare(cmd: Command, state: State, data: string, code: number): Promise<void> {
    const now = Date.now();
    await this.opts.bus.result({
      id: cmd.id, command: cmd.command, data, level: 0, state, starttime: now, time: 0, tags: cmd.tags ?? null, container: this.place.container, code,
    });
  }
}
