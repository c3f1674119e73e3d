// The block cache's way to the store and to disk: GET + decode + verify within a deadline
// (retries with back-off), and writing a verified block into the cache directory.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { G8osError, unavailable } from '../errors';
import type { BlockCodec, BlockRef } from '../flist/types';
import { sleep, withDeadline } from '../lib/deadline';
import { errorText } from '../store/retry';
import type { BlockStore } from '../store/types';
import type { BlockPool } from './block-pool';
import type { FileId } from './block-task';
import { sameFile } from './cache-index';

/** A block that cannot be had; the FUSE layer answers EIO. */
export class BlockFetchError extends G8osError {
  constructor(
    readonly id: string,
    readonly store: string,
    readonly reason: string,
  ) {
    super('unavailable', `cannot fetch block ${id} from ${store}: ${reason}`);
  }
}

export interface FetchCounts {
  fetched: number;
  fetchedBytes: number;
  badFetches: number;
}

export interface Retry {
  attempts: number;
  backoffMs: readonly number[];
  timeoutMs: number;
}

class Timeout extends Error {}

/** GET + decode + verify, `attempts` tries until the deadline. */
export async function download(
  store: BlockStore,
  pool: BlockPool,
  ref: BlockRef,
  codec: BlockCodec,
  deadline: number,
  retry: Retry,
  counts: FetchCounts,
): Promise<Buffer> {
  const id = ref.id.toString('hex');
  let why = `timed out after ${retry.timeoutMs} ms`;
  let tries = 0;
  for (let attempt = 0; attempt < retry.attempts; attempt++) {
    if (attempt > 0) {
      const pause = retry.backoffMs[Math.min(attempt - 1, retry.backoffMs.length - 1)];
      if (Date.now() + pause >= deadline) break;
      await sleep(pause);
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    tries++;
    let cipher: Buffer | null;
    try {
      cipher = await withDeadline(store.get(ref.id), left, () => new Timeout());
    } catch (e) {
      why = e instanceof Timeout ? `timed out after ${retry.timeoutMs} ms` : errorText(e);
      continue;
    }
    if (!cipher) throw new BlockFetchError(id, store.url, 'the store does not have it');
    counts.fetched++;
    counts.fetchedBytes += cipher.length;
    const r = await pool.run({ op: 'decode', cipher: new Uint8Array(cipher), id: new Uint8Array(ref.id), key: new Uint8Array(ref.key), codec });
    if (r.plain) return Buffer.from(r.plain);
    if (r.corrupt) {
      counts.badFetches++;
      why = `corrupt block: ${r.corrupt}`;
    } else why = r.error ?? 'decoding failed';
  }
  throw new BlockFetchError(id, store.url, `${why} (${tries} ${tries === 1 ? 'try' : 'tries'})`);
}

/** temp file, fsync, rename: a crash never leaves a short block under its final name. Returns the file's identity. */
export async function persist(id: string, file: string, plain: Buffer): Promise<FileId> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${id}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await fsp.open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(plain);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    const st = await fsp.stat(file);
    return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

/** Bytes [start, end) of a cached file, if it is still the file `v` describes (else undefined). */
export async function readRange(file: string, v: FileId, start: number, end: number): Promise<Buffer | undefined> {
  const fh = await fsp.open(file, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    if (!sameFile(v, await fh.stat())) return undefined;
    const out = Buffer.allocUnsafe(end - start);
    const { bytesRead } = await fh.read(out, 0, out.length, start);
    return bytesRead === out.length ? out : undefined;
  } finally {
    await fh.close();
  }
}

export async function present(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}

/** The cache directory cannot be used at all. */
export const unusableDir = (dir: string, e: unknown): Error => unavailable(`cache directory ${dir} is not usable: ${errorText(e)}`, { cause: e });
