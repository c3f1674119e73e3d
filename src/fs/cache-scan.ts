// Lists the blocks of a cache directory (<blocks>/<id[0:2]>/<id[2:4]>/<id>) with size and
// mtime (the recency other processes leave behind), and removes leftovers of crashed writers.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export interface CachedFile {
  id: string;
  size: number;
  mtimeMs: number;
}

const BLOCK_NAME = /^[0-9a-f]{32}(?:[0-9a-f]{32})?$/;
const FAN = /^[0-9a-f]{2}$/;
/** Temp files and locks older than this belong to a writer that died. */
const LEFTOVER_MS = 60 * 60 * 1000;

async function names(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch {
    return [];
  }
}

export async function scanBlocks(root: string): Promise<CachedFile[]> {
  const out: CachedFile[] = [];
  const now = Date.now();
  for (const a of await names(root)) {
    if (!FAN.test(a)) continue;
    const subs = (await names(path.join(root, a))).filter((b) => FAN.test(b));
    await Promise.all(
      subs.map(async (b) => {
        const dir = path.join(root, a, b);
        await Promise.all(
          (await names(dir)).map(async (name) => {
            const file = path.join(dir, name);
            const block = BLOCK_NAME.test(name) && name.startsWith(a + b);
            if (!block && !name.startsWith('.')) return;
            try {
              const st = await fsp.lstat(file);
              if (block && st.isFile()) out.push({ id: name, size: st.size, mtimeMs: st.mtimeMs });
              else if (!block && now - st.mtimeMs > LEFTOVER_MS) await fsp.unlink(file);
            } catch {
              // gone meanwhile (evicted or renamed by another process)
            }
          }),
        );
      }),
    );
  }
  return out;
}
