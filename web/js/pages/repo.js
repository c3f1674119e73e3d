// A repository (/<user>): its flists, links and tags. A tag (/<user>/tags/<tag>): its entries.
import { empty, errorBox, flistPath, fmtBytes, h, repoPath, table, tagPath, targetPath, timeEl, typeBadge } from '../ui.js';

export default async function render(main, params, ctx) {
  if (params.tag !== undefined) return renderTag(main, params, ctx);
  const user = params.user;
  ctx.setTitle(user);
  let repo;
  try {
    repo = await ctx.api.get(`/api/ui/repository/${encodeURIComponent(user)}`);
  } catch (e) {
    main.append(h('h1', {}, user), errorBox(e.status === 404 ? `There is no repository “${user}” on this hub.` : `Cannot read the repository: ${e.message}`));
    return;
  }
  const flists = repo.flists || [];
  const tags = repo.tags || [];
  const regular = flists.filter((f) => f.type === 'regular');
  const total = regular.reduce((s, f) => s + (f.size || 0), 0);
  const mine = ctx.user() === user;
  main.append(
    h('div', { class: 'page-head' },
      h('div', {},
        h('p', { class: 'breadcrumb' }, h('a', { href: '/' }, 'Repositories'), ' / '),
        h('h1', {}, user),
        h('p', { class: 'lead' }, `${regular.length} ${regular.length === 1 ? 'flist' : 'flists'}, ${flists.length - regular.length} ${flists.length - regular.length === 1 ? 'link' : 'links'}, ${tags.length} ${tags.length === 1 ? 'tag' : 'tags'} · ${fmtBytes(total)}`)),
      mine ? h('a', { href: '/me', class: 'btn' }, 'Manage') : null),
  );

  main.append(h('h2', {}, 'Flists'));
  main.append(flists.length ? table([
    { label: 'Name', cell: (f) => (f.type === 'crosstag' || !f.name.endsWith('.flist') ? h('span', {}, f.name) : h('a', { href: flistPath(user, f.name) }, f.name)) },
    { label: 'Type', cell: (f) => typeBadge(f.type) },
    { label: 'Target', class: 'target', cell: (f) => targetCell(f.target) },
    { label: 'Size', class: 'num', cell: (f) => fmtBytes(f.size) },
    { label: 'Updated', class: 'nowrap', cell: (f) => timeEl(f.updated) },
  ], flists, { caption: `Flists of ${user}` }) : empty('This repository has no flists.'));

  main.append(h('h2', {}, 'Tags'));
  main.append(tags.length
    ? h('ul', { class: 'tag-list', 'aria-label': `Tags of ${user}` }, tags.map((t) => h('li', {}, h('a', { href: tagPath(user, t) }, t))))
    : h('p', { class: 'muted' }, 'No tags.'));
}

function targetCell(target) {
  if (!target) return h('span', { class: 'muted' }, '—');
  const p = targetPath(target);
  return p ? h('a', { href: p }, `→ ${target}`) : `→ ${target}`;
}

async function renderTag(main, params, ctx) {
  const { user, tag } = params;
  ctx.setTitle(`${user} · tag ${tag}`);
  const head = h('div', { class: 'page-head' },
    h('div', {},
      h('p', { class: 'breadcrumb' }, h('a', { href: '/' }, 'Repositories'), ' / ', h('a', { href: repoPath(user) }, user), ' / tags /'),
      h('h1', {}, tag),
      h('p', { class: 'lead' }, `A tag of ${user}: a named set of links to flists.`)));
  main.append(head);
  let entries;
  try {
    entries = await ctx.api.get(`/api/flist/${encodeURIComponent(user)}/tags/${encodeURIComponent(tag)}`);
  } catch (e) {
    main.append(errorBox(e.status === 404 ? `There is no tag “${tag}” in ${user}.` : `Cannot read the tag: ${e.message}`));
    return;
  }
  main.append(entries.length ? table([
    { label: 'Name', cell: (f) => (f.target && targetPath(f.target) ? h('a', { href: targetPath(f.target) }, f.name) : f.name) },
    { label: 'Target', class: 'target', cell: (f) => targetCell(f.target) },
    { label: 'Size', class: 'num', cell: (f) => (typeof f.size === 'number' ? fmtBytes(f.size) : /KB$/.test(String(f.size)) ? fmtBytes(Math.round(parseFloat(f.size) * 1024)) : String(f.size ?? '—')) },
    { label: 'Updated', class: 'nowrap', cell: (f) => timeEl(f.updated) },
    { label: 'Download', cell: (f) => h('a', { href: `${tagPath(user, tag)}/${encodeURIComponent(f.name)}`, 'data-native': '' }, '.flist') },
  ], entries, { caption: `Entries of tag ${tag}` }) : empty('This tag is empty.'));
}
