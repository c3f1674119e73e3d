// Container image → flist: reads a `docker save` tarball (legacy or OCI-in-docker-save) or an
// OCI image layout tarball from a file, verifies blob digests, flattens the layers with
// whiteouts (src/flist/layers.ts) and derives the flist metadata and /.startup.toml from the
// image config (hub-api.md §8.4, flist-format.md §9). Independent of HTTP.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { putMissing } from '../store';
import type { BlockStore } from '../store/types';
import { BuildError, type BuildStats } from '../flist/builder';
import { encodeBlock } from '../flist/codec';
import { hashReady } from '../flist/hash';
import { applyLayer, buildLayer, mergedStats } from '../flist/layers';
import { Tree } from '../flist/tree';
import { BLOCK_SIZE, S_IFREG, type BlockRef } from '../flist/types';

/** The image tarball is unusable (the client's fault: a 400). */
export class ImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageError';
  }
}

// -- the outer tarball, indexed once and read by offset ---------------------------------------

export interface Member {
  name: string;
  type: string;
  /** offset of the member's data in the file */
  offset: number;
  size: number;
  linkname: string;
}

/** "./a//b/" → "a/b": member names and references compare in this form. */
const norm = (p: string): string => p.split('/').filter((c) => c !== '' && c !== '.').join('/');

/** Every member of a tar file with the offset of its data (the data itself is skipped). */
export async function indexTar(file: string): Promise<Map<string, Member>> {
  const index = new Map<string, Member>();
  const extract = tar.extract();
  const parsed = pipeline(fs.createReadStream(file, { highWaterMark: 1 << 20 }), extract);
  parsed.catch(() => undefined);
  try {
    for await (const entry of extract) {
      const h = entry.header as tar.Header & { byteOffset: number };
      const name = norm(h.name);
      index.set(name, { name, type: h.type ?? 'file', offset: h.byteOffset, size: h.size ?? 0, linkname: h.linkname ?? '' });
      for await (const _ of entry); // skip the data
    }
    await parsed;
  } catch (e) {
    const m = (e as Error).message;
    if (/Invalid tar header|Unexpected end of data|Header exceeds max size/.test(m)) {
      throw new ImageError(/Unexpected end/.test(m) ? 'image tarball is truncated' : 'not a tar archive (expected a docker save or OCI image layout tarball)');
    }
    throw e;
  }
  if (index.size === 0) throw new ImageError('image tarball is empty (no tar members)');
  return index;
}

/** The member a reference names, following links inside the tarball (docker save links repeated layers). */
function member(index: Map<string, Member>, ref: string, what: string): Member {
  let name = norm(ref);
  for (let hops = 0; hops < 8; hops++) {
    const m = index.get(name);
    if (!m) break;
    if (m.type === 'file' || m.type === 'contiguous-file') return m;
    if (m.type === 'symlink') name = norm(path.posix.join(path.posix.dirname(name), m.linkname));
    else if (m.type === 'link') name = norm(m.linkname);
    else throw new ImageError(`${what} ${ref} is a ${m.type} in the image tarball, not a file`);
  }
  throw new ImageError(`${what} ${ref} is missing from the image tarball`);
}

function memberStream(file: string, m: Member): Readable {
  if (m.size === 0) return Readable.from([]);
  return fs.createReadStream(file, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 });
}

const MAX_JSON = 8 * 1024 * 1024;

async function readMember(file: string, m: Member, what: string): Promise<Buffer> {
  if (m.size > MAX_JSON) throw new ImageError(`${what} ${m.name} is too large (${m.size} bytes)`);
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(m.size);
    const { bytesRead } = await fh.read(buf, 0, m.size, m.offset);
    if (bytesRead !== m.size) throw new ImageError(`${what} ${m.name} is truncated`);
    return buf;
  } finally {
    await fh.close();
  }
}

