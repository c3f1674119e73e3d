// Commands that run a process: core.system and bash (core0-protocol.md §5, §9.1). Output is
// parsed with the level-prefix protocol; the job's state follows the exit.
import fs from 'node:fs/promises';
import { args, list, map, opt, str } from '../args';
import { LevelParser } from '../levels';
import { CommandError, type Handler, type JobContext, ProcessExit } from '../types';

/** PATH for processes in a container whose flist names none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ProcessSpec {
  dir?: string | null;
  stdin?: string | null;
  env?: Record<string, string> | null;
}

/** The environment a process starts with: the agent's own on the host, the flist's in a container. */
function environment(ctx: JobContext, extra: Record<string, string> | null | undefined): Record<string, string> {
  const base: Record<string, string> =
    ctx.place.container === 0 ? ({ ...process.env } as Record<string, string>) : { PATH: DEFAULT_PATH, HOME: '/', ...ctx.place.env };
  return { ...base, ...(extra ?? {}) };
}

export async function runProcess(ctx: JobContext, file: string, argv: string[], spec: ProcessSpec): Promise<ProcessExit> {
  const dir = spec.dir || '/';
  if (ctx.place.container === 0) {
    const st = await fs.stat(dir).catch(() => null);
    if (!st?.isDirectory()) throw new CommandError('invalid', `working directory '${dir}' does not exist`);
  }
  const child = ctx.place.spawn(file, argv, { cwd: dir, env: environment(ctx, spec.env), detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  ctx.track(child);
  return new Promise<ProcessExit>((resolve, reject) => {
    const out = new LevelParser(1, ctx.emit);
    const err = new LevelParser(2, ctx.emit);
    child.stdout!.on('data', (c: Buffer) => out.write(c));
    child.stderr!.on('data', (c: Buffer) => err.write(c));
    child.once('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? 'executable file not found' : e.message;
      reject(new CommandError(e.code === 'ENOENT' ? 'not_found' : 'internal', `exec: "${file}": ${why}`));
    });
    child.once('close', (code, signal) => {
      out.end();
      err.end();
      resolve(new ProcessExit(code, signal));
    });
    child.stdin!.on('error', () => undefined); // a process that does not read its stdin
    child.stdin!.end(spec.stdin || undefined);
  });
}

const systemArgs = args({ name: str, args: opt(list(str)), dir: opt(str), stdin: opt(str), env: opt(map(str)) });
const bashArgs = args({ script: str, stdin: opt(str) });

export function systemHandlers(): Record<string, Handler> {
  return {
    'core.system': (raw, ctx) => {
      const a = systemArgs(raw);
      if (!a.name) throw new CommandError('invalid', "argument 'name': empty command");
      return runProcess(ctx, a.name, (a.args as string[] | null) ?? [], a);
    },
    bash: (raw, ctx) => {
      const a = bashArgs(raw);
      return runProcess(ctx, 'sh', ['-c', a.script], { stdin: a.stdin });
    },
  };
}

interface Extension {
  binary?: unknown;
  args?: unknown;
  cwd?: unknown;
  env?: unknown;
}

/**
 * `[extension."<name>"]` commands from the config (§12): a program whose `{key}` placeholders in
 * args are filled from the command's arguments; `stdin` is fed to it. Answers like core.system.
 */
export function extensionHandlers(exts: Record<string, unknown>): Record<string, Handler> {
  const out: Record<string, Handler> = {};
  for (const [name, raw] of Object.entries(exts)) {
    const e = raw as Extension;
    if (typeof e.binary !== 'string' || !e.binary) throw new Error(`[extension."${name}"] needs a binary`);
    const argv = Array.isArray(e.args) ? e.args.map(String) : [];
    const env = e.env && typeof e.env === 'object' ? Object.fromEntries(Object.entries(e.env).map(([k, v]) => [k, String(v)])) : undefined;
    const binary = e.binary;
    out[name] = (rawArgs, ctx) => {
      const a = (rawArgs && typeof rawArgs === 'object' ? rawArgs : {}) as Record<string, unknown>;
      const fill = (s: string): string =>
        s.replace(/\{([^{}]+)\}/g, (m, k: string) => {
          if (!(k in a)) throw new CommandError('invalid', `argument '${k}' is missing`);
          const v = a[k];
          return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : m;
        });
      return runProcess(ctx, binary, argv.map(fill), { dir: typeof e.cwd === 'string' ? e.cwd : null, stdin: typeof a.stdin === 'string' ? a.stdin : null, env });
    };
  }
  return out;
}
