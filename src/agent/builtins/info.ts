// info.* (spec §9.3): the JSON shapes of Go's gopsutil (2017) that core0 returned. In a container
// the place's own view is used where it differs from the host's (mounts, interfaces, hostname,
// processes, os-release); cpu, memory, kernel and host id are the machine's.
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import { bootTimeMs, placeInit, placePids } from '../proc';
import { CommandError, type Handler, type Place } from '../types';
import { secureJoin } from './securejoin';

const read = (file: string) => fsp.readFile(file, 'utf8').catch(() => '');
const readTrim = async (file: string) => (await read(file)).trim();

/** Runs a host binary; its stdout, or a 500 naming it. */
function exec(file: string, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, argv, { timeout: 10_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err ? reject(new CommandError('internal', `${file} ${argv.join(' ')}: ${String(stderr).trim() || err.message}`)) : resolve(stdout),
    ),
  );
}

// ---- info.cpu ------------------------------------------------------------------------------

async function cpuInfo(): Promise<unknown[]> {
  const out = [];
  for (const block of (await read('/proc/cpuinfo')).split(/\n\s*\n/)) {
    const kv = new Map<string, string>();
    for (const line of block.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) kv.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
    }
    if (!kv.has('processor')) continue;
    const cpu = Number(kv.get('processor')) || 0;
    const sys = `/sys/devices/system/cpu/cpu${cpu}`;
    const maxFreq = Number(await readTrim(`${sys}/cpufreq/cpuinfo_max_freq`)); // kHz
    const coreId = kv.get('core id') ?? (await readTrim(`${sys}/topology/core_id`));
    out.push({
      cpu,
      vendorId: kv.get('vendor_id') ?? kv.get('vendorId') ?? '',
      family: kv.get('cpu family') ?? '',
      model: kv.get('model') ?? '',
      stepping: parseInt(kv.get('stepping') ?? '', 10) || 0,
      physicalId: kv.get('physical id') ?? '',
      coreId,
      cores: 1, // gopsutil reports one core per logical cpu
      modelName: kv.get('model name') ?? kv.get('cpu') ?? '',
      mhz: maxFreq > 0 ? maxFreq / 1000 : Number(kv.get('cpu MHz')) || 0,
      cacheSize: parseInt(kv.get('cache size') ?? '', 10) || 0,
      flags: (kv.get('flags') ?? kv.get('Features') ?? '').split(/\s+/).filter(Boolean),
      microcode: kv.get('microcode') ?? '',
    });
  }
  return out;
}

// ---- info.mem ------------------------------------------------------------------------------

async function memInfo(): Promise<Record<string, number>> {
  const kv = new Map<string, number>();
  for (const line of (await read('/proc/meminfo')).split('\n')) {
    const m = /^(\S+):\s+(\d+)(\s+kB)?/.exec(line);
    if (m) kv.set(m[1], Number(m[2]) * (m[3] ? 1024 : 1));
  }
  const v = (k: string) => kv.get(k) ?? 0;
  const total = v('MemTotal');
  const free = v('MemFree');
  const buffers = v('Buffers');
  const cached = v('Cached');
  const used = total - free - buffers - cached;
  return {
    total,
    available: kv.get('MemAvailable') ?? free + buffers + cached,
    used,
    usedPercent: total ? (used / total) * 100 : 0,
    free,
    active: v('Active'),
    inactive: v('Inactive'),
    wired: 0,
    buffers,
    cached,
    writeback: v('Writeback'),
    dirty: v('Dirty'),
    writebacktmp: v('WritebackTmp'),
    shared: v('Shmem'),
    slab: v('Slab'),
    pagetables: v('PageTables'),
    swapcached: v('SwapCached'),
  };
}

// ---- info.disk -----------------------------------------------------------------------------

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mounted partitions as gopsutil's Partitions(false): block file systems only (not `nodev` ones). */
async function diskInfo(place: Place): Promise<unknown[]> {
  const init = placeInit(place);
  const mounts = await read(init === null ? '/proc/self/mounts' : `/proc/${init}/mounts`);
  const physical = new Set(
    (await read('/proc/filesystems'))
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('nodev'))
      .map((l) => l.trim()),
  );
  const out = [];
  for (const line of mounts.split('\n')) {
    const [device, mountpoint, fstype, opts] = line.split(' ');
    if (!opts || device === 'none' || !physical.has(fstype)) continue;
    out.push({ device: unescape(device), mountpoint: unescape(mountpoint), fstype, opts });
  }
  return out;
}

