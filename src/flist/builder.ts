// Streams a tar / tar.gz into a Tree plus blocks in a store, without extracting to disk and
// without holding whole files in memory (see ingest.ts); also the entry point for any path.
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { buildFromDir } from './fromdir';
import { hashReady } from './hash';
import { BuildError, Ingest, type BuildOptions, type BuildResult } from './ingest';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, type Entry, type SpecialType } from './types';

export { BuildError, treeCounts, type BuildOptions, type BuildProgress, type BuildResult, type BuildStats } from './ingest';
export { buildFromDir, splitDev } from './fromdir';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Turn a member name into a relative path inside the root, or refuse it. */
export function memberPath(raw: string, what = 'member'): string {
  if (raw.includes('\0')) throw new BuildError(`${what} name ${JSON.stringify(raw)} contains a NUL byte`);
  const out: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw new BuildError(`${what} ${JSON.stringify(raw)} escapes the root with ".."`);
      out.pop();
    } else out.push(part);
  }
  return out.join('/');
}

/** tar-stream decoded ustar/GNU names as latin1 (one char per byte): re-decode as strict UTF-8. */
function fromLatin1(name: string, what: string): string {
  try {
    return utf8.decode(Buffer.from(name, 'latin1'));
  } catch {
    throw new BuildError(`${what} name ${JSON.stringify(name)} is not valid UTF-8`);
  }
}

function headerName(raw: string, fromPax: boolean, what: string): string {
  if (fromPax) {
    // PAX values are decoded as UTF-8 by tar-stream; invalid bytes became U+FFFD.
    if (raw.includes('\uFFFD')) throw new BuildError(`${what} name ${JSON.stringify(raw)} is not valid UTF-8`);
    return raw;
  }
  return fromLatin1(raw, what);
}


const TAR_SPECIAL: Record<string, SpecialType> = { 'character-device': 'char', 'block-device': 'block', fifo: 'fifo' };

/** Sniff the stream: gzip magic → gunzip; otherwise plain tar. Empty input is an error. */
async function untarInput(input: Readable, counter: (n: number) => void): Promise<Readable> {
  const counting = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      counter(chunk.length);
      cb(null, chunk);
    },
  });
  input.pipe(counting);
  input.on('error', (e) => counting.destroy(e));
  const first: Buffer | null = await new Promise((resolve, reject) => {
    const onReadable = (): void => {
      const c = counting.read() as Buffer | null;
      if (c === null) return;
      cleanup();
      resolve(c);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(null);
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const cleanup = (): void => {
      counting.off('readable', onReadable);
      counting.off('end', onEnd);
      counting.off('error', onError);
    };
    counting.on('readable', onReadable);
    counting.on('end', onEnd);
    counting.on('error', onError);
  });
  if (!first || first.length === 0) throw new BuildError('archive is empty (0 bytes)');
  const rest = new PassThrough();
  rest.write(first);
  counting.pipe(rest);
  counting.on('error', (e) => rest.destroy(e));
  if (first[0] === 0x1f && first[1] === 0x8b) {
    const gunzip = zlib.createGunzip();
    rest.pipe(gunzip);
    rest.on('error', (e) => gunzip.destroy(e));
    return gunzip;
  }
  return rest;
}

function describeTarError(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'Z_BUF_ERROR' || e.message === 'unexpected end of file') return 'truncated gzip stream';
  if (code === 'Z_DATA_ERROR') return `corrupt gzip data (${e.message})`;
  if (/Invalid tar header/.test(e.message)) return 'not a tar archive (invalid tar header)';
  if (/Unexpected end of data/.test(e.message)) return 'truncated tar archive';
  if (/Header exceeds max size/.test(e.message)) return 'a tar header is too large (over 1 MiB)';
  return e.message;
}

/** Build from a tar or tar.gz stream. */
export async function buildFromTar(input: Readable, opts: BuildOptions): Promise<BuildResult> {
  await hashReady();
  const ing = new Ingest(opts);
  // latin1 keeps the raw name bytes so that invalid UTF-8 can be detected (fromLatin1).
  const extract = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  try {
    const source = await untarInput(input, (n) => {
      ing.stats.input_bytes += n;
    });
    // Count the tar stream itself (after gunzip): an empty-but-valid tar still has its 1 KiB
    // end marker, and a bomb of padding between members must hit the size cap too.
    let tarBytes = 0;
    const cap = opts.maxExpandedBytes !== undefined ? opts.maxExpandedBytes + 64 * 1024 * 1024 : Infinity;
    const counted = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        tarBytes += chunk.length;
        if (tarBytes > cap) cb(new BuildError(`archive expands to more than ${opts.maxExpandedBytes} bytes (the limit)`, 'too_large'));
        else cb(null, chunk);
      },
    });
    const parsed = pipeline(source, counted, extract);
    parsed.catch(() => undefined);
    try {
      for await (const member of extract) {
        await tarMember(ing, member as unknown as TarMember);
      }
      await parsed;
    } catch (e) {
      source.destroy();
      if (e instanceof BuildError) throw e;
      throw new BuildError(describeTarError(e as Error));
    }
    if (ing.entries === 0 && tarBytes < 1024) throw new BuildError('not a tar archive (no members)');
    return await ing.finish();
  } catch (e) {
    await ing.abort();
    throw e;
  }
}

