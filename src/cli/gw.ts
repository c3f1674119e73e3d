// `g8os gw …`: a node's gateways through its agent (the gw.* commands). Results print as JSON;
// a refusal prints the agent's one line and exits with its kind's code.
import fs from 'node:fs';
import { Command } from 'commander';
import type { Result } from '../agent/types';
import { exitStatus } from '../agent/types';
import { UsageError } from './util';

const DEFAULT_AGENT = 'redis://127.0.0.1:6379';

interface Flags {
  agent?: string;
  password?: string;
}

async function call(o: Flags, cmd: string, args: unknown): Promise<number> {
  const { Client, ResultError } = await import('../agent/client');
  const c = await new Client(o.agent ?? process.env.G8OS_AGENT ?? DEFAULT_AGENT, o.password ?? process.env.G8OS_AGENT_PASSWORD).open();
  try {
    const r: Result = await (await c.raw(cmd, args)).get(120);
    if (r.state === 'SUCCESS') {
      const v = r.data ? JSON.parse(r.data) : null;
      if (v !== null) process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
      return 0;
    }
    process.stderr.write(`g8os: ${ResultError.text(r)}\n`);
    return exitStatus(r);
  } finally {
    await c.close();
  }
}

function json(file: string): unknown {
  let t: string;
  try {
    t = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new UsageError(`${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(t);
  } catch (e) {
    throw new UsageError(`${file}: not JSON (${(e as Error).message})`);
  }
}

function hostPort(s: string, what: string): [string, number] {
  const m = /^(.+):(\d+)$/.exec(s);
  if (!m) throw new UsageError(`${what} ${JSON.stringify(s)}: expected <ip|nic>:<port>`);
  return [m[1], Number(m[2])];
}

/** a verb: its action gets the positional arguments and the agent flags */
function verb(name: string, desc: string, run: (a: string[], o: Flags & Record<string, string>) => [string, unknown]): Command {
  const c = new Command(name).description(desc).option('--agent <url>', `the node (default: $G8OS_AGENT or ${DEFAULT_AGENT})`).option('--password <p>', 'the agent password (default: $G8OS_AGENT_PASSWORD)');
  return c.action(async (...xs: unknown[]) => {
    const o = c.opts() as Flags & Record<string, string>;
    const [cmd, args] = run(xs.slice(0, -2).flat() as string[], o);
    process.exitCode = await call(o, cmd, args);
  });
}

export function gwCommand(): Command {
  const gw = new Command('gw').description('gateways of a node: DHCP, port forwards, HTTP proxy, cloud-init (disks-vms.md §5)');
  gw.addCommand(verb('create', 'create and start a gateway from a JSON configuration file (- for stdin)', ([f]) => ['gw.create', json(f)]).argument('<config.json>'));
  gw.addCommand(verb('ls', 'list the gateways', () => ['gw.list', {}]));
  gw.addCommand(verb('get', 'a gateway: configuration, state, proxy backends', ([n]) => ['gw.get', { name: n }]).argument('<name>'));
  gw.addCommand(verb('update', 'replace a gateway configuration (applied whole or not at all)', ([n, f]) => ['gw.update', { name: n, config: json(f) }]).argument('<name>').argument('<config.json>'));
  gw.addCommand(verb('rm', 'stop and delete a gateway', ([n]) => ['gw.delete', { name: n }]).argument('<name>'));
  gw.addCommand(verb('start', 'start a stored gateway', ([n]) => ['gw.start', { name: n }]).argument('<name>'));
  gw.addCommand(verb('stop', 'stop a gateway (configuration kept)', ([n]) => ['gw.stop', { name: n }]).argument('<name>'));
  const fwd = new Command('forward').description('port forwards');
  fwd.addCommand(verb('ls', 'list', ([n]) => ['gw.forward.list', { name: n }]).argument('<name>'));
  fwd.addCommand(
    verb('add', 'forward <src> (a gateway ip or nic, :port) to <dst> (ip:port)', ([n, s, d], o) => {
      const [srcip, srcport] = hostPort(s, 'source');
      const [dstip, dstport] = hostPort(d, 'destination');
      return ['gw.forward.add', { name: n, forward: { protocols: (o.proto ?? 'tcp').split(','), srcip, srcport, dstip, dstport } }];
    }).argument('<name>').argument('<src>').argument('<dst>').option('--proto <list>', 'tcp, udp or tcp,udp', 'tcp'),
  );
  fwd.addCommand(verb('rm', 'remove the forward of <src>', ([n, s]) => {
    const [srcip, srcport] = hostPort(s, 'source');
    return ['gw.forward.delete', { name: n, srcip, srcport }];
  }).argument('<name>').argument('<src>'));
  gw.addCommand(fwd);
  const dhcp = new Command('dhcp').description('static DHCP hosts of a private nic');
  dhcp.addCommand(verb('ls', 'list', ([n, i]) => ['gw.dhcp.list', { name: n, interface: i }]).argument('<name>').argument('<nic>'));
  dhcp.addCommand(
    verb('add', 'a static lease (and cloud-init data)', ([n, i, mac, ip, host], o) => {
      const cloudinit = o.userData || o.metaData ? { userdata: o.userData ? fs.readFileSync(o.userData, 'utf8') : undefined, metadata: o.metaData ? fs.readFileSync(o.metaData, 'utf8') : undefined } : undefined;
      return ['gw.dhcp.add', { name: n, interface: i, host: { macaddress: mac, ipaddress: ip, hostname: host, cloudinit } }];
    }).argument('<name>').argument('<nic>').argument('<mac>').argument('<ip>').argument('<hostname>').option('--user-data <file>', 'cloud-init user-data').option('--meta-data <file>', 'cloud-init meta-data'),
  );
  dhcp.addCommand(verb('rm', 'remove a static lease', ([n, i, mac]) => ['gw.dhcp.delete', { name: n, interface: i, macaddress: mac }]).argument('<name>').argument('<nic>').argument('<mac>'));
  gw.addCommand(dhcp);
  const px = new Command('proxy').description('HTTP reverse proxies by host name');
  px.addCommand(verb('ls', 'list', ([n]) => ['gw.proxy.list', { name: n }]).argument('<name>'));
  px.addCommand(verb('add', 'proxy <host> to backends http://ip:port …', ([n, h, ...d]) => ['gw.proxy.add', { name: n, proxy: { host: h, destinations: d } }]).argument('<name>').argument('<host>').argument('<backends...>'));
  px.addCommand(verb('rm', 'remove the proxy of <host>', ([n, h]) => ['gw.proxy.delete', { name: n, host: h }]).argument('<name>').argument('<host>'));
  gw.addCommand(px);
  gw.addCommand(verb('firewall', 'advanced mode: set a raw nftables table body from a file (none: back to the structured rules)', ([n, f]) => ['gw.advanced.firewall.set', { name: n, firewall: f === 'none' ? null : fs.readFileSync(f, 'utf8') }]).argument('<name>').argument('<file|none>'));
  return gw;
}
