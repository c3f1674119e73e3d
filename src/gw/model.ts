// The gateway's configuration (disks-vms.md §5) and its validation. Everything a gateway does is
// derived from one GwConfig; a change is a new GwConfig that must validate as a whole before
// anything is rendered or applied, so a bad rule never reaches the running gateway.
import { G8osError } from '../errors';
import { type Cidr, ipNum, ipText, mask, parseCidr } from '../agent/containers/net';

export interface CloudInit {
  /** YAML text served as user-data */
  userdata?: string;
  /** YAML text served as meta-data (instance-id and local-hostname are filled in when absent) */
  metadata?: string;
}

export interface DhcpHost {
  macaddress: string;
  ipaddress: string;
  hostname: string;
  cloudinit?: CloudInit;
}

export interface Nic {
  /** the interface name inside the gateway */
  name: string;
  /** `default` is the agent's default container bridge; `bridge` names a bridge on this host */
  type: 'default' | 'bridge';
  /** the bridge name for type bridge */
  id?: string;
  /** the gateway's own address and the network's prefix */
  cidr: string;
  /** set on the public nic: the upstream router */
  config?: { gateway: string };
  /** private nics only: static leases (DHCP never hands out other addresses) */
  dhcpserver?: { nameservers?: string[]; hosts: DhcpHost[] };
}

export type Protocol = 'tcp' | 'udp';

export interface PortForward {
  protocols: Protocol[];
  /** a gateway address or a nic name (the traffic's destination on the gateway) */
  srcip: string;
  srcport: number;
  dstip: string;
  dstport: number;
}

export interface HttpProxy {
  host: string;
  /** backends, `http://ip:port` */
  destinations: string[];
}

export interface GwConfig {
  name: string;
  domain: string;
  nics: Nic[];
  portforwards: PortForward[];
  httpproxies: HttpProxy[];
  /** advanced mode: a raw nftables table body replaces the structured forwards */
  advanced?: { firewall?: string };
}

const bad = (at: string, what: string): G8osError => new G8osError('invalid', `gateway ${at}: ${what}`);

const NAME = /^[a-z0-9][a-z0-9-]{0,14}$/;
const IFNAME = /^[a-z][a-z0-9]{0,14}$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const HOST = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function obj(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(at, 'expected an object');
  return v as Record<string, unknown>;
}
function arr(v: unknown, at: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(at, 'expected a list');
  return v;
}
function text(v: unknown, at: string): string {
  if (typeof v !== 'string' || v === '') throw bad(at, 'expected a non-empty string');
  return v;
}
function ip(v: unknown, at: string): string {
  const s = text(v, at);
  if (ipNum(s) === undefined) throw bad(at, `'${s}' is not an IPv4 address`);
  return s;
}
function port(v: unknown, at: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw bad(at, `${JSON.stringify(v)} is not a port (1-65535)`);
  return v;
}
function cidr(v: unknown, at: string): Cidr {
  const s = text(v, at);
  try {
    return parseCidr(s);
  } catch (e) {
    throw bad(at, (e as Error).message);
  }
}

const netOf = (c: Cidr): number => (c.ip & mask(c.prefix)) >>> 0;
const lastOf = (c: Cidr): number => (netOf(c) | ~mask(c.prefix)) >>> 0;
export const networkText = (s: string): string => {
  const c = parseCidr(s);
  return `${ipText(netOf(c))}/${c.prefix}`;
};
/** `ip` is a host address of `c` other than its own */
const hostOf = (c: Cidr, n: number): boolean => n > netOf(c) && n < lastOf(c);

