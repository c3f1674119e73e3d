// The node beside the hub (web/README.md, "The node"): when the hub runs next to an agent
// (`g8os start`, `g8os hub --agent …`), the pages list its containers and jobs, start a
// container from an flist and follow the command's output, and terminate containers.
//
// Each started command's output is read from the agent ONCE (its `stream:<job>` list is
// consumed by BLPOP) and fanned out to any number of server-sent-event listeners; the lines are
// kept (the last MAX_LINES) so a listener that comes late, or reconnects, gets them first.
import crypto from 'node:crypto';
import { type NextFunction, type Request, type Response, Router } from 'express';
import { Client, Response as AgentResponse, ResultError } from '../agent/client';
import { exitStatus, type Result } from '../agent/types';
import { G8osError, invalid, isKind, notFound, unavailable } from '../errors';
import { readBody } from './blocks';
import type { AgentAddress } from './config';
import { bearer, route, sendJson, success, userFor } from './http';
import { findFlist } from './listings';
import { follow, startEvents } from './progress';
import { flistName, type Registry } from './registry';

/** The agent's answer relayed as the hub's: 502 = the agent failed, not the hub. */
const agentFailed = (message: string): G8osError => unavailable(message, { status: 502 });

/** Lines of output kept per job for late listeners. */
export const MAX_LINES = 5000;
/** How long a finished job's output stays listenable. */
export const KEEP_FINISHED_MS = 5 * 60_000;
/** The hub's own queries (job.list, …) carry this tag, so the jobs list can leave them out. */
const HUB_TAG = 'g8os-hub-query';
const MAX_BODY = 256 * 1024;
const IDLE_CLIENTS = 4;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

// -- the agent -------------------------------------------------------------------------------

/**
 * Connections to the agent. A client's blocking reads (results, streams) hold its connection,
 * so each call takes a client of its own from a small pool, and each followed job one more.
 */
class AgentLink {
  private readonly idle: Client[] = [];
  private readonly inUse = new Set<Client>();
  private closed = false;

  constructor(readonly address: AgentAddress) {}

  /** A connected client of its own; 502 when the agent does not answer. */
  async connect(): Promise<Client> {
    if (this.closed) throw unavailable('the hub is stopping');
    for (;;) {
      const c = this.idle.pop();
      if (!c) break;
      if (c.redis.status === 'ready') {
        this.inUse.add(c);
        return c;
      }
      c.close();
    }
    try {
      const c = await new Client(this.address.url, this.address.password).open();
      if (this.closed) {
        c.close();
        throw unavailable('the hub is stopping');
      }
      this.inUse.add(c);
      return c;
    } catch (e) {
      if (e instanceof G8osError) throw e;
      throw agentFailed((e as Error).message);
    }
  }

  /** Back to the pool when it is still good, else closed. */
  release(c: Client, good: boolean): void {
    this.inUse.delete(c);
    if (good && !this.closed && c.redis.status === 'ready' && this.idle.length < IDLE_CLIENTS) this.idle.push(c);
    else c.close();
  }

  /** Runs fn with a pooled client; agent failures become hub errors (404 stays 404, the rest 502). */
  async with<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const c = await this.connect();
    let good = false;
    try {
      const v = await fn(c);
      good = true;
      return v;
    } catch (e) {
      good = e instanceof ResultError;
      throw agentError(e);
    } finally {
      this.release(c, good);
    }
  }

  /** A built-in on the host; its decoded value, or the agent's error. */
  call<T>(command: string, args: unknown, timeoutSeconds = 60): Promise<T> {
    return this.with(async (c) => decode<T>(await (await c.raw(command, args, { tags: [HUB_TAG] })).get(timeoutSeconds)));
  }

  /** corex.dispatch of a command into a container; resolves with the inner job's id. */
  dispatch(container: number, command: string, args: unknown, o: { id?: string; stream?: boolean; tags?: string[] } = {}): Promise<string> {
    const inner: Record<string, unknown> = { command, arguments: args, queue: null, max_time: null, tags: o.tags ?? [HUB_TAG] };
    if (o.id) inner.id = o.id;
    if (o.stream) inner.stream = true;
    return this.call<string>('corex.dispatch', { container, command: inner }, 30);
  }

  /** A built-in run in a container; its decoded value. */
  async inContainer<T>(container: number, command: string, args: unknown, timeoutSeconds = 30): Promise<T> {
    const id = await this.dispatch(container, command, args);
    return this.with(async (c) => decode<T>(await new AgentResponse(c, id).get(timeoutSeconds)));
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.idle, ...this.inUse]) c.close();
    this.idle.length = 0;
    this.inUse.clear();
  }
}

