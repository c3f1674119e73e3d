// The kernel mount table (/proc/self/mountinfo): what is mounted where, who serves a g8ufs
// mount, and the unmount commands. Nothing here touches a mounted tree itself: a dead FUSE
// server makes such calls fail with ENOTCONN, a hung one makes them hang.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { withDeadline } from '../lib/deadline';

export interface MountEntry {
  id: number;
  parent: number;
  mountPoint: string;
  fstype: string;
  source: string;
  /** Per-superblock options (overlay's lowerdir=…, upperdir=…). */
  superOptions: string;
}

/** FUSE subtype of our read-only layer: mountinfo shows fstype "fuse.g8ufs". */
export const FUSE_TYPE = 'fuse.g8ufs';

/** fsname of the read-only layer served by process `pid` (mountinfo's source field). */
export const fsName = (pid: number): string => `g8ufs-${pid}`;

const MOUNTINFO = '/proc/self/mountinfo';

// mountinfo escapes space, tab, newline and backslash as \ooo.
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 4) continue;
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      mountPoint: unescape(f[4]),
      fstype: f[sep + 1],
      source: unescape(f[sep + 2]),
      superOptions: unescape(f[sep + 3]),
    });
  }
  return out;
}

export function readMounts(): MountEntry[] {
  return parseMountInfo(fs.readFileSync(MOUNTINFO, 'utf8'));
}

/** Same, without blocking the event loop (the FUSE callbacks run on it). */
export async function readMountsAsync(): Promise<MountEntry[]> {
  return parseMountInfo(await fs.promises.readFile(MOUNTINFO, 'utf8'));
}

/** The topmost mount at exactly this path, if any. */
export function mountAt(p: string, mounts: MountEntry[] = readMounts()): MountEntry | undefined {
  let top: MountEntry | undefined;
  for (const m of mounts) if (m.mountPoint === p) top = m;
  return top;
}

/** An overlay option value (lowerdir, upperdir, workdir); lowerdir may list several, ':'-separated. */
export function overlayOption(m: MountEntry, key: string): string | undefined {
  // Paths in options escape ',' ':' '\' with a backslash; we refuse such paths for our own
  // mounts, so a plain split is enough to recognise them.
  for (const o of m.superOptions.split(',')) if (o.startsWith(`${key}=`)) return o.slice(key.length + 1);
  return undefined;
}

/** The pid serving a g8ufs FUSE mount, from its fsname. */
export function fusePid(m: MountEntry): number | undefined {
  if (m.fstype !== FUSE_TYPE) return undefined;
  const r = /^g8ufs-(\d+)$/.exec(m.source);
  return r ? Number(r[1]) : undefined;
}

/** Whether the process exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S …": the state follows the last ')'
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** How a g8ufs-made mount at a path stands. */
export interface OurMount {
  /** the mount at the target */
  top: MountEntry;
  /** the FUSE layer (the same as top with --ro) */
  fuse?: MountEntry;
  /** the backend directory (overlay mounts: the parent of lowerdir) */
  backend?: string;
  /** the serving process, when known and alive */
  pid?: number;
  /** whether the serving process could be named at all (fsname g8ufs-<pid> or a pid file) */
  known: boolean;
}

/**
 * The g8ufs mount at `target` (an overlay over our FUSE layer, or the FUSE layer itself), or
 * undefined when what is mounted there is not ours.
 */
