// kvm.* (core0-protocol.md §9.9, disks-vms.md §1): virtual machines on qemu over QMP (src/vm).
import net from 'node:net';
import { any, args, type Check, int, list, map, num, opt, str } from '../args';
import type { Media } from '../../vm/media';
import type { Nic } from '../../vm/net';
import type { Vms } from '../../vm';
import { CommandError, type Handler } from '../types';

const obj = (fields: Record<string, Check>): Check => {
  const c = args(fields);
  return (v, at) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CommandError('invalid', `argument '${at}': expected object`);
    try {
      return { ...(v as object), ...c(v) };
    } catch (e) {
      throw new CommandError('invalid', (e as Error).message.replace(/argument '/, `argument '${at}.`));
    }
  };
};
const media = obj({ url: str, type: opt(str), iotune: opt(any) });
const nic = obj({ type: str, id: opt(str), hwaddr: opt(str) });
const dflt = <T>(c: Check, d: T): Check => (v, at) => (v === null || v === undefined ? d : c(v, at));

const createShape = {
  name: str, media: dflt(list(media), []), cpu: dflt(int, 2), memory: dflt(int, 512),
  nics: dflt(list(nic), []), port: opt(map(int)), flist: opt(str),
};
const createArgs = args(createShape);
const targetArgs = args({ ...createShape, uri: opt(str) });
const uuidArgs = args({ uuid: str });
const diskArgs = args({ uuid: str, media });
const nicArgs = args({ uuid: str, type: str, id: opt(str), hwaddr: opt(str) });
const migrateArgs = args({ uuid: str, desturi: str });

const TUNE = ['totalbytessec', 'readbytessec', 'writebytessec', 'totaliopssec', 'readiopssec', 'writeiopssec'];
const QMP_TUNE: Record<string, string> = {
  totalbytessec: 'bps', readbytessec: 'bps_rd', writebytessec: 'bps_wr', totaliopssec: 'iops', readiopssec: 'iops_rd', writeiopssec: 'iops_wr',
};

/** The iotune fields of §1.2 (each with its …set bool) as block_set_io_throttle arguments. */
function iotune(raw: Record<string, unknown>): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  const set = (k: string): boolean => raw[`${k}set`] === true || (raw[`${k}set`] === undefined && raw[k] !== undefined && raw[k] !== null);
  for (const k of TUNE) {
    const q = QMP_TUNE[k];
    if (set(k)) out[q] = num(raw[k], k) as number;
    if (set(`${k}max`)) out[`${q}_max`] = num(raw[`${k}max`], `${k}max`) as number;
    if (set(`${k}maxlength`)) out[`${q}_max_length`] = num(raw[`${k}maxlength`], `${k}maxlength`) as number;
  }
  if (set('sizeiopssec')) out.iops_size = num(raw.sizeiopssec, 'sizeiopssec') as number;
  if (set('groupname')) out.group = str(raw.groupname, 'groupname') as string;
  return out;
}

async function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export function kvmHandlers(vms: Vms): Record<string, Handler> {
  const spec = (a: Record<string, unknown>) => ({
    name: a.name as string, media: a.media as Media[], cpu: a.cpu as number, memory: a.memory as number,
    nics: a.nics as Nic[], port: a.port as Record<string, number> | null, flist: a.flist as string | null,
  });
  const simple = (f: (uuid: string) => Promise<unknown>): Handler => async (raw) => {
    await f(uuidArgs(raw).uuid as string);
    return null;
  };
  return {
    'kvm.create': (raw) => vms.create(spec(createArgs(raw))),
    'kvm.destroy': simple((u) => vms.destroy(u)),
    'kvm.shutdown': simple((u) => vms.qmp(u, 'system_powerdown')),
    // graceful: the guest's init sees ctrl-alt-del and reboots itself
    'kvm.reboot': simple((u) => vms.qmp(u, 'send-key', { keys: ['ctrl', 'alt', 'delete'].map((k) => ({ type: 'qcode', data: k })) })),
    'kvm.reset': simple((u) => vms.qmp(u, 'system_reset')),
    'kvm.pause': simple((u) => vms.pause(u)),
    'kvm.resume': simple((u) => vms.resume(u)),
    'kvm.info': (raw) => vms.info(uuidArgs(raw).uuid),
    'kvm.infops': async (raw) => {
      const { uuid } = uuidArgs(raw);
      return { ...(await vms.info(uuid)), Throttle: await vms.throttles(uuid), ...vms.details(uuid) };
    },
    'kvm.get': (raw) => vms.details(uuidArgs(raw).uuid),
    'kvm.console': (raw) => vms.console(uuidArgs(raw).uuid),
    'kvm.list': () => vms.list(),
    'kvm.attach_disk': async (raw) => {
      const a = diskArgs(raw);
      await vms.attachDisk(a.uuid, a.media as Media);
      return null;
    },
    'kvm.detach_disk': async (raw) => {
      const a = diskArgs(raw);
      await vms.detachDisk(a.uuid, a.media as Media);
      return null;
    },
    'kvm.add_nic': async (raw) => {
      const a = nicArgs(raw);
      await vms.addNic(a.uuid, { type: a.type, id: a.id, hwaddr: a.hwaddr });
      return null;
    },
    'kvm.remove_nic': async (raw) => {
      const a = nicArgs(raw);
      await vms.removeNic(a.uuid, { type: a.type, id: a.id, hwaddr: a.hwaddr });
      return null;
    },
    'kvm.limit_disk_io': async (raw) => {
      const a = diskArgs(raw);
      const m = a.media as Media;
      await vms.limitDiskIo(a.uuid, m.url, iotune({ ...(m.iotune as Record<string, unknown> ?? {}), ...(raw as Record<string, unknown>) }) as Record<string, number>);
      return null;
    },
    'kvm.migrate': async (raw) => {
      const a = migrateArgs(raw);
      await vms.migrate(a.uuid, a.desturi);
      return null;
    },
    /** Starts a VM waiting for incoming state; → {uuid, uri} for the source's kvm.migrate. */
    'kvm.prepare_migration_target': async (raw) => {
      const a = targetArgs(raw);
      const uri = (a.uri as string | null) ?? `tcp:127.0.0.1:${await freeTcpPort()}`;
      if (!/^(tcp:|unix:)/.test(uri)) throw new CommandError('invalid', `argument 'uri': expected tcp:<host>:<port> or unix:<path>`);
      const uuid = await vms.create({ ...spec(a), incoming: uri });
      return { uuid, uri };
    },
  };
}
