// What every hub router shares: the JSON envelope, bearer-token auth, async handlers and the
// one error middleware (status from the error's kind, src/errors.ts).
import type { NextFunction, Request, Response } from 'express';
import { G8osError, httpStatus, invalid, oneLine, unauthorized } from '../errors';
import type { Registry } from './registry';

/** The user a request acts as, set by requireUser. */
export interface AuthedRequest extends Request {
  user?: string;
}

export function sendJson(res: Response, status: number, body: unknown): void {
  res.status(status).type('application/json').end(`${JSON.stringify(body)}\n`);
}

export const success = (res: Response, payload?: unknown): void =>
  sendJson(res, 200, payload === undefined ? { status: 'success' } : { status: 'success', payload });

/** Bearer token of the request, or undefined; a malformed header is a 400. */
export function bearer(req: Request): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^bearer\s+(\S+)\s*$/i.exec(h);
  if (!m) throw invalid('invalid authorization header');
  return m[1];
}

/** The user a token names; 401 without one or with a bad one. */
export function userFor(registry: Registry, token: string | undefined): string {
  if (!token) throw unauthorized('no authorization provided');
  const user = registry.userForToken(token);
  if (!user) throw unauthorized('invalid or expired token');
  return user;
}

/** Middleware for writes: readonly hubs refuse (400), then a valid token is required (401). */
export function requireUser(registry: Registry, readonly: boolean) {
  return (req: AuthedRequest, _res: Response, next: NextFunction): void => {
    try {
      if (readonly) throw invalid('readonly mode');
      req.user = userFor(registry, bearer(req));
      next();
    } catch (e) {
      next(e);
    }
  };
}

/** Wraps async route handlers so rejections reach the error middleware. */
export const route =
  <R extends Request>(fn: (req: R, res: Response) => Promise<void> | void) =>
  (req: R, res: Response, next: NextFunction): void => {
    Promise.resolve()
      .then(() => fn(req, res))
      .catch(next);
  };

/** Like route(), for handlers that may pass the request on with next(). */
export const passable =
  <R extends Request>(fn: (req: R, res: Response, next: NextFunction) => Promise<void>) =>
  (req: R, res: Response, next: NextFunction): void => {
    fn(req, res, next).catch(next);
  };

/**
 * Status and message a client is told. Ours carry a kind; the body parsers' http-errors carry
 * a 4xx status; anything else is a bug, told as "internal error" (and logged by the caller).
 */
export function errorAnswer(e: unknown): { status: number; message: string; bug: boolean } {
  if (e instanceof G8osError) {
    const bug = e.kind === 'internal' || e.kind === 'corrupt';
    return { status: httpStatus(e), message: e.kind === 'internal' ? 'internal error' : oneLine(e), bug };
  }
  const status = (e as { status?: unknown } | null)?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) return { status, message: oneLine(e), bug: false };
  return { status: 500, message: 'internal error', bug: true };
}

/** The hub's error middleware: `{status:'error', message}` with the kind's HTTP status. */
export function errorHandler(label: string) {
  return (err: unknown, _req: Request, res: Response, _next: NextFunction): void => {
    const a = errorAnswer(err);
    if (a.bug) console.error(`${label}:`, err);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, a.status, { status: 'error', message: a.message });
  };
}

export const notFoundHandler = (_req: Request, res: Response): void => sendJson(res, 404, { status: 'error', message: 'not found' });
