// bridge.* (core0-protocol.md §9.7): Linux bridges for container nics, optionally NATed, with an
// address (static) or an address and DHCP for the range start..end (dnsmasq).
import { args, bool, type Check, opt, str } from '../args';
import type { Containers } from '../containers';
import { CommandError, type Handler } from '../types';
import { withStderr } from './disk';

const network: Check = (v, at) => {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new CommandError('invalid', `argument '${at}': expected object`);
  const n = v as Record<string, unknown>;
  const mode = n.mode ?? null;
  if (mode !== null && mode !== 'static' && mode !== 'dnsmasq') throw new CommandError('invalid', `argument '${at}.mode': expected null, static or dnsmasq`);
  const nat = opt(bool)(n.nat, `${at}.nat`);
  const settings = (n.settings ?? {}) as Record<string, unknown>;
  if (typeof settings !== 'object' || Array.isArray(settings)) throw new CommandError('invalid', `argument '${at}.settings': expected object`);
  const cidr = opt(str)(settings.cidr, `${at}.settings.cidr`);
  const start = opt(str)(settings.start, `${at}.settings.start`);
  const end = opt(str)(settings.end, `${at}.settings.end`);
  return { mode, nat: nat === true, cidr, start, end };
};

const createArgs = args({ name: str, hwaddr: opt(str), network });
const nameArgs = args({ name: str });
// internal in the original (static leases for VMs on kvm0); this shape is ours
const hostArgs = args({ bridge: str, mac: str, ip: str });

export function bridgeHandlers(c: Containers): Record<string, Handler> {
  const h: Record<string, Handler> = {
    'bridge.create': async (raw) => {
      const a = createArgs(raw);
      const n = a.network as { mode: string | null; nat: boolean; cidr?: string | null; start?: string | null; end?: string | null } | null;
      if (n?.mode && !n.cidr) throw new CommandError('invalid', `argument 'network.settings.cidr' is missing (${n.mode} mode needs it)`);
      let dhcp: { start: string; end: string } | undefined;
      if (n?.mode === 'dnsmasq') {
        for (const k of ['start', 'end'] as const)
          if (!n[k]) throw new CommandError('invalid', `argument 'network.settings.${k}' is missing (dnsmasq mode needs it)`);
        dhcp = { start: n.start!, end: n.end! };
      }
      await c.createBridge({ name: a.name, hwaddr: a.hwaddr, cidr: n?.mode ? n.cidr : null, nat: n?.nat === true, dhcp });
      return null;
    },
    'bridge.list': () => c.listBridges(),
    'bridge.add_host': async (raw) => {
      const a = hostArgs(raw);
      await c.addHost(a.bridge, a.mac, a.ip);
      return null;
    },
    'bridge.delete': async (raw) => {
      await c.deleteBridge(nameArgs(raw).name);
      return null;
    },
  };
  return Object.fromEntries(Object.entries(h).map(([k, f]) => [k, withStderr(f)]));
}
