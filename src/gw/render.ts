// Renderers: a validated GwConfig as the gateway's nftables table and dnsmasq files. Pure text,
// so they are tested without a kernel and applied as a whole (nft -f of the table is one
// transaction; dnsmasq re-reads its hosts files on SIGHUP).
import { parseCidr } from '../agent/containers/net';
import { addressOf, type GwConfig, networkText, publicNic } from './model';

export const TABLE = 'gw';
export const METADATA_IP = '169.254.169.254';

const set = (xs: string[]): string => (xs.length === 1 ? xs[0] : `{ ${xs.join(', ')} }`);
const q = (s: string): string => `"${s}"`;

/** The whole `inet gw` table: the file first makes sure the table exists so the delete can't fail. */
export function renderNft(c: GwConfig): string {
  const head = `table inet ${TABLE}\ndelete table inet ${TABLE}\n`;
  if (c.advanced?.firewall) return `${head}table inet ${TABLE} {\n${c.advanced.firewall}\n}\n`;
  const pub = publicNic(c);
  const priv = c.nics.filter((n) => n !== pub);
  const pubIp = addressOf(pub);
  const privIf = set(priv.map((n) => q(n.name)));
  const privNets = set(priv.map((n) => networkText(n.cidr)));
  const L: string[] = [];
  L.push('  chain input {', '    type filter hook input priority 0; policy drop;');
  L.push('    ct state established,related accept', '    ct state invalid drop', '    iifname "lo" accept', '    ip protocol icmp accept');
  if (priv.length) {
    L.push(`    iifname ${privIf} udp dport { 53, 67 } accept`, `    iifname ${privIf} tcp dport 53 accept`);
    L.push(`    iifname ${privIf} ip daddr ${METADATA_IP} tcp dport 80 accept`);
  }
  // the reverse proxy listens on the public address, reachable from every side
  if (c.httpproxies.length) L.push(`    ip daddr ${pubIp} tcp dport 80 accept`);
  L.push('  }');
  L.push('  chain forward {', '    type filter hook forward priority 0; policy drop;');
  L.push('    ct state established,related accept', '    ct status dnat accept');
  if (priv.length) L.push(`    iifname ${privIf} oifname ${set([q(pub.name), ...priv.map((n) => q(n.name))])} accept`);
  L.push('  }');
  L.push('  chain prerouting {', '    type nat hook prerouting priority -100;');
  for (const f of c.portforwards)
    for (const p of f.protocols) L.push(`    ip daddr ${f.srcip} ${p} dport ${f.srcport} dnat ip to ${f.dstip}:${f.dstport}`);
  L.push('  }');
  L.push('  chain output {', '    type nat hook output priority -100;');
  // forwards also work from the gateway itself (its health checks, a shell inside it)
  for (const f of c.portforwards)
    for (const p of f.protocols) L.push(`    ip daddr ${f.srcip} ${p} dport ${f.srcport} dnat ip to ${f.dstip}:${f.dstport}`);
  L.push('  }');
  L.push('  chain postrouting {', '    type nat hook postrouting priority 100;');
  if (priv.length) {
    L.push(`    oifname ${q(pub.name)} ip saddr ${privNets} snat ip to ${pubIp}`);
    // a forward used from a private network back to a private backend: answer through the gateway
    for (const n of priv) L.push(`    ct status dnat oifname ${q(n.name)} ip saddr ${networkText(n.cidr)} snat ip to ${addressOf(n)}`);
  }
  L.push('  }');
  return `${head}table inet ${TABLE} {\n${L.join('\n')}\n}\n`;
}

export interface DnsmasqFiles {
  /** the main configuration: fixed for as long as the nics are */
  conf: string;
  /** dhcp-hostsfile: `mac,ip,hostname,infinite` (re-read on SIGHUP) */
  hosts: string;
  /** addn-hosts: names of the static hosts for DNS (re-read on SIGHUP) */
  names: string;
}

export function renderDnsmasq(c: GwConfig, files: { hosts: string; names: string; leases: string; pid: string }): DnsmasqFiles {
  const pub = publicNic(c);
  const priv = c.nics.filter((n) => n !== pub);
  const L = [
    'keep-in-foreground', 'user=root', 'log-facility=-', 'bind-interfaces', 'except-interface=lo', 'dhcp-authoritative',
    `domain=${c.domain}`, `local=/${c.domain}/`, 'expand-hosts', 'no-hosts', 'no-resolv',
    `dhcp-hostsfile=${files.hosts}`, `addn-hosts=${files.names}`, `dhcp-leasefile=${files.leases}`, `pid-file=${files.pid}`,
  ];
  const servers = new Set<string>();
  for (const n of priv) {
    L.push(`interface=${n.name}`);
    if (!n.dhcpserver) continue;
    const cidr = parseCidr(n.cidr);
    // `static`: no address pool, only the hosts file's MACs get an answer
    L.push(`dhcp-range=set:${n.name},${networkText(n.cidr).split('/')[0]},static,${maskText(cidr.prefix)},infinite`);
    L.push(`dhcp-option=tag:${n.name},option:router,${addressOf(n)}`, `dhcp-option=tag:${n.name},option:dns-server,${addressOf(n)}`);
    for (const s of n.dhcpserver.nameservers ?? []) servers.add(s);
  }
  for (const s of servers) L.push(`server=${s}`);
  const hosts: string[] = [];
  const names: string[] = [];
  for (const n of priv)
    for (const h of n.dhcpserver?.hosts ?? []) {
      hosts.push(`${h.macaddress},${h.ipaddress},${h.hostname},infinite`);
      names.push(`${h.ipaddress} ${h.hostname}.${c.domain} ${h.hostname}`);
    }
  return { conf: `${L.join('\n')}\n`, hosts: hosts.map((l) => `${l}\n`).join(''), names: names.map((l) => `${l}\n`).join('') };
}

const maskText = (p: number): string => {
  const m = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return [24, 16, 8, 0].map((s) => (m >>> s) & 255).join('.');
};
