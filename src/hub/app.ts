// The hub: an Express 5 app over a Registry (flists, users, tokens) and a block store.
// Routes live in their own modules; this file wires them and owns the envelope and auth.
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { openStore } from '../store';
import type { BlockStore } from '../store/types';
import { blockRouter } from './blocks';
import type { AgentAddress } from './node';
import { HubError, Registry } from './registry';

export interface HubConfig {
  /** host:port to listen on */
  listen: string;
  /** everything the hub keeps: registry, flists, blocks (default store) */
  dataDir: string;
  /** block store URL; default dir://<dataDir>/blocks */
  storeUrl?: string;
  /** base URL users reach this hub at (links, backend metadata); default http://<listen> */
  publicUrl?: string;
  readonly?: boolean;
  /** largest upload body accepted, bytes */
  maxUpload: number;
  /** largest total file size an upload may expand to, bytes (decompression bombs) */
  maxExpanded: number;
  /** the node agent beside this hub: enables the node pages and /api/node (see ./node.ts) */
  agent?: AgentAddress | null;
}

export const DEFAULTS = {
  listen: '127.0.0.1:8080',
  maxUpload: 8 * 1024 ** 3,
  maxExpanded: 64 * 1024 ** 3,
};

export interface Hub {
  app: express.Express;
  registry: Registry;
  store: BlockStore;
  config: Required<HubConfig>;
  close(): Promise<void>;
}

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
  if (!m) throw new HubError(400, 'invalid authorization header');
  return m[1];
}

/** Middleware for writes: readonly hubs refuse (400), then a valid token is required (401). */
export function requireUser(hub: { registry: Registry; config: { readonly: boolean } }) {
  return (req: AuthedRequest, _res: Response, next: NextFunction): void => {
    if (hub.config.readonly) return next(new HubError(400, 'readonly mode'));
    const token = bearer(req);
    if (!token) return next(new HubError(401, 'no authorization provided'));
    const user = hub.registry.userForToken(token);
    if (!user) return next(new HubError(401, 'invalid or expired token'));
    req.user = user;
    next();
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

export async function createHub(cfg: HubConfig): Promise<Hub> {
  const dataDir = path.resolve(cfg.dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  const config: Required<HubConfig> = {
    ...cfg,
    dataDir,
    storeUrl: cfg.storeUrl ?? `dir://${path.join(dataDir, 'blocks')}`,
    publicUrl: (cfg.publicUrl ?? `http://${cfg.listen}`).replace(/\/+$/, ''),
    readonly: cfg.readonly ?? false,
    agent: cfg.agent ?? null,
  };
  const registry = new Registry(dataDir);
  registry.cleanTemp();
  const store = await openStore(config.storeUrl);
  const closers: Array<() => void | Promise<void>> = [];
  const hub: Hub = {
    app: express(),
    registry,
    store,
    config,
    async close() {
      for (const c of closers) await c();
      await store.close();
      registry.close();
    },
  };
  const { app } = hub;
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((_req, res, next) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    next();
  });

  app.use(blockRouter(store, {
    readonly: config.readonly,
    authorize: (req) => {
      const token = bearer(req);
      return token !== undefined && registry.userForToken(token) !== undefined;
    },
  }));
  // the web UI's files before anything that takes /<user>/<file>; its JSON and the node's
  const web = await import('./web');
  const index = web.webFiles(hub);
  const readers = web.webApi(hub);
  const node = (await import('./node')).nodeRoutes(hub);
  closers.push(() => node.close(), () => readers.close());
  // docker first: its POST /api/flist/me/docker must not be taken by a generic me/ route
  (await import('./docker')).dockerRoutes(hub);
  const { uploadRoutes } = await import('./upload');
  const { apiRoutes } = await import('./api');
  uploadRoutes(hub);
  apiRoutes(hub);
  // the pages last: they answer only what the API and the downloads passed on
  web.webPages(hub, index);

  app.use((_req: Request, res: Response) => sendJson(res, 404, { status: 'error', message: 'not found' }));
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = err instanceof HubError ? err.status : typeof (err as { status?: number }).status === 'number' ? (err as { status: number }).status : 500;
    const message = err instanceof HubError || status < 500 ? (err as Error).message : 'internal error';
    // a 502/503/504 HubError is the agent's or a stopping hub's answer, told to the client as is
    if (status >= 500 && !(err instanceof HubError && status > 500)) console.error('hub:', err);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, status, { status: 'error', message });
  });
  return hub;
}

/** Listen on config.listen; resolves with the server once it accepts connections. */
export async function listen(hub: Hub): Promise<http.Server> {
  const { infoMethod } = await import('./api');
  const i = hub.config.listen.lastIndexOf(':');
  const host = hub.config.listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(hub.config.listen.slice(i + 1));
  return new Promise((resolve, reject) => {
    const server = hub.app.listen(port, host);
    // INFO (0-hub's custom method) never gets past Node's parser; ./api answers it there.
    server.on('clientError', infoMethod(hub));
    server.once('listening', () => resolve(server));
    server.once('error', (e) => reject(new HubError(500, `cannot listen on ${hub.config.listen}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
  });
}
