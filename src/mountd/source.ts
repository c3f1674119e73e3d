// An flist source as a local file named by its content: a URL is downloaded (each time: the
// hub may have replaced the flist behind it), a local file is hashed. Its sha256 keys the lower.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { invalid, notFound, tooLarge, unavailable } from '../errors';

const MAX_FLIST = 1024 ** 3;

export interface LocalFlist {
  /** a file (or, for a directory flist, that directory) to mount */
  file: string;
  sha256: string;
  /** a temporary download the caller moves or removes */
  temp: boolean;
}

async function hashInto(src: Readable, dest: string | undefined, what: string): Promise<string> {
  const h = crypto.createHash('sha256');
  let got = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      got += chunk.length;
      if (got > MAX_FLIST) return cb(tooLarge(`flist ${what} is larger than ${MAX_FLIST} bytes`));
      h.update(chunk);
      cb(null, dest ? chunk : undefined);
    },
  });
  if (dest) await pipeline(src, tap, fs.createWriteStream(dest, { flags: 'wx' }));
  else await pipeline(src, tap, async function* (s) { for await (const _ of s) void _; });
  return h.digest('hex');
}

/** `tmpDir` receives downloads. */
export async function localFlist(source: string, tmpDir: string): Promise<LocalFlist> {
  if (/^https?:\/\//i.test(source)) {
    let res: Response;
    try {
      res = await fetch(source, { signal: AbortSignal.timeout(60_000), redirect: 'follow' });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw unavailable(`cannot download flist ${source}: ${cause}`);
    }
    if (res.status === 404) throw notFound(`cannot download flist ${source}: HTTP 404`);
    if (!res.ok || !res.body) throw unavailable(`cannot download flist ${source}: HTTP ${res.status}`);
    fs.mkdirSync(tmpDir, { recursive: true });
    const file = path.join(tmpDir, `dl-${crypto.randomBytes(6).toString('hex')}.flist`);
    try {
      const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
      return { file, sha256: await hashInto(body, file, source), temp: true };
    } catch (e) {
      fs.rmSync(file, { force: true });
      throw e;
    }
  }
  const st = await fs.promises.stat(source).catch(() => undefined);
  if (!st) throw notFound(`flist ${source} does not exist`);
  if (st.isDirectory()) {
    // a directory flist: keyed by where it is (its files may change; it is mounted in place)
    const real = await fs.promises.realpath(source);
    return { file: real, sha256: crypto.createHash('sha256').update(`dir:${real}`).digest('hex'), temp: false };
  }
  if (!st.isFile()) throw invalid(`flist ${source} is not a file`);
  return { file: source, sha256: await hashInto(fs.createReadStream(source), undefined, source), temp: false };
}
