// One error vocabulary for every stage: a thrower names what kind of failure it is; the HTTP
// status, the CLI exit code, the FUSE errno and the agent's result code all come from KINDS.
// Callers branch on `kind`, never on message text or class names.

export type ErrorKind =
  | 'invalid' // the caller's input is wrong (a bad tarball, a bad argument, a bad name)
  | 'usage' // the command line itself is wrong (unknown flag, missing argument)
  | 'not_found' // what was named does not exist
  | 'corrupt' // stored data fails its check (a block that does not decode to its key)
  | 'too_large' // over a configured or protocol limit
  | 'unavailable' // a store, hub, agent or server cannot be reached, or timed out
  | 'conflict' // the state forbids it now (busy name, already mounted, duplicate id)
  | 'unauthorized' // no or wrong credentials
  | 'internal'; // a bug or an unclassified failure: never thrown on purpose

export interface KindInfo {
  /** HTTP status a server answers with (the agent's result `code` uses the same numbers) */
  http: number;
  /** exit code of the CLI (2 = fix the command line, 1 = anything else, as before) */
  exit: number;
  /** errno name a filesystem answers with */
  errno: string;
}

export const KINDS: Readonly<Record<ErrorKind, KindInfo>> = {
  invalid: { http: 400, exit: 1, errno: 'EINVAL' },
  usage: { http: 400, exit: 2, errno: 'EINVAL' },
  not_found: { http: 404, exit: 1, errno: 'ENOENT' },
  corrupt: { http: 500, exit: 1, errno: 'EIO' },
  too_large: { http: 413, exit: 1, errno: 'EFBIG' },
  unavailable: { http: 503, exit: 1, errno: 'EIO' },
  conflict: { http: 409, exit: 1, errno: 'EBUSY' },
  unauthorized: { http: 401, exit: 1, errno: 'EACCES' },
  internal: { http: 500, exit: 1, errno: 'EIO' },
};

export interface ErrorOptions {
  cause?: unknown;
  /** a more precise errno than the kind's (ENOTDIR, ELOOP, EROFS …) */
  errno?: string;
  /** a status passed through from an upstream server (the hub relaying an agent's 502) */
  status?: number;
}

export class G8osError extends Error {
  readonly kind: ErrorKind;
  readonly errnoName?: string;
  readonly statusOverride?: number;

  constructor(kind: ErrorKind, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.kind = kind;
    this.errnoName = options.errno;
    this.statusOverride = options.status;
  }
}

/** Shorthands, so a throw reads as what went wrong: `throw notFound('no flist x')`. */
export const invalid = (message: string, o?: ErrorOptions): G8osError => new G8osError('invalid', message, o);
export const usage = (message: string, o?: ErrorOptions): G8osError => new G8osError('usage', message, o);
export const notFound = (message: string, o?: ErrorOptions): G8osError => new G8osError('not_found', message, o);
export const corrupt = (message: string, o?: ErrorOptions): G8osError => new G8osError('corrupt', message, o);
export const tooLarge = (message: string, o?: ErrorOptions): G8osError => new G8osError('too_large', message, o);
export const unavailable = (message: string, o?: ErrorOptions): G8osError => new G8osError('unavailable', message, o);
export const conflict = (message: string, o?: ErrorOptions): G8osError => new G8osError('conflict', message, o);
export const unauthorized = (message: string, o?: ErrorOptions): G8osError => new G8osError('unauthorized', message, o);

// Node's own errors carry an errno code; these are the ones whose meaning is clear.
const NODE_CODES: Record<string, ErrorKind> = {
  ENOENT: 'not_found',
  ENOTDIR: 'not_found',
  EEXIST: 'conflict',
  EBUSY: 'conflict',
  ENOTEMPTY: 'conflict',
  EACCES: 'unauthorized',
  EPERM: 'unauthorized',
  EINVAL: 'invalid',
  EISDIR: 'invalid',
  E2BIG: 'too_large',
  EFBIG: 'too_large',
  ENOSPC: 'unavailable',
  ECONNREFUSED: 'unavailable',
  ECONNRESET: 'unavailable',
  EHOSTUNREACH: 'unavailable',
  ENETUNREACH: 'unavailable',
  ENOTFOUND: 'unavailable',
  EAI_AGAIN: 'unavailable',
  ETIMEDOUT: 'unavailable',
  EPIPE: 'unavailable',
};

/** The kind of any thrown value: ours by its kind, Node's by its errno code, else internal. */
export function kindOf(e: unknown): ErrorKind {
  if (e instanceof G8osError) return e.kind;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && code in NODE_CODES) return NODE_CODES[code];
  return 'internal';
}

export const isKind = (e: unknown, kind: ErrorKind): boolean => kindOf(e) === kind;

export function httpStatus(e: unknown): number {
  if (e instanceof G8osError && e.statusOverride !== undefined) return e.statusOverride;
  return KINDS[kindOf(e)].http;
}

export const exitCode = (e: unknown): number => KINDS[kindOf(e)].exit;

/** errno name for a filesystem answer: the error's own precise one, else its kind's. */
export function errnoName(e: unknown): string {
  if (e instanceof G8osError && e.errnoName) return e.errnoName;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && !(e instanceof G8osError)) return code;
  return KINDS[kindOf(e)].errno;
}

/** One line, for a CLI's stderr or a JSON `message`. */
export function oneLine(e: unknown): string {
  const m = e instanceof Error ? e.message || e.name : String(e);
  return m.replace(/\s*\n\s*/g, ' ').trim();
}
