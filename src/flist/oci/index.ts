// Container image → flist: reads a `docker save` tarball (legacy or OCI-in-docker-save) or an
// OCI image layout tarball from a file, verifies blob digests, flattens the layers with
// whiteouts (../layers.ts) and derives the flist metadata and /.startup.toml from the image
// config (hub-api.md §8.4, flist-format.md §9). Independent of HTTP.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { isKind } from '../../errors';
import { putMissing } from '../../store';
import type { BlockStore } from '../../store/types';
import { BuildError, type BuildStats } from '../builder';
import { encodeBlock } from '../codec';
import { hashReady } from '../hash';
import { applyLayer, buildLayer, mergedStats } from '../layers';
import { Tree } from '../tree';
import { BLOCK_SIZE, S_IFREG, type BlockRef } from '../types';
import { containerConfig, imageFlistName, imageMetadata, startupToml } from './config';
import { ImageError } from './errors';
import { readImage } from './manifest';
import { indexTar, type Member, memberStream, verify } from './tarball';

export { ImageError } from './errors';

export interface ConvertOptions {
  store: BlockStore;
  /** cap on the total file size of all layers (decompression bombs) */
  maxExpandedBytes?: number;
  /** where a gzip-compressed image tarball is unpacked (default: the OS temp dir) */
  tmpDir?: string;
  onWarning?: (message: string) => void;
  /** stage messages with a rough percentage, non-decreasing */
  onProgress?: (message: string, percent: number) => void;
}

export interface ConvertResult {
  tree: Tree;
  stats: BuildStats & { layers: number; whiteouts: number };
  /** entrypoint/environ/port/volume as flist metadata values (no backend: the caller knows it) */
  metadata: Record<string, string>;
  /** default flist file name, from the image reference or the config digest */
  name: string;
  ref?: string;
  configDigest: string;
}

type Compression = 'gzip' | 'none';

async function sniff(file: string, m: Member, label: string): Promise<Compression> {
  const fh = await fs.promises.open(file, 'r');
  const head = Buffer.alloc(6);
  try {
    await fh.read(head, 0, Math.min(6, m.size), m.offset);
  } finally {
    await fh.close();
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.readUInt32BE(0) === 0x28b52ffd) throw new ImageError(`${label}: zstd layers are not supported`);
  if (head.subarray(0, 3).toString('latin1') === 'BZh') throw new ImageError(`${label}: bzip2 layers are not supported`);
  if (head.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) throw new ImageError(`${label}: xz layers are not supported`);
  return 'none';
}

/** A gzip-compressed image tarball (`docker save | gzip`) unpacked to a temp file, size-capped. */
async function gunzipTo(file: string, out: string, max: number | undefined): Promise<void> {
  let n = 0;
  const cap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (max !== undefined && n > max) cb(new ImageError(`image tarball expands to more than ${max} bytes (the limit)`, 'too_large'));
      else cb(null, chunk);
    },
  });
  try {
    await pipeline(fs.createReadStream(file), zlib.createGunzip(), cap, fs.createWriteStream(out));
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`image tarball is gzip-compressed but cannot be decompressed (${(e as Error).message})`);
  }
}

async function isGzip(file: string): Promise<boolean> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** Store `content` as a regular file at `rel` in the tree (root-owned, 0644). */
async function addFile(tree: Tree, store: BlockStore, rel: string, content: Buffer, mtime: number): Promise<{ count: number; bytes: number }> {
  await hashReady();
  const encoded = [];
  for (let off = 0; off < content.length; off += BLOCK_SIZE) encoded.push(encodeBlock(content.subarray(off, off + BLOCK_SIZE)));
  const written = await putMissing(store, encoded.map((b) => ({ id: b.id, data: b.cipher })));
  const blocks: BlockRef[] = encoded.map((b) => ({ id: b.id, key: b.key }));
  tree.add({
    name: path.posix.basename(rel), path: rel, kind: 'file', mode: S_IFREG | 0o644, uid: 0, gid: 0,
    uname: 'root', gname: 'root', size: content.length, mtime, ctime: mtime, blocks,
  });
  return written;
}

