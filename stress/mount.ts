// Mounts for the suites: `g8os mount … -d --pid`, served by a detached process; and flists of
// tarballs in a dir:// store.
import fs from 'node:fs';
import path from 'node:path';
import { onCleanup, sleep, tail } from '../harness/cleanup';
import { forceUnmount, isMounted } from '../harness/mounts';
import { G8OS } from '../harness/paths';
import { processAlive, run } from '../harness/procs';

export interface Mount {
  target: string;
  backend: string;
  pid: number;
  /** SIGTERM to the serving process, wait for it; the target must be unmounted after */
  stop(): Promise<void>;
}

export async function mount(src: string, target: string, backend: string, extra: string[]): Promise<Mount> {
  fs.mkdirSync(target, { recursive: true });
  fs.mkdirSync(backend, { recursive: true });
  const pidFile = path.join(backend, 'serve.pid');
  fs.rmSync(pidFile, { force: true });
  const readPid = (): number => {
    try {
      return Number(fs.readFileSync(pidFile, 'utf8').trim());
    } catch {
      return NaN;
    }
  };
  const force = (): void => {
    const pid = readPid();
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const m of [target, path.join(backend, 'ro')]) forceUnmount(m, 3);
  };
  const unregister = onCleanup(force);
  try {
    await run(process.execPath, [G8OS, 'mount', src, target, '-d', '--backend', backend, '--pid', pidFile, ...extra], { timeoutMs: 120_000 });
  } catch (e) {
    force();
    unregister();
    let logText = '';
    try {
      logText = tail(fs.readFileSync(path.join(backend, 'mount.log'), 'utf8'), 10);
    } catch {
      // no log
    }
    throw new Error(`${(e as Error).message}${logText ? `\nmount.log: ${logText}` : ''}`);
  }
  const pid = readPid();
  if (!(pid > 0)) {
    force();
    unregister();
    throw new Error(`g8os mount ${src}: no pid in ${pidFile}`);
  }
  return {
    target,
    backend,
    pid,
    async stop() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
      const until = Date.now() + 30_000;
      while (processAlive(pid) && Date.now() < until) await sleep(50);
      const survived = processAlive(pid) || isMounted(target) || isMounted(path.join(backend, 'ro'));
      force();
      unregister();
      if (survived) throw new Error(`the mount at ${target} did not stop cleanly (pid ${pid})`);
    },
  };
}

/** `g8os flist create` of a tarball into a dir:// store. */
export async function flistCreate(tarball: string, out: string, store: string): Promise<void> {
  await run(process.execPath, [G8OS, 'flist', 'create', tarball, '-o', out, '--store', store]);
}
