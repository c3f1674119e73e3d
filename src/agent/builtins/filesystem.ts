// filesystem.* (spec §9.4). Every path is taken inside the place's root through secureJoin, so a
// container's symlinks cannot reach the host. Only async fs: a root may be a FUSE/overlay mount.
import { randomUUID } from 'node:crypto';
import { constants as C, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { args, bool, int, opt, str } from '../args';
import { CommandError, type Handler, type Place } from '../types';
import { secureJoin } from './securejoin';

export const READ_BLOCK = 512 * 1024;
export const MAX_WRITE_BLOCK = 16 * 1024 * 1024;
export const HANDLE_IDLE_MS = 5 * 60 * 1000;

// Go's os.FileMode type bits (as numbers: bit 31 does not fit JS's signed 32-bit operators)
export const GO_MODE = {
  dir: 2 ** 31,
  append: 2 ** 30,
  exclusive: 2 ** 29,
  temporary: 2 ** 28,
  symlink: 2 ** 27,
  device: 2 ** 26,
  namedPipe: 2 ** 25,
  socket: 2 ** 24,
  setuid: 2 ** 23,
  setgid: 2 ** 22,
  charDevice: 2 ** 21,
  sticky: 2 ** 20,
} as const;

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** The Go os.FileMode of an lstat result (os/stat_linux.go). */
export function goFileMode(st: Stats): number {
  let m = st.mode & 0o777;
  switch (st.mode & C.S_IFMT) {
    case C.S_IFBLK: m += GO_MODE.device; break;
    case C.S_IFCHR: m += GO_MODE.device + GO_MODE.charDevice; break;
    case C.S_IFDIR: m += GO_MODE.dir; break;
    case C.S_IFIFO: m += GO_MODE.namedPipe; break;
    case C.S_IFLNK: m += GO_MODE.symlink; break;
    case C.S_IFSOCK: m += GO_MODE.socket; break;
  }
  if (st.mode & S_ISUID) m += GO_MODE.setuid;
  if (st.mode & S_ISGID) m += GO_MODE.setgid;
  if (st.mode & S_ISVTX) m += GO_MODE.sticky;
  return m;
}

/** open(2) flags of a Python mode string: exactly one of r w a x, optionally +. */
export function openFlags(mode: string): { flags: number; readable: boolean; writable: boolean } {
  let base = '';
  let plus = false;
  for (const ch of mode) {
    if ('rwax'.includes(ch) && !base) base = ch;
    else if (ch === '+' && !plus) plus = true;
    else throw new CommandError('invalid', `argument 'mode': invalid mode '${mode}' (one of r, w, a, x, optionally +)`);
  }
  if (!base) throw new CommandError('invalid', `argument 'mode': invalid mode '${mode}' (one of r, w, a, x, optionally +)`);
  const create = { r: 0, w: C.O_CREAT | C.O_TRUNC, a: C.O_CREAT | C.O_APPEND, x: C.O_CREAT | C.O_EXCL }[base]!;
  const readable = base === 'r' || plus;
  const writable = base !== 'r' || plus;
  const access = readable && writable ? C.O_RDWR : writable ? C.O_WRONLY : C.O_RDONLY;
  return { flags: create | access, readable, writable };
}

/** A failed fs call as a one-line CommandError naming the client's path. */
function fsError(err: unknown, p: string): CommandError {
  if (err instanceof CommandError) return err;
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT': return new CommandError('not_found', `no such file or directory: ${p}`);
    case 'ENOTDIR': return new CommandError('invalid', `not a directory: ${p}`);
    case 'EISDIR': return new CommandError('invalid', `is a directory: ${p}`);
    case 'EEXIST': return new CommandError('conflict', `file exists: ${p}`);
    case 'ENOTEMPTY': return new CommandError('conflict', `directory not empty: ${p}`);
    case 'EACCES':
    case 'EPERM': return new CommandError('unauthorized', `permission denied: ${p}`);
    case 'ELOOP': return new CommandError('invalid', `too many levels of symbolic links: ${p}`);
    case 'EXDEV': return new CommandError('invalid', `cannot move across file systems: ${p}`);
    default: return new CommandError('internal', `${p}: ${e.message ?? String(err)}`);
  }
}

async function run<T>(p: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw fsError(err, p);
  }
}

