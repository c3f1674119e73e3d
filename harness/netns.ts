// Network namespaces the harness makes, so that bridges, veths and NAT rules never touch the
// host's network. Entered with `nsenter --net` only: `ip netns exec` would also remount /sys,
// which hides the cgroup hierarchies the agent needs.
import { execFileSync } from 'node:child_process';
import { onCleanup } from './cleanup';

export const netnsPath = (name: string): string => `/run/netns/${name}`;

/** argv run inside the namespace (or as it is without one). */
export function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ['nsenter', `--net=${netnsPath(netns)}`, '--', ...argv] : argv;
}

export interface Netns {
  name: string;
  path: string;
  /** argv wrapped to run inside it */
  exec(argv: string[]): string[];
  /** deletes it (also done on exit or signal) */
  remove(): void;
}

let seq = 0;

/** A fresh namespace with lo up, named g8<tag>-<pid>[-n]; removed on exit or signal at the latest. */
export function makeNetns(tag = 'h'): Netns {
  const name = `g8${tag}-${process.pid}${seq++ ? `-${seq}` : ''}`;
  const del = (): void => {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'pipe' });
    } catch {
      // not there
    }
  };
  del(); // a leftover of an earlier run with this pid
  execFileSync('ip', ['netns', 'add', name], { stdio: 'pipe' });
  const unregister = onCleanup(del);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { stdio: 'pipe' });
  return {
    name,
    path: netnsPath(name),
    exec: (argv) => inNetns(name, argv),
    remove() {
      unregister();
      del();
    },
  };
}