export function ourMount(target: string, mounts: MountEntry[] = readMounts()): OurMount | undefined {
  const top = mountAt(target, mounts);
  if (!top) return undefined;
  if (top.fstype === FUSE_TYPE) {
    const pid = fusePid(top);
    return { top, fuse: top, pid: pid !== undefined && processAlive(pid) ? pid : undefined, known: pid !== undefined };
  }
  if (top.fstype !== 'overlay') return undefined;
  const lower = overlayOption(top, 'lowerdir');
  const upper = overlayOption(top, 'upperdir');
  if (!lower || !upper || lower.includes(':')) return undefined;
  const backend = path.dirname(lower);
  // our layout: <backend>/ro under <backend>/rw
  if (path.basename(lower) !== 'ro' || upper !== path.join(backend, 'rw')) return undefined;
  const fuse = mountAt(lower, mounts);
  let pid = fuse ? fusePid(fuse) : undefined;
  if (pid === undefined) pid = pidFromFile(path.join(backend, PID_FILE));
  return {
    top,
    fuse: fuse?.fstype === FUSE_TYPE ? fuse : undefined,
    backend,
    pid: pid !== undefined && processAlive(pid) ? pid : undefined,
    // no FUSE layer left under the overlay: stale whoever served it
    known: pid !== undefined || !fuse,
  };
}

/**
 * For a mount whose server we cannot name: stale when the kernel answers ENOTCONN (the
 * server died). A server that does not answer within the time is alive, just slow.
 */
export async function answersNotConnected(p: string, timeoutMs = 2000): Promise<boolean> {
  const probe = fs.promises.stat(p).then(
    () => false,
    (e: NodeJS.ErrnoException) => e.code === 'ENOTCONN',
  );
  return withDeadline(probe, timeoutMs, () => new Error('no answer')).catch(() => false);
}

/** Whether nothing serves the g8ufs mount any more. */
export async function isStale(m: OurMount): Promise<boolean> {
  if (m.pid !== undefined) return false;
  if (m.known) return true;
  return answersNotConnected(m.fuse?.mountPoint ?? m.top.mountPoint);
}

/** Name of the pid file every mount process writes into its backend directory. */
export const PID_FILE = 'pid';

export function pidFromFile(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ ok: !err, out: `${stderr}${stdout}`.trim() || (err ? err.message : '') });
    });
  });
}

/**
 * Unmounts whatever is at `p`: a plain umount first (busy → lazy), and for FUSE mounts
 * fusermount as a fallback. Resolves with an error text, or undefined when it is gone.
 */
export async function unmount(p: string): Promise<string | undefined> {
  const m = mountAt(p);
  if (!m) return undefined;
  const tries: [string, string[]][] = [['umount', [p]], ['umount', ['-l', p]]];
  if (m.fstype.startsWith('fuse')) tries.push(['fusermount', ['-uz', p]]);
  let last = '';
  for (const [cmd, args] of tries) {
    const r = await run(cmd, args);
    if (!mountAt(p)) return undefined;
    last = r.out;
  }
  return `cannot unmount ${p}: ${last.split('\n')[0]}`;
}

/** Lazily detaches whatever is mounted at `p` (stale recovery): fusermount -uz, umount -l. */
export async function detach(p: string): Promise<string | undefined> {
  let last = '';
  // a stale mount can be stacked (several killed servers on one path): repeat while mounted
  for (let i = 0; i < 8 && mountAt(p); i++) {
    const m = mountAt(p)!;
    const r = m.fstype.startsWith('fuse') ? await run('fusermount', ['-uz', p]) : await run('umount', ['-l', p]);
    if (!r.ok) {
      const r2 = await run('umount', ['-l', p]);
      if (!r2.ok) last = r2.out;
    }
  }
  return mountAt(p) ? `cannot detach the stale mount at ${p}: ${last.split('\n')[0]}` : undefined;
}

export async function runMount(args: string[]): Promise<string | undefined> {
  const r = await run('mount', args);
  return r.ok ? undefined : r.out.split('\n')[0];
}

/** The kernel's last overlay complaint naming one of `paths` (mount(8) only says "wrong fs type"). */
export async function overlayComplaint(paths: string[]): Promise<string | undefined> {
  const r = await run('dmesg', []);
  if (!r.ok) return undefined;
  const lines = r.out.split('\n').filter((l) => /overlay/i.test(l) && paths.some((p) => l.includes(p)));
  return lines.pop()?.replace(/^\[[^\]]*\]\s*/, '');
}