function nic(v: unknown, at: string): Nic {
  const o = obj(v, at);
  const name = text(o.name, `${at}.name`);
  if (!IFNAME.test(name)) throw bad(`${at}.name`, `'${name}' is not an interface name (a-z0-9, at most 15)`);
  const type = o.type ?? 'bridge';
  if (type !== 'default' && type !== 'bridge') throw bad(`${at}.type`, `'${String(type)}' is not default or bridge (zerotier, vxlan and vlan nics are not supported yet)`);
  const c = cidr(o.cidr, `${at}.cidr`);
  if (c.prefix < 8 || c.prefix > 30 || !hostOf(c, c.ip)) throw bad(`${at}.cidr`, `'${String(o.cidr)}' is not a host address of a /8../30 network`);
  const n: Nic = { name, type, cidr: o.cidr as string };
  if (type === 'bridge') n.id = text(o.id, `${at}.id`);
  if (o.config !== undefined && o.config !== null) {
    const g = ip(obj(o.config, `${at}.config`).gateway, `${at}.config.gateway`);
    if (!hostOf(c, ipNum(g)!) || ipNum(g) === c.ip) throw bad(`${at}.config.gateway`, `${g} is not another host of ${n.cidr}`);
    n.config = { gateway: g };
  }
  if (o.dhcpserver !== undefined && o.dhcpserver !== null) {
    if (n.config) throw bad(`${at}.dhcpserver`, 'the public nic has no DHCP server');
    const d = obj(o.dhcpserver, `${at}.dhcpserver`);
    const nameservers = arr(d.nameservers, `${at}.dhcpserver.nameservers`).map((x, i) => ip(x, `${at}.dhcpserver.nameservers[${i}]`));
    const macs = new Set<string>();
    const ips = new Set<string>();
    const hosts = arr(d.hosts, `${at}.dhcpserver.hosts`).map((h, i) => {
      const hat = `${at}.dhcpserver.hosts[${i}]`;
      const ho = obj(h, hat);
      const mac = text(ho.macaddress, `${hat}.macaddress`).toLowerCase();
      if (!MAC.test(mac)) throw bad(`${hat}.macaddress`, `'${mac}' is not a MAC address`);
      const addr = ip(ho.ipaddress, `${hat}.ipaddress`);
      if (!hostOf(c, ipNum(addr)!) || ipNum(addr) === c.ip) throw bad(`${hat}.ipaddress`, `${addr} is not a host address of ${n.cidr} other than the gateway's`);
      const hostname = text(ho.hostname, `${hat}.hostname`);
      if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(hostname)) throw bad(`${hat}.hostname`, `'${hostname}' is not a host name`);
      if (macs.has(mac)) throw bad(`${hat}.macaddress`, `${mac} is listed twice`);
      if (ips.has(addr)) throw bad(`${hat}.ipaddress`, `${addr} is listed twice`);
      macs.add(mac);
      ips.add(addr);
      const out: DhcpHost = { macaddress: mac, ipaddress: addr, hostname };
      if (ho.cloudinit !== undefined && ho.cloudinit !== null) {
        const ci = obj(ho.cloudinit, `${hat}.cloudinit`);
        out.cloudinit = {};
        for (const k of ['userdata', 'metadata'] as const)
          if (ci[k] !== undefined && ci[k] !== null) {
            if (typeof ci[k] !== 'string') throw bad(`${hat}.cloudinit.${k}`, 'expected a string');
            out.cloudinit[k] = ci[k] as string;
          }
      }
      return out;
    });
    n.dhcpserver = { nameservers, hosts };
  }
  return n;
}

function forward(v: unknown, at: string, nics: Nic[]): PortForward {
  const o = obj(v, at);
  const protocols = arr(o.protocols ?? ['tcp'], `${at}.protocols`).map((p, i) => {
    if (p !== 'tcp' && p !== 'udp') throw bad(`${at}.protocols[${i}]`, `'${String(p)}' is not tcp or udp`);
    return p as Protocol;
  });
  if (protocols.length === 0) throw bad(`${at}.protocols`, 'is empty');
  let srcip = text(o.srcip, `${at}.srcip`);
  const byName = nics.find((n) => n.name === srcip);
  if (byName) srcip = ipText(parseCidr(byName.cidr).ip);
  else if (ipNum(srcip) === undefined) throw bad(`${at}.srcip`, `'${srcip}' is neither an address nor a nic of the gateway`);
  else if (!nics.some((n) => ipText(parseCidr(n.cidr).ip) === srcip)) throw bad(`${at}.srcip`, `${srcip} is not an address of the gateway`);
  const dstip = ip(o.dstip, `${at}.dstip`);
  return { protocols: [...new Set(protocols)], srcip, srcport: port(o.srcport, `${at}.srcport`), dstip, dstport: port(o.dstport, `${at}.dstport`) };
}