function decode<T>(r: Result): T {
  if (r.state !== 'SUCCESS') throw new ResultError(r);
  return (r.data ? JSON.parse(r.data) : null) as T;
}

function agentError(e: unknown): G8osError {
  if (e instanceof G8osError) return e;
  if (e instanceof ResultError) return e.result.code === 404 ? notFound(e.message) : agentFailed(e.message);
  return agentFailed(`agent: ${(e as Error).message}`);
}

// -- followed jobs ---------------------------------------------------------------------------

interface Line {
  seq: number;
  stream: 1 | 2;
  line: string;
}

export interface JobEnd {
  state: string;
  code: number;
  exit: number;
  /** why, when the job failed without running a process (or the hub lost it) */
  message?: string;
}

/** One command the hub started: its output, read once from the agent, replayed to listeners. */
class NodeJob {
  readonly lines: Line[] = [];
  private seq = 0;
  end?: JobEnd;
  private readonly listeners = new Set<Response>();

  constructor(
    readonly id: string,
    readonly container: number,
    private readonly onEnd: () => void,
  ) {}

  /** Reads the job's stream until its end, then its result. */
  async follow(link: AgentLink): Promise<void> {
    let c: Client | undefined;
    let good = false;
    try {
      c = await link.connect();
      const resp = new AgentResponse(c, this.id);
      await resp.stream((level, text) => {
        if (level !== 1 && level !== 2) return;
        for (const line of text.split('\n')) this.push(level, line);
      });
      const r = await resp.get(30);
      good = true;
      const end: JobEnd = { state: r.state, code: r.code, exit: exitStatus(r) };
      if (r.state !== 'SUCCESS' && r.code < 1000) end.message = ResultError.text(r);
      this.finish(end);
    } catch (e) {
      this.finish({ state: 'ERROR', code: 0, exit: 1, message: `the hub lost this job's output: ${(e as Error).message}` });
    } finally {
      if (c) link.release(c, good);
    }
  }

  private push(stream: 1 | 2, line: string): void {
    const l: Line = { seq: ++this.seq, stream, line };
    this.lines.push(l);
    if (this.lines.length > MAX_LINES + 500) this.lines.splice(0, this.lines.length - MAX_LINES);
    const f = lineFrame(l);
    for (const res of this.listeners) res.write(f);
  }

  finish(end: JobEnd): void {
    if (this.end) return;
    this.end = end;
    const f = endFrame(end);
    for (const res of this.listeners) res.end(f);
    this.listeners.clear();
    this.onEnd();
  }

  /** Everything after Last-Event-ID (all when absent), then live lines, then `end`. */
  listen(req: Request, res: Response): void {
    startEvents(res);
    const last = Number(req.headers['last-event-id']);
    const after = Number.isInteger(last) && last > 0 ? last : 0;
    const first = this.lines.length ? this.lines[0].seq : this.seq + 1;
    if (first > after + 1) res.write(`event: skipped\ndata: ${JSON.stringify({ lines: first - after - 1 })}\n\n`);
    const parts: string[] = [];
    for (const l of this.lines) if (l.seq > after) parts.push(lineFrame(l));
    if (parts.length) res.write(parts.join(''));
    if (this.end) {
      res.end(endFrame(this.end));
      return;
    }
    follow(req, res, this.listeners);
  }

  /** Listeners are ended (hub stopping). */
  close(): void {
    for (const res of this.listeners) res.end();
    this.listeners.clear();
  }
}

const lineFrame = (l: Line): string => `id: ${l.seq}\ndata: ${JSON.stringify({ stream: l.stream, line: l.line })}\n\n`;
const endFrame = (e: JobEnd): string => `event: end\ndata: ${JSON.stringify(e)}\n\n`;

// -- routes ----------------------------------------------------------------------------------

interface ContainerInfo {
  cpu: number;
  rss: number;
  container: {
    arguments: { root: string; hostname?: string | null; tags?: string | string[] | null };
    pid: number;
    starttime: number;
    entrypoint?: string[];
  };
}