// ---- info.nic ------------------------------------------------------------------------------

interface Nic {
  mtu: number;
  name: string;
  hardwareaddr: string;
  flags: string[];
  addrs: { addr: string }[];
  speed: number;
}

// Go's net.Flags names in its order, with their IFF_* bits
const IFF: [string, number][] = [
  ['up', 0x1],
  ['broadcast', 0x2],
  ['loopback', 0x8],
  ['pointtopoint', 0x10],
  ['multicast', 0x1000],
];

/** Go prints an all-zero hardware address (loopback) as "". */
const hwaddr = (a: string) => (/^[0:]*$/.test(a) ? '' : a);

/** Link speed in Mb/s from a sysfs file; 0 when unknown (down links and virtual ones say -1 or fail). */
async function speedOf(file: string): Promise<number> {
  const n = parseInt(await readTrim(file), 10);
  return n > 0 ? n : 0;
}

async function hostNics(): Promise<Nic[]> {
  const addrs = os.networkInterfaces();
  const names = await fsp.readdir('/sys/class/net').catch(() => [] as string[]);
  const nics = await Promise.all(
    names.map(async (name) => {
      const dir = `/sys/class/net/${name}`;
      const bits = parseInt(await readTrim(`${dir}/flags`), 16) || 0;
      return {
        index: Number(await readTrim(`${dir}/ifindex`)) || 0,
        nic: {
          mtu: Number(await readTrim(`${dir}/mtu`)) || 0,
          name,
          hardwareaddr: hwaddr(await readTrim(`${dir}/address`)),
          flags: IFF.filter(([, b]) => bits & b).map(([n]) => n),
          addrs: (addrs[name] ?? []).map((a) => ({ addr: a.cidr ?? a.address })),
          speed: await speedOf(`${dir}/speed`),
        },
      };
    }),
  );
  return nics.sort((a, b) => a.index - b.index).map((n) => n.nic); // Go lists them by index
}

/** A container's interfaces: its network namespace through the host's nsenter + ip. */
async function containerNics(place: Place, init: number): Promise<Nic[]> {
  const links = JSON.parse(await exec('nsenter', [`--net=/proc/${init}/ns/net`, 'ip', '-j', 'addr', 'show'])) as {
    ifname: string;
    mtu?: number;
    address?: string;
    flags?: string[];
    addr_info?: { local?: string; prefixlen?: number }[];
  }[];
  const ipFlags: Record<string, string> = { UP: 'up', BROADCAST: 'broadcast', LOOPBACK: 'loopback', POINTOPOINT: 'pointtopoint', MULTICAST: 'multicast' };
  const out: Nic[] = [];
  for (const l of links) {
    const flags = new Set((l.flags ?? []).map((f) => ipFlags[f]).filter(Boolean));
    // the speed is only visible if the container mounted its own sysfs
    const speed = await secureJoin(place.root, `/sys/class/net/${l.ifname}/speed`).then(speedOf, () => 0);
    out.push({
      mtu: l.mtu ?? 0,
      name: l.ifname,
      hardwareaddr: hwaddr(l.address ?? ''),
      flags: IFF.map(([n]) => n).filter((n) => flags.has(n)),
      addrs: (l.addr_info ?? []).filter((a) => a.local).map((a) => ({ addr: `${a.local}/${a.prefixlen}` })),
      speed,
    });
  }
  return out;
}

// ---- info.os -------------------------------------------------------------------------------

const FAMILIES: Record<string, string> = {
  debian: 'debian', ubuntu: 'debian', linuxmint: 'debian', raspbian: 'debian',
  fedora: 'fedora',
  oracle: 'rhel', centos: 'rhel', redhat: 'rhel', rhel: 'rhel', scientific: 'rhel', amzn: 'rhel', amazon: 'rhel', xenserver: 'rhel', cloudlinux: 'rhel', rocky: 'rhel', almalinux: 'rhel',
  suse: 'suse', opensuse: 'suse', 'opensuse-leap': 'suse', sles: 'suse',
  gentoo: 'gentoo', slackware: 'slackware', arch: 'arch', manjaro: 'arch', exherbo: 'exherbo', alpine: 'alpine', coreos: 'coreos',
};

