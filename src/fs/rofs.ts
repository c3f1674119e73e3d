// The read-only FUSE layer of g8ufs (g8ufs.md §5): fuse-native over libfuse 2, metadata from
// the flists' sqlite through a LayeredView (never the network), file contents by 512 KiB
// block from each layer's BlockSource. Must be served from a process that never touches the
// mount itself (it would deadlock).
import fs from 'node:fs';
import path from 'node:path';
import Fuse from 'fuse-native';
import { BLOCK_SIZE, S_IFDIR, type BlockRef } from '../flist/types';
import { errnoName } from '../errors';
import { withDeadline } from '../lib/deadline';
import { Owners, packedDirent, statOf } from './attrs';
import type { Layer } from './types';
import { GenCache, LayeredView, ViewError, type ViewNode } from './view';

/** Reads up to this size inside one block go by range (random access); larger ones load the block. */
const SMALL_READ = 64 * 1024;

export interface ReadOnlyFsOptions {
  mountpoint: string;
  /** fsname shown in /proc/mounts (default g8ufs-<pid>); the subtype is always g8ufs. */
  name?: string;
  /** libfuse's own request log on stderr. */
  debug?: boolean;
  /** Let other users (and overlayfs callers) in; needs root or user_allow_other. Default true. */
  allowOther?: boolean;
  /** A read whose blocks are not there by then answers EIO. Default 60 s. */
  readTimeoutMs?: number;
  /** Blocks hinted ahead of a sequential reader. Default 2. */
  readAhead?: number;
  /** Kernel entry/attr/negative cache lifetime in seconds (the lower layer never changes). Default one year. */
  cacheSeconds?: number;
  /** listxattr is always empty; getxattr: 'fast' (default) ENOSYS → the kernel stops asking; 'enodata' as the spec says (see makeOps). */
  xattrs?: 'fast' | 'enodata';
  /** Resolved paths kept in memory. Default 65536. */
  cacheEntries?: number;
  /** One line per event worth telling (failed reads, broken metadata). Default: stderr. */
  log?: (line: string) => void;
}

export interface RofsStats {
  opens: number;
  openFiles: number;
  reads: number;
  bytesRead: number;
  readErrors: number;
  metadataErrors: number;
  inodes: number;
}

const YEAR = 365 * 24 * 3600;
const O_ACCMODE = 0o3;
const O_WRITE_FLAGS = 0o100 | 0o1000 | 0o2000; // O_CREAT | O_TRUNC | O_APPEND
const W_OK = 2;
const ST_RDONLY = 1;
const MAX_U32 = 0xffffffff;

type PackedReaddir = (path: string, signal: (err: number, names?: string[], stats?: Uint32Array[]) => void) => void;

/** fuse-native 2.2.6 with two of its internals replaced (the version is pinned). */
class G8Fuse extends Fuse {
  constructor(
    mnt: string,
    ops: Fuse.Operations,
    opts: Fuse.Options,
    private readonly extra: string[],
    private readonly packedReaddir: PackedReaddir,
  ) {
    super(mnt, ops, opts);
  }

  /** It only knows a fixed set of options; libfuse also needs `ro`, `use_ino`, `negative_timeout`. */
  protected override _fuseOptions(): string {
    const base = super._fuseOptions();
    return (base ? `${base},` : '-o') + this.extra.join(',');
  }

  /** Its readdir packs every stat object on every call; ours are packed once per directory. */
  _op_readdir(signal: (err: number, names?: string[], stats?: Uint32Array[]) => void, path: string): void {
    this.packedReaddir(path, signal);
  }
}

/** The FUSE answer for an error: its errno name (errors.ts) as fuse-native's negative number. */
function fuseErrno(e: unknown): number {
  const n = (Fuse as unknown as Record<string, unknown>)[errnoName(e)];
  return typeof n === 'number' ? n : Fuse.EIO;
}

