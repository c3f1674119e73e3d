// The vdisk index of a cluster (the hash `vdisks` on its first server: id → JSON properties,
// so listing is one HGETALL, not a SCAN) and the verbs over it: create, copy, delete, open.
import { G8osError } from '../errors';
import { type BlockBackend, BlockVdisk } from './blockdisk';
import type { Cluster } from './cluster';
import { DedupBackend, hashesOf, lbaKey, recount } from './dedup';
import { hashReady } from './hash';
import { nondedupKey, NondedupBackend } from './nondedup';
import type { TemplateSource } from './template';
import { templateSource } from './template-open';
import { VDISK_TYPES, type Vdisk, type VdiskMeta, type VdiskType } from './types';

const INDEX = 'vdisks';
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkId(id: string): void {
  if (!ID_RE.test(id)) throw new G8osError('invalid', `vdisk id ${JSON.stringify(id)}: use letters, digits, . _ - (at most 128)`);
}

/** "10G", "512M", "4096" → bytes */
export function parseSize(s: string | number): number {
  if (typeof s === 'number') return s;
  const m = /^(\d+)\s*([kKmMgGtT]?)(i?[bB])?$/.exec(s.trim());
  if (!m) throw new G8osError('invalid', `size ${JSON.stringify(s)}: expected a number with an optional K/M/G/T suffix`);
  const mul = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Number(m[1]) * mul;
}

export interface CreateOptions {
  type: VdiskType;
  size: number;
  blockSize?: number;
  readOnly?: boolean;
  template?: { source: string; vdisk: string };
  timeoutMs?: number;
}

export function validate(meta: VdiskMeta): void {
  checkId(meta.id);
  if (!VDISK_TYPES.includes(meta.type)) throw new G8osError('invalid', `vdisk type ${JSON.stringify(meta.type)}: expected ${VDISK_TYPES.join(', ')}`);
  const bs = meta.blockSize;
  if (!Number.isInteger(bs) || bs < 512 || bs > 1024 * 1024 || (bs & (bs - 1)) !== 0) {
    throw new G8osError('invalid', `block size ${bs}: a power of two from 512 to 1 MiB`);
  }
  if (!Number.isSafeInteger(meta.size) || meta.size <= 0 || meta.size % bs !== 0) {
    throw new G8osError('invalid', `size ${meta.size}: a positive multiple of the block size ${bs}`);
  }
  if (meta.template && !(meta.type === 'boot' || meta.type === 'db')) {
    throw new G8osError('invalid', `a ${meta.type} vdisk cannot have a template (boot and db only)`);
  }
}

export async function getMeta(cluster: Cluster, id: string): Promise<VdiskMeta | null> {
  const raw = await cluster.meta.hget(INDEX, id);
  if (!raw) return null;
  try {
    return JSON.parse(raw.toString('utf8')) as VdiskMeta;
  } catch (e) {
    throw new G8osError('corrupt', `vdisk index entry ${id} is not JSON`, { cause: e });
  }
}

export async function mustMeta(cluster: Cluster, id: string): Promise<VdiskMeta> {
  const m = await getMeta(cluster, id);
  if (!m) throw new G8osError('not_found', `no vdisk ${JSON.stringify(id)} in ${cluster.url}`);
  return m;
}

export async function listVdisks(cluster: Cluster): Promise<VdiskMeta[]> {
  const all = await cluster.meta.hgetall(INDEX);
  return [...all.values()].map((v) => JSON.parse(v.toString('utf8')) as VdiskMeta).sort((a, b) => a.id.localeCompare(b.id));
}

