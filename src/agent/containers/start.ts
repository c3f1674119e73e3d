// Bringing a container up (core0-protocol.md §10): check the flists and bridges (nothing taken
// yet), then cgroup, root and flist mounts (src/mountd), /etc files, PID 1 through dist/g8init, nics, port
// forwards — each recorded in the state file before it is taken.
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { kindOf, oneLine } from '../../errors';
import { type Lease, type MountService, mountOverlay } from '../../mountd';
import { CommandError } from '../types';
import { Cgroup } from './cgroup';
import type { Container, Nic, Plan } from './container';
import * as net from './net';
import { forward } from './ports';
import { bad } from './validate';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface StartDeps {
  g8init: string;
  mounts: MountService;
  instance: string;
  pidsMax: number;
  log: (line: string) => void;
  /** the default nic's bridge and its address (made on first use) */
  bridge: string;
  defaultBridge: () => Promise<net.Cidr>;
  /** a resource the container needs ended on its own: tear the container down */
  end: (c: Container) => void;
  spawnIn: (c: Container, file: string, args: string[], opts: SpawnOptions & { cwd?: string }, full?: boolean) => ChildProcess;
}

/** Starts `c` as planned; on a throw the caller releases what the state file names. */
export async function startContainer(c: Container, plan: Plan, d: StartDeps): Promise<void> {
  if (!fs.existsSync(d.g8init)) throw new Error(`${d.g8init} is missing (scripts/setup.sh builds it)`);
  fs.mkdirSync(c.dir, { recursive: true });
  c.save();

  // what can fail without touching anything: the bridges
  const bridgeOf = new Map<Nic, { bridge: string; address?: net.Cidr }>();
  for (const n of plan.nics) {
    if (n.type === 'default') bridgeOf.set(n, { bridge: d.bridge, address: await d.defaultBridge() });
    else {
      const address = await net.bridgeAddress(n.id!);
      if (address === undefined) bad(`bridge '${n.id}' does not exist`);
      bridgeOf.set(n, { bridge: n.id! });
    }
  }

  c.state.cgroup = `${d.instance}-c${c.id}`;
  c.save();
  c.cgroup = new Cgroup(c.state.cgroup, !plan.privileged);
  c.cgroup.create(plan.limits, d.pidsMax);

  // the root and every flist mount: a lease on the node's shared read-only lower of each flist
  // (mounted now if no container uses it), then the root's own overlay on top
  const lease = async (flist: string): Promise<Lease> => {
    const l = await d.mounts.acquire(flist, plan.storage).catch((e: unknown) => {
      throw new CommandError(kindOf(e), oneLine(e));
    });
    c.leases.push(l);
    return l;
  };
  // all settled before a failure is thrown: a lease still coming would escape the clean-up
  const got = await Promise.allSettled([lease(plan.args.root), ...plan.binds.filter((b) => b.flist).map((b) => lease(b.flist!))]);
  const failed = got.find((g) => g.status === 'rejected');
  if (failed) throw failed.reason;
  const [root, ...flists] = got.map((g) => (g as PromiseFulfilledResult<Lease>).value);
  c.env = { PATH: DEFAULT_PATH, HOME: '/', ...root.info.environ };
  c.entrypoint = root.info.entrypoint;
  await mountOverlay(root.path, c.dir, c.root);
  let next = 0;
  const binds = plan.binds.map((b) => (b.flist ? `${flists[next++].path}:${b.dst}:ro` : `${b.host}:${b.dst}`));

  const defaultNic = plan.nics.find((n) => n.type === 'default');
  const address = defaultNic ? net.containerAddress(bridgeOf.get(defaultNic)!.address!, c.id) : undefined;
  c.ip = address && net.ipText(address.ip);
  await writeEtc(c, plan, address && net.ipText(address.ip), defaultNic && net.ipText(bridgeOf.get(defaultNic)!.address!.ip));

  // PID 1
  const argv = ['run', '--root', c.root, '--hostname', plan.hostname];
  if (!plan.hostNetwork) argv.push('--net');
  for (const b of binds) argv.push('--bind', b);
  for (const p of c.cgroup.procs) argv.push('--cgroup-procs', p);
  const init = spawn(d.g8init, argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  c.init = init;
  if (init.pid) {
    c.state.g8init = init.pid;
    c.save();
  }
  c.pid1 = await new Promise<number>((resolve, reject) => {
    let out = '';
    let err = '';
    init.stderr!.on('data', (x: Buffer) => (err += x.toString()));
    init.stdout!.on('data', (x: Buffer) => {
      out += x.toString();
      const m = /^(pid (\d+)|error (.*))\n/m.exec(out);
      if (m?.[2]) resolve(Number(m[2]));
      else if (m?.[3]) reject(new CommandError('internal', `cannot start the container: ${m[3]}`));
    });
    init.once('error', (e) => reject(new Error(`cannot run ${d.g8init}: ${e.message}`)));
    init.once('exit', (code, sig) =>
      reject(new Error(`cannot start the container: g8init exited (${sig ?? `code ${code}`}) ${(err || out).trim()}`)),
    );
  });
  c.state.pid1 = c.pid1;
  c.save();
  init.once('exit', (code, sig) => {
    if (c.stopping) return;
    d.log(`container ${c.id}: its PID 1 exited (${sig ?? `code ${code}`})`);
    d.end(c);
  });

  // nics, then forwards to the default nic's address
  for (const [i, n] of plan.nics.entries()) {
    const setup: net.NicSetup = {
      host: `g8c${c.id}-${i}`, peer: `g8c${c.id}-${i}p`, index: i, bridge: bridgeOf.get(n)!.bridge, hwaddr: n.hwaddr ?? undefined,
    };
    if (n.type === 'default') {
      setup.cidr = net.cidrText(address!);
      setup.gateway = net.ipText(bridgeOf.get(n)!.address!.ip);
    } else if (!n.config?.dhcp) {
      setup.cidr = n.config?.cidr ?? undefined;
      setup.gateway = n.config?.gateway ?? undefined;
    }
    c.state.veths.push(setup.host);
    c.save();
    await net.createVeth(setup);
    await net.moveIntoContainer(setup, c.pid1);
    if (n.config?.dhcp) await dhcp(c, i, d);
  }
  for (const [h, g] of plan.ports) {
    c.state.forwards.push(h);
    c.save();
    c.forwards.push(await forward(h, net.ipText(address!.ip), g).catch((e: Error) => bad(e.message)));
  }
}

/** /etc/hostname, /etc/hosts and /etc/resolv.conf of the writable layer, written from the host. */
async function writeEtc(c: Container, plan: Plan, ip: string | undefined, nameserver: string | undefined): Promise<void> {
  const etc = path.join(c.root, 'etc');
  await fs.promises.mkdir(etc, { recursive: true });
  // never through a symlink of the flist, which would resolve on the host
  if ((await fs.promises.lstat(etc)).isSymbolicLink() || (await fs.promises.realpath(etc)) !== etc) {
    throw new Error('the flist /etc is a symlink; cannot write /etc/hosts');
  }
  const write = async (name: string, text: string): Promise<void> => {
    const f = path.join(etc, name);
    await fs.promises.rm(f, { force: true, recursive: true });
    await fs.promises.writeFile(f, text, { flag: 'wx' }); // O_EXCL: no symlink is followed
  };
  const h = plan.hostname;
  await write('hostname', `${h}\n`);
  await write('hosts', `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${ip ?? '127.0.1.1'}\t${h}\n`);
  let resolv: string | undefined;
  if (plan.hostNetwork) resolv = await fs.promises.readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  else {
    const servers = [...(nameserver ? [nameserver] : []), ...plan.nics.flatMap((n) => n.config?.dns ?? [])];
    if (servers.length) {
      const st = await fs.promises.lstat(path.join(etc, 'resolv.conf')).catch(() => undefined);
      const old = st?.isFile() ? await fs.promises.readFile(path.join(etc, 'resolv.conf'), 'utf8') : '';
      resolv = `${old}${old && !old.endsWith('\n') ? '\n' : ''}${servers.map((s) => `nameserver ${s}\n`).join('')}`;
    }
  }
  if (resolv !== undefined) await write('resolv.conf', resolv);
}

async function dhcp(c: Container, i: number, d: StartDeps): Promise<void> {
  const child = d.spawnIn(c, 'udhcpc', ['-q', '-n', '-i', `eth${i}`, '-s', '/usr/share/udhcp/simple.script'], { stdio: 'ignore' }, true);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`dhcp on eth${i} failed (udhcpc exit ${code})`);
}
