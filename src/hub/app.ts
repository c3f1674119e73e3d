// The hub: an Express 5 app over a Registry (flists, users, tokens) and a block store. Each
// route module builds a Router from the parts it names; this file only assembles them.
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import express from 'express';
import { G8osError } from '../errors';
import { openStore } from '../store';
import { apiRouter, infoMethod } from './api';
import { blockRouter } from './blocks';
import type { Hub, HubConfig, ResolvedConfig } from './config';
import { dockerRouter } from './docker';
import { downloadRouter } from './downloads';
import { bearer, errorHandler, notFoundHandler, requireUser } from './http';
import { meRouter } from './me';
import { nodeApi } from './node-api';
import { Jobs, progressRouter } from './progress';
import { Registry } from './registry';
import { uploadRouter } from './upload';
import { pagesRouter, uiApi, webFiles } from './web';

export { DEFAULTS, type AgentAddress, type Hub, type HubConfig } from './config';

export async function createHub(cfg: HubConfig): Promise<Hub> {
  const dataDir = path.resolve(cfg.dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  const config: ResolvedConfig = {
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
  const { publicUrl, maxUpload, maxExpanded } = config;
  const jobs = new Jobs();
  const web = webFiles();
  const ui = uiApi({ registry, publicUrl });
  const node = nodeApi({ registry, publicUrl, agent: () => config.agent });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((_req, res, next) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    next();
  });
  // The routers take disjoint paths (downloads and pages leave the hub's own first segments
  // alone, the public API leaves /api/flist/me), so their order does not matter for what
  // answers. Two rules remain. (1) The caller's own routes go first: each router a request
  // enters and leaves costs it an event-loop turn, and an upload's job must exist as soon as
  // its request is read (clients follow /listen/<job> at once).
  app.use(
    '/api/flist/me',
    requireUser(registry, config.readonly),
    uploadRouter({ registry, store, jobs, publicUrl, maxUpload, maxExpanded }),
    dockerRouter({ registry, store, jobs, publicUrl, maxUpload, maxExpanded }),
    meRouter({ registry, store, maxUpload }),
  );
  app.use('/listen', progressRouter(jobs));
  app.use('/api/ui', ui.router);
  app.use('/api/node', node.router);
  app.use(
    blockRouter(store, {
      readonly: config.readonly,
      authorize: (req) => {
        const token = bearer(req);
        return token !== undefined && registry.userForToken(token) !== undefined;
      },
    }),
  );
  app.use('/api', apiRouter({ registry, publicUrl }));
  app.use(web.router, downloadRouter({ registry, publicUrl }));
  // (2) The pages last: a fallback, they answer only what every router above passed on.
  app.use(pagesRouter(web.index));
  app.use(notFoundHandler);
  app.use(errorHandler('hub'));

  return {
    app,
    registry,
    store,
    config,
    async close() {
      node.close();
      await ui.close();
      await store.close();
      registry.close();
    },
  };
}

/** Listen on config.listen; resolves with the server once it accepts connections. */
export async function listen(hub: Hub): Promise<http.Server> {
  const i = hub.config.listen.lastIndexOf(':');
  const host = hub.config.listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(hub.config.listen.slice(i + 1));
  return new Promise((resolve, reject) => {
    const server = hub.app.listen(port, host);
    // INFO (0-hub's custom method) never gets past Node's parser; ./api answers it there.
    server.on('clientError', infoMethod(hub.registry));
    server.once('listening', () => resolve(server));
    server.once('error', (e) => {
      const why = `cannot listen on ${hub.config.listen}: ${(e as NodeJS.ErrnoException).code ?? e.message}`;
      reject(new G8osError((e as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'conflict' : 'unavailable', why, { cause: e }));
    });
  });
}
