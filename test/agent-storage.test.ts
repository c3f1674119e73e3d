// disk.*, btrfs.* and zerotier.* (core0-protocol.md §9.5, §9.6, §9.10) against a real agent,
// driven by the Python client written from the spec. The disks are loop devices over images this
// file makes (never the machine's own disks); after each test no loop device, mount or partition
// of ours is left, also when it failed.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../src/agent/client';
import { readMounts } from '../src/fs/mount-table';
import { type AgentProcess, startAgent } from './helpers/agent';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-storage-'));
let agent: AgentProcess;
let client: Client;

beforeAll(async () => {
  agent = await startAgent();
  client = await agent.client();
}, 60_000);

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

type Call = [string, string, unknown[], Record<string, unknown>?];
type Answer = { ok?: any; error?: string };

/** Runs calls through the Python client; one answer per call. */
function py(...calls: Call[]): Answer[] {
  const r = spawnSync('/usr/bin/python3', [path.join(__dirname, 'conformance/alpha2_client.py'), agent.socket, 'calls', JSON.stringify(calls.map((c) => [c[0], c[1], c[2], c[3] ?? {}]))], {
    encoding: 'utf8', timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`python client: ${r.stderr}`);
  return JSON.parse(r.stdout) as Answer[];
}
const ok = (...c: Call): any => {
  const [a] = py(c);
  if (a.error !== undefined) throw new Error(`${c[0]}.${c[1]}: ${a.error}`);
  return a.ok;
};
const err = (...c: Call): string => {
  const [a] = py(c);
  expect(a.error, `${c[0]}.${c[1]} should fail`).toBeDefined();
  return a.error!.trimEnd();
};

// ---------------------------------------------------------------------------------------------
// loop devices of this file, and the check that each test leaves none of them behind

let images: string[] = [];
let seq = 0;

function loop(mib: number): { dev: string; name: string } {
  const img = path.join(tmp, `disk${++seq}.img`);
  execFileSync('truncate', ['-s', `${mib}M`, img]);
  images.push(img);
  const dev = execFileSync('losetup', ['--find', '--show', '--partscan', img], { encoding: 'utf8' }).trim();
  return { dev, name: path.basename(dev) };
}

const attached = (img: string): string[] =>
  execFileSync('losetup', ['-j', img, '-O', 'NAME', '-n'], { encoding: 'utf8' }).split('\n').map((l) => l.trim()).filter(Boolean);
const ourMounts = (): string[] => readMounts().filter((m) => m.mountPoint.startsWith(`${tmp}/`)).map((m) => m.mountPoint);

afterEach(() => {
  // what a test left: cleaned here so the next test and the machine start clean, then reported
  const left: string[] = [];
  for (const m of ourMounts().reverse()) {
    left.push(`mount ${m}`);
    spawnSync('umount', ['-l', m]);
  }
  for (const img of images) {
    for (const d of attached(img)) spawnSync('losetup', ['-d', d]);
    fs.rmSync(img, { force: true });
  }
  images = [];
  expect(left).toEqual([]);
  expect(ourMounts()).toEqual([]);
});

function mountDir(): string {
  const d = fs.mkdtempSync(path.join(tmp, 'mnt-'));
  return d;
}

const fsType = (dev: string): string => spawnSync('blkid', ['-p', '-o', 'value', '-s', 'TYPE', dev], { encoding: 'utf8' }).stdout.trim();

function children(name: string): string[] {
  const doc = ok('disk', 'list', [], { include_loop: true }) as { blockdevices: { name: string; children?: { name: string }[] }[] };
  const d = doc.blockdevices.find((x) => x.name === name);
  if (!d) throw new Error(`${name} not in disk.list`);
  return (d.children ?? []).map((c) => c.name);
}

// ---------------------------------------------------------------------------------------------

describe('disk.*', () => {
  it('disk.list is lsblk-shaped: disks only, loop devices when asked (include_loop)', () => {
    const { name } = loop(64);
    const [plain, withLoop] = py(['disk', 'list', []], ['disk', 'list', [], { include_loop: true }]);
    const devs = plain.ok.blockdevices as { type: string; name: string }[];
    expect(devs.every((d) => d.type === 'disk')).toBe(true);
    expect(devs.some((d) => d.name === name)).toBe(false);
    const mine = (withLoop.ok.blockdevices as Record<string, unknown>[]).find((d) => d.name === name)!;
    // lsblk --output-all --bytes: its own key names, sizes as numbers
    expect(mine).toMatchObject({ type: 'loop', size: 64 * 2 ** 20, kname: name, 'maj:min': expect.stringMatching(/^7:/) });
    expect(mine).toHaveProperty('fstype');
  });

  it('mktable, mkpart, getinfo, rmpart on a loop device', () => {
    const { dev, name } = loop(64);
    // no label yet: parted knows no table and no regions
    expect(ok('disk', 'getinfo', [name])).toMatchObject({ name, table: '', size: 64 * 2 ** 20, free: [] });
    const r = py(
      ['disk', 'mktable', [name, 'gpt']],
      ['disk', 'mkpart', [name, '1MiB', '32MiB']],
      ['disk', 'mkpart', [dev, '32MiB', '100%']],
    );
    expect(r).toEqual([{ ok: null }, { ok: null }, { ok: null }]);
    expect(children(name)).toEqual([`${name}p1`, `${name}p2`]);
    const whole = ok('disk', 'getinfo', [name]);
    expect(whole).toMatchObject({ name, table: 'gpt', start: 0, size: 64 * 2 ** 20, end: 64 * 2 ** 20 - 1, blocksize: 512 });
    expect(Array.isArray(whole.free)).toBe(true);
    for (const f of whole.free) expect(Object.keys(f).sort()).toEqual(['end', 'size', 'start']);
    const p1 = ok('disk', 'getinfo', [name, `${name}p1`]);
    expect(p1).toMatchObject({ name: `${name}p1`, type: 'part', table: 'gpt', start: 2 ** 20, end: 32 * 2 ** 20 - 1, size: 31 * 2 ** 20, free: [] });
    expect(ok('disk', 'rmpart', [name, 2])).toBe(null);
    expect(children(name)).toEqual([`${name}p1`]);
    expect(ok('disk', 'rmpart', [name, 1])).toBe(null);
    expect(children(name)).toEqual([]);
  });

  it('disk.mount and disk.umount (options as a comma list, or none)', () => {
    const { dev } = loop(128);
    ok('btrfs', 'create', ['m1', [dev]]);
    const target = mountDir();
    ok('disk', 'mount', [dev, target, ['ro', 'noatime']]);
    const m = readMounts().find((x) => x.mountPoint === target);
    expect(m?.fstype).toBe('btrfs');
    expect(() => fs.writeFileSync(path.join(target, 'x'), 'x')).toThrow(/EROFS|read-only/i);
    ok('disk', 'umount', [target]);
    expect(ourMounts()).toEqual([]);
    ok('disk', 'mount', [dev, target]);
    expect(ourMounts()).toEqual([target]);
    ok('disk', 'umount', [dev]);
    expect(ourMounts()).toEqual([]);
  });

  it('a device that does not exist: one line, nothing done', () => {
    for (const [method, a] of [['mktable', ['nosuchdisk0', 'gpt']], ['getinfo', ['nosuchdisk0']], ['mkpart', ['nosuchdisk0', '1MiB', '2MiB']]] as const) {
      const e = err('disk', method, [...a]);
      expect(e).toMatch(/: no device \/dev\/nosuchdisk0$/);
      expect(e).not.toContain('\n');
    }
  });

  it('device names outside /dev or with .. are refused', () => {
    for (const d of ['../sda', '/dev/../etc/passwd', '/etc/passwd', 'loop0/../../x']) {
      const e = err('disk', 'mktable', [d, 'gpt']);
      expect(e).toMatch(/is not a device name under \/dev$/);
    }
    expect(err('disk', 'mktable', ['null', 'gpt'])).toMatch(/\/dev\/null is not a block device$/);
    expect(err('disk', 'mktable', ['loop0', 'zfs'])).toMatch(/'zfs' is not one of aix amiga/);
    expect(err('disk', 'mkpart', ['loop0', '1MiB', '2MiB; reboot'])).toMatch(/is not a parted position/);
    expect(err('disk', 'mount', ['/dev/loop0', 'relative'])).toMatch(/'relative' is not an absolute path/);
  });

  it('mktable on a mounted device is refused and changes nothing', () => {
    const { dev, name } = loop(128);
    ok('btrfs', 'create', ['busy', [dev]]);
    const target = mountDir();
    ok('disk', 'mount', [dev, target]);
    fs.writeFileSync(path.join(target, 'keep'), 'data');
    const e = err('disk', 'mktable', [name, 'gpt']);
    expect(e).toBe(`failed to create table: ${dev} is in use: mounted on ${target}`);
    expect(fsType(dev)).toBe('btrfs');
    expect(fs.readFileSync(path.join(target, 'keep'), 'utf8')).toBe('data');
    ok('disk', 'umount', [target]);
  });

  it('the second device of a mounted two-device btrfs is in use too (lsblk shows no mountpoint on it)', () => {
    const a = loop(300);
    const b = loop(300);
    ok('btrfs', 'create', ['pair', [a.dev, b.dev], 'raid1', 'raid1']);
    const target = mountDir();
    ok('disk', 'mount', [a.dev, target]);
    expect(err('disk', 'mktable', [b.name, 'gpt'])).toBe(`failed to create table: ${b.dev} is in use (held by a mounted filesystem)`);
    expect(err('btrfs', 'create', ['again', [b.dev]])).toMatch(/is in use/);
    expect(fsType(b.dev)).toBe('btrfs');
    ok('disk', 'umount', [target]);
  });

  it('a refusal is an ERROR with its kind\'s code and the message in data and stderr', async () => {
    const r = await (await client.raw('disk.mktable', { disk: 'nosuchdisk0', table_type: 'gpt' })).get(30);
    expect(r).toMatchObject({ state: 'ERROR', code: 404, level: 20, data: JSON.stringify('no device /dev/nosuchdisk0') });
    expect(r.streams![1]).toBe('no device /dev/nosuchdisk0\n');
    const t = await (await client.raw('disk.mktable', { disk: 7 })).get(30);
    expect(t).toMatchObject({ state: 'ERROR', code: 400, data: JSON.stringify("argument 'disk': expected string, got int") });
  });
});

describe('btrfs.*', () => {
  it('create over two devices (metadata raid1, data raid0), list, info, subvolumes, quota, snapshot, device add/remove', () => {
    const a = loop(300);
    const b = loop(300);
    const c = loop(300);
    ok('btrfs', 'create', ['pool1', [a.dev, b.dev], 'raid1', 'raid0']);
    const fsys = (ok('btrfs', 'list', []) as any[]).find((f) => f.label === 'pool1');
    expect(fsys).toMatchObject({ label: 'pool1', total_devices: 2, uuid: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(typeof fsys.used).toBe('number');
    expect(fsys.devices.map((d: any) => d.path).sort()).toEqual([a.dev, b.dev].sort());
    for (const d of fsys.devices) expect(Object.keys(d).sort()).toEqual(['dev_id', 'path', 'size', 'used']);
    expect(fsys.devices[0].size).toBe(300 * 2 ** 20);

    const mp = mountDir();
    ok('disk', 'mount', [a.dev, mp]);
    const info = ok('btrfs', 'info', [mp]);
    expect(info).toMatchObject({ label: 'pool1', uuid: fsys.uuid, total_devices: 2 });
    expect(info.data).toMatchObject({ profile: 'RAID0', total: expect.any(Number), used: expect.any(Number) });
    expect(info.metadata.profile).toBe('RAID1');
    expect(info.system.profile).toBe('RAID1');
    expect(info.globalreserve.profile).toBe('single');

    const r = py(
      ['btrfs', 'subvol_create', [`${mp}/vol1`]],
      ['btrfs', 'subvol_quota', [`${mp}/vol1`, '10M']],
      ['btrfs', 'subvol_snapshot', [`${mp}/vol1`, `${mp}/snap1`], { read_only: true }],
      ['btrfs', 'subvol_list', [mp]],
    );
    expect(r.slice(0, 3)).toEqual([{ ok: null }, { ok: null }, { ok: null }]);
    const vols = r[3].ok as any[];
    expect(vols.map((v) => v.Path)).toEqual(['vol1', 'snap1']);
    expect(vols[0]).toEqual({ ID: expect.any(Number), Gen: expect.any(Number), TopLevel: 5, Path: 'vol1' });
    const qg = execFileSync('btrfs', ['qgroup', 'show', '-re', '--raw', mp], { encoding: 'utf8' });
    expect(qg).toMatch(new RegExp(`0/${vols[0].ID}\\s+\\d+\\s+\\d+\\s+${10 * 2 ** 20}`));
    expect(() => fs.writeFileSync(path.join(mp, 'snap1', 'x'), 'x')).toThrow(/EROFS|read-only/i);
    ok('btrfs', 'subvol_delete', [`${mp}/snap1`]);
    expect((ok('btrfs', 'subvol_list', [mp]) as any[]).map((v) => v.Path)).toEqual(['vol1']);

    ok('btrfs', 'device_add', [mp, c.dev]);
    expect(ok('btrfs', 'info', [mp]).total_devices).toBe(3);
    ok('btrfs', 'device_remove', [mp, c.dev]);
    expect(ok('btrfs', 'info', [mp]).devices.map((d: any) => d.path).sort()).toEqual([a.dev, b.dev].sort());
    ok('disk', 'umount', [mp]);
  }, 120_000);

  it('a profile btrfs refuses (raid1 on one device): one line, no filesystem made', () => {
    const { dev } = loop(300);
    const e = err('btrfs', 'create', ['bad', [dev], 'raid1', 'raid1']);
    expect(e).toMatch(/^failed to create btrfs: mkfs\.btrfs: unable to create FS with metadata profile RAID1 \(have 1 devices but 2 devices are required\)$/);
    expect(fsType(dev)).toBe('');
    expect(err('btrfs', 'create', ['bad', [dev], 'raid7'])).toMatch(/'raid7' is not one of raid0/);
    expect(err('btrfs', 'create', ['bad', []])).toMatch(/at least one device/);
    expect(fsType(dev)).toBe('');
  });

  it('subvolume names with .. are refused, nothing created', () => {
    const { dev } = loop(300);
    ok('btrfs', 'create', ['sv', [dev]]);
    const mp = mountDir();
    ok('disk', 'mount', [dev, mp]);
    const outside = path.join(tmp, 'escaped');
    for (const [m, a] of [
      ['subvol_create', [`${mp}/../escaped`]],
      ['subvol_create', [`${mp}/a/../../escaped`]],
      ['subvol_snapshot', [mp, `${mp}/../escaped`]],
      ['subvol_delete', [`${mp}/..`]],
      ['subvol_create', ['relative/x']],
    ] as const) {
      const e = err('btrfs', m, [...a]);
      expect(e).toMatch(/is not an absolute path without '\.\.'$/);
      expect(e).not.toContain('\n');
    }
    expect(fs.existsSync(outside)).toBe(false);
    expect(err('btrfs', 'subvol_create', [`${tmp}/not-btrfs`])).toMatch(/is not on a btrfs filesystem$/);
    expect(ok('btrfs', 'subvol_list', [mp])).toEqual([]);
    ok('disk', 'umount', [mp]);
  });
});

describe('zerotier.*', () => {
  it('every call answers ERROR unavailable naming why (not UNKNOWN_CMD)', async () => {
    const r = py(['zerotier', 'join', ['8056c2e21c000001']], ['zerotier', 'leave', ['8056c2e21c000001']], ['zerotier', 'list', []]);
    for (const [i, what] of ['join', 'leave', 'list'].entries())
      expect(r[i].error).toMatch(new RegExp(`^failed to ${what} zerotier network.*: zerotier: no zerotier-one daemon runs on this node`));
    for (const cmd of ['zerotier.join', 'zerotier.leave', 'zerotier.list', 'zerotier.info']) {
      const res = await (await client.raw(cmd, { network: '8056c2e21c000001' })).get(30);
      expect(res).toMatchObject({ state: 'ERROR', code: 503, level: 20 });
    }
    const bad = await (await client.raw('zerotier.join', { network: 'x; rm -rf /' })).get(30);
    expect(bad).toMatchObject({ state: 'ERROR', code: 400, data: JSON.stringify("argument 'network': 'x; rm -rf /' is not a ZeroTier network id (16 hex digits)") });
  });
});
