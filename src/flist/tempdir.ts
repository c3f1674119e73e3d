// Private temp dirs named after the owning process (g8os-<kind>-<pid>-XXXXXX). A process that
// dies without cleaning up (SIGKILL) leaves its dirs behind; the next g8os process that makes
// one removes those whose owner is gone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const PATTERN = /^g8os-[a-z]+-(\d+)-/;
let swept = false;

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function sweep(base: string): Promise<void> {
  const names = await fs.promises.readdir(base).catch(() => [] as string[]);
  await Promise.all(
    names.map(async (n) => {
      const m = PATTERN.exec(n);
      if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
        await fs.promises.rm(path.join(base, n), { recursive: true, force: true }).catch(() => undefined);
      }
    }),
  );
}

export async function makeTempDir(kind: string, base = os.tmpdir()): Promise<string> {
  if (!swept) {
    swept = true;
    await sweep(base);
  }
  return fs.promises.mkdtemp(path.join(base, `g8os-${kind}-${process.pid}-`));
}