/** A read that failed, with the index of the block to blame in the log line. */
class ReadFailure extends Error {
  constructor(
    readonly block: number,
    message: string,
  ) {
    super(message);
  }
}

interface Handle {
  node: ViewNode;
  layer: Layer;
  refs: BlockRef[];
  /** Furthest byte read so far and the last block read-ahead was hinted from (sequential detection). */
  maxEnd: number;
  raFrom: number;
}

interface Totals {
  entries: number;
  bytes: number;
}

export class ReadOnlyFs {
  readonly view: LayeredView;
  readonly ops: Fuse.Operations;
  private readonly fuse: G8Fuse;
  private readonly owners: Owners;
  private readonly handles = new Map<number, Handle>();
  private readonly dirents = new GenCache<string, { names: string[]; stats: Uint32Array[] }>(4096);
  private nextFh = 1;
  private totals?: Promise<Totals>;
  private isMounted = false;
  private readonly log: (line: string) => void;
  private readonly readTimeoutMs: number;
  private readonly readAhead: number;
  private readonly counters = { opens: 0, reads: 0, bytesRead: 0, readErrors: 0, metadataErrors: 0 };

  constructor(
    readonly layers: Layer[],
    readonly opts: ReadOnlyFsOptions,
  ) {
    this.view = new LayeredView(layers, { cacheEntries: opts.cacheEntries });
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.readTimeoutMs = opts.readTimeoutMs ?? 60_000;
    this.readAhead = opts.readAhead ?? 2;
    this.owners = new Owners(this.view, this.log);
    this.ops = this.makeOps();
    const ttl = opts.cacheSeconds ?? YEAR;
    const name = (opts.name ?? `g8ufs-${process.pid}`).replace(/[,\s\\]/g, '_');
    this.fuse = new G8Fuse(
      opts.mountpoint,
      this.ops,
      {
        timeout: false, // fuse-native's own 15 s ETIMEDOUT per op; reads time out here instead
        force: true, // a stale (ENOTCONN) mount at the target is unmounted first
        debug: !!opts.debug,
        allowOther: opts.allowOther ?? true,
        defaultPermissions: true, // the kernel checks modes itself, so access() is rarely asked
        fsname: name,
        subtype: 'g8ufs',
        kernelCache: true, // page cache kept across opens: contents never change
        entryTimeout: ttl,
        attrTimeout: ttl,
      },
      ['ro', 'use_ino', `negative_timeout=${ttl}`],
      (p, signal) => this.guardedReaddir(p, signal),
    );
  }

  get mountpoint(): string {
    return this.fuse.mnt;
  }

  get mounted(): boolean {
    return this.isMounted;
  }

  /** Resolves once the kernel has the mount (libfuse init ran). */
  mount(): Promise<void> {
    this.totals ??= this.countTotals();
    return new Promise((resolve, reject) => {
      this.fuse.mount((err) => {
        if (err) return reject(new Error(`cannot mount the flist at ${this.fuse.mnt}: ${err.message} (libfuse says why on stderr)`));
        this.isMounted = true;
        resolve();
      });
    });
  }