async function osRelease(place: Place): Promise<Map<string, string>> {
  const kv = new Map<string, string>();
  const file = await secureJoin(place.root, '/etc/os-release').catch(() => '');
  for (const line of (file ? await read(file) : '').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) kv.set(m[1], m[2].replace(/^(["'])(.*)\1$/, '$2'));
  }
  return kv;
}

/** Best effort, in gopsutil's words: system "kvm", "xen", "vmware", "docker", ...; role "host" or "guest". */
async function virtualization(): Promise<{ system: string; role: string }> {
  const vendor = `${await readTrim('/sys/class/dmi/id/sys_vendor')} ${await readTrim('/sys/class/dmi/id/product_name')}`;
  const guests: [RegExp, string][] = [
    [/QEMU|KVM/i, 'kvm'],
    [/VMware/i, 'vmware'],
    [/VirtualBox|innotek/i, 'vbox'],
    [/Xen/i, 'xen'],
    [/Microsoft/i, 'hyperv'],
  ];
  for (const [re, system] of guests) if (re.test(vendor)) return { system, role: 'guest' };
  const environ = (await read('/proc/1/environ')).split('\0');
  const container = environ.find((e) => e.startsWith('container='))?.slice(10);
  if (container) return { system: container === 'docker' ? 'docker' : 'lxc', role: 'guest' };
  if (await fsp.access('/.dockerenv').then(() => true, () => false)) return { system: 'docker', role: 'guest' };
  const cgroup = await read('/proc/1/cgroup');
  if (/docker/.test(cgroup)) return { system: 'docker', role: 'guest' };
  if (/lxc/.test(cgroup)) return { system: 'lxc', role: 'guest' };
  if (await fsp.access('/proc/xen').then(() => true, () => false)) return { system: 'xen', role: 'guest' };
  if (/\bhypervisor\b/.test(await read('/proc/cpuinfo'))) return { system: 'kvm', role: 'guest' };
  if (/^kvm /m.test(await read('/proc/modules'))) return { system: 'kvm', role: 'host' };
  return { system: '', role: '' };
}

/** The machine's id as gopsutil: the DMI product uuid, else machine-id, else the boot id. */
async function hostId(): Promise<string> {
  const uuid = (await readTrim('/sys/class/dmi/id/product_uuid')).toLowerCase();
  if (uuid) return uuid;
  const mid = await readTrim('/etc/machine-id');
  if (/^[0-9a-f]{32}$/.test(mid)) return mid.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
  return readTrim('/proc/sys/kernel/random/boot_id');
}

async function osInfo(place: Place): Promise<Record<string, unknown>> {
  const init = placeInit(place);
  // /proc/sys/kernel/hostname shows the reader's UTS namespace: read it from inside the container's
  const hostname =
    init === null ? os.hostname() : (await exec('nsenter', [`--uts=/proc/${init}/ns/uts`, 'cat', '/proc/sys/kernel/hostname'])).trim();
  const rel = await osRelease(place);
  const platform = rel.get('ID') ?? '';
  const virt = await virtualization();
  return {
    hostname,
    uptime: Math.floor(Number((await read('/proc/uptime')).split(' ')[0]) || 0),
    bootTime: Math.floor((await bootTimeMs()) / 1000),
    procs: (await placePids(place)).size,
    os: 'linux',
    platform,
    platformFamily: FAMILIES[platform] ?? rel.get('ID_LIKE')?.split(' ')[0] ?? '',
    platformVersion: rel.get('VERSION_ID') ?? '',
    kernelVersion: (await readTrim('/proc/sys/kernel/osrelease')) || os.release(),
    virtualizationSystem: virt.system,
    virtualizationRole: virt.role,
    hostid: await hostId(),
  };
}

export function infoHandlers(): Record<string, Handler> {
  return {
    'info.cpu': () => cpuInfo(),
    'info.mem': () => memInfo(),
    'info.disk': (_args, ctx) => diskInfo(ctx.place),
    'info.nic': (_args, ctx) => {
      const init = placeInit(ctx.place);
      return init === null ? hostNics() : containerNics(ctx.place, init);
    },
    'info.os': (_args, ctx) => osInfo(ctx.place),
  };
}
