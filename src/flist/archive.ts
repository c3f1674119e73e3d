// The flist container: a (normally gzip) tar holding flistdb.sqlite3. Readers also accept a
// bare SQLite file or an extracted directory. Writers produce `./` + `./flistdb.sqlite3`.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { type ErrorKind, G8osError, kindOf } from '../errors';
import { makeTempDir } from './tempdir';

export const DB_NAME = 'flistdb.sqlite3';
const MAX_DB = 4 * 1024 * 1024 * 1024;

/** An flist that cannot be read: `invalid` (not an flist), `corrupt` (damaged), `not_found`. */
export class FlistError extends G8osError {
  constructor(message: string, kind: ErrorKind = 'invalid', cause?: unknown) {
    super(kind, message, cause === undefined ? {} : { cause });
  }
}

export type Container = 'gzip' | 'bzip2' | 'xz' | 'tar' | 'sqlite' | 'directory';

export async function detectContainer(file: string): Promise<Container> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (e) {
    const k = kindOf(e);
    throw new FlistError(`cannot open flist ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, k === 'internal' ? 'invalid' : k, e);
  }
  if (st.isDirectory()) return 'directory';
  const fh = await fs.promises.open(file, 'r');
  const head = Buffer.alloc(512);
  const { bytesRead } = await fh.read(head, 0, 512, 0).finally(() => fh.close());
  const h = head.subarray(0, bytesRead);
  if (h.length === 0) throw new FlistError(`not an flist: ${file} is empty`);
  if (h[0] === 0x1f && h[1] === 0x8b) return 'gzip';
  if (h.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (h.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (h.subarray(0, 16).toString('latin1') === 'SQLite format 3\0') return 'sqlite';
  if (h.length === 512 && h.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  throw new FlistError(`not an flist: ${file} is neither a (compressed) tar archive nor a SQLite database`);
}

function decompressed(file: string, kind: Container): Readable {
  const input = fs.createReadStream(file);
  if (kind === 'gzip') return input.pipe(zlib.createGunzip());
  if (kind === 'tar') return input;
  // bzip2/xz are rare for flists: let Debian's tools do it rather than carry a library.
  const child = spawn(kind === 'bzip2' ? 'bzip2' : 'xz', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
  input.pipe(child.stdin);
  child.on('error', (e) => child.stdout.destroy(new FlistError(`cannot run ${kind} to read the flist: ${e.message}`, 'unavailable', e)));
  return child.stdout;
}

/** Where an flist's database was found: a path, plus the temp dir to remove when done. */
export interface ExtractedDb {
  db: string;
  tempDir?: string;
  router?: string;
}

/** Locate or extract flistdb.sqlite3 (into a private temp dir, removed by the caller). */
export async function extractDb(file: string): Promise<ExtractedDb> {
  const kind = await detectContainer(file);
  if (kind === 'sqlite') return { db: file };
  if (kind === 'directory') {
    const db = path.join(file, DB_NAME);
    if (!fs.existsSync(db)) throw new FlistError(`not an flist: directory ${file} has no ${DB_NAME}`);
    return { db };
  }
  const tempDir = await makeTempDir('flist');
  const out = path.join(tempDir, DB_NAME);
  let found = false;
  let router: string | undefined;
  const extract = tar.extract();
  try {
    const source = decompressed(file, kind);
    const done = pipeline(source, extract).catch((e: unknown) => {
      throw new FlistError(`corrupt flist ${file}: ${describe(e)}`, 'corrupt', e);
    });
    done.catch(() => undefined); // awaited below; keep an early failure from being unhandled
    for await (const entry of extract) {
      const base = path.posix.basename(entry.header.name);
      if (entry.header.type === 'file' && base === DB_NAME && !found) {
        if (entry.header.size > MAX_DB) throw new FlistError(`corrupt flist ${file}: ${DB_NAME} claims ${entry.header.size} bytes`, 'corrupt');
        await pipeline(entry, fs.createWriteStream(out));
        found = true;
      } else if (entry.header.type === 'file' && base === 'router.yaml' && entry.header.size < 1 << 20) {
        const parts: Buffer[] = [];
        for await (const c of entry) parts.push(c as Buffer);
        router = Buffer.concat(parts).toString('utf8');
      } else entry.resume();
    }
    await done;
    if (!found) throw new FlistError(`not an flist: ${file} has no ${DB_NAME} member`);
    return { db: out, tempDir, router };
  } catch (e) {
    await fs.promises.rm(tempDir, { recursive: true, force: true });
    if (e instanceof FlistError) throw e;
    throw new FlistError(`corrupt flist ${file}: ${describe(e)}`, 'corrupt', e);
  }
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'Z_BUF_ERROR' || err.message === 'unexpected end of file') return 'truncated gzip stream';
  if (err.code === 'Z_DATA_ERROR') return `gzip data error (${err.message})`;
  return err.message ?? String(e);
}

/** Pack a database into `out` as tar.gz (`./`, `./flistdb.sqlite3`), atomically. */
export async function packFlist(dbFile: string, out: string, extra: { router?: string } = {}): Promise<void> {
  const tmp = `${out}.tmp-${process.pid}-${Date.now()}`;
  const pack = tar.pack();
  const st = await fs.promises.stat(dbFile);
  const mtime = new Date();
  try {
    const written = pipeline(pack, zlib.createGzip({ level: 6 }), fs.createWriteStream(tmp, { mode: 0o644 }));
    pack.entry({ name: './', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime });
    const entry = pack.entry({ name: `./${DB_NAME}`, size: st.size, mode: 0o644, uid: 0, gid: 0, mtime });
    await pipeline(fs.createReadStream(dbFile), entry);
    if (extra.router) pack.entry({ name: './router.yaml', mode: 0o644, mtime }, extra.router);
    pack.finalize();
    await written;
    const fh = await fs.promises.open(tmp, 'r');
    await fh.sync().finally(() => fh.close());
    await fs.promises.rename(tmp, out);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}