/** One member as tar-stream yields it: its header and a stream of its data. */
type TarMember = AsyncIterable<Buffer> & { header: tar.Header };

async function tarMember(ing: Ingest, member: TarMember): Promise<void> {
  const h = member.header;
  const pax = (h.pax ?? {}) as Record<string, string>;
  const name = memberPath(headerName(h.name, pax.path !== undefined, 'member'));
  const base = {
    name: path.posix.basename(name),
    path: name,
    uid: pax.uid !== undefined ? Number(pax.uid) : h.uid ?? 0,
    gid: pax.gid !== undefined ? Number(pax.gid) : h.gid ?? 0,
    uname: pax.uname ?? (h.uname ? fromLatin1(h.uname, 'owner') : ''),
    gname: pax.gname ?? (h.gname ? fromLatin1(h.gname, 'group') : ''),
    mtime: ing.time(pax.mtime !== undefined ? Number(pax.mtime) : (h.mtime?.getTime() ?? 0) / 1000, name),
  };
  const perm = (h.mode ?? 0o644) & 0o7777;
  const common = { ...base, ctime: base.mtime, mode: perm };
  let entry: Entry | undefined;
  switch (h.type) {
    case 'directory':
      entry = { ...common, kind: 'dir', mode: S_IFDIR | perm, size: 4096 };
      break;
    case 'file':
    case 'contiguous-file': {
      const size = h.size ?? 0;
      entry = { ...common, kind: 'file', mode: S_IFREG | perm, size, blocks: [] };
      ing.count(entry); // before reading, so a bomb is refused by its header
      entry.blocks = await ing.content(member, size, name);
      if (name !== '') ing.tree.add(entry);
      return;
    }
    case 'symlink': {
      const target = headerName(h.linkname ?? '', pax.linkpath !== undefined, 'symlink target');
      if (target.includes('\0')) throw new BuildError(`symlink ${name} has a NUL byte in its target`);
      entry = { ...common, kind: 'link', mode: S_IFLNK | 0o777, size: Buffer.byteLength(target), target };
      break;
    }
    case 'link': {
      const src = memberPath(headerName(h.linkname ?? '', pax.linkpath !== undefined, 'hard link target'), 'hard link target');
      const node = ing.tree.get(src);
      if (!node || node.entry.kind !== 'file') throw new BuildError(`hard link ${name} points to ${src}, which is not an earlier regular file`);
      entry = { ...node.entry, ...common, kind: 'file', mode: S_IFREG | perm, size: node.entry.size, blocks: node.entry.blocks };
      ing.stats.hardlinks++;
      break;
    }
    case 'character-device':
    case 'block-device':
    case 'fifo': {
      const special = TAR_SPECIAL[h.type];
      const bits = special === 'char' ? S_IFCHR : special === 'block' ? S_IFBLK : S_IFIFO;
      entry = { ...common, kind: 'special', mode: bits | perm, size: 0, special };
      if (special !== 'fifo') entry.rdev = { major: h.devmajor ?? 0, minor: h.devminor ?? 0 };
      break;
    }
    default:
      ing.stats.failure++;
      ing.warn(`skipped ${name}: unsupported tar member type ${h.type}`);
  }
  for await (const _ of member); // skip any data (tar-stream needs the member consumed)
  if (!entry) return;
  ing.count(entry);
  if (name === '') {
    if (entry.kind === 'dir') ing.tree.add(entry);
    return;
  }
  ing.tree.add(entry);
}

/** makedev/major/minor as the Linux kernel (glibc) encodes them. */

export async function buildFromPath(source: string, opts: BuildOptions): Promise<BuildResult> {
  const st = await fs.promises.stat(source).catch((e: NodeJS.ErrnoException) => {
    throw new BuildError(`cannot read ${source}: ${e.code ?? e.message}`);
  });
  if (st.isDirectory()) return buildFromDir(source, opts);
  return buildFromTar(fs.createReadStream(source), opts);
}
