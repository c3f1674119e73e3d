// g8os.toml (core0-protocol.md §12): the sections the agent uses, with embedded defaults.
import fs from 'node:fs';
import { parse } from 'smol-toml';

/** The agent's own log levels, most severe first ([main] log_level, core.setLogLevel). */
export const LOG_LEVELS = ['CRITICAL', 'ERROR', 'WARNING', 'NOTICE', 'INFO', 'DEBUG'];

export interface LoggingConfig {
  type: string;
  levels: number[];
  address?: string;
  batch_size?: number;
}

export interface AgentConfig {
  main: { max_jobs: number; log_level: string; include?: string[]; network?: string };
  sink: Record<string, { url?: string; password?: string }>;
  logging: Record<string, LoggingConfig>;
  globals: Record<string, string>;
  /** ours: the default container bridge */
  containers: { bridge: string; cidr: string };
  extension: Record<string, unknown>;
  startup: Record<string, unknown>;
}

export function defaultConfig(): AgentConfig {
  return {
    main: { max_jobs: 4096, log_level: 'info' },
    sink: {},
    logging: { console: { type: 'console', levels: [2, 4, 7, 8, 9] } },
    globals: {},
    containers: { bridge: 'core0', cidr: '172.18.0.1/16' },
    extension: {},
    startup: {},
  };
}

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v);

function expect(ok: boolean, file: string, what: string): void {
  if (!ok) throw new Error(`${file}: ${what}`);
}

/** Reads and checks a config file; what it leaves out keeps its default. */
export function loadConfig(file?: string): AgentConfig {
  const c = defaultConfig();
  if (!file) return c;
  let doc: Table;
  try {
    doc = parse(fs.readFileSync(file, 'utf8')) as Table;
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const main = doc.main ?? {};
  expect(isTable(main), file, '[main] must be a table');
  const m = main as Table;
  if (m.max_jobs !== undefined) {
    expect(Number.isInteger(m.max_jobs) && Number(m.max_jobs) > 0, file, '[main] max_jobs must be a positive integer');
    c.main.max_jobs = Number(m.max_jobs);
  }
  if (m.log_level !== undefined) {
    expect(typeof m.log_level === 'string', file, '[main] log_level must be a string');
    c.main.log_level = String(m.log_level);
  }
  for (const k of ['include', 'network'] as const) if (m[k] !== undefined) (c.main as Table)[k] = m[k];
  for (const [section, target] of [['sink', c.sink], ['logging', c.logging], ['extension', c.extension], ['startup', c.startup]] as const) {
    const v = doc[section];
    if (v === undefined) continue;
    expect(isTable(v), file, `[${section}] must be a table`);
    if (section === 'logging') for (const k of Object.keys(target)) delete (target as Table)[k];
    Object.assign(target, v);
  }
  for (const [name, l] of Object.entries(c.logging)) {
    expect(isTable(l) && typeof l.type === 'string', file, `[logging.${name}] needs a type`);
    l.type = l.type.toLowerCase();
    l.levels ??= [];
    expect(Array.isArray(l.levels) && l.levels.every((x) => Number.isInteger(x)), file, `[logging.${name}] levels must be a list of integers`);
  }
  if (doc.globals !== undefined) {
    expect(isTable(doc.globals), file, '[globals] must be a table');
    for (const [k, v] of Object.entries(doc.globals as Table)) c.globals[k] = String(v);
  }
  if (doc.containers !== undefined) {
    expect(isTable(doc.containers), file, '[containers] must be a table');
    Object.assign(c.containers, doc.containers);
  }
  return c;
}
