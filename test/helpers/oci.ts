// Container images built by hand per the OCI image spec (there is no docker here): OCI image
// layout tarballs and `docker save` tarballs (legacy and docker 25+ forms) from layers given as
// tar entries. Builders return the tarball's files as a map so that tests can break them
// (drop a blob, change bytes) before packing.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { T0, writeTar, type FixtureEntry } from './tarballs';

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface LayerSpec {
  entries?: FixtureEntry[];
  gzip?: boolean;
  /** the exact blob bytes (instead of a tar of `entries`) */
  blob?: Buffer;
  /** the blob uncompressed, for its diff_id (default: blob, or the tar of entries) */
  diff?: Buffer;
  mediaType?: string;
}

export interface ImageSpec {
  layers: LayerSpec[];
  /** the runtime config ("config" in the image config JSON): Entrypoint, Cmd, Env, … */
  config?: Record<string, unknown>;
  /** repository:tag the tarball names */
  ref?: string;
  /** exact image config bytes (e.g. invalid JSON) */
  rawConfig?: Buffer;
}

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hexOf = (digest: string): string => digest.split(':')[1];
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

interface Blob {
  digest: string;
  size: number;
  mediaType: string;
  bytes: Buffer;
}

const blobOf = (bytes: Buffer, mediaType: string): Blob => ({ digest: sha256(bytes), size: bytes.length, mediaType, bytes });
const descriptor = (b: Blob, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ mediaType: b.mediaType, digest: b.digest, size: b.size, ...extra });

export interface BuiltImage {
  /** member path → bytes, packed in this order */
  files: Map<string, Buffer>;
  config: Blob;
  layers: Blob[];
  diffIds: string[];
  manifest: Blob;
}

/** Layer blobs, the image config and the manifest of one image. */
export async function imageBlobs(spec: ImageSpec): Promise<Omit<BuiltImage, 'files'>> {
  const layers: Blob[] = [];
  const diffIds: string[] = [];
  for (const l of spec.layers) {
    const tarBytes = l.blob ?? (await writeTar(l.entries ?? []));
    const bytes = l.blob ?? (l.gzip ? gzipSync(tarBytes) : tarBytes);
    layers.push(blobOf(bytes, l.mediaType ?? (l.gzip ? MT.ociLayerGzip : MT.ociLayer)));
    diffIds.push(sha256(l.diff ?? tarBytes));
  }
  const configJson = spec.rawConfig ?? json({
    created: new Date(T0 * 1000).toISOString(),
    architecture: 'amd64',
    os: 'linux',
    config: spec.config ?? {},
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: spec.layers.map(() => ({ created: new Date(T0 * 1000).toISOString(), created_by: 'test' })),
  });
  const config = blobOf(configJson, MT.ociConfig);
  const manifest = blobOf(
    json({ schemaVersion: 2, mediaType: MT.ociManifest, config: descriptor(config), layers: layers.map((b) => descriptor(b)) }),
    MT.ociManifest,
  );
  return { layers, diffIds, config, manifest };
}

const addBlobs = (files: Map<string, Buffer>, blobs: Blob[]): void => {
  for (const b of blobs) files.set(`blobs/sha256/${hexOf(b.digest)}`, b.bytes);
};

/**
 * An OCI image layout: oci-layout, index.json, blobs/sha256/<hex>. With `other`, index.json
 * points at an image index listing this image as linux/amd64 and `other` as linux/arm64.
 */
