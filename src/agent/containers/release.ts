// Tearing a container down, from its live object or, after a crash, from its state file alone:
// PID 1, veths, cgroup, mounts, then the directory — each step attempted, problems collected.
import fs from 'node:fs';
import path from 'node:path';
import { detach, mountAt, readMounts, unmount } from '../../fs/mount-table';
import { stopLower } from '../../mountd/lower';
import { Cgroup } from './cgroup';
import { type Container, runs, type State, waitGone } from './container';
import * as net from './net';

/**
 * Releases everything a container holds, from the live object when there is one, else from
 * its state file (crash sweep). Returns the problems; the directory stays if a mount does.
 */
export async function release(dir: string, state: State | undefined, c?: Container): Promise<string[]> {
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown> | unknown): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message}`);
    }
  };
  if (c) c.stopping = true;
  for (const f of c?.forwards ?? []) await attempt(`port ${f.host}`, () => f.close());
  // PID 1 on SIGTERM ends everything in its namespace within 3 s, then the watcher exits
  const root = path.join(dir, 'root');
  const watcher = state?.g8init;
  if (runs(watcher, 'g8init', root)) {
    await attempt('stop PID 1', async () => {
      process.kill(watcher, 'SIGTERM');
      if (await waitGone(watcher, 8000)) return;
      if (runs(state?.pid1, 'g8init', root)) process.kill(state!.pid1!, 'SIGKILL');
      process.kill(watcher, 'SIGKILL');
      if (!(await waitGone(watcher, 3000))) throw new Error(`g8init ${watcher} does not exit`);
    });
  } else if (runs(state?.pid1, 'g8init', root)) {
    await attempt('stop PID 1', async () => {
      process.kill(state!.pid1!, 'SIGKILL');
      await waitGone(state!.pid1!, 3000);
    });
  }
  for (const v of state?.veths ?? []) await attempt(`veth ${v}`, () => net.deleteLink(v));
  if (state?.cgroup) await attempt('cgroup', () => new Cgroup(state.cgroup!, true).remove());
  // mount processes of a container made before the mount service
  const mounts = [...(state?.mounts ?? [])].reverse();
  await Promise.all(mounts.map((m) => attempt(`mount ${m.target}`, () => stopLower(m.pid, m.target, m.backend))));
  // the root overlay and anything else mounted below the directory, deepest first
  const below = readMounts().filter((m) => m.mountPoint.startsWith(`${dir}/`)).map((m) => m.mountPoint).sort((a, b) => b.length - a.length);
  for (const p of below) await attempt(`unmount ${p}`, async () => {
    const e = (await unmount(p)) && (await detach(p));
    if (e) throw new Error(e);
  });
  const stuck = readMounts().some((m) => m.mountPoint.startsWith(`${dir}/`) || m.mountPoint === dir) || mountAt(dir);
  // the shared lowers once nothing of ours sits on them (a crash sweep has none: the mount service sweeps its own)
  for (const l of c?.leases.splice(0) ?? []) await attempt(`lower ${l.key}`, () => l.release());
  if (stuck) errors.push(`${dir} still has mounts; left in place`);
  else await attempt(`remove ${dir}`, () => fs.promises.rm(dir, { recursive: true, force: true }));
  return errors;
}
