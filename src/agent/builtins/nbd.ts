// nbd.start / nbd.stop / nbd.list: a node's NBD servers for vdisks (disks-vms.md §2). Servers
// run inside the agent; their storage defaults to the node's own redis-server (database 1,
// apart from the command bus in database 0).
import { kindOf, oneLine } from '../../errors';
import { type Running, serve } from '../../nbd/serve';
import { parseConfig, type ServeConfig } from '../../vdisk/config';
import { args, list, num, opt, str } from '../args';
import { CommandError, type Handler } from '../types';

const startArgs = args({ id: str, listen: opt(str), storage: opt(list(str)), vdisks: opt(list(str)), config: opt(str), templateTimeout: opt(num) });
const idArgs = args({ id: str });

export interface NbdOptions {
  /** the node's storage address (its redis-server) */
  storage: () => string;
  log?: (l: string) => void;
}

export function nbdHandlers(o: NbdOptions): Record<string, Handler> {
  const servers = new Map<string, { running: Running; cfg: ServeConfig }>();
  const starting = new Set<string>();
  return {
    'nbd.start': async (raw) => {
      const a = startArgs(raw);
      const id = a.id as string;
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id)) throw new CommandError('invalid', `argument 'id': ${JSON.stringify(id)} is not a plain name`);
      if (servers.has(id) || starting.has(id)) throw new CommandError('conflict', `nbd server ${id} is running already`);
      let cfg: ServeConfig;
      try {
        if (a.config !== undefined && a.config !== null) {
          if (a.listen || a.storage || a.vdisks) throw new CommandError('invalid', "argument 'config' excludes listen, storage and vdisks");
          cfg = parseConfig(a.config as string, `nbd server ${id} config`);
        } else {
          if (!a.listen) throw new CommandError('invalid', "argument 'listen' is missing (a unix socket path or host:port)");
          cfg = {
            listen: a.listen as string,
            storage: (a.storage as string[] | undefined) ?? [o.storage()],
            templateTimeoutMs: ((a.templateTimeout as number | undefined) ?? 30) * 1000,
            sweepIntervalMs: 60_000,
            vdisks: a.vdisks ? new Map((a.vdisks as string[]).map((v) => [v, {}])) : undefined,
          };
        }
      } catch (e) {
        if (e instanceof CommandError) throw e;
        throw new CommandError('invalid', oneLine(e));
      }
      starting.add(id);
      try {
        const running = await serve(cfg, o.log);
        servers.set(id, { running, cfg });
        return { id, address: running.address };
      } catch (e) {
        const k = kindOf(e);
        throw new CommandError(k === 'not_found' ? 'invalid' : k, `nbd server ${id}: ${oneLine(e)}`);
      } finally {
        starting.delete(id);
      }
    },
    'nbd.stop': async (raw) => {
      const id = idArgs(raw).id as string;
      const s = servers.get(id);
      if (!s) throw new CommandError('not_found', `no nbd server ${id}`);
      servers.delete(id);
      await s.running.stop();
      return null;
    },
    'nbd.list': () =>
      [...servers].map(([id, s]) => ({ id, address: s.running.address, storage: s.cfg.storage, vdisks: s.cfg.vdisks ? [...s.cfg.vdisks.keys()] : null })),
  };
}
