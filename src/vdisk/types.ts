// What the NBD server serves: a byte-addressed disk. Errors thrown carry a G8osError kind and
// (where it matters) an errno name; the server maps them onto NBD error codes.

export type VdiskType = 'boot' | 'db' | 'cache' | 'tmp';
export const VDISK_TYPES: readonly VdiskType[] = ['boot', 'db', 'cache', 'tmp'];

/** Static properties of a vdisk (disks-vms.md §3.1), stored in the cluster's index. */
export interface VdiskMeta {
  id: string;
  type: VdiskType;
  /** bytes; a multiple of blockSize */
  size: number;
  blockSize: number;
  readOnly: boolean;
  /** lazy copy-on-read source (boot: LBA copied at create; db: per block index) */
  template?: { source: string; vdisk: string };
  created: string;
}

export interface Vdisk {
  readonly id: string;
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
  /** Every write completed before the call is durable in the store when it resolves. */
  flush(): Promise<void>;
  /** Flushes and releases; a tmp vdisk is deleted. */
  close(): Promise<void>;
}

/** The set of exports a server offers; open/release are reference counted by the caller. */
export interface ExportProvider {
  list(): { name: string; description?: string }[];
  /** null when there is no such export */
  open(name: string): Promise<Vdisk | null>;
  release(disk: Vdisk): Promise<void>;
}
