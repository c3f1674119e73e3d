// gw.* : the node's gateways (disks-vms.md §5). One command per pool endpoint, same arguments as
// its path parameters + body, so the pool's `/nodes/{id}/gws…` routes forward 1:1:
//   POST   /gws                               gw.create {name, domain, nics, portforwards, httpproxies}
//   GET    /gws                               gw.list
//   GET/PUT/DELETE /gws/{name}                gw.get / gw.update {name, config} / gw.delete
//   POST   /gws/{name}/start|stop             gw.start / gw.stop
//   GET/POST /gws/{name}/firewall/forwards    gw.forward.list / gw.forward.add {name, forward}
//   DELETE …/firewall/forwards/{srcip}:{srcport}  gw.forward.delete {name, srcip, srcport}
//   GET/POST /gws/{name}/dhcp/{interface}/hosts   gw.dhcp.list / gw.dhcp.add {name, interface, host}
//   DELETE …/dhcp/{interface}/hosts/{mac}     gw.dhcp.delete {name, interface, macaddress}
//   GET/POST /gws/{name}/httpproxies          gw.proxy.list / gw.proxy.add {name, proxy}
//   GET/DELETE …/httpproxies/{host}           gw.proxy.get / gw.proxy.delete {name, host}
//   GET/POST /gws/{name}/advanced/firewall    gw.advanced.firewall.get / .set {name, firewall|null}
import { kindOf, oneLine } from '../../errors';
import type { Gateways } from '../../gw/gateway';
import type { DhcpHost, GwConfig, Nic } from '../../gw/model';
import { any, args, int, opt, str } from '../args';
import { CommandError, type Handler } from '../types';
import { withStderr } from './disk';

const nameArgs = args({ name: str });
const updateArgs = args({ name: str, config: any });
const forwardArgs = args({ name: str, forward: any });
const forwardDel = args({ name: str, srcip: str, srcport: int });
const dhcpArgs = args({ name: str, interface: str });
const dhcpAdd = args({ name: str, interface: str, host: any });
const dhcpDel = args({ name: str, interface: str, macaddress: str });
const proxyAdd = args({ name: str, proxy: any });
const proxyArgs = args({ name: str, host: str });
const fwSet = args({ name: str, firewall: opt(str) });

const missing = (what: string): CommandError => new CommandError('not_found', what);

function nicOf(c: GwConfig, iface: string): Nic {
  const n = c.nics.find((x) => x.name === iface);
  if (!n) throw missing(`gateway ${c.name}: no nic '${iface}'`);
  return n;
}

export function gwHandlers(g: Gateways): Record<string, Handler> {
  const h: Record<string, Handler> = {
    'gw.create': (raw) => g.create(raw),
    'gw.list': () => g.list(),
    'gw.get': (raw) => g.get(nameArgs(raw).name as string),
    'gw.update': (raw) => {
      const a = updateArgs(raw);
      return g.update(a.name as string, a.config);
    },
    'gw.delete': async (raw) => {
      await g.delete(nameArgs(raw).name as string);
      return null;
    },
    'gw.start': async (raw) => {
      await g.start(nameArgs(raw).name as string);
      return null;
    },
    'gw.stop': async (raw) => {
      await g.stop(nameArgs(raw).name as string);
      return null;
    },
    'gw.forward.list': async (raw) => (await g.get(nameArgs(raw).name as string)).config.portforwards,
    'gw.forward.add': async (raw) => {
      const a = forwardArgs(raw);
      return (await g.change(a.name as string, (c) => c.portforwards.push(a.forward as GwConfig['portforwards'][0]))).portforwards;
    },
    'gw.forward.delete': async (raw) => {
      const a = forwardDel(raw);
      await g.change(a.name as string, (c) => {
        // a nic name is accepted as srcip, as in add
        const ip = c.nics.find((n) => n.name === a.srcip)?.cidr.split('/')[0] ?? a.srcip;
        const left = c.portforwards.filter((f) => !(f.srcip === ip && f.srcport === a.srcport));
        if (left.length === c.portforwards.length) throw missing(`gateway ${c.name}: no forward from ${a.srcip}:${a.srcport}`);
        c.portforwards = left;
      });
      return null;
    },
    'gw.dhcp.list': async (raw) => {
      const a = dhcpArgs(raw);
      return nicOf((await g.get(a.name as string)).config, a.interface as string).dhcpserver?.hosts ?? [];
    },
    'gw.dhcp.add': async (raw) => {
      const a = dhcpAdd(raw);
      const c = await g.change(a.name as string, (c) => {
        const n = nicOf(c, a.interface as string);
        n.dhcpserver ??= { hosts: [] };
        n.dhcpserver.hosts.push(a.host as DhcpHost);
      });
      return nicOf(c, a.interface as string).dhcpserver!.hosts;
    },
    'gw.dhcp.delete': async (raw) => {
      const a = dhcpDel(raw);
      await g.change(a.name as string, (c) => {
        const n = nicOf(c, a.interface as string);
        const mac = (a.macaddress as string).toLowerCase();
        const hosts = n.dhcpserver?.hosts ?? [];
        if (!hosts.some((x) => x.macaddress === mac)) throw missing(`gateway ${c.name}: no DHCP host ${mac} on ${n.name}`);
        n.dhcpserver!.hosts = hosts.filter((x) => x.macaddress !== mac);
      });
      return null;
    },
    'gw.proxy.list': async (raw) => (await g.get(nameArgs(raw).name as string)).config.httpproxies,
    'gw.proxy.add': async (raw) => {
      const a = proxyAdd(raw);
      return (await g.change(a.name as string, (c) => c.httpproxies.push(a.proxy as GwConfig['httpproxies'][0]))).httpproxies;
    },
    'gw.proxy.get': async (raw) => {
      const a = proxyArgs(raw);
      const p = (await g.get(a.name as string)).config.httpproxies.find((x) => x.host === (a.host as string).toLowerCase());
      if (!p) throw missing(`gateway ${a.name}: no http proxy for '${a.host}'`);
      return p;
    },
    'gw.proxy.delete': async (raw) => {
      const a = proxyArgs(raw);
      await g.change(a.name as string, (c) => {
        const left = c.httpproxies.filter((x) => x.host !== (a.host as string).toLowerCase());
        if (left.length === c.httpproxies.length) throw missing(`gateway ${c.name}: no http proxy for '${a.host}'`);
        c.httpproxies = left;
      });
      return null;
    },
    'gw.advanced.firewall.get': async (raw) => (await g.get(nameArgs(raw).name as string)).config.advanced?.firewall ?? null,
    'gw.advanced.firewall.set': async (raw) => {
      const a = fwSet(raw);
      await g.change(a.name as string, (c) => {
        if (a.firewall) c.advanced = { firewall: a.firewall as string };
        else delete c.advanced;
      });
      return null;
    },
  };
  // one vocabulary: whatever the gateway layer throws leaves as a CommandError of the same kind
  const wrap = (f: Handler): Handler => async (raw, ctx) => {
    try {
      return await f(raw, ctx);
    } catch (e) {
      throw e instanceof CommandError ? e : new CommandError(kindOf(e), oneLine(e));
    }
  };
  return Object.fromEntries(Object.entries(h).map(([k, f]) => [k, withStderr(wrap(f))]));
}
