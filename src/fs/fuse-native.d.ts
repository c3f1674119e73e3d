// The parts of fuse-native 2.2.6 (libfuse 2.9 high-level API) that g8ufs uses.
// Callbacks take a negative errno (or 0) first; read/write answer with the byte count
// (>= 0) or a negative errno as their only argument.
declare module 'fuse-native' {
  namespace Fuse {
    type Done = (err: number) => void;

    /** 32-bit fields (ino, uid, gid, nlink, rdev) as fuse-native packs them; times in ms or Date. */
    interface Stat {
      mode: number;
      uid: number;
      gid: number;
      size: number;
      nlink: number;
      ino?: number;
      rdev?: number;
      dev?: number;
      blksize?: number;
      blocks?: number;
      atime: Date | number;
      mtime: Date | number;
      ctime: Date | number;
    }

    interface Statfs {
      bsize: number;
      frsize: number;
      blocks: number;
      bfree: number;
      bavail: number;
      files: number;
      ffree: number;
      favail: number;
      fsid: number;
      flag: number;
      namemax: number;
    }

    interface Operations {
      init?(cb: Done): void;
      access?(path: string, mode: number, cb: Done): void;
      statfs?(path: string, cb: (err: number, st?: Statfs) => void): void;
      getattr?(path: string, cb: (err: number, st?: Stat) => void): void;
      fgetattr?(path: string, fd: number, cb: (err: number, st?: Stat) => void): void;
      readdir?(path: string, cb: (err: number, names?: string[], stats?: Stat[]) => void): void;
      readlink?(path: string, cb: (err: number, target?: string) => void): void;
      open?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
      opendir?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
      /** `buf` is only valid until `cb` is called. */
      read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
      write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
      release?(path: string, fd: number, cb: Done): void;
      releasedir?(path: string, fd: number, cb: Done): void;
      flush?(path: string, fd: number, cb: Done): void;
      fsync?(path: string, datasync: boolean, fd: number, cb: Done): void;
      fsyncdir?(path: string, datasync: boolean, fd: number, cb: Done): void;
      create?(path: string, mode: number, cb: (err: number, fd?: number) => void): void;
      truncate?(path: string, size: number, cb: Done): void;
      ftruncate?(path: string, fd: number, size: number, cb: Done): void;
      utimens?(path: string, atime: number, mtime: number, cb: Done): void;
      chown?(path: string, uid: number, gid: number, cb: Done): void;
      chmod?(path: string, mode: number, cb: Done): void;
      mknod?(path: string, mode: number, dev: number, cb: Done): void;
      unlink?(path: string, cb: Done): void;
      rmdir?(path: string, cb: Done): void;
      mkdir?(path: string, mode: number, cb: Done): void;
      rename?(src: string, dest: string, cb: Done): void;
      link?(src: string, dest: string, cb: Done): void;
      symlink?(target: string, path: string, cb: Done): void;
      /** No value (or err = ENODATA) means the attribute does not exist. */
      getxattr?(path: string, name: string, position: number, cb: (err: number, value?: Buffer) => void): void;
      listxattr?(path: string, cb: (err: number, names?: string[]) => void): void;
      setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Done): void;
      removexattr?(path: string, name: string, cb: Done): void;
    }

    /** The only options fuse-native turns into `-o` flags (others need a _fuseOptions override). */
    interface Options {
      debug?: boolean;
      /** ms per op before fuse-native answers ETIMEDOUT itself; false = never. Default 15 s. */
      timeout?: number | false;
      /** Unmount a stale (ENOTCONN) mount at the mountpoint first. */
      force?: boolean;
      mkdir?: boolean;
      allowOther?: boolean;
      allowRoot?: boolean;
      autoUnmount?: boolean;
      defaultPermissions?: boolean;
      fsname?: string;
      subtype?: string;
      kernelCache?: boolean;
      autoCache?: boolean;
      entryTimeout?: number;
      attrTimeout?: number;
      acAttrTimeout?: number;
      maxRead?: number;
      uid?: number;
      gid?: number;
      umask?: number;
      noforget?: boolean;
      [extra: string]: unknown;
    }
  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.Operations, opts?: Fuse.Options);
    readonly mnt: string;
    readonly opts: Fuse.Options;
    /** Calls back once libfuse's init has run (the mount is usable). */
    mount(cb: (err: Error | null) => void): void;
    /** `fusermount -uz <mnt>`, then stops the native loop. */
    unmount(cb: (err: Error | null) => void): void;
    /** The single "-o a,b,c" argv string handed to libfuse. */
    protected _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;

    static readonly EPERM: number;
    static readonly ENOENT: number;
    static readonly EINTR: number;
    static readonly EIO: number;
    static readonly ENXIO: number;
    static readonly EBADF: number;
    static readonly EAGAIN: number;
    static readonly ENOMEM: number;
    static readonly EACCES: number;
    static readonly EBUSY: number;
    static readonly EEXIST: number;
    static readonly EXDEV: number;
    static readonly ENODEV: number;
    static readonly ENOTDIR: number;
    static readonly EISDIR: number;
    static readonly EINVAL: number;
    static readonly EMFILE: number;
    static readonly EFBIG: number;
    static readonly ENOSPC: number;
    static readonly EROFS: number;
    static readonly ERANGE: number;
    static readonly ENAMETOOLONG: number;
    static readonly ENOSYS: number;
    static readonly ENOTEMPTY: number;
    static readonly ELOOP: number;
    static readonly ENODATA: number;
    static readonly EOPNOTSUPP: number;
    static readonly ENOTCONN: number;
    static readonly ETIMEDOUT: number;
  }

  export = Fuse;
}
