// The outer image tarball (`docker save` or an OCI image layout), indexed once and read by
// offset: members, their bytes, and digest checks.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { ImageError } from './errors';

export interface Member {
  name: string;
  type: string;
  /** offset of the member's data in the file */
  offset: number;
  size: number;
  linkname: string;
}

/** "./a//b/" → "a/b": member names and references compare in this form. */
export const norm = (p: string): string => p.split('/').filter((c) => c !== '' && c !== '.').join('/');

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
    throw await tarFailure(e, file, index);
  }
  if (index.size === 0) throw new ImageError('image tarball is empty (no tar members)');
  return index;
}

/** The member a reference names, following links inside the tarball (docker save links repeated layers). */
export function member(index: Map<string, Member>, ref: string, what: string): Member {
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

export function memberStream(file: string, m: Member): Readable {
  if (m.size === 0) return Readable.from([]);
  return fs.createReadStream(file, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 });
}

const MAX_JSON = 8 * 1024 * 1024;

export async function readMember(file: string, m: Member, what: string): Promise<Buffer> {
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

export function parseJson(buf: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new ImageError(`${what} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ImageError(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

export const DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

async function digestOf(file: string, m: Member, alg: string): Promise<string> {
  const h = crypto.createHash(alg);
  for await (const chunk of memberStream(file, m)) h.update(chunk as Buffer);
  return `${alg}:${h.digest('hex')}`;
}

export async function verify(file: string, m: Member, digest: string, what: string): Promise<void> {
  const got = await digestOf(file, m, digest.slice(0, digest.indexOf(':')));
  if (got !== digest) throw new ImageError(`${what} does not match its digest: expected ${digest}, the content hashes to ${got}`);
}

/** "blobs/sha256/<hex>" or a legacy "<hex>.json" names its own digest. */
export function digestInName(name: string): string | undefined {
  const m = /^(?:blobs\/(sha256|sha512)\/([0-9a-f]{64,128})|([0-9a-f]{64})\.json)$/.exec(norm(name));
  if (!m) return undefined;
  const d = m[3] ? `sha256:${m[3]}` : `${m[1]}:${m[2]}`;
  return DIGEST.test(d) ? d : undefined;
}


/**
 * Why the tarball did not parse. tar-stream's errors carry no code, so the file says it: one
 * that stops inside its last member (or inside the header after it) is truncated; anything
 * else, a first header that does not parse included, is not a tar.
 */
async function tarFailure(e: unknown, file: string, index: Map<string, Member>): Promise<Error> {
  if (e instanceof ImageError || (e as NodeJS.ErrnoException).code) return e as Error; // a read error, not the data
  let end = 0;
  for (const m of index.values()) end = Math.max(end, m.offset + Math.ceil(m.size / 512) * 512);
  const size = (await fs.promises.stat(file)).size;
  const truncated = index.size > 0 && size < end + 512;
  return new ImageError(truncated ? 'image tarball is truncated' : 'not a tar archive (expected a docker save or OCI image layout tarball)');
}
