// Container networking with iproute2 and nftables: bridges (optionally NATed through our own
// nftables table `ip g8os`), and one veth pair per container nic whose peer is moved into the
// container's network namespace and renamed eth<i> there.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';

const TABLE = 'g8os';

/** Runs a command; rejects with the first line of what it printed on failure. */
export function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')}: ${(err || out).trim().split('\n')[0] || `exit ${code}`}`));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

// ---------------------------------------------------------------------------------------------
// addresses

export interface Cidr {
  /** the address as written (e.g. the bridge's own address) */
  ip: number;
  prefix: number;
}

export const ipNum = (s: string): number | undefined => {
  const p = s.split('.');
  if (p.length !== 4 || p.some((x) => !/^\d{1,3}$/.test(x) || Number(x) > 255)) return undefined;
  return p.reduce((a, x) => a * 256 + Number(x), 0);
};
export const ipText = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
export const mask = (prefix: number): number => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
const network = (c: Cidr): number => (c.ip & mask(c.prefix)) >>> 0;

export function parseCidr(s: string): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(s);
  const ip = m ? ipNum(m[1]) : undefined;
  if (!m || ip === undefined || Number(m[2]) > 32) throw new Error(`'${s}' is not an IPv4 cidr (a.b.c.d/n)`);
  return { ip, prefix: Number(m[2]) };
}

export const cidrText = (c: Cidr): string => `${ipText(c.ip)}/${c.prefix}`;

function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.ip & mask(p)) >>> 0) === ((b.ip & mask(p)) >>> 0);
}

/**
 * The default nic's address of container `id` on the bridge network `bridge`: the network
 * address + id + 1 (172.18.0.1/16 → container 1 is 172.18.0.2/16).
 */
export function containerAddress(bridge: Cidr, id: number): Cidr {
  const base = network(bridge);
  const ip = (base + id + 1) >>> 0;
  const broadcast = (base | ~mask(bridge.prefix)) >>> 0;
  if (ip >= broadcast || ip === bridge.ip) throw new Error(`no address left on ${cidrText(bridge)} for container ${id}`);
  return { ip, prefix: bridge.prefix };
}

// ---------------------------------------------------------------------------------------------
// links

