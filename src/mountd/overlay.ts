// A container's own writable layer: a kernel overlay of <dir>/rw (upper) and <dir>/wd (work)
// over a shared read-only lower. Milliseconds, no process of its own.
import fs from 'node:fs';
import path from 'node:path';
import { overlayComplaint, runMount } from '../fs/mount-table';

/** Mounts the overlay at `target`; the upper dir's root takes the lower root's mode and owner. */
export async function mountOverlay(lower: string, dir: string, target: string): Promise<void> {
  if (/[,:\\]/.test(lower + dir + target)) throw new Error(`overlay paths may not contain ',', ':' or a backslash: ${dir}`);
  const rw = path.join(dir, 'rw');
  const wd = path.join(dir, 'wd');
  await fs.promises.mkdir(rw, { recursive: true });
  await fs.promises.mkdir(wd, { recursive: true });
  await fs.promises.mkdir(target, { recursive: true });
  // async: the lower is served by another process, which may be slow to answer
  const root = await fs.promises.stat(lower);
  await fs.promises.chmod(rw, root.mode & 0o7777);
  await fs.promises.chown(rw, root.uid, root.gid);
  const opts = `lowerdir=${lower},upperdir=${rw},workdir=${wd},redirect_dir=on,noatime`;
  const err = await runMount(['-t', 'overlay', 'overlay', '-o', opts, target]);
  if (err) {
    const kernel = await overlayComplaint([rw, wd, lower]);
    throw new Error(`cannot mount the overlay at ${target}: ${kernel ?? err.replace(/^mount: [^:]*: /, '')}`);
  }
}