interface AgentJob {
  cpu: number;
  rss: number;
  starttime: number;
  cmd: { id: string; command: string; arguments?: unknown; tags?: string | string[] | null };
}

const tagList = (t: string | string[] | null | undefined): string[] => (t == null ? [] : Array.isArray(t) ? t : [t]);

/** What a job runs, for people: the command line of core.system / bash, else the command. */
function commandText(cmd: AgentJob['cmd']): string {
  const a = (cmd.arguments ?? {}) as { name?: unknown; args?: unknown; script?: unknown };
  if (cmd.command === 'core.system' && typeof a.name === 'string') {
    return [a.name, ...(Array.isArray(a.args) ? a.args.map(String) : [])].join(' ');
  }
  if (cmd.command === 'bash' && typeof a.script === 'string') return a.script;
  return cmd.command;
}

/** job.list gives cpu seconds used: as an average % of one CPU over the job's life so far. */
function cpuPercent(j: AgentJob, now: number): number {
  const secs = (now - j.starttime) / 1000;
  return secs > 0 ? Math.round((j.cpu / secs) * 10000) / 100 : 0;
}

/** The command of a create request: argv, or undefined for the flist's entrypoint. */
function parseCommand(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v.trim() === '' ? undefined : ['sh', '-c', v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) {
    if (v.length === 0) return undefined;
    if (v[0] === '') throw invalid('command: the program name is empty');
    return v as string[];
  }
  throw invalid('command: expected a string (run by sh -c) or a list of strings (argv)');
}

export interface NodeDeps {
  registry: Registry;
  /** the agent's address now: `g8os start` sets it once its agent runs */
  agent: () => AgentAddress | null;
  publicUrl: string;
}

export interface NodeApi {
  router: Router;
  close(): void;
}

