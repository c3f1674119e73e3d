// Streams a tar / tar.gz (or a local directory) into a Tree plus blocks in a store, without
// extracting to disk and without holding whole files in memory: file data is cut into
// 512 KiB chunks on the fly, encoded by a worker pool and written if the store lacks them.
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { putMissing } from '../store';
import type { BlockStore } from '../store/types';
import type { EncodedBlock } from './codec';
import { EncoderPool, type PooledBlock } from './encoder';
import { DirStore } from '../store/dir';
import { hashReady } from './hash';
import { countEntries } from './stats';
import { Tree } from './tree';
import {
  BLOCK_SIZE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
  type BlockRef, type Entry, type SpecialType,
} from './types';

export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

export interface BuildStats {
  regular: number;
  symlink: number;
  directory: number;
  special: number;
  /** members that could not be represented (skipped, e.g. unknown tar types) */
  failure: number;
  /** sum of regular file sizes */
  fullsize: number;
  /** hard links stored as separate files sharing blocks (the format has no hard links) */
  hardlinks: number;
  blocks: number;
  uploaded_chunks: number;
  uploaded_bytes: number;
  /** bytes read from the input (compressed size for tar.gz) */
  input_bytes: number;
}

export interface BuildProgress {
  inputBytes: number;
  entries: number;
  uploadedChunks: number;
}

export interface BuildOptions {
  store: BlockStore;
  /** Cap on the bytes of file content the archive may expand to (decompression bombs). */
  maxExpandedBytes?: number;
  /** Cap on the number of members. */
  maxEntries?: number;
  onProgress?: (p: BuildProgress) => void;
  /** Warnings (skipped members, lost features); default: ignored. */
  onWarning?: (message: string) => void;
  workers?: number;
}

export interface BuildResult {
  tree: Tree;
  stats: BuildStats;
}

const MAX_INFLIGHT_PER_WORKER = 3;
const SINK_BATCH = 32;

/** The build-statistics names for a tree's counts (the hub's API uses these). */
export function treeCounts(tree: Tree): Pick<BuildStats, 'directory' | 'regular' | 'symlink' | 'special' | 'fullsize' | 'blocks'> {
  const c = countEntries(tree.entries());
  return { directory: c.dirs, regular: c.files, symlink: c.symlinks, special: c.specials, fullsize: c.bytes, blocks: c.blocks };
}

/** Collects encoded chunks and writes the ones the store lacks, in batches. */
class BlockSink {
  private batch: EncodedBlock[] = [];
  private batchBytes = 0;
  private readonly seen = new Set<string>();
  chunks = 0;
  bytes = 0;

  constructor(private readonly store: BlockStore) {}

  async add(b: PooledBlock): Promise<void> {
    if (b.written !== undefined) {
      // the worker already stored it (dir:// store)
      if (b.written) {
        this.chunks++;
        this.bytes += b.size;
      }
      return;
    }
    const hex = b.id.toString('hex');
    if (this.seen.has(hex)) return; // the same chunk earlier in this build
    this.seen.add(hex);
    this.batch.push(b);
    this.batchBytes += b.cipher.length;
    if (this.batch.length >= SINK_BATCH || this.batchBytes >= 16 * BLOCK_SIZE) await this.flush();
  }

  async flush(): Promise<void> {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.batchBytes = 0;
    const written = await putMissing(this.store, batch.map((b) => ({ id: b.id, data: b.cipher })));
    this.chunks += written.count;
    this.bytes += written.bytes;
  }
}

/** Chunking and encoding shared by the tar and directory builders. */
class Ingest {
  readonly tree = new Tree();
  readonly stats: BuildStats = {
    regular: 0, symlink: 0, directory: 0, special: 0, failure: 0, fullsize: 0, hardlinks: 0,
    blocks: 0, uploaded_chunks: 0, uploaded_bytes: 0, input_bytes: 0,
  };
  private readonly pool: EncoderPool;
  private readonly sink: BlockSink;
  private inflight = 0;
  private readonly waiters: Array<() => void> = [];
  private failed: Error | undefined;
  private readonly maxInflight: number;
  entries = 0;
  private expanded = 0;

  constructor(readonly opts: BuildOptions) {
    const workers = opts.workers ?? undefined;
    this.pool = new EncoderPool(workers, { dirRoot: opts.store instanceof DirStore ? opts.store.root : undefined });
    this.maxInflight = MAX_INFLIGHT_PER_WORKER * (workers ?? 2);
    this.sink = new BlockSink(opts.store);
  }

