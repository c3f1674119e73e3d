// The two image layouts an image tarball may use, read and checked: `docker save` (legacy or
// OCI-in-docker-save, manifest.json) and the OCI image layout (index.json → manifest → config).
// Layers are located and their descriptors checked here; their bytes are verified later.
import crypto from 'node:crypto';
import { ImageError } from './errors';
import { DIGEST, digestInName, type Member, member, parseJson, readMember, verify } from './tarball';

export interface LayerRef {
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

