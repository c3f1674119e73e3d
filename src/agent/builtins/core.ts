// core.*, job.*, config.get and logger.* (core0-protocol.md §9.1, §9.2, §9.11).
import os from 'node:os';
import { args, int, opt, str } from '../args';
import { LOG_LEVELS } from '../config';
import type { Jobs } from '../jobs';
import { sumStats } from '../proc';
import { CommandError, type Handler } from '../types';

export const VERSION = '1.1.0-alpha-2 (g8os 0.1.0)';

/** A signal number from a client (0/absent = SIGTERM) as Node's name. */
export function signalName(n: number | null | undefined): NodeJS.Signals {
  if (!n) return 'SIGTERM';
  const name = Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0];
  if (!name) throw new CommandError('invalid', `argument 'signal': unknown signal ${n}`);
  return name as NodeJS.Signals;
}

export interface CoreOptions {
  jobs: () => Jobs;
  /** the loaded configuration, as config.get returns it */
  config?: () => unknown;
  setLogLevel?: (level: string) => void;
  reopenLog?: () => void;
  /** only the agent's own process is counted besides jobs on the host */
  self?: boolean;
}

export function coreHandlers(o: CoreOptions): Record<string, Handler> {
  const jobStats = async (pids: number[]) => ({ ...(await sumStats(pids)), debug: '' });
  const h: Record<string, Handler> = {
    'core.ping': () => `PONG ${VERSION}`,
    'core.state': () => {
      const pids = o.jobs().list().flatMap((j) => j.pids());
      return jobStats(o.self ? [process.pid, ...pids] : pids);
    },
    'job.list': async (raw) => {
      const a = args({ id: opt(str) })(raw);
      const all = o.jobs().list().filter((j) => j.started || !j.cmd.queue);
      const pick = a.id ? all.filter((j) => j.cmd.id === a.id) : all;
      if (a.id && pick.length === 0) throw new CommandError('not_found', `Process with id '${a.id}' doesn't exist`);
      return Promise.all(pick.map(async (j) => ({ ...(await jobStats(j.pids())), starttime: j.starttime, cmd: j.cmd })));
    },
    'job.kill': (raw) => {
      const a = args({ id: str, signal: opt(int) })(raw);
      o.jobs().kill(a.id, signalName(a.signal));
      return null;
    },
    'job.killall': (_raw, ctx) => {
      for (const j of o.jobs().list()) if (j.cmd.id !== ctx.cmd.id) o.jobs().kill(j.cmd.id, 'SIGTERM');
      return null;
    },
    'core.subscribe': (raw, ctx) => {
      const a = args({ id: str })(raw);
      const job = o.jobs().get(a.id);
      if (!job) throw new CommandError('not_found', `Process with id '${a.id}' doesn't exist`);
      // re-emit the other job's messages as this job's own, until it ends or this one is killed
      return new Promise<null>((resolve) => {
        const stop = (): void => {
          job.listeners.delete(listen);
          resolve(null);
        };
        const listen = (m: { level: number; text: string }): void => {
          if (m.level === 50) stop();
          else ctx.emit(m.level, m.text);
        };
        job.listeners.add(listen);
        ctx.signal.addEventListener('abort', stop);
      });
    },
  };
  if (o.config) {
    h['config.get'] = () => o.config!();
    h['logger.set_level'] = (raw) => {
      const a = args({ level: str })(raw);
      const level = String(a.level).toUpperCase();
      if (!LOG_LEVELS.includes(level)) throw new CommandError('invalid', `argument 'level': expected one of ${LOG_LEVELS.join(', ')}`);
      o.setLogLevel?.(level);
      return null;
    };
    h['logger.reopen'] = () => {
      o.reopenLog?.();
      return null;
    };
  }
  return h;
}