  warn(message: string): void {
    this.opts.onWarning?.(message);
  }

  /** Seconds as the format can hold them (unsigned 32-bit), with a warning when clamped. */
  time(t: number, name: string): number {
    const s = Math.floor(t);
    if (Number.isFinite(s) && s >= 0 && s <= 0xffffffff) return s;
    this.warn(`${name}: time ${t} is outside 1970..2106, stored as ${s < 0 ? '1970-01-01' : '2106-02-07'}`);
    return s < 0 ? 0 : 0xffffffff;
  }

  /** Enforce the member and size caps as entries arrive (before their data is read). */
  count(e: Entry): void {
    this.entries++;
    if (this.opts.maxEntries && this.entries > this.opts.maxEntries) throw new BuildError(`archive has more than ${this.opts.maxEntries} members`);
    if (e.kind !== 'file') return;
    this.expanded += e.size;
    if (this.opts.maxExpandedBytes !== undefined && this.expanded > this.opts.maxExpandedBytes) {
      throw new BuildError(`archive expands to more than ${this.opts.maxExpandedBytes} bytes (the limit)`);
    }
  }

  private async slot(): Promise<void> {
    if (this.failed) throw this.failed;
    while (this.inflight >= this.maxInflight) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failed) throw this.failed;
    this.inflight++;
  }

  private release(): void {
    this.inflight--;
    this.waiters.shift()?.();
  }

  private async submit(blocks: BlockRef[], index: number, buf: ArrayBuffer, len: number): Promise<void> {
    await this.slot();
    void this.pool
      .encode(buf, len)
      .then(async (b) => {
        blocks[index] = { id: b.id, key: b.key };
        await this.sink.add(b);
        this.opts.onProgress?.({ inputBytes: this.stats.input_bytes, entries: this.entries, uploadedChunks: this.sink.chunks });
      })
      .catch((e: Error) => {
        this.failed ??= e;
      })
      .finally(() => this.release());
  }

  /** Wait until every submitted chunk is encoded and stored. */
  private async drain(): Promise<void> {
    while (this.inflight > 0) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Read a file's content stream into chunks; returns its block list (filled asynchronously). */
  async content(stream: AsyncIterable<Buffer>, expected: number, name: string): Promise<BlockRef[]> {
    const blocks: BlockRef[] = [];
    let buf = this.pool.buffer(BLOCK_SIZE);
    let view = new Uint8Array(buf);
    let fill = 0;
    let total = 0;
    let index = 0;
    for await (const data of stream) {
      let off = 0;
      while (off < data.length) {
        const n = Math.min(BLOCK_SIZE - fill, data.length - off);
        view.set(data.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === BLOCK_SIZE) {
          await this.submit(blocks, index++, buf, fill);
          buf = this.pool.buffer(BLOCK_SIZE);
          view = new Uint8Array(buf);
          fill = 0;
        }
      }
      total += data.length;
    }
    if (fill > 0) await this.submit(blocks, index++, buf, fill);
    if (total !== expected) throw new BuildError(`${name}: read ${total} bytes, expected ${expected} (file changed or archive truncated)`);
    return blocks;
  }

  async finish(): Promise<BuildResult> {
    try {
      await this.drain();
      if (this.failed) throw this.failed;
      await this.sink.flush();
      // Count what the flist will hold: duplicates replaced, implied parents and the root included.
      Object.assign(this.stats, treeCounts(this.tree));
      this.stats.uploaded_chunks = this.sink.chunks;
      this.stats.uploaded_bytes = this.sink.bytes;
      return { tree: this.tree, stats: this.stats };
    } finally {
      await this.pool.close();
    }
  }

  async abort(): Promise<void> {
    this.failed ??= new BuildError('aborted');
    await this.drain();
    await this.pool.close();
  }
}

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
        if (tarBytes > cap) cb(new BuildError(`archive expands to more than ${opts.maxExpandedBytes} bytes (the limit)`));
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
export function splitDev(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

/** Build from a directory on the local filesystem (it is read, never modified). */
export async function buildFromDir(dir: string, opts: BuildOptions): Promise<BuildResult> {
  await hashReady();
  const rootSt = await fs.promises.lstat(dir).catch((e: NodeJS.ErrnoException) => {
    throw new BuildError(`cannot read ${dir}: ${e.code ?? e.message}`);
  });
  if (!rootSt.isDirectory()) throw new BuildError(`${dir} is not a directory`);
  const ing = new Ingest(opts);
  const owners = await ownerNames(dir);
  const seenInodes = new Map<string, Entry>();
  const entryOf = (rel: string, st: fs.Stats): Entry => ({
    name: path.posix.basename(rel), path: rel, kind: 'file', mode: st.mode, uid: st.uid, gid: st.gid,
    uname: owners.users.get(st.uid) ?? String(st.uid), gname: owners.groups.get(st.gid) ?? String(st.gid),
    size: 0, mtime: ing.time(st.mtimeMs / 1000, rel), ctime: ing.time(st.ctimeMs / 1000, rel),
  });
  try {
    const root = entryOf('', rootSt);
    ing.tree.add({ ...root, kind: 'dir', size: 4096 });
    ing.count(ing.tree.root.entry);
    const stack = [''];
    while (stack.length) {
      const rel = stack.pop()!;
      const names = (await fs.promises.readdir(path.join(dir, rel))).sort();
      for (const n of names) {
        const childRel = rel ? `${rel}/${n}` : n;
        const abs = path.join(dir, childRel);
        const st = await fs.promises.lstat(abs);
        const e = entryOf(childRel, st);
        const type = st.mode & S_IFMT;
        if (type === S_IFDIR) {
          Object.assign(e, { kind: 'dir', size: 4096 });
          stack.push(childRel);
        } else if (type === S_IFREG) {
          e.size = st.size;
          const inode = `${st.dev}:${st.ino}`;
          const first = st.nlink > 1 ? seenInodes.get(inode) : undefined;
          ing.count(e);
          if (first) {
            e.blocks = first.blocks;
            e.size = first.size;
            ing.stats.hardlinks++;
          } else {
            e.blocks = await ing.content(fs.createReadStream(abs, { highWaterMark: BLOCK_SIZE }), st.size, childRel);
            if (st.nlink > 1) seenInodes.set(inode, e);
          }
          ing.tree.add(e);
          continue;
        } else if (type === S_IFLNK) {
          const target = await fs.promises.readlink(abs);
          Object.assign(e, { kind: 'link', target, size: Buffer.byteLength(target) });
        } else {
          const special: SpecialType = type === S_IFCHR ? 'char' : type === S_IFBLK ? 'block' : type === S_IFIFO ? 'fifo' : type === S_IFSOCK ? 'socket' : 'unknown';
          Object.assign(e, { kind: 'special', special, size: 0 });
          if (special === 'char' || special === 'block') e.rdev = splitDev(st.rdev);
        }
        ing.count(e);
        ing.tree.add(e);
      }
    }
    return await ing.finish();
  } catch (e) {
    await ing.abort();
    if (e instanceof BuildError) throw e;
    throw new BuildError(`cannot read ${dir}: ${(e as Error).message}`);
  }
}

/**
 * uid/gid → name for a directory build: from the tree's own /etc/passwd and /etc/group when it
 * has them (a root filesystem names its own users), else from the host's.
 */
async function ownerNames(dir: string): Promise<{ users: Map<number, string>; groups: Map<number, string> }> {
  const parse = async (file: string): Promise<Map<number, string> | undefined> => {
    const st = await fs.promises.lstat(file).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const m = new Map<number, string>();
    for (const line of (await fs.promises.readFile(file, 'utf8')).split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && /^\d+$/.test(f[2]) && !m.has(Number(f[2]))) m.set(Number(f[2]), f[0]);
    }
    return m;
  };
  const own = async (name: string): Promise<Map<number, string>> =>
    (await parse(path.join(dir, 'etc', name))) ?? (await parse(path.join('/etc', name))) ?? new Map();
  return { users: await own('passwd'), groups: await own('group') };
}

/** Build from a path: a directory, or a tar / tar.gz file. */
export async function buildFromPath(source: string, opts: BuildOptions): Promise<BuildResult> {
  const st = await fs.promises.stat(source).catch((e: NodeJS.ErrnoException) => {
    throw new BuildError(`cannot read ${source}: ${e.code ?? e.message}`);
  });
  if (st.isDirectory()) return buildFromDir(source, opts);
  return buildFromTar(fs.createReadStream(source), opts);
}
