// The flist page (/<user>/<name>.flist.md): metadata, readme, a lazily expanded content tree read
// from the flist itself, downloads, and the commands to mount and run it.
import { commandBox, errorBox, fmtBytes, fmtCount, fmtDate, h, repoPath, targetPath, timeEl, typeBadge } from '../ui.js';

const enc = encodeURIComponent;

export default async function render(main, params, ctx) {
  const { user, name } = params;
  ctx.setTitle(`${user}/${name}`);
  const base = `/api/ui/flist/${enc(user)}/${enc(name)}`;
  let f;
  try {
    f = await ctx.api.get(base);
  } catch (e) {
    main.append(
      h('p', { class: 'breadcrumb' }, h('a', { href: '/' }, 'Repositories'), ' / ', h('a', { href: repoPath(user) }, user), ' /'),
      h('h1', {}, name),
      errorBox(e.status === 404 ? `There is no flist “${name}” in ${user}: ${e.message}` : `Cannot read this flist: ${e.message}`),
    );
    return;
  }
  const md = f.metadata || {};
  const stats = f.stats || {};
  const short = name.replace(/\.flist$/, '');
  const isLink = f.type && f.type !== 'regular';

  // -- head
  main.append(h('div', { class: 'page-head' },
    h('div', {},
      h('p', { class: 'breadcrumb' }, h('a', { href: '/' }, 'Repositories'), ' / ', h('a', { href: repoPath(user) }, user), ' /'),
      h('h1', {}, name),
      h('p', { class: 'lead' },
        typeBadge(f.type || 'regular'), ' ',
        isLink && f.target ? h('span', {}, 'links to ', targetPath(f.target) ? h('a', { href: targetPath(f.target) }, f.target) : h('code', {}, f.target), ' · ') : null,
        `${fmtBytes(f.size)} · updated `, timeEl(f.updated))),
    h('div', { class: 'downloads' },
      h('a', { class: 'btn btn-primary', href: `/${enc(user)}/${enc(name)}`, download: name }, 'Download .flist'),
      h('a', { class: 'btn', href: `/${enc(user)}/${enc(name)}.md5`, 'data-native': '' }, '.md5'))));

  // -- totals
  main.append(h('dl', { class: 'stats', 'aria-label': 'Totals' },
    stat('Files', fmtCount(stats.files)),
    stat('Directories', fmtCount(stats.dirs)),
    stat('Symlinks', fmtCount(stats.symlinks)),
    stat('Special', fmtCount(stats.specials)),
    stat('Total size', fmtBytes(stats.bytes))));

  const left = h('div', {});
  const right = h('div', {});
  main.append(h('div', { class: 'grid-2' }, left, right));

  // -- readme (left) and the content tree below both columns
  const readme = h('section', { class: 'card', 'aria-labelledby': 'readme-h' }, h('h2', { id: 'readme-h' }, 'Readme'));
  left.append(readme);
  if (md.readme) {
    const body = h('div', { class: 'readme', id: 'readme' }, h('p', { class: 'loading' }, 'Rendering…'));
    readme.append(body);
    renderMarkdown(md.readme, body).catch((e) => {
      body.replaceChildren(h('pre', {}, md.readme));
      console.warn('readme rendering failed:', e);
    });
  } else {
    readme.append(h('p', { class: 'muted' }, 'This flist has no readme. A ', h('code', {}, '.README.md'), ' at the root of an uploaded tarball becomes its readme.'));
  }

  // -- use it (right)
  const url = f.url || `${location.origin}/${user}/${name}`;
  right.append(h('section', { class: 'card', 'aria-labelledby': 'use-h' },
    h('h2', { id: 'use-h' }, 'Use it'),
    commandBox('Mount it (files are fetched on first read)', `g8os mount ${url} /mnt/${short}`, ctx.notify),
    commandBox('Run a shell in a container from it', `g8os container run ${url} -- sh`, ctx.notify),
    Array.isArray(md.entrypoint) && md.entrypoint.length ? commandBox('Run its entrypoint', `g8os container run ${url}`, ctx.notify) : null,
    nodeLink(user, name)));

  // -- metadata (right)
  right.append(metadataCard(f, md));

  // -- tree
  const tree = treeCard(ctx, base, name, stats);
  main.append(tree.el);
  await tree.ready;
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, value));
}

