// Long-running hub work (uploads, conversions) as jobs whose progress is replayed to any number
// of listeners as server-sent events at /listen/<job> (hub-api.md §9).
import crypto from 'node:crypto';
import { type Request, type Response, Router } from 'express';
import { conflict, invalid } from '../errors';
import { sendJson } from './http';

export type JobEvent =
  | { status: 'update'; message: string; progress: number }
  | { status: 'info'; info: unknown }
  | { status: 'error'; message: string };

/** Client-chosen ids: a uuid or similar, nothing that needs escaping anywhere. */
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/;
/** How long a finished job stays listenable. */
export const KEEP_FINISHED_MS = 5 * 60_000;
const PING_MS = 15_000;

export class Job {
  readonly events: JobEvent[] = [];
  private readonly listeners = new Set<Response>();
  private progress = 0;
  done = false;

  constructor(
    readonly id: string,
    private readonly onEnd: () => void = () => undefined,
  ) {}

  /** A progress step; progress never goes backwards and repeats are dropped. */
  update(message: string, progress = this.progress): void {
    if (this.done) return;
    const p = Math.max(this.progress, Math.min(100, Math.floor(progress)));
    const last = this.events[this.events.length - 1];
    if (last?.status === 'update' && last.message === message && last.progress === p) return;
    this.progress = p;
    this.emit({ status: 'update', message, progress: p });
  }

  finish(info: unknown): void {
    if (this.done) return;
    this.emit({ status: 'info', info });
    this.end();
  }

  fail(message: string): void {
    if (this.done) return;
    this.emit({ status: 'error', message });
    this.end();
  }

  /** Replay everything so far, then follow until the final event. */
  listen(req: Request, res: Response): void {
    startEvents(res);
    for (const e of this.events) res.write(frame(e));
    if (this.done) {
      res.end();
      return;
    }
    follow(req, res, this.listeners);
  }

  private emit(e: JobEvent): void {
    this.events.push(e);
    for (const res of this.listeners) res.write(frame(e));
  }

  private end(): void {
    this.done = true;
    for (const res of this.listeners) res.end();
    this.listeners.clear();
    this.onEnd();
  }
}

const frame = (e: JobEvent): string => `data: ${JSON.stringify(e)}\n\n`;

export class Jobs {
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly keepMs = KEEP_FINISHED_MS) {}

  /** A new job under the client's id (validated, must be unused) or a generated one. */
  create(clientId?: string): Job {
    if (clientId !== undefined && !JOB_ID.test(clientId)) {
      throw invalid(`invalid job id ${JSON.stringify(clientId.slice(0, 80))}: use 8 to 64 letters, digits, "-" or "_" (a uuid)`);
    }
    if (clientId !== undefined && this.jobs.has(clientId)) throw conflict(`job id ${clientId} is already in use`);
    const job: Job = new Job(clientId ?? crypto.randomUUID(), () => this.retire(job));
    this.jobs.set(job.id, job);
    return job;
  }

  /** A job for this request: the client's X-Job-Id when it sent one; echoed as X-Job-Id. */
  forRequest(req: Request, res: Response): Job {
    const clientId = req.headers['x-job-id'];
    const job = this.create(typeof clientId === 'string' ? clientId : undefined);
    res.setHeader('X-Job-Id', job.id);
    return job;
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Forget a job some time after its final event (until then late listeners still replay). */
  private retire(job: Job): void {
    setTimeout(() => {
      if (this.jobs.get(job.id) === job) this.jobs.delete(job.id);
    }, this.keepMs).unref();
  }
}

/** GET /listen/<job>: a job's events, replayed then followed. */
export function progressRouter(jobs: Jobs): Router {
  const router = Router();
  router.get('/:job', (req: Request, res: Response) => {
    const job = jobs.get(String(req.params.job));
    if (!job) return sendJson(res, 404, { status: 'error', message: 'job id not found' });
    job.listen(req, res);
  });
  return router;
}

/** Server-sent events: the response headers, sent at once. */
export function startEvents(res: Response): void {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('X-Accel-Buffering', 'no'); // proxies must not hold events back
  res.flushHeaders();
}

/** Keeps an event stream in `listeners` until either side closes it, with keep-alive comments. */
export function follow(req: Request, res: Response, listeners: Set<Response>): void {
  listeners.add(res);
  const ping = setInterval(() => res.write(': ping\n\n'), PING_MS);
  ping.unref();
  const drop = (): void => {
    clearInterval(ping);
    listeners.delete(res);
  };
  req.on('close', drop);
  res.on('close', drop);
}