function parseJson(buf: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new ImageError(`${what} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ImageError(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

const DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

async function digestOf(file: string, m: Member, alg: string): Promise<string> {
  const h = crypto.createHash(alg);
  for await (const chunk of memberStream(file, m)) h.update(chunk as Buffer);
  return `${alg}:${h.digest('hex')}`;
}

async function verify(file: string, m: Member, digest: string, what: string): Promise<void> {
  const got = await digestOf(file, m, digest.slice(0, digest.indexOf(':')));
  if (got !== digest) throw new ImageError(`${what} does not match its digest: expected ${digest}, the content hashes to ${got}`);
}

/** "blobs/sha256/<hex>" or a legacy "<hex>.json" names its own digest. */
function digestInName(name: string): string | undefined {
  const m = /^(?:blobs\/(sha256|sha512)\/([0-9a-f]{64,128})|([0-9a-f]{64})\.json)$/.exec(norm(name));
  if (!m) return undefined;
  const d = m[3] ? `sha256:${m[3]}` : `${m[1]}:${m[2]}`;
  return DIGEST.test(d) ? d : undefined;
}

// -- image layouts ----------------------------------------------------------------------------

interface LayerRef {
  member: Member;
  /** digest of the blob as stored (compressed or not); undefined when the layout names none */
  digest?: string;
  /** digest of the uncompressed tar (legacy docker save: the blob is that tar) */
  diffId?: string;
  label: string;
}

export interface Image {
  config: Record<string, unknown>;
  configDigest: string;
  layers: LayerRef[];
  /** image reference (repository:tag) when the tarball names one */
  ref?: string;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { os?: string; architecture?: string };
  annotations?: Record<string, string>;
}

function descriptor(v: unknown, what: string): Descriptor {
  const d = v as Descriptor;
  if (typeof d !== 'object' || d === null || typeof d.digest !== 'string' || !DIGEST.test(d.digest)) {
    throw new ImageError(`${what} has no valid digest (expected sha256:<64 hex>)`);
  }
  if (d.size !== undefined && !(Number.isSafeInteger(d.size) && d.size >= 0)) throw new ImageError(`${what} has an invalid size`);
  return d;
}

/** A blob of an OCI layout, checked against its descriptor (size, and digest unless `check` is false). `what` names it in errors. */
async function blob(file: string, index: Map<string, Member>, d: Descriptor, what: string, check = true): Promise<Member> {
  const [alg, hex] = d.digest.split(':');
  const m = member(index, `blobs/${alg}/${hex}`, `${what}: blob`);
  if (d.size !== undefined && d.size !== m.size) throw new ImageError(`${what} is ${m.size} bytes, its descriptor says ${d.size}`);
  if (check) await verify(file, m, d.digest, what);
  return m;
}

const isIndex = (mediaType: unknown, v: Record<string, unknown>): boolean =>
  mediaType === 'application/vnd.oci.image.index.v1+json' ||
  mediaType === 'application/vnd.docker.distribution.manifest.list.v2+json' ||
  (mediaType === undefined && Array.isArray(v.manifests));

/** From an index's manifests: the only image, or the linux/amd64 one (attestations skipped). */
function pickManifest(list: unknown, what: string): Descriptor {
  if (!Array.isArray(list)) throw new ImageError(`${what} has no "manifests" list`);
  const all = list.map((d, i) => descriptor(d, `${what} manifest ${i + 1}`));
  const images = all.filter((d) => d.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest' && d.platform?.os !== 'unknown');
  if (images.length === 0) throw new ImageError(`${what} lists no image manifest`);
  if (images.length === 1) return images[0];
  const amd64 = images.filter((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64');
  if (amd64.length === 0) throw new ImageError(`${what} lists ${images.length} images and none for linux/amd64`);
  return amd64[0];
}

async function readOciLayout(file: string, index: Map<string, Member>): Promise<Image> {
  const top = parseJson(await readMember(file, member(index, 'index.json', 'index'), 'index.json'), 'index.json');
  let d = pickManifest(top.manifests, 'index.json');
  const ref = d.annotations?.['io.containerd.image.name'] ?? d.annotations?.['org.opencontainers.image.ref.name'];
  let manifest: Record<string, unknown> | undefined;
  for (let depth = 0; depth < 4 && !manifest; depth++) {
    const m = await blob(file, index, d, `manifest (${d.digest})`);
    const v = parseJson(await readMember(file, m, 'manifest'), `manifest ${d.digest}`);
    if (isIndex(d.mediaType ?? v.mediaType, v)) d = pickManifest(v.manifests, `image index ${d.digest}`);
    else manifest = v;
  }
  if (!manifest) throw new ImageError('image indexes nest too deeply');
  const cd = descriptor(manifest.config, 'manifest config');
  const configMember = await blob(file, index, cd, `image config (${cd.digest})`);
  if (!Array.isArray(manifest.layers)) throw new ImageError(`manifest ${d.digest} has no "layers" list`);
  const n = manifest.layers.length;
  const layers: LayerRef[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    const ld = descriptor(l, `layer ${i + 1}`);
    const label = `layer ${i + 1} of ${n} (${ld.digest})`;
    layers.push({ member: await blob(file, index, ld, label, false), digest: ld.digest, label });
  }
  const config = parseJson(await readMember(file, configMember, 'image config'), `image config ${cd.digest}`);
  return { config, configDigest: cd.digest, layers, ref };
}

async function readDockerSave(file: string, index: Map<string, Member>): Promise<Image> {
  let list: unknown;
  try {
    list = JSON.parse((await readMember(file, member(index, 'manifest.json', 'manifest'), 'manifest.json')).toString('utf8'));
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`manifest.json is not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(list) || list.length === 0) throw new ImageError('manifest.json lists no image');
  if (list.length > 1) throw new ImageError(`the tarball holds ${list.length} images: save one image per tarball`);
  const m = (list[0] ?? {}) as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
  if (typeof m.Config !== 'string') throw new ImageError('manifest.json has no "Config"');
  if (!Array.isArray(m.Layers) || !m.Layers.every((l) => typeof l === 'string')) throw new ImageError('manifest.json has no "Layers" list');
  const configMember = member(index, m.Config, 'image config');
  const named = digestInName(m.Config);
  const configBytes = await readMember(file, configMember, 'image config');
  const configDigest = named ?? `sha256:${crypto.createHash('sha256').update(configBytes).digest('hex')}`;
  if (named) {
    const got = `${named.split(':')[0]}:${crypto.createHash(named.split(':')[0]).update(configBytes).digest('hex')}`;
    if (got !== named) throw new ImageError(`image config ${m.Config} does not match its digest: the content hashes to ${got}`);
  }
  const config = parseJson(configBytes, `image config ${m.Config}`);
  const diffIds = (config.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
  const n = m.Layers.length;
  const layers = (m.Layers as string[]).map((name, i): LayerRef => {
    const label = `layer ${i + 1} of ${n} (${name})`;
    const digest = digestInName(name);
    const ref: LayerRef = { member: member(index, name, `layer ${i + 1} of ${n}`), digest, label };
    // legacy "<id>/layer.tar": the uncompressed diff, so its sha256 is the config's diff_id
    if (!digest && Array.isArray(diffIds)) {
      if (diffIds.length !== n) throw new ImageError(`image config lists ${diffIds.length} layer diff_ids but manifest.json lists ${n} layers`);
      if (typeof diffIds[i] === 'string' && DIGEST.test(diffIds[i])) ref.diffId = diffIds[i];
    }
    return ref;
  });
  const tags = Array.isArray(m.RepoTags) ? m.RepoTags.filter((t): t is string => typeof t === 'string') : [];
  let ref: string | undefined = tags[0];
  if (!ref && index.has('index.json')) {
    // docker 25+ writes an OCI index too; its annotations may name the image
    const top = parseJson(await readMember(file, member(index, 'index.json', 'index'), 'index.json'), 'index.json');
    const d = Array.isArray(top.manifests) ? (top.manifests[0] as Descriptor | undefined) : undefined;
    ref = d?.annotations?.['io.containerd.image.name'] ?? d?.annotations?.['org.opencontainers.image.ref.name'];
  }
  return { config, configDigest, layers, ref };
}

/** Which layout the tarball uses, read and checked (manifests, config; not yet the layers). */
export async function readImage(file: string, index: Map<string, Member>): Promise<Image> {
  if (index.has('manifest.json')) return readDockerSave(file, index);
  if (index.has('index.json')) return readOciLayout(file, index);
  throw new ImageError('not a docker save or OCI image layout tarball: it has neither manifest.json nor index.json');
}

// -- image config → metadata and /.startup.toml ------------------------------------------------

export interface ContainerConfig {
  Entrypoint: string[];
  Cmd: string[];
  Env: string[];
  WorkingDir: string;
  ExposedPorts: string[];
  Volumes: string[];
}

/** The runtime part of an image config ("config"), type-checked. */
export function containerConfig(image: Record<string, unknown>): ContainerConfig {
  const c = (image.config ?? {}) as Record<string, unknown>;
  if (typeof c !== 'object' || Array.isArray(c)) throw new ImageError('image config: "config" is not an object');
  const strings = (key: string): string[] => {
    const v = c[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new ImageError(`image config: ${key} is not a list of strings`);
    return v;
  };
  const keys = (key: string): string[] => {
    const v = c[key];
    if (v === undefined || v === null) return [];
    if (typeof v !== 'object' || Array.isArray(v)) throw new ImageError(`image config: ${key} is not an object`);
    return Object.keys(v);
  };
  if (c.WorkingDir !== undefined && c.WorkingDir !== null && typeof c.WorkingDir !== 'string') throw new ImageError('image config: WorkingDir is not a string');
  return {
    Entrypoint: strings('Entrypoint'), Cmd: strings('Cmd'), Env: strings('Env'),
    WorkingDir: (c.WorkingDir as string | undefined) ?? '', ExposedPorts: keys('ExposedPorts'), Volumes: keys('Volumes'),
  };
}

/** Docker semantics: Entrypoint followed by Cmd (Cmd alone without an Entrypoint). */
export const argvOf = (c: ContainerConfig): string[] => [...c.Entrypoint, ...c.Cmd];

export function environOf(c: ContainerConfig): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of c.Env) {
    const i = kv.indexOf('=');
    if (i === 0) continue;
    if (i < 0) env[kv] = '';
    else env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

/** flist-format.md §9 metadata: entrypoint, environ, port, volume (only those the image sets). */
export function imageMetadata(c: ContainerConfig, warn: (m: string) => void = () => undefined): Record<string, string> {
  const meta: Record<string, string> = {};
  const argv = argvOf(c);
  if (argv.length) meta.entrypoint = JSON.stringify(argv);
  if (c.Env.length) meta.environ = JSON.stringify(environOf(c));
  const ports: Record<string, number> = {};
  for (const key of c.ExposedPorts) {
    const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(key);
    const port = m ? Number(m[1]) : 0;
    if (!m || port < 1 || port > 65535) {
      warn(`image config: ignored exposed port ${JSON.stringify(key)}`);
      continue;
    }
    ports[`${(m[2] ?? 'tcp').toLowerCase()}/${port}`] = port;
  }
  if (Object.keys(ports).length) meta.port = JSON.stringify(ports);
  if (c.Volumes.length) meta.volume = JSON.stringify(Object.fromEntries(c.Volumes.map((v) => [v, {}])));
  return meta;
}

/** A TOML basic string (JSON escapes are TOML escapes; TOML also wants DEL escaped). */
const tomlString = (s: string): string => JSON.stringify(s).replace(/\x7f/g, '\\u007F');
const tomlKey = (k: string): string => (/^[A-Za-z0-9_-]+$/.test(k) ? k : tomlString(k));

/** /.startup.toml as coreX reads it (hub-api.md §8.4 step 5); /bin/sh when the image names no command. */
export function startupToml(c: ContainerConfig): string {
  const argv = argvOf(c);
  const [command, ...args] = argv.length ? argv : ['/bin/sh'];
  const lines = [
    '[startup.entry]',
    'name = "core.system"',
    '',
    '[startup.entry.args]',
    `name = ${tomlString(command)}`,
    `args = [${args.map(tomlString).join(', ')}]`,
    `dir = ${tomlString(c.WorkingDir || '/')}`,
    '',
    '[startup.entry.args.env]',
    ...Object.entries(environOf(c)).map(([k, v]) => `${tomlKey(k)} = ${tomlString(v)}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** "<ref with : and / as ->.flist", or the short config digest when the image names no reference. */
export function imageFlistName(ref: string | undefined, configDigest: string): string {
  const base = ref
    ? ref.replace(/[:/]/g, '-').replace(/[^A-Za-z0-9._+@=,-]/g, '-').replace(/^[.-]+/, '').replace(/\.\.+/g, '.').slice(0, 240)
    : '';
  return `${base || configDigest.split(':')[1].slice(0, 12)}.flist`;
}

// -- conversion ---------------------------------------------------------------------------------

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
      if (max !== undefined && n > max) cb(new ImageError(`image tarball expands to more than ${max} bytes (the limit)`));
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
        if (/expands to more than/.test(e.message)) throw new ImageError(`image expands to more than ${opts.maxExpandedBytes} bytes (the limit)`);
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
