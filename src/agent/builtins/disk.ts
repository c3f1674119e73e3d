// disk.* (core0-protocol.md §9.5): block devices through lsblk and parted. disk.list and
// disk.getinfo answer JSON; mktable/mkpart/rmpart/mount/umount are "ext" commands (their result
// is the tool's process result) run after the arguments and the device were checked.
import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { args, bool, int, opt, str } from '../args';
import type { ErrorKind } from '../../errors';
import { CommandError, type Handler, type JobContext } from '../types';
import { runProcess } from './system';

/** Runs a tool; rejects with a one-line CommandError (the tool's ERROR line, else its first). */
export function tool(file: string, argv: string[], kind: ErrorKind = 'invalid'): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new CommandError('unavailable', `${file}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      const lines = (err || out).split('\n').map((l) => l.trim()).filter(Boolean);
      const line = lines.find((l) => /^(ERROR|Error):/.test(l)) ?? lines[0] ?? `exit ${code}`;
      reject(new CommandError(kind, `${path.basename(file)}: ${line.replace(/^(ERROR|Error):\s*/, '')}`));
    });
  });
}

/**
 * The original client reports `result.stderr` when a call fails: a refused call carries its
 * message there as well as in `data`.
 */
export function withStderr(h: Handler): Handler {
  return async (raw, ctx) => {
    try {
      return await h(raw, ctx);
    } catch (e) {
      // (handlers driven outside a job, as in the container tests' child, have no emit)
      if (e instanceof CommandError && typeof ctx?.emit === 'function') ctx.emit(2, e.message);
      throw e;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// devices

/**
 * A device argument: `sda`, `loop0p1` or `/dev/…`; only names under /dev, no `..`. Returns the
 * /dev path of an existing block device.
 */
export async function blockDevice(v: string, at: string): Promise<string> {
  const name = v.startsWith('/dev/') ? v.slice(5) : v;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:+-]*(\/[A-Za-z0-9][A-Za-z0-9_.:+-]*)*$/.test(name) || name.includes('..'))
    throw new CommandError('invalid', `argument '${at}': '${v}' is not a device name under /dev`);
  const dev = `/dev/${name}`;
  const st = await fs.stat(dev).catch(() => null);
  if (!st) throw new CommandError('not_found', `no device ${dev}`);
  if (!st.isBlockDevice()) throw new CommandError('invalid', `${dev} is not a block device`);
  return dev;
}

export interface LsblkDevice {
  name: string;
  type: string;
  size?: number;
  mountpoint?: string | null;
  mountpoints?: (string | null)[];
  children?: LsblkDevice[];
  [k: string]: unknown;
}

export async function lsblk(extra: string[]): Promise<LsblkDevice[]> {
  const out = await tool('lsblk', ['--json', '--output-all', '--bytes', ...extra], 'internal');
  return (JSON.parse(out || '{"blockdevices":[]}') as { blockdevices: LsblkDevice[] }).blockdevices ?? [];
}

const mountsOf = (d: LsblkDevice): string[] =>
  [...(d.mountpoints ?? [d.mountpoint ?? null]), ...(d.children ?? []).flatMap(mountsOf)].filter((m): m is string => !!m);

/** Refuses a device that is mounted (itself or a partition) or held by another device (dm, md). */
export async function notInUse(dev: string): Promise<void> {
  const [d] = await lsblk([dev]);
  const m = d ? mountsOf(d) : [];
  if (m.length) throw new CommandError('conflict', `${dev} is in use: mounted on ${m.join(', ')}`);
  const holders = await fs.readdir(`/sys/class/block/${path.basename(await fs.realpath(dev))}/holders`).catch(() => []);
  if (holders.length) throw new CommandError('conflict', `${dev} is in use by ${holders.join(', ')}`);
  // what lsblk cannot see (the other members of a mounted multi-device btrfs): the kernel refuses
  // an exclusive open (O_EXCL on a block device) of a device a filesystem holds
  const h = await fs.open(dev, fsConstants.O_RDONLY | fsConstants.O_EXCL).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'EBUSY') throw new CommandError('conflict', `${dev} is in use (held by a mounted filesystem)`);
    throw new CommandError('unavailable', `${dev}: ${e.message}`);
  });
  await h.close();
}

// ---------------------------------------------------------------------------------------------
// parted

interface Region {
  number: number;
  start: number;
  end: number;
  size: number;
  free: boolean;
}

/** `parted -m unit B print free`: the label and the regions (a disk without a label has none). */
async function partedPrint(dev: string): Promise<{ table: string; blocksize: number; size: number; regions: Region[] }> {
  const out = await new Promise<string>((resolve) => {
    const child = spawn('parted', ['-s', '-m', dev, 'unit', 'B', 'print', 'free'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let o = '';
    child.stdout.on('data', (d: Buffer) => (o += d.toString()));
    child.on('error', () => resolve(''));
    child.on('close', () => resolve(o)); // exit 1 for "unrecognised disk label", with the disk line printed
  });
  const lines = out.split('\n').map((l) => l.trim().replace(/;$/, '')).filter(Boolean);
  const disk = lines.find((l) => l.startsWith('/'))?.split(':') ?? [];
  const b = (s: string | undefined): number => Number((s ?? '0').replace(/B$/, ''));
  const regions = lines
    .filter((l) => /^\d+:/.test(l))
    .map((l) => {
      const f = l.split(':');
      return { number: Number(f[0]), start: b(f[1]), end: b(f[2]), size: b(f[3]), free: f[4] === 'free' };
    });
  const table = disk[5] && disk[5] !== 'unknown' ? disk[5] : '';
  return { table, blocksize: Number(disk[3] ?? 512), size: b(disk[1]), regions };
}

const TABLES = ['aix', 'amiga', 'bsd', 'dvh', 'gpt', 'mac', 'msdos', 'pc98', 'sun', 'loop'];
const PART_TYPES = ['primary', 'logical', 'extended'];
/** parted positions: a number with a unit, a sector count or a percentage; '-' counts from the end */
const POSITION = /^-?\d+(\.\d+)?(B|s|%|[kMGT]B|[KMGT]iB)?$/;

const listArgs = args({ include_loop: opt(bool) });
const infoArgs = args({ disk: str, part: opt(str) });
const tableArgs = args({ disk: str, table_type: str });
const mkpartArgs = args({ disk: str, part_type: opt(str), start: str, end: str });
const rmpartArgs = args({ disk: str, number: int });
const mountArgs = args({ options: opt(str), source: str, target: str });
const umountArgs = args({ source: str });

/** An absolute path without `..` (mount targets, umount sources). */
function absPath(v: string, at: string): string {
  if (!path.isAbsolute(v) || v.split('/').includes('..')) throw new CommandError('invalid', `argument '${at}': '${v}' is not an absolute path without '..'`);
  return path.normalize(v);
}

async function mounted(p: string): Promise<boolean> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const unesc = (s: string): string => s.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info.split('\n').some((l) => {
    const f = l.split(' ');
    const dash = f.indexOf('-');
    return unesc(f[4] ?? '') === p || (dash > 0 && unesc(f[dash + 2] ?? '') === p);
  });
}

async function getinfo(raw: unknown): Promise<Record<string, unknown>> {
  const a = infoArgs(raw);
  const dev = await blockDevice(a.disk, 'disk');
  const [disk] = await lsblk([dev]);
  if (!disk) throw new CommandError('not_found', `lsblk does not know ${dev}`);
  const p = await partedPrint(dev);
  if (!a.part) {
    const free = p.regions.filter((r) => r.free).map(({ start, end, size }) => ({ start, end, size }));
    return { ...disk, blocksize: p.blocksize, table: p.table, start: 0, end: (disk.size ?? p.size) - 1, size: disk.size ?? p.size, free };
  }
  const partDev = await blockDevice(a.part, 'part');
  const part = (disk.children ?? []).find((c) => `/dev/${c.name}` === partDev);
  if (!part) throw new CommandError('not_found', `${partDev} is not a partition of ${dev}`);
  const number = Number(await fs.readFile(`/sys/class/block/${part.name}/partition`, 'utf8').catch(() => '0'));
  const r = p.regions.find((x) => !x.free && x.number === number);
  if (!r) throw new CommandError('not_found', `parted shows no partition ${number} on ${dev}`);
  return { ...part, blocksize: p.blocksize, table: p.table, start: r.start, end: r.end, size: r.size, free: [] };
}

function parted(ctx: JobContext, dev: string, argv: string[]): ReturnType<typeof runProcess> {
  // '--' so that an end counted from the disk's end ('-1s') is not read as an option
  return runProcess(ctx, 'parted', ['-s', '--', dev, ...argv], {});
}

export function diskHandlers(): Record<string, Handler> {
  const h: Record<string, Handler> = {
    'disk.list': async (raw) => {
      // the original's view: disks and their partitions, RAM disks (1) and floppies (2) excluded.
      // include_loop (ours) adds loop devices, which the tests' disks are.
      const loop = listArgs(raw).include_loop === true;
      const all = await lsblk(['--exclude', '1,2']);
      return { blockdevices: all.filter((d) => d.type === 'disk' || (loop && d.type === 'loop')) };
    },
    'disk.getinfo': getinfo,
    'disk.mktable': async (raw, ctx) => {
      const a = tableArgs(raw);
      if (!TABLES.includes(a.table_type)) throw new CommandError('invalid', `argument 'table_type': '${a.table_type}' is not one of ${TABLES.join(' ')}`);
      const dev = await blockDevice(a.disk, 'disk');
      await notInUse(dev);
      return parted(ctx, dev, ['mktable', a.table_type]);
    },
    'disk.mkpart': async (raw, ctx) => {
      const a = mkpartArgs(raw);
      const type = a.part_type || 'primary';
      if (!PART_TYPES.includes(type)) throw new CommandError('invalid', `argument 'part_type': '${type}' is not one of ${PART_TYPES.join(' ')}`);
      for (const k of ['start', 'end'] as const)
        if (!POSITION.test(a[k])) throw new CommandError('invalid', `argument '${k}': '${a[k]}' is not a parted position (e.g. 1MiB, 100%, -1s)`);
      const dev = await blockDevice(a.disk, 'disk');
      return parted(ctx, dev, ['mkpart', type, a.start, a.end]);
    },
    'disk.rmpart': async (raw, ctx) => {
      const a = rmpartArgs(raw);
      if (a.number < 1) throw new CommandError('invalid', `argument 'number': ${a.number} is not a partition number`);
      const dev = await blockDevice(a.disk, 'disk');
      const [d] = await lsblk([dev]);
      for (const c of d?.children ?? []) {
        const n = Number(await fs.readFile(`/sys/class/block/${c.name}/partition`, 'utf8').catch(() => '0'));
        if (n === a.number && mountsOf(c).length) throw new CommandError('conflict', `/dev/${c.name} is mounted on ${mountsOf(c).join(', ')}`);
      }
      return parted(ctx, dev, ['rm', String(a.number)]);
    },
    'disk.mount': async (raw, ctx) => {
      const a = mountArgs(raw);
      const options = a.options ?? '';
      if (!/^[A-Za-z0-9_=.,:/@+-]*$/.test(options)) throw new CommandError('invalid', `argument 'options': '${options}' is not a comma list of mount options`);
      const source = await blockDevice(a.source, 'source');
      const target = absPath(a.target, 'target');
      const st = await fs.stat(target).catch(() => null);
      if (!st?.isDirectory()) throw new CommandError('not_found', `mount target ${target} is not a directory`);
      return runProcess(ctx, 'mount', [...(options ? ['-o', options] : []), source, target], {});
    },
    'disk.umount': async (raw, ctx) => {
      const src = absPath(umountArgs(raw).source, 'source');
      if (!(await mounted(src))) throw new CommandError('not_found', `${src} is not mounted`);
      return runProcess(ctx, 'umount', [src], {});
    },
  };
  return Object.fromEntries(Object.entries(h).map(([k, f]) => [k, withStderr(f)]));
}