/** Decodes base64 that may hold line breaks (the client wraps at 76 columns); checks the size first. */
export function decodeBlock(block: string): Buffer {
  const b = block.replace(/[\r\n\t ]/g, '');
  if (b.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b)) throw new CommandError('invalid', `argument 'block': invalid base64`);
  const size = (b.length / 4) * 3 - (b.endsWith('==') ? 2 : b.endsWith('=') ? 1 : 0);
  if (size > MAX_WRITE_BLOCK) throw new CommandError('invalid', `argument 'block': ${size} bytes is over the ${MAX_WRITE_BLOCK} bytes limit`);
  return Buffer.from(b, 'base64');
}

interface Handle {
  container: number;
  file: fsp.FileHandle;
  readable: boolean;
  writable: boolean;
  timer: NodeJS.Timeout;
  /** calls in progress: a handle is not closed under one */
  busy: number;
}

/** Recursively applies f to path and, unless a symlink, its tree; problems in the tree are skipped (as Go's walk did). */
async function walk(p: string, f: (p: string, st: Stats) => Promise<void>): Promise<void> {
  const st = await fsp.lstat(p);
  await f(p, st);
  if (!st.isDirectory()) return;
  const names = await fsp.readdir(p).catch(() => [] as string[]);
  for (const n of names) await walk(path.join(p, n), f).catch(() => undefined);
}

/** uid/gid of a name (or number) in the place's own /etc/passwd or /etc/group; "" = unchanged. */
async function lookupId(place: Place, db: 'passwd' | 'group', name: string): Promise<number> {
  if (name === '') return -1;
  if (/^\d+$/.test(name)) return Number(name);
  const file = await secureJoin(place.root, `/etc/${db}`);
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 3 && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  throw new CommandError('not_found', `unknown ${db === 'passwd' ? 'user' : 'group'} '${name}'`);
}

const openArgs = args({ file: str, mode: str, perm: opt(int) });
const fdArgs = args({ fd: str });
const writeArgs = args({ fd: str, block: str });
const pathArgs = args({ path: str });
const moveArgs = args({ path: str, destination: str });
const chmodArgs = args({ path: str, mode: int, recursive: opt(bool) });
const chownArgs = args({ path: str, user: str, group: str, recursive: opt(bool) });

export interface FilesystemOptions {
  /** idle time after which an open handle is closed (tests shorten it) */
  idleMs?: number;
}

