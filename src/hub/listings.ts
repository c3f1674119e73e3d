// The JSON shapes of the 0-hub API (hub-api.md §6.1–§6.3), computed from the registry and
// from the flist files themselves. The reference hub kept links as symlinks on disk; we keep
// them as rows and rebuild the link text it would have shown.
import fs from 'node:fs';
import { backendFor } from '../flist/backend';
import { openGen2 } from '../flist/reader';
import { notFound } from '../errors';
import { checkName, flistName, splitTarget, type Registry, type RegistryEntry, type TagEntry } from './registry';

/** 404 `user not found` unless the (valid) user exists. */
export function knownUser(reg: Registry, user: string): string {
  checkName(user, 'user name');
  if (!reg.userExists(user)) throw notFound('user not found');
  return user;
}

/** The entry user/<flist>.flist (a link stays a link), or 404. */
export function findEntry(reg: Registry, user: string, flist: string): RegistryEntry {
  knownUser(reg, user);
  // crosstag links are stored by their bare name (no ".flist"), as the reference did
  const e = reg.entry(user, flistName(flist)) ?? reg.entry(user, flist.replace(/\.flist$/, ''));
  if (!e) throw notFound('source not found');
  return e;
}

/** The regular flist behind user/<flist> (links followed), or 404. */
export function findFlist(reg: Registry, user: string, flist: string): RegistryEntry {
  const e = findEntry(reg, user, flist);
  const r = e.kind === 'regular' ? e : reg.resolve(user, e.name);
  if (!r) throw notFound('source not found');
  return r;
}

/** "<x.xx> KB", a string (sic, as the reference). */
export const kb = (bytes: number): string => `${(bytes / 1024).toFixed(2)} KB`;

/** The symlink text 0-hub would have on disk for a link entry. */
export function linkText(e: RegistryEntry): string {
  const [u, n] = splitTarget(e.target!);
  if (e.kind === 'crosstag') return `../${u}/.tag-${n}`;
  return u === e.user ? n : `../${u}/${n}`;
}

export const tagLinkText = (t: TagEntry): string => `../../${t.target}`;

/** "../" removed, ".tag-" → "tags/" (§6.1). */
export const cleanTarget = (text: string): string => text.replaceAll('../', '').replaceAll('.tag-', 'tags/');

interface ListedEntry {
  name: string;
  size: string;
  updated: number;
  linktime?: number;
  type: 'regular' | 'symlink' | 'taglink' | 'tag';
  target?: string;
}

function linkEntry(name: string, text: string, resolved: RegistryEntry | undefined, linktime: number, type: 'symlink' | 'taglink'): ListedEntry {
  return {
    name,
    size: kb(resolved?.size ?? 0),
    updated: resolved?.updated ?? linktime,
    linktime,
    type,
    target: cleanTarget(text),
  };
}

/** A repository listing: entries and tags, sorted by their on-disk names as the reference. */
export function repoListing(reg: Registry, user: string): ListedEntry[] {
  const rows: Array<[string, ListedEntry]> = [];
  for (const e of reg.entries(user)) {
    if (e.kind === 'regular') rows.push([e.name, { name: e.name, size: kb(e.size ?? 0), updated: e.updated, type: 'regular' }]);
    else if (e.kind === 'symlink') rows.push([e.name, linkEntry(e.name, linkText(e), reg.resolve(user, e.name), e.updated, 'symlink')]);
    else {
      const [u, tag] = splitTarget(e.target!);
      const latest = reg.tags(u).find((t) => t.tag === tag);
      rows.push([e.name, { name: e.name, size: kb(0), updated: latest?.updated ?? e.updated, linktime: e.updated, type: 'taglink', target: cleanTarget(linkText(e)) }]);
    }
  }
  for (const t of reg.tags(user)) rows.push([`.tag-${t.tag}`, { name: t.tag, size: '0 KB', updated: t.updated, type: 'tag' }]);
  return rows.sort((a, b) => byName(a[0], b[0])).map((r) => r[1]);
}

/** "<user>/<file>" for every entry and tag directory (GET /api/flist). */
export function allNames(reg: Registry): string[] {
  const out: string[] = [];
  for (const { name: user } of reg.users()) {
    const names = reg.entries(user).map((e) => e.name);
    for (const t of reg.tags(user)) names.push(`.tag-${t.tag}`);
    for (const n of names.sort(byName)) out.push(`${user}/${n}`);
  }
  return out;
}

export function tagListing(reg: Registry, user: string, tag: string): ListedEntry[] {
  return reg.tagEntries(user, tag).map((t) => linkEntry(t.name, tagLinkText(t), reg.resolve(...splitTarget(t.target)), t.updated, 'symlink'));
}

/** Info object (§6.3). */
export function infoObject(reg: Registry, e: RegistryEntry): Record<string, unknown> {
  if (e.kind === 'regular') return { name: e.name, size: e.size, updated: e.updated, type: 'regular', md5: e.md5 };
  const target = reg.resolve(e.user, e.name);
  return {
    name: e.name, size: target?.size ?? 0, updated: target?.updated ?? e.updated, type: 'symlink',
    md5: target?.md5 ?? null, linktime: e.updated, target: linkText(e),
  };
}

/** Opens the flist behind an entry; a file removed meanwhile (delete, GC) is a 404. */
async function openEntry(reg: Registry, e: RegistryEntry) {
  const file = reg.filePath(e.file!);
  if (!fs.existsSync(file)) throw notFound('source not found');
  return openGen2(file);
}

/** Contents dump (§6.2), as zflist's JSON listing: every entry but the root. */
export async function contentsDump(reg: Registry, e: RegistryEntry): Promise<Record<string, unknown>> {
  const r = await openEntry(reg, e);
  try {
    const content: Array<{ path: string; size: number; target?: string }> = [];
    const n = { regular: 0, symlink: 0, directory: 0, special: 0, failure: 0, fullsize: 0 };
    for (const x of r.walk()) {
      if (x.path === '') continue;
      const item: { path: string; size: number; target?: string } = { path: `/${x.path}`, size: 0 };
      if (x.kind === 'dir') n.directory++;
      else if (x.kind === 'file') {
        n.regular++;
        n.fullsize += x.size;
        item.size = x.size;
      } else if (x.kind === 'link') {
        n.symlink++;
        item.target = x.target ?? '';
      } else n.special++;
      content.push(item);
    }
    return { content, ...n };
  } finally {
    r.close();
  }
}

/** Metadata rows, JSON-decoded where they parse; backend-forced when there is no backend row. */
export async function metadataOf(reg: Registry, e: RegistryEntry, publicUrl: string): Promise<Record<string, unknown>> {
  const r = await openEntry(reg, e);
  let rows: Record<string, string>;
  try {
    rows = r.metadata();
  } finally {
    r.close();
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rows)) {
    try {
      out[k] = JSON.parse(v);
    } catch {
      out[k] = v;
    }
  }
  if (!('backend' in rows)) out['backend-forced'] = JSON.parse(backendFor(publicUrl));
  return out;
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
