// Processes by /proc: liveness, command lines, memory, descendants; killing a whole tree; and
// running a command to completion.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { onCleanup, tail } from './cleanup';

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // a zombie is not alive
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function cmdline(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** VmHWM (peak) or VmRSS of a process in MiB; NaN when it is gone. */
export function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Every process below `root` (by /proc ppid links). */
export function descendants(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) for (const k of kids.get(todo.pop()!) ?? []) out.push(k), todo.push(k);
  return out;
}

const kill = (pid: number): void => {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
};

/**
 * SIGKILL of the process group led by `pid` and of every descendant, also those that left the
 * group (setsid). Descendants are looked up first: once their parent dies they are reparented.
 */
export function killTree(pid: number): void {
  const all = descendants(pid);
  kill(-pid);
  for (const p of all) kill(p);
}

/** SIGKILL of what is left of the process group `pid` led (after the leader exited: its pid may be reused, its group id not while the group lives). */
export function killGroup(pid: number): void {
  kill(-pid);
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  /** resolve on a non-zero exit too */
  allowFail?: boolean;
}

/** Runs a command to completion in its own process group; rejects with its output on a non-zero exit. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, detached: true, cwd: opts.cwd });
    const stop = (): void => {
      if (child.pid) killTree(child.pid);
    };
    const unregister = onCleanup(stop);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs ? setTimeout(stop, opts.timeoutMs) : undefined;
    child.once('error', (e) => (clearTimeout(timer), unregister(), reject(e)));
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      unregister();
      const c = code ?? 128;
      if (c !== 0 && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? sig}\n${tail(stderr || stdout, 10)}`));
      else resolve({ code: c, stdout, stderr });
    });
  });
}
