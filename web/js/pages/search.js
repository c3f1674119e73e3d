// Search: flists whose name contains the query, across every repository.
import { debounce, empty, errorBox, flistPath, fmtBytes, h, loading, repoPath, table, timeEl, typeBadge } from '../ui.js';

export default async function render(main, params, ctx) {
  const q0 = params.query.get('q') || '';
  ctx.setTitle(q0 ? `Search: ${q0}` : 'Search');
  const input = h('input', { type: 'search', id: 'search-q', name: 'q', value: q0, placeholder: 'Flist name, e.g. ubuntu', autocomplete: 'off', spellcheck: 'false' });
  const status = h('p', { class: 'muted', id: 'search-status', 'aria-live': 'polite' });
  const results = h('div', { id: 'search-results' });
  const form = h('form', { class: 'search-bar', role: 'search', action: '/search' },
    h('label', { for: 'search-q', class: 'visually-hidden' }, 'Search flists by name'), input,
    h('button', { type: 'submit', class: 'btn btn-primary' }, 'Search'));
  main.append(
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Search'), h('p', { class: 'lead' }, 'Find flists by name in every repository.'))),
    form, status, results,
  );

  let seq = 0;
  const run = async (q, push) => {
    const n = ++seq;
    const url = q ? `/search?q=${encodeURIComponent(q)}` : '/search';
    if (push) history.replaceState(null, '', url);
    ctx.setTitle(q ? `Search: ${q}` : 'Search');
    results.replaceChildren(loading(q ? 'Searching…' : 'Loading…'));
    let r;
    try {
      r = (await ctx.api.get(q ? `/api/ui/search?q=${encodeURIComponent(q)}` : '/api/ui/search')).results || [];
    } catch (e) {
      if (n === seq) results.replaceChildren(errorBox(`Search failed: ${e.message}`));
      return;
    }
    if (n !== seq) return;
    if (!q) {
      status.textContent = r.length ? 'Recently updated flists — type part of a name to search.' : 'Type part of a name to search.';
      results.replaceChildren(r.length ? resultTable(r, 'Recently updated flists') : empty('No flists on this hub yet.'));
      return;
    }
    status.textContent = r.length ? `${r.length}${r.length >= 200 ? '+' : ''} ${r.length === 1 ? 'flist matches' : 'flists match'} “${q}”` : `No flist matches “${q}”`;
    results.replaceChildren(r.length ? resultTable(r, `Search results for ${q}`) : empty('Nothing found. Try a shorter part of the name.'));
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run(input.value.trim(), true);
  });
  const live = debounce(() => run(input.value.trim(), true), 250);
  input.addEventListener('input', live);
  await run(q0, false);
  if (!q0) input.focus();
}

function resultTable(rows, caption) {
  return table([
    { label: 'Flist', cell: (x) => (x.type === 'taglink' || !x.name.endsWith('.flist') ? h('span', {}, x.name) : h('a', { href: flistPath(x.user, x.name) }, x.name)) },
    { label: 'Repository', cell: (x) => h('a', { href: repoPath(x.user) }, x.user) },
    { label: 'Type', cell: (x) => typeBadge(x.type) },
    { label: 'Size', class: 'num', cell: (x) => fmtBytes(x.size) },
    { label: 'Updated', class: 'nowrap', cell: (x) => timeEl(x.updated) },
  ], rows, { caption });
}
