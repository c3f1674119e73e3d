// process.list / process.kill (spec §9.2). In a container, pids are those of the container's
// pid namespace (PID 1 is its init), as its own coreX saw them; the agent maps them to host pids.
import { constants } from 'node:os';
import { args, int, opt } from '../args';
import { placePids, procInfo } from '../proc';
import { CommandError, type Handler } from '../types';

const listArgs = args({ pid: opt(int) });
const killArgs = args({ pid: int, signal: opt(int) });

export function processHandlers(): Record<string, Handler> {
  return {
    'process.list': async (raw, ctx) => {
      const { pid } = listArgs(raw);
      const pids = await placePids(ctx.place); // host pid → pid in the place
      const toHost = new Map([...pids].map(([host, inner]) => [inner, host]));
      let wanted = [...pids.keys()];
      if (pid !== null && pid !== undefined) {
        const host = toHost.get(pid);
        if (host === undefined) throw new CommandError('not_found', `no such process: ${pid}`);
        wanted = [host];
      }
      const out = [];
      for (const host of wanted) {
        const p = await procInfo(host);
        if (!p) continue; // gone while listing
        out.push({
          pid: pids.get(host)!,
          ppid: pids.get(p.ppid) ?? 0, // a parent outside the place shows as 0, like PID 1's
          cmdline: p.cmdline,
          name: p.name,
          createtime: p.createtime,
          // gopsutil's per-process times: only user and system are per process
          cpu: { user: p.user, system: p.system, idle: 0, nice: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, guestnice: 0, stolen: 0 },
          rss: p.rss,
          vms: p.vms,
          swap: p.swap,
        });
      }
      if (out.length === 0 && wanted.length === 1 && pid) throw new CommandError('not_found', `no such process: ${pid}`);
      return out;
    },

    'process.kill': async (raw, ctx) => {
      const a = killArgs(raw);
      const pid: number = a.pid;
      const signal: number = a.signal || constants.signals.SIGTERM; // 0/absent = SIGTERM, as job.kill
      if (pid <= 1) throw new CommandError('invalid', `refusing to signal pid ${pid}`);
      if (signal < 1 || signal > 64) throw new CommandError('invalid', `argument 'signal': invalid signal ${signal}`);
      const pids = await placePids(ctx.place);
      const host = [...pids].find(([, inner]) => inner === pid)?.[0];
      if (host === undefined) throw new CommandError('not_found', `no such process: ${pid}`);
      if (ctx.place.container === 0 && host === process.pid) throw new CommandError('invalid', `refusing to signal the agent (pid ${pid})`);
      try {
        process.kill(host, signal);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ESRCH') throw new CommandError('not_found', `no such process: ${pid}`);
        throw new CommandError(code === 'EPERM' ? 'unauthorized' : 'internal', `kill ${pid}: ${(err as Error).message}`);
      }
      return null;
    },
  };
}
