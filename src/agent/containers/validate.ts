// corex.create's argument check: everything that can be refused is refused here, before any
// resource is taken, each with a one-line 400 naming the argument.
import fs from 'node:fs';
import path from 'node:path';
import { CommandError } from '../types';
import type { CreateArgs, Plan } from './container';
import * as net from './net';

export const bad = (message: string): never => {
  throw new CommandError('invalid', message);
};
const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

/** `bridge`: the default nic's bridge (no other nic may name it); `storage`: the default block store. */
export function validate(a: CreateArgs, o: { bridge: string; storage?: string }): Plan {
  if (typeof a.root !== 'string' || !a.root) bad("argument 'root' is missing (string)");
  const binds: Plan['binds'] = [];
  for (const [src, dst] of Object.entries(a.mount ?? {})) {
    if (typeof dst !== 'string' || !dst.startsWith('/')) bad(`mount target '${dst}' is not an absolute path`);
    if (dst.includes(':') || path.normalize(dst) === '/') bad(`mount target '${dst}' is not allowed`);
    if (isUrl(src)) binds.push({ flist: src, dst });
    else {
      if (!src.startsWith('/')) bad(`mount source '${src}' is neither an absolute host path nor an flist URL`);
      if (src.includes(':')) bad(`mount source '${src}' may not contain ':'`);
      if (!fs.existsSync(src)) bad(`host path '${src}' does not exist`);
      binds.push({ host: src, dst });
    }
  }
  const hostNetwork = a.host_network === true;
  const nics = hostNetwork ? [] : (a.nics ?? []);
  let defaults = 0;
  const seen = new Set<string>();
  for (const n of nics) {
    if (n.type === 'default') defaults++;
    else if (n.type === 'bridge') {
      if (!n.id) bad("nic of type bridge needs 'id' (the bridge name)");
      if (n.id === o.bridge) bad(`nic of type bridge may not name the default bridge '${o.bridge}'`);
      if (seen.has(n.id!)) bad(`bridge '${n.id}' is used by more than one nic`);
      seen.add(n.id!);
      if (n.config?.cidr) {
        try {
          net.parseCidr(n.config.cidr);
        } catch (e) {
          bad(`nic ${n.id}: ${(e as Error).message}`);
        }
      }
    } else if (['zerotier', 'vlan', 'vxlan'].includes(n.type)) bad(`nic type ${n.type} is not supported`);
    else bad(`unknown nic type '${n.type}'`);
    if (n.hwaddr && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(n.hwaddr)) bad(`nic hwaddr '${n.hwaddr}' is not a MAC address`);
  }
  if (defaults > 1) bad('only one nic of type default is allowed');
  const ports: [number, number][] = [];
  const port = (v: unknown, what: string): number => {
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) bad(`${what} port '${String(v)}' is not within 0-65535`);
    return n as number;
  };
  for (const [h, g] of Object.entries(a.port ?? {})) ports.push([port(h, 'host'), port(g, 'guest')]);
  if (ports.length && !defaults) bad('port forwards need a nic of type default');
  const hostname = a.hostname || 'corex';
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(hostname)) bad(`hostname '${hostname}' is not valid`);
  const limits = a.cgroups ?? {};
  for (const [k, v] of Object.entries(limits)) {
    if (!['memory', 'cpu', 'cpus', 'pids'].includes(k)) bad(`unknown cgroups limit '${k}' (memory, cpu, cpus, pids)`);
    if (typeof v !== 'number' || !(v > 0) || (k !== 'cpus' && !Number.isInteger(v))) bad(`cgroups.${k} must be a positive number`);
  }
  const tags = a.tags == null ? [] : Array.isArray(a.tags) ? a.tags : [a.tags];
  return {
    args: {
      root: a.root, mount: a.mount ?? null, host_network: hostNetwork, nics: a.nics ?? [], port: a.port ? Object.fromEntries(ports.map(([h, g]) => [String(h), g])) : null,
      privileged: a.privileged === true, hostname: a.hostname ?? null, storage: a.storage ?? null, tags: a.tags ?? null,
      ...(a.cgroups ? { cgroups: a.cgroups } : {}),
    },
    tags, binds, nics, ports, hostname, limits, hostNetwork,
    storage: a.storage ?? o.storage,
    privileged: a.privileged === true,
  };
}