export async function ociLayout(spec: ImageSpec, opts: { other?: ImageSpec } = {}): Promise<BuiltImage> {
  const img = await imageBlobs(spec);
  const files = new Map<string, Buffer>([['oci-layout', json({ imageLayoutVersion: '1.0.0' })]]);
  const annotations = spec.ref ? { 'org.opencontainers.image.ref.name': spec.ref } : undefined;
  addBlobs(files, [img.config, ...img.layers, img.manifest]);
  if (opts.other) {
    const other = await imageBlobs(opts.other);
    addBlobs(files, [other.config, ...other.layers, other.manifest]);
    const index = blobOf(json({
      schemaVersion: 2,
      mediaType: MT.ociIndex,
      manifests: [
        descriptor(other.manifest, { platform: { os: 'linux', architecture: 'arm64' } }),
        descriptor(img.manifest, { platform: { os: 'linux', architecture: 'amd64' } }),
        // a buildkit attestation, which is never the image
        descriptor(other.manifest, { platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } }),
      ],
    }), MT.ociIndex);
    addBlobs(files, [index]);
    files.set('index.json', json({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [descriptor(index, { annotations })] }));
  } else {
    files.set('index.json', json({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [descriptor(img.manifest, { annotations })] }));
  }
  return { ...img, files };
}

/**
 * A `docker save` tarball. 'legacy' (docker < 25): <id>/layer.tar (uncompressed), <hex>.json
 * config, manifest.json, repositories. 'oci' (docker 25+): blobs/sha256 plus manifest.json,
 * index.json and oci-layout.
 */
export async function dockerSave(spec: ImageSpec, opts: { form?: 'legacy' | 'oci' } = {}): Promise<BuiltImage> {
  const img = await imageBlobs(spec);
  const files = new Map<string, Buffer>();
  const [repo, tag] = spec.ref ? [spec.ref.slice(0, spec.ref.lastIndexOf(':')), spec.ref.slice(spec.ref.lastIndexOf(':') + 1)] : [];
  if (opts.form === 'oci') {
    addBlobs(files, [img.config, ...img.layers, img.manifest]);
    files.set('index.json', json({
      schemaVersion: 2, mediaType: MT.ociIndex,
      manifests: [descriptor(img.manifest, spec.ref ? { annotations: { 'io.containerd.image.name': `docker.io/${spec.ref}`, 'org.opencontainers.image.ref.name': tag } } : {})],
    }));
    files.set('manifest.json', json([{
      Config: `blobs/sha256/${hexOf(img.config.digest)}`,
      RepoTags: spec.ref ? [spec.ref] : null,
      Layers: img.layers.map((b) => `blobs/sha256/${hexOf(b.digest)}`),
    }]));
    files.set('oci-layout', json({ imageLayoutVersion: '1.0.0' }));
  } else {
    const ids: string[] = [];
    let parent = '';
    for (const [i, b] of img.layers.entries()) {
      // v1 layer ids are a chain hash; any stable id works for a reader
      const id = hexOf(sha256(Buffer.from(`${parent}\n${img.diffIds[i]}`)));
      files.set(`${id}/VERSION`, Buffer.from('1.0'));
      files.set(`${id}/json`, json({ id, parent: parent || undefined, created: new Date(T0 * 1000).toISOString() }));
      files.set(`${id}/layer.tar`, b.bytes);
      ids.push(id);
      parent = id;
    }
    files.set(`${hexOf(img.config.digest)}.json`, img.config.bytes);
    files.set('manifest.json', json([{ Config: `${hexOf(img.config.digest)}.json`, RepoTags: spec.ref ? [spec.ref] : null, Layers: ids.map((id) => `${id}/layer.tar`) }]));
    if (spec.ref) files.set('repositories', json({ [repo!]: { [tag!]: ids[ids.length - 1] } }));
  }
  return { ...img, files };
}

/** The outer tarball: directories first (as tar does), then the files in map order. */
export async function packImage(files: Map<string, Buffer>, extra: FixtureEntry[] = []): Promise<Buffer> {
  const dirs = new Set<string>();
  for (const p of files.keys()) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const owner = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0 };
  const entries: FixtureEntry[] = [
    ...[...dirs].sort().map((p): FixtureEntry => ({ path: p, type: 'dir', mode: 0o755, ...owner })),
    ...[...files].map(([p, content]): FixtureEntry => ({ path: p, type: 'file', mode: 0o644, ...owner, content })),
    ...extra,
  ];
  return writeTar(entries);
}
