// btrfs.* (core0-protocol.md §9.6): storage pools with btrfs-progs. Sizes are bytes (--raw);
// subvolume paths must be absolute, without `..`, and on a btrfs filesystem.
import fs from 'node:fs/promises';
import path from 'node:path';
import { args, bool, list, opt, str } from '../args';
import { CommandError, type Handler } from '../types';
import { blockDevice, notInUse, tool, withStderr } from './disk';

const BTRFS_MAGIC = 0x9123683e;
const PROFILES = ['raid0', 'raid1', 'raid5', 'raid6', 'raid10', 'dup', 'single'];

function profile(v: string | null | undefined, at: string): string {
  const p = (v ?? '').toLowerCase();
  if (p && !PROFILES.includes(p)) throw new CommandError('invalid', `argument '${at}': '${v}' is not one of ${PROFILES.join(' ')} or ""`);
  return p;
}

/** An absolute path without `..` or empty components. */
function cleanPath(v: string, at: string): string {
  if (!path.isAbsolute(v) || v.split('/').slice(1).some((c, i, all) => c === '..' || c === '.' || (c === '' && i < all.length - 1)))
    throw new CommandError('invalid', `argument '${at}': '${v}' is not an absolute path without '..'`);
  return path.normalize(v).replace(/(.)\/$/, '$1');
}

async function onBtrfs(p: string, at: string): Promise<void> {
  const st = await fs.statfs(p).catch(() => null);
  if (!st) throw new CommandError('not_found', `argument '${at}': ${p} does not exist`);
  if (st.type !== BTRFS_MAGIC) throw new CommandError('invalid', `argument '${at}': ${p} is not on a btrfs filesystem`);
}

/** A path that must exist on btrfs. */
async function btrfsPath(v: string, at: string): Promise<string> {
  const p = cleanPath(v, at);
  await onBtrfs(p, at);
  return p;
}

/** A new subvolume's path: its parent on btrfs, the name itself free. */
async function newSubvol(v: string, at: string): Promise<string> {
  const p = cleanPath(v, at);
  if (p === '/') throw new CommandError('invalid', `argument '${at}': '/' cannot be a subvolume`);
  await onBtrfs(path.dirname(p), at);
  if (await fs.lstat(p).then(() => true, () => false)) throw new CommandError('conflict', `${p} already exists`);
  return p;
}

interface Device {
  missing?: boolean;
  dev_id: number;
  size: number;
  used: number;
  path: string;
}

interface Fs {
  label: string;
  uuid: string;
  total_devices: number;
  used: number;
  devices: Device[];
}

/** Parses `btrfs filesystem show --raw`. */
export function parseShow(out: string): Fs[] {
  const all: Fs[] = [];
  let cur: Fs | undefined;
  for (const line of out.split('\n')) {
    let m = /^Label:\s+(?:'(.*)'|none)\s+uuid:\s+(\S+)/.exec(line);
    if (m) {
      cur = { label: m[1] ?? '', uuid: m[2], total_devices: 0, used: 0, devices: [] };
      all.push(cur);
      continue;
    }
    if (!cur) continue;
    if ((m = /Total devices (\d+) FS bytes used (\d+)/.exec(line))) {
      cur.total_devices = Number(m[1]);
      cur.used = Number(m[2]);
    } else if ((m = /devid\s+(\d+)\s+size\s+(\d+)\s+used\s+(\d+)\s+path\s+(\S+)(\s+MISSING)?/.exec(line))) {
      const d: Device = { dev_id: Number(m[1]), size: Number(m[2]), used: Number(m[3]), path: m[4] };
      if (m[5] || m[4] === '<missing') d.missing = true;
      cur.devices.push(d);
    }
  }
  return all;
}

/** Parses `btrfs filesystem df --raw`: data/system/metadata/globalreserve {profile, total, used}. */
export function parseDf(out: string): Record<string, { profile: string; total: number; used: number }> {
  const r: Record<string, { profile: string; total: number; used: number }> = {};
  for (const m of out.matchAll(/^(\w+), ([\w/]+): total=(\d+), used=(\d+)/gm))
    r[m[1].toLowerCase()] = { profile: m[2], total: Number(m[3]), used: Number(m[4]) };
  return r;
}

/** Parses `btrfs subvolume list`: the upstream struct's capitalised keys. */
export function parseSubvols(out: string): { ID: number; Gen: number; TopLevel: number; Path: string }[] {
  return [...out.matchAll(/^ID (\d+) gen (\d+) top level (\d+) path (.*)$/gm)].map((m) => ({ ID: Number(m[1]), Gen: Number(m[2]), TopLevel: Number(m[3]), Path: m[4] }));
}

