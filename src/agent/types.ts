// The wire shapes of the core0 protocol (core0-protocol.md §2, §4) and the contract between the
// job manager and the commands it runs.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { type ErrorKind, type ErrorOptions, G8osError, httpStatus } from '../errors';

/** `tags` is a string (alpha-2) or a list of strings (later clients); echoed in the same type. */
export type Tags = string | string[] | null;

export interface Command {
  id: string;
  command: string;
  arguments: unknown;
  queue?: string | null;
  max_time?: number | null;
  max_restart?: number | null;
  recurring_period?: number | null;
  stats_interval?: number | null;
  log_levels?: number[] | null;
  tags?: Tags;
  stream?: boolean | null;
}

export type State = 'SUCCESS' | 'ERROR' | 'TIMEOUT' | 'KILLED' | 'UNKNOWN_CMD' | 'DUPILICATE_ID';

export interface Result {
  id: string;
  command: string;
  data: string;
  streams?: [string, string];
  critical?: string;
  level: number;
  state: State;
  starttime: number;
  time: number;
  tags: Tags;
  container: number;
  code: number;
}

/** The process exit status a job's result stands for: 0, the process's own (code - 1000), else 1. */
export function exitStatus(r: Result): number {
  if (r.state === 'SUCCESS') return 0;
  if (r.code >= 1000) return Math.min(r.code - 1000, 255);
  return 1;
}

/**
 * A built-in's error: becomes state ERROR, `data` = JSON of the message, and `code` = the HTTP
 * status of its kind (src/errors.ts: invalid 400, not_found 404, conflict 409, unavailable 503 …).
 */
export class CommandError extends G8osError {
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(kind, message, options);
  }

  get code(): number {
    return httpStatus(this);
  }
}

/** Returned by a handler that ran a process: the job's state follows the exit. */
export class ProcessExit {
  constructor(readonly code: number | null, readonly signal: NodeJS.Signals | null) {}
}

/** Where a job runs: the host (container 0) or inside a container. */
export interface Place {
  container: number;
  /** host path of the container's root as its processes see it (e.g. /proc/<pid1>/root); '/' on the host */
  root: string;
  /** environment every process started here begins with (the flist's `environ` in a container) */
  env: Record<string, string>;
  /** spawns a process here: on the host directly, in a container through its namespaces */
  spawn(file: string, args: string[], opts: SpawnOptions & { cwd?: string }): ChildProcess;
}

export interface JobContext {
  /** the command as received (id, arguments, tags, ...) */
  cmd: Command;
  place: Place;
  /** aborted when the job is killed or times out */
  signal: AbortSignal;
  /** records one message of the job (level-prefix protocol, §6) */
  emit(level: number, text: string): void;
  /** a process the job started: job.kill signals its process group, job.list counts it */
  track(child: ChildProcess): void;
}

/** A command implementation: its return value is published as level-20 JSON, unless it is a ProcessExit. */
export type Handler = (args: unknown, ctx: JobContext) => Promise<unknown> | unknown;