  /** `fusermount -uz` (lazy: busy users keep their files) and stop serving. */
  unmount(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.isMounted) return resolve();
      this.fuse.unmount((err) => {
        if (err && isMountpoint(this.fuse.mnt)) return reject(new Error(`cannot unmount ${this.fuse.mnt}: ${err.message.trim()}`));
        this.isMounted = false;
        resolve();
      });
    });
  }

  stats(): RofsStats {
    return { ...this.counters, openFiles: this.handles.size, inodes: this.view.inodes };
  }

  /** statfs figures (g8ufs.md §5.3): content size in 4 KiB blocks, entries, nothing free. */
  async statfs(): Promise<Fuse.Statfs> {
    const t = await (this.totals ??= this.countTotals());
    return {
      bsize: 4096,
      frsize: 4096,
      blocks: Math.min(MAX_U32, Math.ceil(t.bytes / 4096)),
      bfree: 0,
      bavail: 0,
      files: Math.min(MAX_U32, t.entries),
      ffree: 0,
      favail: 0,
      fsid: 0,
      flag: ST_RDONLY,
      namemax: 255,
    };
  }

  /** Entries and content bytes of the whole view, counted in slices so requests keep flowing. */
  private countTotals(): Promise<Totals> {
    const t: Totals = { entries: 0, bytes: 0 };
    const it = this.view.walk()[Symbol.iterator]();
    return new Promise((resolve) => {
      const step = (): void => {
        try {
          for (let i = 0; i < 2000; i++) {
            const r = it.next();
            if (r.done) return resolve(t);
            t.entries++;
            if (r.value.entry.kind === 'file') t.bytes += r.value.entry.size;
          }
        } catch (e) {
          this.log(`g8ufs: cannot count the flist for statfs: ${(e as Error).message}`);
          return resolve(t);
        }
        setImmediate(step);
      };
      setImmediate(step);
    });
  }

  /** A metadata failure (corrupt flist) as an errno, logged once per call. */
  private metaErrno(e: unknown, path: string): number {
    if (e instanceof ViewError) return fuseErrno(e);
    this.counters.metadataErrors++;
    const why = e instanceof Error ? e.message : String(e);
    this.log(`g8ufs: metadata of ${path}: ${why}`);
    return fuseErrno(e);
  }

  private getattr(path: string, cb: (err: number, st?: Fuse.Stat) => void): void {
    const n = this.view.stat(path);
    if (!n) return cb(Fuse.ENOENT);
    const nlink = this.view.nlink(n);
    const e = n.entry;
    if (e.uid >= 0 && e.gid >= 0) return cb(0, statOf(n, nlink, e.uid, e.gid));
    this.owners.ids(e).then(
      (o) => cb(0, statOf(n, nlink, o.uid, o.gid)),
      (err: Error) => cb(this.metaErrno(err, path)),
    );
  }

  private guardedReaddir(path: string, cb: (err: number, names?: string[], stats?: Uint32Array[]) => void): void {
    try {
      this.readdir(path, cb);
    } catch (e) {
      cb(this.metaErrno(e, `readdir ${path}`));
    }
  }

  private readdir(path: string, cb: (err: number, names?: string[], stats?: Uint32Array[]) => void): void {
    const dir = this.view.stat(path);
    if (!dir) return cb(Fuse.ENOENT);
    if (!dir.layers) return cb(Fuse.ENOTDIR);
    let d = this.dirents.get(dir.path);
    if (!d) {
      const kids = this.view.list(dir.path);
      const parent = dir.path.includes('/') ? dir.path.slice(0, dir.path.lastIndexOf('/')) : '';
      // Types with the names (d_type), so `find` need not look every entry up.
      d = { names: ['.', '..'], stats: [packedDirent(dir.entry.mode, dir.ino), packedDirent(S_IFDIR, this.view.ino(parent))] };
      for (const k of kids) {
        d.names.push(k.entry.name);
        d.stats.push(packedDirent(k.entry.mode, k.ino));
      }
      this.dirents.set(dir.path, d);
    }
    cb(0, d.names, d.stats);
  }

  private open(path: string, flags: number, cb: (err: number, fd?: number) => void): void {
    if ((flags & O_ACCMODE) !== 0 || (flags & O_WRITE_FLAGS) !== 0) return cb(Fuse.EROFS);
    const n = this.view.stat(path);
    if (!n) return cb(Fuse.ENOENT);
    if (n.layers) return cb(Fuse.EISDIR);
    const layer = this.layers[n.layer];
    const refs = n.entry.blocks ?? [];
    let fh = this.nextFh;
    while (this.handles.has(fh)) fh = fh >= 0x7fffffff ? 1 : fh + 1;
    this.nextFh = fh >= 0x7fffffff ? 1 : fh + 1;
    this.handles.set(fh, { node: n, layer, refs, maxEnd: 0, raFrom: -1 });
    if (refs.length) layer.blocks.pin(refs);
    this.counters.opens++;
    cb(0, fh);
  }

  private release(fh: number, cb: (err: number) => void): void {
    const h = this.handles.get(fh);
    this.handles.delete(fh);
    if (h?.refs.length) h.layer.blocks.unpin(h.refs);
    cb(0);
  }

  /** Fetches exactly the blocks [pos, pos+len) touches; answers EIO when one cannot be had in time. */
  private read(fh: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void {
    const h = this.handles.get(fh);
    if (!h) return cb(Fuse.EBADF);
    const size = h.node.entry.size;
    if (pos >= size || len <= 0) return cb(0);
    const end = Math.min(size, pos + len);
    const first = Math.floor(pos / BLOCK_SIZE);
    const last = Math.floor((end - 1) / BLOCK_SIZE);
    const where = `/${h.node.path}`;
    this.counters.reads++;
    if (last >= h.refs.length) return cb(this.readFailed(where, last, `the flist lists ${h.refs.length} blocks for ${size} bytes`));
    this.hintAhead(h, pos, end, last);
    // Only a fill that beats the deadline writes into `buf`: after it, `buf` is libfuse's again.
    withDeadline(this.gather(h, pos, end, first, last), this.readTimeoutMs, () => new ReadFailure(first, `no answer within ${this.readTimeoutMs} ms`)).then(
      (parts) => {
        let at = 0;
        for (const part of parts) at += part.copy(buf, at);
        this.counters.bytesRead += at;
        cb(at);
      },
      (e: unknown) => cb(this.readFailed(where, e instanceof ReadFailure ? e.block : first, e instanceof Error ? e.message : String(e))),
    );
  }

  /** The slices of [pos, end): one range of one block for a small read (random access), else whole blocks. */
  private async gather(h: Handle, pos: number, end: number, first: number, last: number): Promise<Buffer[]> {
    const blocks = h.layer.blocks;
    if (first === last && end - pos <= SMALL_READ) {
      const base = first * BLOCK_SIZE;
      const part = await blocks.range(h.refs[first], pos - base, end - base).catch((e: Error) => Promise.reject(new ReadFailure(first, e.message)));
      if (part.length !== end - pos) throw new ReadFailure(first, `block holds too few bytes for ${pos}..${end}`);
      return [part];
    }
    const wanted: Promise<Buffer>[] = [];
    for (let i = first; i <= last; i++) wanted.push(blocks.block(h.refs[i]).catch((e: Error) => Promise.reject(new ReadFailure(i, e.message))));
    const got = await Promise.all(wanted);
    return got.map((b, k) => {
      const base = (first + k) * BLOCK_SIZE;
      const from = Math.max(pos, base) - base;
      const to = Math.min(end, base + BLOCK_SIZE) - base;
      if (b.length < to) throw new ReadFailure(first + k, `block holds ${b.length} bytes, ${to} expected`);
      return b.subarray(from, to);
    });
  }

  /** Sequential readers (within a block of where they were) get the next blocks hinted once per block. */
  private hintAhead(h: Handle, pos: number, end: number, last: number): void {
    const sequential = pos <= h.maxEnd + BLOCK_SIZE && end + 2 * BLOCK_SIZE >= h.maxEnd;
    if (end > h.maxEnd) h.maxEnd = end;
    if (!sequential || last <= h.raFrom || this.readAhead <= 0) return;
    h.raFrom = last;
    const next = h.refs.slice(last + 1, last + 1 + this.readAhead);
    if (next.length) h.layer.blocks.prefetch(next);
  }

  private readFailed(where: string, block: number, why: string): number {
    this.counters.readErrors++;
    this.log(`g8ufs: read of ${where} failed (block ${block}): ${why}`);
    return Fuse.EIO;
  }

  private makeOps(): Fuse.Operations {
    // A throw inside a fuse-native handler would kill the process: every op answers instead.
    const guard = <A extends unknown[]>(name: string, fn: (...args: A) => void, cbIndex: number) =>
      (...args: A): void => {
        try {
          fn(...args);
        } catch (e) {
          const cb = args[cbIndex] as (err: number) => void;
          cb(this.metaErrno(e, `${name} ${String(args[0])}`));
        }
      };
    const erofs = (...args: unknown[]): void => (args[args.length - 1] as (err: number) => void)(Fuse.EROFS);
    const ops: Fuse.Operations = {
      getattr: guard('getattr', (p: string, cb: (err: number, st?: Fuse.Stat) => void) => this.getattr(p, cb), 1),
      // G8Fuse._op_readdir calls guardedReaddir with packed stats instead; this one stays for
      // the op to be registered (and answers names only, should fuse-native's wrapper be used).
      readdir: (p: string, cb: (err: number, names?: string[]) => void) => this.guardedReaddir(p, (err, names) => cb(err, names)),
      readlink: guard('readlink', (p: string, cb: (err: number, target?: string) => void) => {
        const n = this.view.stat(p);
        if (!n) return cb(Fuse.ENOENT);
        if (n.entry.kind !== 'link') return cb(Fuse.EINVAL);
        cb(0, n.entry.target ?? '');
      }, 1),
      open: guard('open', (p: string, flags: number, cb: (err: number, fd?: number) => void) => this.open(p, flags, cb), 2),
      release: guard('release', (_p: string, fd: number, cb: (err: number) => void) => this.release(fd, cb), 2),
      read: guard('read', (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: (r: number) => void) =>
        this.read(fd, buf, len, pos, cb), 5),
      statfs: (_p: string, cb: (err: number, st?: Fuse.Statfs) => void) => {
        this.statfs().then((st) => cb(0, st), () => cb(Fuse.EIO));
      },
      // default_permissions makes the kernel check modes itself; fuse-native does not tell us
      // the caller's uid anyway. Existence, and no writing on a read-only filesystem.
      access: guard('access', (p: string, mode: number, cb: (err: number) => void) => {
        if (!this.view.stat(p)) return cb(Fuse.ENOENT);
        cb(mode & W_OK ? Fuse.EROFS : 0);
      }, 2),
      write: (_p: string, _fd: number, _b: Buffer, _l: number, _o: number, cb: (r: number) => void) => cb(Fuse.EROFS),
      create: erofs, truncate: erofs, ftruncate: erofs, utimens: erofs, chown: erofs, chmod: erofs, mknod: erofs,
      unlink: erofs, rmdir: erofs, mkdir: erofs, rename: erofs, link: erofs, symlink: erofs,
      setxattr: erofs, removexattr: erofs,
    };
    // Flists carry no xattrs, so listxattr answers an empty list (getfattr -d, cp -a, tar
    // --xattrs and rsync -X enumerate first and stay quiet). getxattr: the spec says ENODATA,
    // but `ls -l` asks for security.selinux and the POSIX ACL of every entry, one uncached
    // round trip each: ls -lR over the funk flist took 1.5-2.9 s warm with ENODATA and 0.37 s
    // with ENOSYS, after which the kernel answers EOPNOTSUPP itself for the whole mount. Only
    // an explicit `getfattr -n <name>` sees the difference. Default: ENOSYS ('fast').
    ops.listxattr = (_p: string, cb: (err: number, names?: string[]) => void) => cb(0, []);
    if (this.opts.xattrs === 'enodata') {
      ops.getxattr = (_p: string, _n: string, _pos: number, cb: (err: number, v?: Buffer) => void) => cb(Fuse.ENODATA);
    }
    return ops;
  }
}

/** Whether a path is a mount point right now (/proc/self/mountinfo, octal escapes decoded). */
export function isMountpoint(target: string): boolean {
  let info: string;
  try {
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  const want = path.resolve(target);
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === want) return true;
  }
  return false;
}