export function filesystemHandlers(opts: FilesystemOptions = {}): Record<string, Handler> {
  const idleMs = opts.idleMs ?? HANDLE_IDLE_MS;
  // Handles carry the container they were opened in: another place cannot use them.
  const handles = new Map<string, Handle>();

  const expire = (id: string) =>
    setTimeout(() => {
      const h = handles.get(id);
      if (h?.busy) return void h.timer.refresh();
      handles.delete(id);
      h?.file.close().catch(() => undefined);
    }, idleMs).unref();

  const get = (place: Place, id: string): Handle => {
    const h = handles.get(id);
    if (!h || h.container !== place.container) throw new CommandError('not_found', `unknown file descriptor '${id}'`);
    return h;
  };

  /** Runs f on a handle, keeping it open meanwhile; the idle time counts from the end of the call. */
  const use = async <T>(place: Place, id: string, f: (h: Handle) => Promise<T>): Promise<T> => {
    const h = get(place, id);
    h.busy++;
    try {
      return await f(h);
    } finally {
      h.busy--;
      h.timer.refresh();
    }
  };

  const join = (place: Place, p: string, followLast = true) => run(p, () => secureJoin(place.root, p, { followLast }));

  return {
    'filesystem.open': async (raw, ctx) => {
      const a = openArgs(raw);
      const { flags, readable, writable } = openFlags(a.mode);
      const perm = (a.perm ?? 0o644) & 0o777;
      const host = await join(ctx.place, a.file);
      // O_NOFOLLOW: the resolved last component is never a symlink unless swapped in since
      const file = await run(a.file, () => fsp.open(host, flags | C.O_NOFOLLOW, perm));
      const id = randomUUID();
      handles.set(id, { container: ctx.place.container, file, readable, writable, timer: expire(id), busy: 0 });
      return id;
    },

    'filesystem.read': async (raw, ctx) => {
      const { fd } = fdArgs(raw);
      return use(ctx.place, fd, async (h) => {
        if (!h.readable) throw new CommandError('invalid', `file descriptor '${fd}' is not open for reading`);
        const buf = Buffer.allocUnsafe(READ_BLOCK);
        const { bytesRead } = await run(fd, () => h.file.read(buf, 0, READ_BLOCK, null));
        return buf.subarray(0, bytesRead).toString('base64');
      });
    },

    'filesystem.write': async (raw, ctx) => {
      const a = writeArgs(raw);
      return use(ctx.place, a.fd, async (h) => {
        if (!h.writable) throw new CommandError('invalid', `file descriptor '${a.fd}' is not open for writing`);
        const data = decodeBlock(a.block);
        await run(a.fd, async () => {
          for (let off = 0; off < data.length; ) off += (await h.file.write(data, off, data.length - off, null)).bytesWritten;
        });
        return null;
      });
    },

    'filesystem.close': async (raw, ctx) => {
      const { fd } = fdArgs(raw);
      const h = get(ctx.place, fd);
      handles.delete(fd);
      clearTimeout(h.timer);
      await run(fd, () => h.file.close());
      return null;
    },

    'filesystem.exists': async (raw, ctx) => {
      const { path: p } = pathArgs(raw);
      const host = await join(ctx.place, p);
      return fsp.stat(host).then(
        () => true,
        (err) => {
          if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code!)) return false;
          throw fsError(err, p);
        },
      );
    },

    'filesystem.list': async (raw, ctx) => {
      const { path: p } = pathArgs(raw);
      const host = await join(ctx.place, p);
      const names = (await run(p, () => fsp.readdir(host))).sort();
      const out = [];
      for (const name of names) {
        const st = await fsp.lstat(path.join(host, name)).catch(() => null);
        if (!st) continue; // removed while listing
        out.push({ name, size: st.size, mode: goFileMode(st), is_dir: st.isDirectory() });
      }
      return out;
    },

    'filesystem.mkdir': async (raw, ctx) => {
      const { path: p } = pathArgs(raw);
      const host = await join(ctx.place, p);
      await run(p, () => fsp.mkdir(host, { recursive: true, mode: 0o755 }));
      return null;
    },

    'filesystem.remove': async (raw, ctx) => {
      const { path: p } = pathArgs(raw);
      const host = await join(ctx.place, p, false);
      if (host === path.resolve(ctx.place.root)) throw new CommandError('invalid', `refusing to remove the root: ${p}`);
      await run(p, () => fsp.rm(host, { recursive: true, force: true })); // missing is fine, as os.RemoveAll
      return null;
    },

    'filesystem.move': async (raw, ctx) => {
      const a = moveArgs(raw);
      const from = await join(ctx.place, a.path, false);
      const to = await join(ctx.place, a.destination, false);
      await run(a.path, () => fsp.lstat(from));
      await run(a.destination, () => fsp.rename(from, to));
      return null;
    },

    'filesystem.chmod': async (raw, ctx) => {
      const a = chmodArgs(raw);
      if (a.mode < 0 || a.mode >= 2 ** 32) throw new CommandError('invalid', `argument 'mode': invalid mode ${a.mode}`);
      // Unix bits (0o7777); Go's setuid/setgid/sticky bits are accepted too
      const bit = (b: number) => Math.floor(a.mode / b) % 2 === 1;
      let mode = a.mode % 0o10000;
      if (bit(GO_MODE.setuid)) mode |= S_ISUID;
      if (bit(GO_MODE.setgid)) mode |= S_ISGID;
      if (bit(GO_MODE.sticky)) mode |= S_ISVTX;
      const host = await join(ctx.place, a.path);
      if (!a.recursive) await run(a.path, () => fsp.chmod(host, mode));
      else
        await run(a.path, () =>
          walk(host, async (p, st) => {
            if (!st.isSymbolicLink()) await fsp.chmod(p, mode).catch(() => undefined); // chmod would follow the link
          }),
        );
      return null;
    },

    'filesystem.chown': async (raw, ctx) => {
      const a = chownArgs(raw);
      const uid = await lookupId(ctx.place, 'passwd', a.user);
      const gid = await lookupId(ctx.place, 'group', a.group);
      const host = await join(ctx.place, a.path);
      if (!a.recursive) await run(a.path, () => fsp.chown(host, uid, gid));
      else
        await run(a.path, () =>
          walk(host, async (p) => {
            await fsp.lchown(p, uid, gid).catch(() => undefined); // links themselves, never their targets
          }),
        );
      return null;
    },
  };
}
