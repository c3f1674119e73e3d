// `g8os nbd serve --config vdisks.toml`:
//
//   listen = "/run/g8os/nbd.sock"          # a path: unix socket; host:port: TCP
//   storage = ["redis://127.0.0.1:6379"]   # the cluster (a string or a list)
//   default = "vd1"                        # export for clients asking for ""
//   templateTimeout = 30                   # seconds before a template fetch is EIO
//   sweepInterval = 60                     # seconds between sweeps of unreferenced blocks
//   [vdisks.vd1]                           # served ids (none listed: every vdisk in the index)
//   readOnly = true                        # export it read-only
//   type = "tmp"; size = "1G"              # created with these properties when absent
//   [tlog]                                 # transaction log of boot and db vdisks (src/tlog)
//   storage = "redis://127.0.0.1:6380"     # the log server (its own redis-server)
//   flushSize = 25; flushTime = 25         # records per aggregation; seconds before a partial one
//   snapshotEvery = 10000                  # a snapshot every N sequences…
//   snapshotInterval = 600                 # …or every T seconds with writes
//   retain = 8                             # snapshots kept (the log before the oldest is dropped)
//   ackTimeout = 30                        # seconds before FLUSH fails while the log is away
import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { G8osError } from '../errors';
import { parseSize } from './catalog';
import { VDISK_TYPES, type VdiskType } from './types';

export interface VdiskEntry {
  readOnly?: boolean;
  create?: { type: VdiskType; size: number; blockSize?: number; template?: { source: string; vdisk: string } };
}

export interface ServeConfig {
  listen: string;
  storage: string[];
  defaultExport?: string;
  templateTimeoutMs: number;
  sweepIntervalMs: number;
  vdisks?: Map<string, VdiskEntry>;
  tlog?: TlogConfig;
}

export interface TlogConfig {
  storage: string;
  flushSize?: number;
  flushTimeMs?: number;
  snapshotEvery?: number;
  snapshotIntervalMs?: number;
  retainSnapshots?: number;
  ackTimeoutMs?: number;
}

const TKEYS: Record<string, keyof TlogConfig> = {
  storage: 'storage', flushSize: 'flushSize', flushTime: 'flushTimeMs', snapshotEvery: 'snapshotEvery',
  snapshotInterval: 'snapshotIntervalMs', retain: 'retainSnapshots', ackTimeout: 'ackTimeoutMs',
};

const KEYS = new Set(['listen', 'storage', 'default', 'templateTimeout', 'sweepInterval', 'vdisks', 'tlog']);
const VKEYS = new Set(['readOnly', 'type', 'size', 'blockSize', 'template']);

export function parseConfig(text: string, where = 'config'): ServeConfig {
  let raw: Record<string, unknown>;
  try {
    raw = parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new G8osError('invalid', `${where}: ${(e as Error).message.split('\n')[0]}`);
  }
  const bad = (m: string): never => {
    throw new G8osError('invalid', `${where}: ${m}`);
  };
  for (const k of Object.keys(raw)) if (!KEYS.has(k)) bad(`unknown key ${JSON.stringify(k)}`);
  if (typeof raw.listen !== 'string' || !raw.listen) bad('listen must be a socket path or host:port');
  const storage = typeof raw.storage === 'string' ? [raw.storage] : raw.storage;
  if (!Array.isArray(storage) || !storage.length || !storage.every((s) => typeof s === 'string')) bad('storage must be an address or a list of them');
  const num = (v: unknown, name: string, dflt: number): number => {
    if (v === undefined) return dflt * 1000;
    if (typeof v !== 'number' || !(v > 0)) bad(`${name} must be a positive number of seconds`);
    return (v as number) * 1000;
  };
  const cfg: ServeConfig = {
    listen: raw.listen as string,
    storage: storage as string[],
    defaultExport: typeof raw.default === 'string' ? raw.default : undefined,
    templateTimeoutMs: num(raw.templateTimeout, 'templateTimeout', 30),
    sweepIntervalMs: num(raw.sweepInterval, 'sweepInterval', 60),
  };
  if (raw.vdisks !== undefined) {
    if (typeof raw.vdisks !== 'object' || raw.vdisks === null) bad('vdisks must be a table');
    cfg.vdisks = new Map();
    for (const [id, v] of Object.entries(raw.vdisks as Record<string, Record<string, unknown>>)) {
      for (const k of Object.keys(v)) if (!VKEYS.has(k)) bad(`vdisks.${id}: unknown key ${JSON.stringify(k)}`);
      const e: VdiskEntry = {};
      if (v.readOnly !== undefined) {
        if (typeof v.readOnly !== 'boolean') bad(`vdisks.${id}.readOnly must be true or false`);
        e.readOnly = v.readOnly as boolean;
      }
      if (v.type !== undefined) {
        if (!VDISK_TYPES.includes(v.type as VdiskType)) bad(`vdisks.${id}.type must be one of ${VDISK_TYPES.join(', ')}`);
        if (v.size === undefined) bad(`vdisks.${id}: a type needs a size`);
        const t = v.template as { source?: unknown; vdisk?: unknown } | undefined;
        if (t !== undefined && (typeof t.source !== 'string' || typeof t.vdisk !== 'string')) bad(`vdisks.${id}.template needs source and vdisk`);
        e.create = {
          type: v.type as VdiskType,
          size: parseSize(v.size as string | number),
          blockSize: v.blockSize as number | undefined,
          template: t as { source: string; vdisk: string } | undefined,
        };
      }
      cfg.vdisks.set(id, e);
    }
    if (cfg.defaultExport && !cfg.vdisks.has(cfg.defaultExport)) bad(`default ${cfg.defaultExport} is not under [vdisks]`);
  }
  if (raw.tlog !== undefined) {
    const t = raw.tlog as Record<string, unknown>;
    if (typeof t !== 'object' || t === null) bad('tlog must be a table');
    if (typeof t.storage !== 'string' || !t.storage) bad('tlog.storage must be the log server address');
    const out: TlogConfig = { storage: t.storage as string };
    for (const [k, v] of Object.entries(t)) {
      const f = TKEYS[k];
      if (!f) bad(`tlog: unknown key ${JSON.stringify(k)}`);
      if (f === 'storage') continue;
      if (typeof v !== 'number' || !(v > 0)) bad(`tlog.${k} must be a positive number`);
      (out as unknown as Record<string, number>)[f] = f.endsWith('Ms') ? (v as number) * 1000 : Math.floor(v as number);
    }
    cfg.tlog = out;
  }
  return cfg;
}

export function loadConfig(file: string): ServeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new G8osError('not_found', `config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, file);
}
