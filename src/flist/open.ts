// One entry point for every flist source: a local gen-2 flist (tar.gz, bare sqlite, directory),
// a gen-3 `.fl` file, or an http(s) URL of either (downloaded to a private temp file).
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FlistError } from './archive';
import { makeTempDir } from './tempdir';
import { isGen3File, openGen3 } from './gen3';
import { openGen2 } from './reader';
import type { FlistReader } from './types';

const MAX_DOWNLOAD = 1024 ** 3;

export async function openFlist(source: string): Promise<FlistReader> {
  if (/^https?:\/\//i.test(source)) return openUrl(source);
  if (isGen3File(source)) return openGen3(source);
  return openGen2(source);
}

async function openUrl(url: string): Promise<FlistReader> {
  const dir = await makeTempDir('dl');
  const file = path.join(dir, 'download.flist');
  try {
    await download(url, file);
    const r = await (isGen3File(file) ? openGen3(file) : openGen2(file));
    const close = r.close.bind(r);
    r.close = () => {
      close();
      fs.rmSync(dir, { recursive: true, force: true });
    };
    return r;
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    if (e instanceof FlistError) throw new FlistError(e.message.replace(file, url));
    throw e;
  }
}

async function download(url: string, file: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(60_000), redirect: 'follow' });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    throw new FlistError(`cannot download flist ${url}: ${cause}`);
  }
  if (!res.ok || !res.body) throw new FlistError(`cannot download flist ${url}: HTTP ${res.status}`);
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > MAX_DOWNLOAD) throw new FlistError(`cannot download flist ${url}: ${declared} bytes is too large for an flist`);
  let got = 0;
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (c: Buffer) => {
    got += c.length;
    if (got > MAX_DOWNLOAD) body.destroy(new FlistError(`cannot download flist ${url}: larger than ${MAX_DOWNLOAD} bytes`));
  });
  await pipeline(body, fs.createWriteStream(file));
}