function metadataCard(f, md) {
  const card = h('section', { class: 'card', 'aria-labelledby': 'meta-h' }, h('h2', { id: 'meta-h' }, 'Metadata'));
  const props = h('dl', { class: 'props', id: 'metadata' });
  const add = (label, value) => props.append(h('dt', {}, label), h('dd', {}, value));
  add('Entrypoint', Array.isArray(md.entrypoint) && md.entrypoint.length
    ? h('ul', { class: 'argv', 'aria-label': 'Entrypoint arguments' }, md.entrypoint.map((a) => h('li', {}, h('code', {}, a))))
    : h('span', { class: 'muted' }, 'none (containers run what you give them)'));
  const env = md.environ && typeof md.environ === 'object' ? Object.entries(md.environ) : [];
  add('Environment', env.length ? kvTable(env, 'Environment variables') : h('span', { class: 'muted' }, 'none'));
  const ports = portsOf(md.port);
  add('Ports', ports.length ? h('ul', { class: 'argv', 'aria-label': 'Exposed ports' }, ports.map((p) => h('li', {}, h('code', {}, p)))) : h('span', { class: 'muted' }, 'none'));
  const vols = md.volume ? (Array.isArray(md.volume) ? md.volume : Object.keys(md.volume)) : [];
  add('Volumes', vols.length ? h('ul', { class: 'argv', 'aria-label': 'Volumes' }, vols.map((v) => h('li', {}, h('code', {}, typeof v === 'string' ? v : JSON.stringify(v))))) : h('span', { class: 'muted' }, 'none'));
  if (md.backend) add('Block store', h('code', {}, typeof md.backend === 'string' ? md.backend : JSON.stringify(md.backend)));
  if (f.md5) add('MD5', h('code', {}, f.md5));
  add('Updated', fmtDate(f.updated));
  card.append(props);
  return card;
}

function portsOf(port) {
  if (!port) return [];
  if (Array.isArray(port)) return port.map(String);
  if (typeof port === 'object') return Object.entries(port).map(([k, v]) => (String(k).includes(String(v)) ? k : `${k} → ${v}`));
  return [String(port)];
}

function kvTable(entries, label) {
  return h('table', { class: 'kv', 'aria-label': label }, h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, typeof v === 'string' ? v : JSON.stringify(v))))));
}

/** Markdown → sanitized HTML: no styles (CSP), no remote images (nothing leaves the hub). */
async function renderMarkdown(text, into) {
  const [{ Marked }, purify] = await Promise.all([import('/web/vendor/marked.js'), import('/web/vendor/purify.js')]);
  const DOMPurify = purify.default || purify;
  // Raw HTML in the markdown loses inline styles, handlers and scripts before any parsing: the
  // browser reports them as CSP violations even in an inert document. DOMPurify does the rest.
  const md = new Marked({ async: false, gfm: true, renderer: { html: (t) => stripInline(t.text ?? t.raw ?? '') } });
  const html = md.parse(String(text));
  const clean = DOMPurify.sanitize(html, { FORBID_TAGS: ['style', 'form', 'input', 'button', 'iframe'], FORBID_ATTR: ['style', 'class', 'id'], RETURN_DOM_FRAGMENT: true });
  for (const img of clean.querySelectorAll('img')) {
    const src = img.getAttribute('src') || '';
    let ok = false;
    try {
      ok = new URL(src, location.href).origin === location.origin || src.startsWith('data:');
    } catch {
      ok = false;
    }
    if (!ok) img.replaceWith(h('a', { href: src, rel: 'noopener noreferrer nofollow' }, img.getAttribute('alt') || 'image'));
  }
  for (const a of clean.querySelectorAll('a[href]')) {
    try {
      if (new URL(a.getAttribute('href'), location.href).origin !== location.origin) a.setAttribute('rel', 'noopener noreferrer nofollow');
    } catch {
      /* leave it */
    }
  }
  // headings in the readme sit below the page's h2 "Readme"
  for (const hx of clean.querySelectorAll('h1, h2, h3, h4, h5')) {
    const level = Math.min(6, Number(hx.tagName[1]) + 2);
    const n = document.createElement(`h${level}`);
    n.append(...hx.childNodes);
    hx.replaceWith(n);
  }
  into.replaceChildren(clean);
}

