// Home: every repository (user) with its counts, size and last update; a filter box.
import { debounce, empty, errorBox, fmtBytes, fmtCount, h, loading, repoPath, table, timeEl } from '../ui.js';

export default async function render(main, params, ctx) {
  ctx.setTitle('Repositories');
  const q = params.query.get('q') || '';
  const input = h('input', { type: 'search', id: 'repo-filter', name: 'q', value: q, placeholder: 'Filter by name', autocomplete: 'off', spellcheck: 'false' });
  const count = h('p', { class: 'muted', id: 'repo-count', 'aria-live': 'polite' });
  const list = h('div', { id: 'repo-list' }, loading('Loading repositories…'));
  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Repositories'), h('p', { class: 'lead' }, 'Flists published on this hub, by user. An flist is a small index of a whole file tree; its contents are fetched block by block when used.')),
      h('a', { href: '/upload', class: 'btn btn-primary' }, 'Upload a tarball')),
    h('form', { class: 'search-bar', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'repo-filter', class: 'visually-hidden' }, 'Filter repositories by name'), input),
    count,
    list,
  );

  let repos;
  try {
    repos = (await ctx.api.get('/api/ui/repositories')).repositories || [];
  } catch (e) {
    list.replaceChildren(errorBox(`Cannot list the repositories: ${e.message}`));
    return;
  }

  const show = () => {
    const f = input.value.trim().toLowerCase();
    const rows = f ? repos.filter((r) => r.name.toLowerCase().includes(f)) : repos;
    count.textContent = f ? `${rows.length} of ${repos.length} repositories match “${input.value.trim()}”` : `${repos.length} ${repos.length === 1 ? 'repository' : 'repositories'}`;
    if (!repos.length) {
      list.replaceChildren(empty('No flists yet. Log in and upload a tarball to start the first repository.'));
      return;
    }
    if (!rows.length) {
      list.replaceChildren(empty('No repository matches the filter.'));
      return;
    }
    list.replaceChildren(table([
      { label: 'Repository', cell: (r) => h('a', { href: repoPath(r.name), class: 'repo-name' }, h('span', { class: 'avatar', 'aria-hidden': 'true' }, r.name.slice(0, 1).toUpperCase()), r.name) },
      { label: 'Flists', class: 'num', cell: (r) => fmtCount(r.flists) },
      { label: 'Links', class: 'num', cell: (r) => fmtCount(r.links) },
      { label: 'Tags', class: 'num', cell: (r) => fmtCount(r.tags) },
      { label: 'Size', class: 'num', cell: (r) => fmtBytes(r.size) },
      { label: 'Last update', class: 'nowrap', cell: (r) => timeEl(r.updated, true) },
    ], rows, { caption: 'Repositories' }));
  };
  const keep = debounce(() => {
    const v = input.value.trim();
    history.replaceState(null, '', v ? `/?q=${encodeURIComponent(v)}` : '/');
  }, 400);
  input.addEventListener('input', () => {
    show();
    keep();
  });
  show();
}
