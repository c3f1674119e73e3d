// Mount points from this mount namespace's mountinfo, unmounting what a killed process left, and
// tmpfs scratch space that is unmounted even on error or signal.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onCleanup, sleepSync } from './cleanup';
import { MiB } from './paths';

const unescapeMount = (p: string): string => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

const mountinfo = (): string[][] => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));

export function mountPoints(): string[] {
  return mountinfo().map((f) => unescapeMount(f[4]));
}

/** The path as mountinfo spells it: resolved, with its parent's symlinks followed (the target itself may be a dead FUSE mount). */
function canonical(target: string): string {
  const t = path.resolve(target);
  try {
    return path.join(fs.realpathSync(path.dirname(t)), path.basename(t));
  } catch {
    return t;
  }
}

export function isMounted(target: string): boolean {
  const t = canonical(target);
  return mountPoints().includes(t);
}

/** The filesystem type mounted at target (the top one), or undefined. */
export function fsType(target: string): string | undefined {
  const t = canonical(target);
  let type: string | undefined;
  for (const f of mountinfo()) if (unescapeMount(f[4]) === t) type = f[f.indexOf('-') + 1];
  return type;
}

/** Mount points strictly below dir, deepest first. */
export function mountsUnder(dir: string): string[] {
  const d = canonical(dir);
  return mountPoints().filter((m) => m.startsWith(`${d}/`)).sort((a, b) => b.length - a.length);
}

/** How many mounts strictly below dir have each filesystem type (fuse.*, overlay, …). */
export function mountTypesUnder(dir: string): Record<string, number> {
  const d = canonical(dir);
  const out: Record<string, number> = {};
  for (const f of mountinfo()) {
    if (!unescapeMount(f[4]).startsWith(`${d}/`)) continue;
    const type = f[f.indexOf('-') + 1];
    out[type] = (out[type] ?? 0) + 1;
  }
  return out;
}

/** Lazily detaches every mount strictly below dir (deepest first). */
export function detachUnder(dir: string): void {
  for (const m of mountsUnder(dir)) {
    if (spawnSync('umount', ['-l', m], { stdio: 'ignore' }).status !== 0) spawnSync('fusermount', ['-uz', m], { stdio: 'ignore' });
  }
}

/** Lazy unmounts until nothing is mounted there (also recovers "Transport endpoint is not connected"). */
export function forceUnmount(target: string, tries = 5): void {
  for (let i = 0; i < tries && isMounted(target); i++) {
    if (spawnSync('fusermount', ['-uz', target], { stdio: 'ignore' }).status !== 0) spawnSync('umount', ['-l', target], { stdio: 'ignore' });
  }
}

/** Mounts a fresh tmpfs of `bytes` (under `parent`, the temp dir by default) for the duration of fn; unmounted even on error or signal. */
export async function withTmpfs<T>(bytes: number, fn: (dir: string) => Promise<T>, parent = os.tmpdir()): Promise<T> {
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, 'g8os-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil(bytes / MiB)}m`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    fs.rmdirSync(dir);
    throw new Error(`cannot mount a tmpfs on ${dir} (needs root): ${(e as Error).message}`);
  }
  const release = (): void => {
    detachUnder(dir);
    // A just-killed child may hold files open for a moment: retry, then detach lazily.
    for (let i = 0; ; i++) {
      try {
        execFileSync('umount', i < 20 ? [dir] : ['-l', dir], { stdio: 'pipe' });
        break;
      } catch (e) {
        if (i >= 20) throw e;
        sleepSync(100);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const unregister = onCleanup(release);
  try {
    return await fn(dir);
  } finally {
    unregister();
    release();
  }
}
