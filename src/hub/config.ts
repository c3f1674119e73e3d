// The hub's configuration and the parts every router is built from (no routes here: route
// modules import these types, app.ts assembles the routers).
import type express from 'express';
import type { BlockStore } from '../store/types';
import type { Registry } from './registry';

/** The node agent beside a hub (see ./node-api.ts). */
export interface AgentAddress {
  /** redis://[:password@]host:port, or the agent's unix socket path */
  url: string;
  password?: string;
}

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
  /** the node agent beside this hub: enables the node pages and /api/node (see ./node-api.ts) */
  agent?: AgentAddress | null;
}

export const DEFAULTS = {
  listen: '127.0.0.1:8080',
  maxUpload: 8 * 1024 ** 3,
  maxExpanded: 64 * 1024 ** 3,
};

export type ResolvedConfig = Required<HubConfig>;

export interface Hub {
  app: express.Express;
  registry: Registry;
  store: BlockStore;
  config: ResolvedConfig;
  close(): Promise<void>;
}