const createArgs = args({ label: opt(str), metadata: opt(str), data: opt(str), devices: list(str), overwrite: opt(bool) });
const mountpointArgs = args({ mountpoint: str });
const devicesArgs = args({ mountpoint: str, devices: list(str) });
const pathArgs = args({ path: str });
const quotaArgs = args({ path: str, limit: str });
const snapshotArgs = args({ source: str, destination: str, read_only: opt(bool) });

async function devices(v: string[]): Promise<string[]> {
  if (!v.length) throw new CommandError('invalid', "argument 'devices': at least one device is needed");
  const out: string[] = [];
  for (const [i, d] of v.entries()) out.push(await blockDevice(d, `devices[${i}]`));
  if (new Set(out).size !== out.length) throw new CommandError('invalid', "argument 'devices': a device is named twice");
  return out;
}

export function btrfsHandlers(): Record<string, Handler> {
  const h: Record<string, Handler> = {
    'btrfs.create': async (raw) => {
      const a = createArgs(raw);
      const label = a.label ?? '';
      if (label.length > 255 || /[\n\0]/.test(label)) throw new CommandError('invalid', "argument 'label': at most 255 characters, no newline");
      const md = profile(a.metadata, 'metadata');
      const data = profile(a.data, 'data');
      const devs = await devices(a.devices);
      for (const d of devs) await notInUse(d);
      const argv = [...(label ? ['-L', label] : []), ...(md ? ['-m', md] : []), ...(data ? ['-d', data] : []), ...(a.overwrite ? ['-f'] : []), ...devs];
      // mkfs.btrfs checks the profiles against the device count before it writes anything
      await tool('mkfs.btrfs', argv);
      return null;
    },
    'btrfs.list': async () => parseShow(await tool('btrfs', ['filesystem', 'show', '--raw'], 'internal')),
    'btrfs.info': async (raw) => {
      const mp = await btrfsPath(mountpointArgs(raw).mountpoint, 'mountpoint');
      const [fsys] = parseShow(await tool('btrfs', ['filesystem', 'show', '--raw', mp]));
      if (!fsys) throw new CommandError('not_found', `no btrfs filesystem at ${mp}`);
      return { ...fsys, ...parseDf(await tool('btrfs', ['filesystem', 'df', '--raw', mp])) };
    },
    'btrfs.device_add': async (raw) => {
      const a = devicesArgs(raw);
      const mp = await btrfsPath(a.mountpoint, 'mountpoint');
      const devs = await devices(a.devices);
      for (const d of devs) await notInUse(d);
      await tool('btrfs', ['device', 'add', ...devs, mp]);
      return null;
    },
    'btrfs.device_remove': async (raw) => {
      const a = devicesArgs(raw);
      const mp = await btrfsPath(a.mountpoint, 'mountpoint');
      await tool('btrfs', ['device', 'remove', ...(await devices(a.devices)), mp]);
      return null;
    },
    'btrfs.subvol_create': async (raw) => {
      await tool('btrfs', ['subvolume', 'create', await newSubvol(pathArgs(raw).path, 'path')]);
      return null;
    },
    'btrfs.subvol_list': async (raw) => parseSubvols(await tool('btrfs', ['subvolume', 'list', await btrfsPath(pathArgs(raw).path, 'path')])),
    'btrfs.subvol_delete': async (raw) => {
      await tool('btrfs', ['subvolume', 'delete', await btrfsPath(pathArgs(raw).path, 'path')]);
      return null;
    },
    'btrfs.subvol_quota': async (raw) => {
      const a = quotaArgs(raw);
      if (!/^(\d+(\.\d+)?[KMGTPE]?|none)$/i.test(a.limit)) throw new CommandError('invalid', `argument 'limit': '${a.limit}' is not a size (e.g. 10G) or none`);
      const p = await btrfsPath(a.path, 'path');
      // qgroup limits need quotas on; enabling is idempotent
      await tool('btrfs', ['quota', 'enable', p]);
      await tool('btrfs', ['qgroup', 'limit', a.limit, p]);
      return null;
    },
    'btrfs.subvol_snapshot': async (raw) => {
      const a = snapshotArgs(raw);
      const src = await btrfsPath(a.source, 'source');
      const dst = await newSubvol(a.destination, 'destination');
      await tool('btrfs', ['subvolume', 'snapshot', ...(a.read_only ? ['-r'] : []), src, dst]);
      return null;
    },
  };
  return Object.fromEntries(Object.entries(h).map(([k, f]) => [k, withStderr(f)]));
}
