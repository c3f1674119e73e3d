// Cross-process coalescing of block fetches: a lock file next to the block being fetched.
// Locks only save duplicate downloads; correctness never depends on them (blocks are
// verified, written to a temp name and renamed), so every doubtful case proceeds.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { alive } from '../flist/tempdir';
import { sleep } from '../lib/deadline';

export interface Held {
  release(): Promise<void>;
}

/**
 * - a Held lock: we fetch;
 * - 'appeared': the block file exists (another process finished);
 * - 'timeout': another live process still holds the lock at the deadline;
 * - 'unavailable': the lock cannot be created (disk full, read-only): fetch without one.
 */
export type LockResult = Held | 'appeared' | 'timeout' | 'unavailable';

const HOST = os.hostname();

export const lockPath = (target: string): string => path.join(path.dirname(target), `.${path.basename(target)}.lock`);

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}

/** A lock whose holder died (same host, pid gone) or that is older than staleMs: removed. */
async function removeIfStale(lock: string, staleMs: number): Promise<boolean> {
  let st;
  let text = '';
  try {
    st = await fsp.stat(lock);
    text = await fsp.readFile(lock, 'utf8');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT'; // gone already: try again
  }
  const [pid, host] = text.trim().split(' ');
  const dead = host === HOST && Number(pid) > 0 && !alive(Number(pid));
  if (!dead && Date.now() - st.mtimeMs < staleMs) return false;
  try {
    // Still the same lock file (another waiter may have replaced it meanwhile).
    if ((await fsp.stat(lock)).ino === st.ino) await fsp.unlink(lock);
    return true;
  } catch (e) {
    // ENOENT: removed by someone else; anything else (EACCES): keep waiting, bounded
    return (e as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** Take the lock for `target`, or wait (polling) until the block appears, the lock goes, or the deadline. */
export async function lockBlock(target: string, deadline: number, opts: { staleMs: number; onWait: () => void }): Promise<LockResult> {
  const lock = lockPath(target);
  let pause = 10;
  let waited = false;
  for (;;) {
    try {
      const fh = await fsp.open(lock, 'wx', 0o644);
      // An empty lock (write failed: disk full) still works; it just goes stale by age only.
      await fh.writeFile(`${process.pid} ${HOST}\n`).catch(() => undefined);
      await fh.close();
      return { release: () => fsp.unlink(lock).catch(() => undefined) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return 'unavailable';
    }
    if (await exists(target)) return 'appeared';
    if (await removeIfStale(lock, opts.staleMs)) continue;
    if (!waited) {
      waited = true;
      opts.onWait();
    }
    const left = deadline - Date.now();
    if (left <= 0) return 'timeout';
    await sleep(Math.min(pause, left));
    pause = Math.min(pause * 2, 100);
  }
}
