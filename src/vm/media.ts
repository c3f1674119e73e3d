// Media (disks-vms.md §1.2) → qemu -blockdev/-device arguments or their QMP equivalents.
// Local files: format from `qemu-img info`; files inside an flist: a qcow2 overlay in the VM's
// directory (the flist stays read-only); nbd:// and nbd+unix://; cdroms on IDE.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { invalid, notFound } from '../errors';

const run = promisify(execFile);

export interface Media {
  url: string;
  type?: 'disk' | 'cdrom';
  bus?: string;
  iotune?: Record<string, unknown>;
}

/** A medium resolved to a qemu block node and the device exposing it. */
export interface Drive {
  url: string;
  node: string;
  /** vda, vdb … (virtio) or hda … (IDE cdroms), as upstream's libvirt targets */
  target: string;
  cdrom: boolean;
  /** the -blockdev / blockdev-add object */
  blockdev: Record<string, unknown>;
  /** the -device / device_add object */
  device: Record<string, unknown>;
  /** an overlay this VM made (removed with it) */
  overlay?: string;
}

function nbdServer(url: string): Record<string, unknown> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw invalid(`media url '${url}': not a valid URL`);
  }
  const exp = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (u.protocol === 'nbd+unix:') {
    const socket = u.searchParams.get('socket');
    if (!socket) throw invalid(`media url '${url}': nbd+unix needs ?socket=<path>`);
    return { driver: 'nbd', server: { type: 'unix', path: socket }, export: exp };
  }
  return { driver: 'nbd', server: { type: 'inet', host: u.hostname, port: u.port || '10809' }, export: exp };
}

async function imageFormat(file: string): Promise<string> {
  try {
    const { stdout } = await run('qemu-img', ['info', '--output=json', '-U', file]);
    return (JSON.parse(stdout) as { format: string }).format;
  } catch (e) {
    throw invalid(`media '${file}': qemu-img info failed: ${String((e as { stderr?: string }).stderr ?? e).trim().split('\n')[0]}`);
  }
}

/**
 * Resolves a medium. `flistRoot` is the VM's mounted flist (relative urls name files in it),
 * `dir` the VM's directory for overlays, `n` the drive's index among disks or cdroms.
 */
export async function resolveMedia(m: Media, o: { id: string; n: number; flistRoot?: string; dir: string }): Promise<Drive> {
  if (!m || typeof m.url !== 'string' || !m.url) throw invalid("media: 'url' must be a non-empty string");
  const cdrom = m.type === 'cdrom';
  if (m.type !== undefined && m.type !== null && m.type !== 'disk' && m.type !== 'cdrom') throw invalid(`media '${m.url}': type must be disk or cdrom`);
  const node = `${cdrom ? 'cd' : 'disk'}${o.id}`;
  let proto: Record<string, unknown>;
  let overlay: string | undefined;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(m.url)?.[1]?.toLowerCase();
  if (scheme === 'nbd' || scheme === 'nbd+tcp' || scheme === 'nbd+unix') {
    proto = { driver: 'raw', file: nbdServer(m.url.replace(/^nbd\+tcp:/i, 'nbd:')) };
  } else if (scheme === 'file' || scheme === undefined) {
    let file = scheme === 'file' ? new URL(m.url).pathname : m.url;
    const inFlist = !path.isAbsolute(file);
    if (inFlist) {
      if (!o.flistRoot) throw invalid(`media '${m.url}': a relative path needs an flist to look in`);
      file = path.join(o.flistRoot, path.normalize(`/${file}`));
    }
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw notFound(`media '${m.url}': no such file`);
    const format = await imageFormat(file);
    if (inFlist && !cdrom) {
      // copy-on-write: writes land in the VM's overlay, the flist is never written
      overlay = path.join(o.dir, `${node}.qcow2`);
      try {
        await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', format, '-b', file, overlay]);
      } catch (e) {
        throw invalid(`media '${m.url}': overlay: ${String((e as { stderr?: string }).stderr ?? e).trim()}`);
      }
      proto = { driver: 'qcow2', file: { driver: 'file', filename: overlay } };
    } else {
      proto = { driver: format, file: { driver: 'file', filename: file, aio: 'threads' }, 'read-only': cdrom };
    }
  } else throw invalid(`media '${m.url}': unknown media url scheme '${scheme}' (file, nbd, nbd+tcp or nbd+unix)`);
  const blockdev = { 'node-name': node, ...proto, cache: { direct: false, 'no-flush': false } };
  const device = cdrom
    ? { driver: 'ide-cd', id: `dev-${node}`, drive: node, bus: `ide.${Math.floor(o.n / 2)}`, unit: o.n % 2 }
    : { driver: 'virtio-blk-pci', id: `dev-${node}`, drive: node };
  const target = `${cdrom ? 'hd' : 'vd'}${String.fromCharCode(97 + (o.n % 26))}`;
  return { url: m.url, node, target, cdrom, blockdev, device, overlay };
}

/** "driver=…,key=value" for -device from an object. */
export function deviceArg(d: Record<string, unknown>): string {
  const { driver, ...rest } = d;
  return [String(driver), ...Object.entries(rest).map(([k, v]) => `${k}=${String(v)}`)].join(',');
}