interface IpLink {
  ifname: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

async function links(args: string[]): Promise<IpLink[]> {
  return JSON.parse((await run('ip', ['-j', ...args])) || '[]') as IpLink[];
}

export async function linkExists(name: string): Promise<boolean> {
  return (await links(['link', 'show'])).some((l) => l.ifname === name);
}

/** Deletes a link; one that is already gone is fine. */
export async function deleteLink(name: string): Promise<void> {
  if (await linkExists(name)) await run('ip', ['link', 'del', name]).catch(async (e: Error) => {
    if (await linkExists(name)) throw e;
  });
}

export const validLinkName = (s: string): boolean => /^[A-Za-z0-9_.-]{1,15}$/.test(s);

// ---------------------------------------------------------------------------------------------
// bridges

export interface BridgeSpec {
  name: string;
  hwaddr?: string | null;
  /** the bridge's own address and network, e.g. 172.18.0.1/16 */
  cidr?: string | null;
  nat?: boolean;
}

export async function listBridges(): Promise<string[]> {
  return (await links(['link', 'show', 'type', 'bridge'])).map((l) => l.ifname);
}

/** The bridge's first IPv4 address, if it is a bridge at all (undefined: no such bridge). */
export async function bridgeAddress(name: string): Promise<Cidr | null | undefined> {
  const l = (await links(['-d', 'addr', 'show'])).find((x) => x.ifname === name);
  if (!l || l.linkinfo?.info_kind !== 'bridge') return undefined;
  const a = l.addr_info?.find((x) => x.family === 'inet');
  return a ? { ip: ipNum(a.local)!, prefix: a.prefixlen } : null;
}

export async function createBridge(spec: BridgeSpec): Promise<void> {
  if (!validLinkName(spec.name)) throw new Error(`'${spec.name}' is not a valid link name (1-15 of A-Z a-z 0-9 _ . -)`);
  const all = await links(['addr', 'show']);
  if (all.some((l) => l.ifname === spec.name)) throw new Error(`a link named '${spec.name}' already exists`);
  const cidr = spec.cidr ? parseCidr(spec.cidr) : undefined;
  if (cidr) {
    for (const l of all)
      for (const a of l.addr_info ?? [])
        if (a.family === 'inet' && overlaps(cidr, { ip: ipNum(a.local)!, prefix: a.prefixlen }))
          throw new Error(`${spec.cidr} overlaps ${a.local}/${a.prefixlen} on ${l.ifname}`);
  }
  await run('ip', ['link', 'add', spec.name, 'type', 'bridge']);
  try {
    const batch = [];
    if (spec.hwaddr) batch.push(`link set ${spec.name} address ${spec.hwaddr}`);
    if (cidr) batch.push(`addr add ${cidrText(cidr)} dev ${spec.name}`);
    batch.push(`link set ${spec.name} up`);
    await run('ip', ['-b', '-'], batch.join('\n'));
    if (cidr && spec.nat) await addNat(spec.name, cidr);
  } catch (e) {
    await removeNat(spec.name).catch(() => undefined);
    await run('ip', ['link', 'del', spec.name]).catch(() => undefined);
    throw e;
  }
}

export async function deleteBridge(name: string): Promise<void> {
  await removeNat(name);
  await run('ip', ['link', 'del', name]);
}

// ---------------------------------------------------------------------------------------------
// NAT: one rule set per bridge in table ip g8os, marked by a comment so it can be removed alone

const tag = (bridge: string): string => `g8os bridge ${bridge}`;

async function addNat(bridge: string, cidr: Cidr): Promise<void> {
  const net = `${ipText(network(cidr))}/${cidr.prefix}`;
  const c = `comment "${tag(bridge)}"`;
  await run('nft', ['-f', '-'], [
    `add table ip ${TABLE}`,
    `add chain ip ${TABLE} post { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ip ${TABLE} forward { type filter hook forward priority filter; policy accept; }`,
    `add rule ip ${TABLE} post ip saddr ${net} ip daddr != ${net} masquerade ${c}`,
    `add rule ip ${TABLE} forward iifname "${bridge}" accept ${c}`,
    `add rule ip ${TABLE} forward oifname "${bridge}" accept ${c}`,
    '',
  ].join('\n'));
  await fs.writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
}

interface NftRule {
  chain: string;
  handle: number;
  comment?: string;
}

async function removeNat(bridge: string): Promise<void> {
  let doc: { nftables: { rule?: NftRule }[] };
  try {
    doc = JSON.parse(await run('nft', ['-j', '-a', 'list', 'table', 'ip', TABLE])) as typeof doc;
  } catch {
    return; // no table: nothing of ours
  }
  const rules = doc.nftables.flatMap((x) => (x.rule ? [x.rule] : []));
  const mine = rules.filter((r) => r.comment === tag(bridge));
  if (!mine.length && rules.length) return;
  // our table goes entirely with its last rule
  const script = mine.length === rules.length
    ? `delete table ip ${TABLE}\n`
    : mine.map((r) => `delete rule ip ${TABLE} ${r.chain} handle ${r.handle}\n`).join('');
  await run('nft', ['-f', '-'], script);
}

// ---------------------------------------------------------------------------------------------
// container nics

export interface NicSetup {
  /** host end, on the bridge */
  host: string;
  /** the other end until it is renamed eth<index> inside the container */
  peer: string;
  index: number;
  bridge: string;
  hwaddr?: string;
  /** static address inside the container */
  cidr?: string;
  /** default route */
  gateway?: string;
}

/** Creates the pair and attaches the host end to the bridge. */
export async function createVeth(n: NicSetup): Promise<void> {
  await run('ip', ['-b', '-'], [
    `link add ${n.host} type veth peer name ${n.peer}`,
    `link set ${n.host} master ${n.bridge} up`,
  ].join('\n'));
}

/** Moves the peer into the namespace of `pid` and configures it there as eth<index>. */
export async function moveIntoContainer(n: NicSetup, pid: number): Promise<void> {
  await run('ip', ['link', 'set', n.peer, 'netns', String(pid)]);
  const eth = `eth${n.index}`;
  const batch = [`link set ${n.peer} name ${eth}`];
  if (n.hwaddr) batch.push(`link set ${eth} address ${n.hwaddr}`);
  batch.push(`link set ${eth} up`);
  if (n.cidr) batch.push(`addr add ${n.cidr} dev ${eth}`);
  if (n.gateway) batch.push(`route add default via ${n.gateway} dev ${eth} metric 1000`);
  await run('nsenter', ['-t', String(pid), '-n', 'ip', '-b', '-'], batch.join('\n'));
}