export async function createVdisk(cluster: Cluster, id: string, o: CreateOptions): Promise<VdiskMeta> {
  const meta: VdiskMeta = {
    id, type: o.type, size: o.size, blockSize: o.blockSize ?? 4096, readOnly: o.readOnly ?? false,
    ...(o.template ? { template: o.template } : {}), created: new Date().toISOString(),
  };
  validate(meta);
  if (await getMeta(cluster, id)) throw new G8osError('conflict', `vdisk ${id} exists already`);
  if (meta.type === 'boot' && o.template) {
    // a boot vdisk from a template copies only the LBA; blocks come on first read
    const src = templateSource(o.template.source, meta.blockSize, o.timeoutMs);
    try {
      const lba = await src.lba(o.template.vdisk);
      if (!lba.size) throw new G8osError('not_found', `template ${o.template.vdisk} in ${src.url} has no LBA (empty or absent)`);
      await recount(cluster, hashesOf(lba.values()), 1);
      for (const [f, v] of lba) await cluster.meta.hset(lbaKey(id), f, v);
    } finally {
      await src.close();
    }
  }
  await cluster.meta.hset(INDEX, id, Buffer.from(JSON.stringify(meta)));
  await cluster.flush();
  return meta;
}

/** Copies a vdisk: deduplicated = LBA + counts only; otherwise every block. */
export async function copyVdisk(cluster: Cluster, src: string, dst: string, force = false): Promise<VdiskMeta> {
  checkId(dst);
  const m = await mustMeta(cluster, src);
  if (await getMeta(cluster, dst)) {
    if (!force) throw new G8osError('conflict', `vdisk ${dst} exists already (--force replaces it)`);
    await deleteVdisk(cluster, dst);
  }
  const meta: VdiskMeta = { ...m, id: dst, created: new Date().toISOString() };
  if (m.type === 'boot') {
    const lba = await cluster.meta.hgetall(lbaKey(src));
    await recount(cluster, hashesOf(lba.values()), 1);
    for (const [f, v] of lba) await cluster.meta.hset(lbaKey(dst), f, v);
  } else {
    for (const s of cluster.servers) {
      for (const [f, v] of await s.hgetall(nondedupKey(src))) await s.hset(nondedupKey(dst), f, v);
    }
  }
  await cluster.meta.hset(INDEX, dst, Buffer.from(JSON.stringify(meta)));
  await cluster.flush();
  return meta;
}

export async function deleteVdisk(cluster: Cluster, id: string): Promise<void> {
  const m = await mustMeta(cluster, id);
  await wipeData(cluster, m);
  await cluster.meta.hdel(INDEX, id);
  await cluster.flush();
}

/** Drops a vdisk's blocks (its definition stays): delete, and a tmp vdisk at disconnect. */
export async function wipeData(cluster: Cluster, m: VdiskMeta): Promise<void> {
  if (m.type === 'boot') {
    const lba = await cluster.meta.hgetall(lbaKey(m.id));
    await cluster.meta.del(lbaKey(m.id));
    await cluster.flush();
    await recount(cluster, hashesOf(lba.values()), -1);
  } else {
    for (const s of cluster.servers) await s.del(nondedupKey(m.id));
  }
  await cluster.flush();
}

export interface OpenOptions {
  timeoutMs?: number;
  log?: (l: string) => void;
  /** overrides the stored read-only flag to true (an export configured read-only) */
  readOnly?: boolean;
  /** wraps the block backend (the transaction log hooks in here; src/tlog/backend.ts) */
  wrap?: (cluster: Cluster, meta: VdiskMeta, backend: BlockBackend) => Promise<BlockBackend>;
}

/** Opens a vdisk for serving. A tmp vdisk is deleted when closed. */
export async function openVdisk(cluster: Cluster, id: string, o: OpenOptions = {}): Promise<Vdisk> {
  await hashReady();
  const meta = await mustMeta(cluster, id);
  if (o.readOnly) meta.readOnly = true;
  let template: TemplateSource | undefined;
  if (meta.template) template = templateSource(meta.template.source, meta.blockSize, o.timeoutMs);
  let backend: BlockBackend = meta.type === 'boot'
    ? new DedupBackend(cluster, id, template, o.log)
    : new NondedupBackend(cluster, id, template && meta.template ? { source: template, vdisk: meta.template.vdisk } : undefined, o.log);
  if (o.wrap) {
    try {
      backend = await o.wrap(cluster, meta, backend);
    } catch (e) {
      await template?.close();
      throw e;
    }
  }
  return new BlockVdisk(meta, backend, async () => {
    await template?.close();
    if (meta.type === 'tmp') await wipeData(cluster, meta);
  });
}
