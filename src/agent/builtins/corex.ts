// corex.* (core0-protocol.md §9.8, §8.1): containers. The work is in ../containers; here the
// arguments are checked and the answers shaped.
import { randomUUID } from 'node:crypto';
import { any, args, bool, type Check, int, list, map, num, opt, str } from '../args';
import type { Containers, CreateArgs } from '../containers';
import { type Command, CommandError, type Handler } from '../types';

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  return typeof v;
}

/** An object of a given shape (unknown keys ignored), for nested arguments. */
const object = (shape: Record<string, Check>): Check => (v, at) => {
  if (kind(v) !== 'object') throw new CommandError('invalid', `argument '${at}': expected object, got ${kind(v)}`);
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, c] of Object.entries(shape)) if (o[k] !== undefined) out[k] = c(o[k], `${at}.${k}`);
  return out;
};

/** A string or a list of strings (tags, §15.4). */
const strings: Check = (v, at) => (typeof v === 'string' ? v : list(str)(v, at));

/** A port: an int, or an int written as a string. */
const portValue: Check = (v, at) => (typeof v === 'string' ? str(v, at) : int(v, at));

const nic = object({
  type: str,
  id: opt(str),
  hwaddr: opt(str),
  config: opt(object({ dhcp: opt(bool), cidr: opt(str), gateway: opt(str), dns: opt(list(str)) })),
});

const createArgs = args({
  root: str,
  mount: opt(map(str)),
  host_network: opt(bool),
  nics: opt(list(nic)),
  port: opt(map(portValue)),
  privileged: opt(bool),
  hostname: opt(str),
  storage: opt(str),
  tags: opt(strings),
  cgroups: opt(object({ memory: opt(int), cpu: opt(int), cpus: opt(num), pids: opt(int) })),
});
const findArgs = args({ tags: opt(strings) });
const idArgs = args({ container: int });
const dispatchArgs = args({ container: int, command: object({ command: str, arguments: any }) });

export function corexHandlers(c: Containers, dispatch: (id: number, cmd: Command) => string | Promise<string>): Record<string, Handler> {
  return {
    'corex.create': (raw) => {
      const a = createArgs(raw);
      if (a.nics) for (const n of a.nics as { type: string }[]) if (!n.type) throw new CommandError('invalid', "argument 'nics': a nic needs a type");
      return c.create(a as CreateArgs);
    },
    'corex.list': () => c.list(),
    'corex.find': (raw) => {
      const { tags } = findArgs(raw);
      return c.find(tags == null ? [] : Array.isArray(tags) ? tags : [tags]);
    },
    'corex.terminate': async (raw) => {
      const { container } = idArgs(raw);
      await c.terminate(container);
      return null;
    },
    'corex.dispatch': (raw) => {
      const { container } = dispatchArgs(raw);
      if (container <= 0) throw new CommandError('invalid', 'invalid container id');
      if (!c.has(container)) throw new CommandError('not_found', 'container does not exist');
      // the whole inner command travels (queue, max_time, stream, tags, …); only the id may change
      const inner = (raw as { command: Record<string, unknown> }).command;
      const id = typeof inner.id === 'string' && inner.id ? inner.id : randomUUID();
      return dispatch(container, { ...inner, id } as unknown as Command);
    },
  };
}