function proxy(v: unknown, at: string): HttpProxy {
  const o = obj(v, at);
  const host = text(o.host, `${at}.host`).toLowerCase();
  if (!HOST.test(host)) throw bad(`${at}.host`, `'${host}' is not a host name`);
  const destinations = arr(o.destinations, `${at}.destinations`).map((d, i) => {
    const s = text(d, `${at}.destinations[${i}]`);
    const m = /^http:\/\/([\d.]+):(\d+)\/?$/.exec(s);
    if (!m || ipNum(m[1]) === undefined) throw bad(`${at}.destinations[${i}]`, `'${s}' is not http://<ipv4>:<port>`);
    port(Number(m[2]), `${at}.destinations[${i}]`);
    return `http://${m[1]}:${Number(m[2])}`;
  });
  if (destinations.length === 0) throw bad(`${at}.destinations`, 'is empty');
  return { host, destinations };
}

/** The whole configuration checked; the normalised copy, or an `invalid` error naming the field. */
export function validate(raw: unknown): GwConfig {
  const o = obj(raw, 'config');
  const name = text(o.name, 'name');
  if (!NAME.test(name)) throw bad('name', `'${name}' is not a plain name (a-z0-9-, at most 15)`);
  const domain = text(o.domain ?? 'lan', 'domain').toLowerCase();
  if (!HOST.test(domain)) throw bad('domain', `'${domain}' is not a domain name`);
  const nics = arr(o.nics, 'nics').map((n, i) => nic(n, `nics[${i}]`));
  const names = new Set<string>();
  for (const [i, n] of nics.entries()) {
    if (names.has(n.name)) throw bad(`nics[${i}].name`, `'${n.name}' is used twice`);
    names.add(n.name);
  }
  const pub = nics.filter((n) => n.config);
  if (pub.length !== 1) throw bad('nics', `needs exactly one public nic (with config.gateway), has ${pub.length}`);
  for (let i = 0; i < nics.length; i++)
    for (let j = 0; j < i; j++) {
      const a = parseCidr(nics[i].cidr);
      const b = parseCidr(nics[j].cidr);
      const p = Math.min(a.prefix, b.prefix);
      if (((a.ip & mask(p)) >>> 0) === ((b.ip & mask(p)) >>> 0)) throw bad(`nics[${i}].cidr`, `${nics[i].cidr} overlaps ${nics[j].name}'s ${nics[j].cidr}`);
    }
  const portforwards = arr(o.portforwards, 'portforwards').map((f, i) => forward(f, `portforwards[${i}]`, nics));
  const seen = new Set<string>();
  for (const [i, f] of portforwards.entries())
    for (const p of f.protocols) {
      const k = `${p} ${f.srcip}:${f.srcport}`;
      if (seen.has(k)) throw new G8osError('conflict', `gateway portforwards[${i}]: ${k} is forwarded twice`);
      seen.add(k);
    }
  const httpproxies = arr(o.httpproxies, 'httpproxies').map((p, i) => proxy(p, `httpproxies[${i}]`));
  const hosts = new Set<string>();
  for (const [i, p] of httpproxies.entries()) {
    if (hosts.has(p.host)) throw new G8osError('conflict', `gateway httpproxies[${i}]: host ${p.host} is proxied twice`);
    hosts.add(p.host);
  }
  const out: GwConfig = { name, domain, nics, portforwards, httpproxies };
  if (o.advanced !== undefined && o.advanced !== null) {
    const a = obj(o.advanced, 'advanced');
    if (a.firewall !== undefined && a.firewall !== null) out.advanced = { firewall: text(a.firewall, 'advanced.firewall') };
  }
  return out;
}

export const publicNic = (c: GwConfig): Nic => c.nics.find((n) => n.config)!;
export const addressOf = (n: Nic): string => n.cidr.split('/')[0];
