// Import a raw/qcow2 image into a vdisk and export a vdisk to a file: qemu-img convert against
// a private NBD server on a temporary unix socket.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { G8osError } from '../errors';
import { NbdServer } from '../nbd/server';
import { createVdisk, deleteVdisk, mustMeta } from './catalog';
import type { Cluster } from './cluster';
import { ClusterExports } from './exports';
import type { VdiskMeta, VdiskType } from './types';

const run = promisify(execFile);

async function qemuImg(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('qemu-img', args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new G8osError('unavailable', 'qemu-img not found (Debian package qemu-utils)');
    throw new G8osError('invalid', `qemu-img ${args[0]}: ${(err.stderr ?? err.message).trim().split('\n').pop()}`, { cause: e });
  }
}

export async function imageInfo(file: string): Promise<{ format: string; size: number }> {
  if (!fs.existsSync(file)) throw new G8osError('not_found', `image ${file} does not exist`);
  const info = JSON.parse(await qemuImg(['info', '--output=json', file])) as { format: string; 'virtual-size': number };
  return { format: info.format, size: info['virtual-size'] };
}

/** Serves one vdisk of the cluster on a temporary socket while fn runs. */
async function withServer<T>(cluster: Cluster, id: string, fn: (uri: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-vdisk-'));
  const sock = path.join(dir, 'nbd.sock');
  const exports = new ClusterExports(cluster, { ids: [id] });
  await exports.refresh();
  const server = new NbdServer({ exports });
  try {
    await server.listen(sock);
    return await fn(`nbd+unix:///${id}?socket=${sock}`);
  } finally {
    await server.close();
    await exports.closeAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface ImportOptions {
  type: VdiskType;
  blockSize?: number;
  format?: string;
  readOnly?: boolean;
}

/** Creates vdisk `id` sized to the image and copies the image in; on failure nothing is left. */
export async function importImage(cluster: Cluster, file: string, id: string, o: ImportOptions): Promise<VdiskMeta> {
  const info = await imageInfo(file);
  const format = o.format ?? info.format;
  const bs = o.blockSize ?? 4096;
  const size = Math.ceil(info.size / bs) * bs;
  await createVdisk(cluster, id, { type: o.type, size, blockSize: bs });
  try {
    await withServer(cluster, id, (uri) => qemuImg(['convert', '-n', '-f', format, '-O', 'raw', file, uri]));
    if (o.readOnly) {
      const m = await mustMeta(cluster, id);
      m.readOnly = true;
      await cluster.meta.hset('vdisks', id, Buffer.from(JSON.stringify(m)));
      await cluster.flush();
    }
  } catch (e) {
    await deleteVdisk(cluster, id).catch(() => undefined);
    throw e;
  }
  return mustMeta(cluster, id);
}

/** Writes vdisk `id` to a new file (raw or qcow2); the file appears only when complete. */
export async function exportImage(cluster: Cluster, id: string, file: string, format = 'raw'): Promise<void> {
  await mustMeta(cluster, id);
  if (fs.existsSync(file)) throw new G8osError('conflict', `${file} exists already`);
  const tmp = `${file}.${process.pid}.part`;
  try {
    await withServer(cluster, id, (uri) => qemuImg(['convert', '-f', 'raw', '-O', format, uri, tmp]));
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