function stripInline(html) {
  return String(html)
    .replace(/<(script|style)\b[\s\S]*?(<\/\1\s*>|$)/gi, '')
    .replace(/([\s"'/])(?:style|on[a-z]+)\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+)/gi, '$1')
    .replace(/([\s"'/])(?:style|on[a-z]+)(?=[\s/>])/gi, '$1');
}

// -- the content tree --------------------------------------------------------------------------

const ICON = { dir: '▸', file: '·', symlink: '↪', char: 'c', block: 'b', fifo: 'p', socket: 's' };
const TYPE_TEXT = { dir: 'directory', file: 'file', symlink: 'symbolic link', char: 'character device', block: 'block device', fifo: 'named pipe', socket: 'socket' };

function treeCard(ctx, base, name, stats) {
  const root = h('ul', { class: 'tree', id: 'tree', 'aria-label': `Contents of ${name}` });
  const totals = `${fmtCount(stats.files)} files, ${fmtCount(stats.dirs)} directories, ${fmtCount(stats.symlinks)} symlinks · ${fmtBytes(stats.bytes)}`;
  const el = h('section', { class: 'card tree-card', 'aria-labelledby': 'tree-h' },
    h('div', { class: 'card-head' }, h('h2', { id: 'tree-h' }, 'Contents'), h('span', { class: 'muted', id: 'tree-totals' }, totals)),
    h('div', { class: 'tree-scroll' },
      h('div', { class: 'tree-header', 'aria-hidden': 'true' }, h('span', {}, 'Name'), h('span', { class: 'tree-size' }, 'Size'), h('span', {}, 'Mode'), h('span', {}, 'Owner'), h('span', {}, 'Modified')),
      root),
    h('p', { class: 'tree-footer' }, 'Read from the flist itself: names, sizes, modes, owners and link targets. Expand a directory with a click, Enter or Space; → and ← open and close it.'));
  const ready = loadInto(ctx, base, '/', root, 0);
  return { el, ready };
}

async function loadInto(ctx, base, path, ul, depth) {
  const note = h('li', { class: 'tree-note', role: 'status' }, 'Loading…');
  note.style.setProperty('--depth', String(depth));
  ul.replaceChildren(note);
  let r;
  try {
    r = await ctx.api.get(`${base}/tree?path=${enc(path)}`);
  } catch (e) {
    note.className = 'tree-note tree-error';
    note.setAttribute('role', 'alert');
    note.textContent = `Cannot read ${path}: ${e.message}`;
    return false;
  }
  const entries = r.entries || [];
  if (!entries.length) {
    note.textContent = 'empty directory';
    return true;
  }
  ul.replaceChildren(...entries.map((e) => treeItem(ctx, base, e, depth)));
  return true;
}

function treeItem(ctx, base, e, depth) {
  const li = h('li', { 'data-path': e.path, 'data-type': e.type });
  const isDir = e.type === 'dir';
  const icon = h('span', { class: `icon icon-${e.type}`, 'aria-hidden': 'true' }, isDir ? '' : ICON[e.type] || '·');
  const label = h('span', { class: 'label' }, e.name);
  const typeText = h('span', { class: 'visually-hidden' }, `, ${TYPE_TEXT[e.type] || e.type}`);
  let nameCell;
  let group;
  if (isDir) {
    group = h('ul', { role: 'group', id: `t-${Math.random().toString(36).slice(2, 10)}`, hidden: true });
    const btn = h('button', { type: 'button', class: 'tree-toggle', 'aria-expanded': 'false', 'aria-controls': group.id },
      h('span', { class: 'caret', 'aria-hidden': 'true' }, '▶'), icon, label, typeText);
    let loaded = false;
    let busy = false;
    const toggle = async (open) => {
      if (busy) return;
      if (open === undefined) open = btn.getAttribute('aria-expanded') !== 'true';
      btn.setAttribute('aria-expanded', String(open));
      group.hidden = !open;
      if (open && !loaded) {
        busy = true;
        loaded = await loadInto(ctx, base, e.path, group, depth + 1);
        busy = false;
      }
    };
    btn.addEventListener('click', () => toggle());
    btn.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowRight') {
        ev.preventDefault();
        toggle(true);
      } else if (ev.key === 'ArrowLeft') {
        ev.preventDefault();
        toggle(false);
      }
    });
    nameCell = h('span', { class: 'tree-name' }, btn);
  } else {
    nameCell = h('span', { class: 'tree-name' }, h('span', { class: 'leaf-pad', 'aria-hidden': 'true' }), icon, label, typeText,
      e.target !== undefined ? h('span', { class: 'tree-target', title: e.target }, h('span', { 'aria-hidden': 'true' }, ' → '), h('span', { class: 'visually-hidden' }, ' pointing to '), e.target) : null);
  }
  nameCell.style.setProperty('--depth', String(depth));
  const owner = `${e.user || e.uid}:${e.group || e.gid}`;
  const row = h('div', { class: 'tree-row' },
    nameCell,
    h('span', { class: 'tree-size' }, e.type === 'file' ? fmtBytes(e.size) : e.rdev ? h('span', { class: 'mono', title: 'device major,minor' }, e.rdev) : h('span', { class: 'muted' }, '—')),
    h('span', { class: 'tree-mode', title: `mode ${(e.mode & 0o7777).toString(8).padStart(4, '0')}` }, e.modeText || ''),
    h('span', { class: 'tree-owner', title: `uid ${e.uid}, gid ${e.gid}` }, owner),
    h('span', { class: 'tree-time' }, e.mtime ? fmtDate(e.mtime) : '—'));
  li.append(row);
  if (group) li.append(group);
  return li;
}


/** "Run on this node" when the hub runs beside an agent (filled in once /api/node answers). */
function nodeLink(user, name) {
  const slot = h('p', { class: 'btn-row' });
  fetch('/api/node', { headers: { Accept: 'application/json' }, cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : null))
    .then((body) => {
      if (body && body.available === true)
        slot.append(h('a', { href: `/node?flist=${encodeURIComponent(`${user}/${name}`)}`, class: 'btn btn-primary', id: 'run-on-node' }, 'Run on this node'));
    })
    .catch(() => undefined);
  return slot;
}
