// `g8os hub` on loopback (optionally inside a network namespace) for tests, benches and suites.
import { type ChildProcess, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sleep } from './cleanup';
import { type Daemon, type Exit, startDaemon } from './daemon';
import { G8OS } from './paths';
import { freePort } from './ports';
import { procStatus } from './procs';

export interface HubOptions {
  /** its data dir (registry, blocks) */
  data?: string;
  /** or a dir for everything: data in <dir>/hub, the writer's temp files in <dir>/hub-tmp */
  dir?: string;
  port?: number;
  /** more `g8os hub` arguments */
  args?: string[];
  /** run inside this network namespace (reach it from there too) */
  netns?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export interface Hub {
  url: string;
  port: number;
  data: string;
  blocksDir: string;
  /** the current process (restart() makes a new one) */
  readonly child: ChildProcess;
  readonly pid: number;
  daemon(): Daemon;
  /** output the hub printed so far */
  log(): string;
  /** Creates the user if new and returns a fresh token for it. */
  token(user: string): string;
  /** VmHWM / VmRSS of the hub process, MiB */
  memory(field: 'VmHWM' | 'VmRSS'): number;
  /** SIGTERM, SIGKILL after graceMs (15 s) */
  stop(graceMs?: number): Promise<Exit>;
  /** SIGKILL (a crash) */
  kill(): Promise<Exit>;
  /** starts again on the same data dir and port */
  restart(): Promise<void>;
}

export async function startHub(opts: HubOptions): Promise<Hub> {
  if (!opts.data && !opts.dir) throw new Error('startHub: give data or dir');
  const data = opts.data ?? path.join(opts.dir!, 'hub');
  const env: NodeJS.ProcessEnv = { ...opts.env };
  if (opts.dir) {
    env.TMPDIR = path.join(opts.dir, 'hub-tmp');
    fs.mkdirSync(env.TMPDIR, { recursive: true });
  }
  const port = opts.port ?? (await freePort()); // a fresh namespace has nothing listening at all
  const launch = (): Promise<Daemon> =>
    startDaemon({
      label: 'hub', cmd: process.execPath, args: [G8OS, 'hub', '--listen', `127.0.0.1:${port}`, '--data', data, ...(opts.args ?? [])],
      env, netns: opts.netns, ready: 'hub listening', timeoutMs: opts.timeoutMs ?? 30_000, graceMs: 15_000,
    });
  let d = await launch();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    data,
    blocksDir: path.join(data, 'blocks'),
    get child() {
      return d.child;
    },
    get pid() {
      return d.pid;
    },
    daemon: () => d,
    log: () => d.log(),
    token(user) {
      const r = spawnSync(process.execPath, [G8OS, 'hub', 'user', 'add', user, '--data', data], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`hub user add failed: ${r.stderr}`);
      return r.stdout.trim().split('\n').pop()!;
    },
    memory: (field) => procStatus(d.pid, field),
    stop: (graceMs) => d.stop(graceMs),
    kill: () => d.kill(),
    async restart() {
      await d.stop(); // nothing left of the old one (a no-op after kill())
      // the port was just freed: retry briefly if it is not yet
      for (let i = 0; ; i++) {
        try {
          d = await launch();
          return;
        } catch (e) {
          if (i >= 10) throw e;
          await sleep(200);
        }
      }
    },
  };
}
