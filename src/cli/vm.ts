// `g8os vm create|ls|info|console|stop|rm`: the agent's kvm.* commands from the shell.
import { Command } from 'commander';
import type { Client } from '../agent/client';
import { printJson, UsageError } from './util';

const DEFAULT_AGENT = 'redis://127.0.0.1:6379';

interface Flags {
  agent?: string;
  password?: string;
}

const withAgent = (c: Command): Command =>
  c.option('--agent <url>', `the node: redis://host:port or a unix socket path (default: $G8OS_AGENT or ${DEFAULT_AGENT})`)
    .option('--password <p>', 'the agent password (default: $G8OS_AGENT_PASSWORD)');

async function withClient<T>(o: Flags, f: (c: Client) => Promise<T>): Promise<T> {
  const { Client, ResultError } = await import('../agent/client');
  const c = await new Client(o.agent ?? process.env.G8OS_AGENT ?? DEFAULT_AGENT, o.password ?? process.env.G8OS_AGENT_PASSWORD).open();
  try {
    return await f(c);
  } catch (e) {
    // the agent's one-line reason, without the job envelope
    if (e instanceof ResultError) throw new Error(ResultError.text(e.result));
    throw e;
  } finally {
    c.close();
  }
}

/** A VM by uuid or by name. */
async function resolve(c: Client, ref: string): Promise<string> {
  const vms = await c.json<{ uuid: string; name: string }[]>('kvm.list', {});
  const vm = vms.find((v) => v.uuid === ref) ?? vms.find((v) => v.name === ref);
  if (!vm) throw new Error(`no vm named or with uuid '${ref}'`);
  return vm.uuid;
}

const num = (s: string, what: string): number => {
  if (!/^\d+$/.test(s)) throw new UsageError(`${what} ${JSON.stringify(s)}: expected a number`);
  return Number(s);
};

export function vmCommand(): Command {
  const vm = new Command('vm').description('virtual machines on a node (kvm.*)');
  withAgent(vm.command('create <name>').description('start a VM from an flist (kernel, initrd, cmdline) and/or disks; prints its uuid'))
    .option('--flist <file|url>', 'boot from this flist')
    .option('--disk <url...>', 'disk: a file, nbd://host:port/export, nbd+unix:///export?socket=path', [])
    .option('--cdrom <file...>', 'an ISO on IDE', [])
    .option('--cpu <n>', 'vCPUs', '2')
    .option('--memory <MiB>', 'memory', '512')
    .option('--nic <type[:id]...>', 'default, or bridge:<name>', [])
    .option('--port <host:guest...>', 'forward a host port to the guest (default nic)', [])
    .action(async (name: string, o: Flags & { flist?: string; disk: string[]; cdrom: string[]; cpu: string; memory: string; nic: string[]; port: string[] }) => {
      const port: Record<string, number> = {};
      for (const p of o.port) {
        const m = /^(\d+):(\d+)$/.exec(p);
        if (!m) throw new UsageError(`--port ${JSON.stringify(p)}: expected host:guest`);
        port[m[1]] = Number(m[2]);
      }
      const nics = o.nic.map((n) => {
        const [type, id] = n.split(':');
        return id ? { type, id } : { type };
      });
      const media = [...o.disk.map((url) => ({ url })), ...o.cdrom.map((url) => ({ url, type: 'cdrom' }))];
      const args = { name, flist: o.flist ?? null, media, cpu: num(o.cpu, '--cpu'), memory: num(o.memory, '--memory'), nics, port };
      process.stdout.write(`${await withClient(o, (c) => c.json<string>('kvm.create', args, 300))}\n`);
    });
  withAgent(vm.command('ls').description('list VMs: id, uuid, name, state, vnc port'))
    .option('--json', 'print JSON')
    .action(async (o: Flags & { json?: boolean }) => {
      const vms = await withClient(o, (c) => c.json<{ id: number; uuid: string; name: string; state: string; vnc: number }[]>('kvm.list', {}));
      if (o.json) return printJson(vms);
      for (const v of vms) process.stdout.write(`${v.id}\t${v.uuid}\t${v.name}\t${v.state}\t${v.vnc}\n`);
    });
  withAgent(vm.command('info <vm>').description('a VM in detail (name or uuid): state, pid, nics, media, counters'))
    .action(async (ref: string, o: Flags) => printJson(await withClient(o, async (c) => c.json('kvm.infops', { uuid: await resolve(c, ref) }))));
  withAgent(vm.command('console <vm>').description('print the serial console so far'))
    .action(async (ref: string, o: Flags) => {
      process.stdout.write(await withClient(o, async (c) => c.json<string>('kvm.console', { uuid: await resolve(c, ref) })));
    });
  withAgent(vm.command('stop <vm>').description('ask the guest to power off (ACPI power button)'))
    .action(async (ref: string, o: Flags) => withClient(o, async (c) => c.json('kvm.shutdown', { uuid: await resolve(c, ref) })));
  withAgent(vm.command('rm <vm>').description('stop the VM at once and remove it'))
    .action(async (ref: string, o: Flags) => withClient(o, async (c) => c.json('kvm.destroy', { uuid: await resolve(c, ref) })));
  return vm;
}