/**
 * Convert the image tarball at `file` into a Tree whose blocks are in opts.store. Digests are
 * checked before any layer is built, so a corrupt image writes no blocks.
 */
export async function convertImage(file: string, opts: ConvertOptions): Promise<ConvertResult> {
  const progress = opts.onProgress ?? (() => undefined);
  const warn = opts.onWarning ?? (() => undefined);
  let unpacked: string | undefined;
  try {
    if (await isGzip(file)) {
      progress('Decompressing the image tarball', 1);
      unpacked = path.join(opts.tmpDir ?? os.tmpdir(), `g8os-image-${process.pid}-${crypto.randomBytes(6).toString('hex')}.tar`);
      await gunzipTo(file, unpacked, opts.maxExpandedBytes);
      file = unpacked;
    }
    progress('Reading the image', 2);
    const index = await indexTar(file);
    const image = await readImage(file, index);
    const config = containerConfig(image.config);
    const n = image.layers.length;

    const compression: Compression[] = [];
    for (const [i, l] of image.layers.entries()) {
      progress(`Verifying layer ${i + 1} / ${n}`, 5 + Math.floor((10 * i) / Math.max(n, 1)));
      compression.push(await sniff(file, l.member, l.label));
      if (l.digest) await verify(file, l.member, l.digest, l.label);
      else if (l.diffId && compression[i] === 'none') await verify(file, l.member, l.diffId, l.label);
    }

    const tree = new Tree();
    const layerStats: BuildStats[] = [];
    let whiteouts = 0;
    let budget = opts.maxExpandedBytes;
    for (const [i, l] of image.layers.entries()) {
      progress(`Extracting layer ${i + 1} / ${n}`, 15 + Math.floor((80 * i) / Math.max(n, 1)));
      if (l.member.size === 0) continue; // an empty blob is an empty changeset
      const raw = memberStream(file, l.member);
      let input: Readable = raw;
      if (compression[i] === 'gzip') {
        const gunzip = zlib.createGunzip();
        raw.on('error', (e) => gunzip.destroy(e));
        input = raw.pipe(gunzip);
      }
      let layer;
      try {
        layer = await buildLayer(input, { store: opts.store, maxExpandedBytes: budget, onWarning: (w) => warn(`${l.label}: ${w}`) });
      } catch (e) {
        if (!(e instanceof BuildError)) throw e;
        if (isKind(e, 'too_large')) throw new ImageError(`image expands to more than ${opts.maxExpandedBytes} bytes (the limit)`, 'too_large');
        throw new ImageError(`${l.label}: ${e.message}`);
      } finally {
        raw.destroy();
      }
      layer.stats.input_bytes = l.member.size;
      if (budget !== undefined) budget = Math.max(0, budget - layer.stats.fullsize);
      whiteouts += applyLayer(tree, layer);
      layerStats.push(layer.stats);
    }

    progress('Creating container metadata', 95);
    const created = Date.parse(String(image.config.created ?? ''));
    const mtime = Number.isFinite(created) ? Math.min(Math.max(Math.floor(created / 1000), 0), 0xffffffff) : 0;
    const startup = await addFile(tree, opts.store, '.startup.toml', Buffer.from(startupToml(config)), mtime);
    const stats = mergedStats(tree, layerStats);
    stats.uploaded_chunks += startup.count;
    stats.uploaded_bytes += startup.bytes;
    return {
      tree,
      stats: { ...stats, layers: n, whiteouts },
      metadata: imageMetadata(config, warn),
      name: imageFlistName(image.ref, image.configDigest),
      ref: image.ref,
      configDigest: image.configDigest,
    };
  } finally {
    if (unpacked) await fs.promises.rm(unpacked, { force: true });
  }
}