/** /api/node/...: the agent beside the hub, for the node pages. */
export function nodeApi(deps: NodeDeps): NodeApi {
  const { registry: reg } = deps;
  const app = Router();
  let link: AgentLink | undefined;
  const jobs = new Map<string, NodeJob>();
  let closed = false;

  /** The agent's link for the address configured now (g8os start sets it once its agent runs). */
  const agent = (): AgentLink => {
    const a = deps.agent();
    if (!a) throw notFound('no agent beside this hub');
    if (closed) throw unavailable('the hub is stopping');
    if (!link || link.address.url !== a.url || link.address.password !== a.password) {
      link?.close();
      link = new AgentLink({ ...a });
    }
    return link;
  };

  /** 404 without an agent, then 401 without a valid token (header, or ?token= for EventSource). */
  const guard = (req: Request, _res: Response, next: NextFunction): void => {
    try {
      agent();
      userFor(reg, bearer(req) ?? (typeof req.query.token === 'string' && req.query.token ? req.query.token : undefined));
      next();
    } catch (e) {
      next(e);
    }
  };

  app.get('/', (_req, res) => sendJson(res, 200, { available: !!deps.agent() }));

  app.get('/containers', guard, route(async (_req, res) => {
    const list = await agent().call<Record<string, ContainerInfo>>('corex.list', {}, 30);
    const now = Date.now();
    const latest = new Map<number, string>();
    for (const j of jobs.values()) latest.set(j.container, j.id); // insertion order: the last wins
    const containers = Object.entries(list)
      .map(([id, v]) => {
        const a = v.container.arguments;
        const start = v.container.starttime;
        const job = latest.get(Number(id));
        return {
          id: Number(id), flist: a.root, tags: tagList(a.tags), hostname: a.hostname ?? null, pid: v.container.pid,
          starttime: start, uptime: Math.max(0, Math.floor((now - start) / 1000)), cpu: v.cpu, memory: v.rss,
          ...(job ? { job } : {}),
        };
      })
      .sort((x, y) => x.id - y.id);
    sendJson(res, 200, { containers });
  }));

  app.post('/containers', guard, route(async (req, res) => {
    const a = agent();
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, MAX_BODY)).toString('utf8'));
    } catch (e) {
      if (e instanceof G8osError) throw e;
      throw invalid('body: expected JSON {flist, command?, name?}');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body: expected a JSON object {flist, command?, name?}');
    const b = body as { flist?: unknown; command?: unknown; name?: unknown };
    const root = flistUrl(b.flist);
    let argv = parseCommand(b.command);
    const name = b.name === undefined || b.name === null || b.name === '' ? undefined : b.name;
    if (name !== undefined && (typeof name !== 'string' || !HOSTNAME.test(name))) {
      throw invalid('name: letters, digits and "-" (a host name), at most 63');
    }
    const id = await a.call<number>('corex.create', {
      root, mount: null, host_network: false, nics: [{ type: 'default' }], port: null, privileged: false, storage: null,
      hostname: name ?? null, tags: name ? [name] : null,
    }, 300);
    let job: NodeJob;
    try {
      if (!argv) {
        const list = await a.call<Record<string, ContainerInfo>>('corex.list', {}, 30);
        argv = list[String(id)]?.container.entrypoint;
        if (!argv?.length) throw invalid(`${String(b.flist)} has no entrypoint: give a command`);
      }
      const jobId = crypto.randomUUID();
      await a.dispatch(id, 'core.system', { name: argv[0], args: argv.slice(1), dir: '', stdin: '', env: null }, { id: jobId, stream: true, tags: [] });
      job = new NodeJob(jobId, id, () => {
        setTimeout(() => {
          if (jobs.get(jobId) === job) jobs.delete(jobId);
        }, KEEP_FINISHED_MS).unref();
      });
      jobs.set(jobId, job);
    } catch (e) {
      await a.call('corex.terminate', { container: id }, 120).catch(() => undefined);
      throw e;
    }
    void job.follow(a);
    sendJson(res, 200, { id, job: job.id });
  }));

  app.delete('/containers/:id', guard, route(async (req: Request<Record<string, string>>, res) => {
    if (!/^\d{1,9}$/.test(req.params.id) || Number(req.params.id) === 0) throw invalid(`container id ${JSON.stringify(req.params.id)}: expected a positive number`);
    await agent().call('corex.terminate', { container: Number(req.params.id) }, 120);
    success(res);
  }));

  app.get('/jobs', guard, route(async (_req, res) => {
    const a = agent();
    const [host, list] = await Promise.all([a.call<AgentJob[]>('job.list', {}, 30), a.call<Record<string, unknown>>('corex.list', {}, 30)]);
    const now = Date.now();
    const inside = await Promise.all(
      Object.keys(list).map(async (id) => ({
        container: Number(id),
        // a container that went away meanwhile has no jobs
        jobs: await a.inContainer<AgentJob[]>(Number(id), 'job.list', {}).catch(() => [] as AgentJob[]),
      })),
    );
    const out = [{ container: 0, jobs: host }, ...inside]
      .flatMap(({ container, jobs: js }) =>
        js.filter((j) => !tagList(j.cmd.tags).includes(HUB_TAG))
          .map((j) => ({ id: j.cmd.id, command: commandText(j.cmd), container, starttime: j.starttime, cpu: cpuPercent(j, now), rss: j.rss })))
      .sort((x, y) => x.starttime - y.starttime);
    sendJson(res, 200, { jobs: out });
  }));

  app.get('/jobs/:job/output', guard, (req: Request<Record<string, string>>, res: Response, next: NextFunction) => {
    const job = jobs.get(req.params.job);
    if (!job) return next(notFound('job not found (the hub follows only the commands it started, until 5 minutes after they end)'));
    job.listen(req, res);
  });

  /** The flist a create request names, as the URL the agent fetches. */
  function flistUrl(v: unknown): string {
    if (typeof v !== 'string' || v.trim() === '') throw invalid('flist: expected an http(s) flist URL or user/name.flist on this hub');
    const s = v.trim();
    if (/^https?:\/\//i.test(s)) {
      try {
        return new URL(s).toString();
      } catch {
        throw invalid(`flist: ${JSON.stringify(s)} is not a URL`);
      }
    }
    const m = /^\/?([^/]+)\/([^/]+)$/.exec(s);
    if (!m) throw invalid(`flist: ${JSON.stringify(s)}: expected an http(s) flist URL or user/name.flist on this hub`);
    try {
      findFlist(reg, m[1], m[2]);
    } catch (e) {
      if (isKind(e, 'not_found')) throw invalid(`flist: no flist ${m[1]}/${m[2]} on this hub`);
      throw e;
    }
    return `${deps.publicUrl}/${encodeURIComponent(m[1])}/${encodeURIComponent(flistName(m[2]))}`;
  }

  return {
    router: app,
    close() {
      closed = true;
      for (const j of jobs.values()) j.close();
      link?.close();
    },
  };
}
