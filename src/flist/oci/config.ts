// Image config → flist metadata (flist-format.md §9) and /.startup.toml (hub-api.md §8.4).
import { ImageError } from './errors';

export interface ContainerConfig {
  Entrypoint: string[];
  Cmd: string[];
  Env: string[];
  WorkingDir: string;
  ExposedPorts: string[];
  Volumes: string[];
}

/** The runtime part of an image config ("config"), type-checked. */
export function containerConfig(image: Record<string, unknown>): ContainerConfig {
  const c = (image.config ?? {}) as Record<string, unknown>;
  if (typeof c !== 'object' || Array.isArray(c)) throw new ImageError('image config: "config" is not an object');
  const strings = (key: string): string[] => {
    const v = c[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new ImageError(`image config: ${key} is not a list of strings`);
    return v;
  };
  const keys = (key: string): string[] => {
    const v = c[key];
    if (v === undefined || v === null) return [];
    if (typeof v !== 'object' || Array.isArray(v)) throw new ImageError(`image config: ${key} is not an object`);
    return Object.keys(v);
  };
  if (c.WorkingDir !== undefined && c.WorkingDir !== null && typeof c.WorkingDir !== 'string') throw new ImageError('image config: WorkingDir is not a string');
  return {
    Entrypoint: strings('Entrypoint'), Cmd: strings('Cmd'), Env: strings('Env'),
    WorkingDir: (c.WorkingDir as string | undefined) ?? '', ExposedPorts: keys('ExposedPorts'), Volumes: keys('Volumes'),
  };
}

/** Docker semantics: Entrypoint followed by Cmd (Cmd alone without an Entrypoint). */
export const argvOf = (c: ContainerConfig): string[] => [...c.Entrypoint, ...c.Cmd];

export function environOf(c: ContainerConfig): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of c.Env) {
    const i = kv.indexOf('=');
    if (i === 0) continue;
    if (i < 0) env[kv] = '';
    else env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

/** flist-format.md §9 metadata: entrypoint, environ, port, volume (only those the image sets). */
export function imageMetadata(c: ContainerConfig, warn: (m: string) => void = () => undefined): Record<string, string> {
  const meta: Record<string, string> = {};
  const argv = argvOf(c);
  if (argv.length) meta.entrypoint = JSON.stringify(argv);
  if (c.Env.length) meta.environ = JSON.stringify(environOf(c));
  const ports: Record<string, number> = {};
  for (const key of c.ExposedPorts) {
    const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(key);
    const port = m ? Number(m[1]) : 0;
    if (!m || port < 1 || port > 65535) {
      warn(`image config: ignored exposed port ${JSON.stringify(key)}`);
      continue;
    }
    ports[`${(m[2] ?? 'tcp').toLowerCase()}/${port}`] = port;
  }
  if (Object.keys(ports).length) meta.port = JSON.stringify(ports);
  if (c.Volumes.length) meta.volume = JSON.stringify(Object.fromEntries(c.Volumes.map((v) => [v, {}])));
  return meta;
}

/** A TOML basic string (JSON escapes are TOML escapes; TOML also wants DEL escaped). */
const tomlString = (s: string): string => JSON.stringify(s).replace(/\x7f/g, '\\u007F');
const tomlKey = (k: string): string => (/^[A-Za-z0-9_-]+$/.test(k) ? k : tomlString(k));

/** /.startup.toml as coreX reads it (hub-api.md §8.4 step 5); /bin/sh when the image names no command. */
export function startupToml(c: ContainerConfig): string {
  const argv = argvOf(c);
  const [command, ...args] = argv.length ? argv : ['/bin/sh'];
  const lines = [
    '[startup.entry]',
    'name = "core.system"',
    '',
    '[startup.entry.args]',
    `name = ${tomlString(command)}`,
    `args = [${args.map(tomlString).join(', ')}]`,
    `dir = ${tomlString(c.WorkingDir || '/')}`,
    '',
    '[startup.entry.args.env]',
    ...Object.entries(environOf(c)).map(([k, v]) => `${tomlKey(k)} = ${tomlString(v)}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** "<ref with : and / as ->.flist", or the short config digest when the image names no reference. */
export function imageFlistName(ref: string | undefined, configDigest: string): string {
  const base = ref
    ? ref.replace(/[:/]/g, '-').replace(/[^A-Za-z0-9._+@=,-]/g, '-').replace(/^[.-]+/, '').replace(/\.\.+/g, '.').slice(0, 240)
    : '';
  return `${base || configDigest.split(':')[1].slice(0, 12)}.flist`;
}

