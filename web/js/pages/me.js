// My repository (/me): the logged-in user's flists with checkboxes; rename, link, tag, delete,
// and merge the selected ones — all through the /api/flist/me/... endpoints.
import { empty, errorBox, flistPath, fmtBytes, h, loading, repoPath, table, tagPath, targetPath, timeEl, typeBadge } from '../ui.js';

const enc = encodeURIComponent;
const bare = (n) => n.replace(/\.flist$/, '');

export default async function render(main, params, ctx) {
  ctx.setTitle('My repository');
  const user = ctx.user();
  if (!user) {
    main.append(h('h1', {}, 'My repository'),
      ctx.token() && ctx.readonly()
        ? errorBox('This hub is read-only: repositories cannot be changed here.')
        : h('div', { class: 'alert alert-info', id: 'me-login' }, 'Log in first: ', h('a', { href: '/login' }, 'log in with your hub token'), ' to manage your repository.'));
    return;
  }

  const selected = []; // names, in the order they were picked (merge: the first wins)
  const status = h('span', { class: 'selection', id: 'me-selection', 'aria-live': 'polite' }, 'Nothing selected');
  const buttons = {
    rename: h('button', { type: 'button', class: 'btn btn-small', id: 'act-rename' }, 'Rename'),
    link: h('button', { type: 'button', class: 'btn btn-small', id: 'act-link' }, 'Link'),
    tag: h('button', { type: 'button', class: 'btn btn-small', id: 'act-tag' }, 'Tag'),
    merge: h('button', { type: 'button', class: 'btn btn-small', id: 'act-merge' }, 'Merge'),
    delete: h('button', { type: 'button', class: 'btn btn-small btn-danger', id: 'act-delete' }, 'Delete'),
  };
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Actions on the selected flists' }, status, Object.values(buttons));
  const panel = h('section', { class: 'card action-panel', id: 'action-panel', hidden: true, 'aria-labelledby': 'action-h' });
  const list = h('div', { id: 'me-list' }, loading());
  const tagsBox = h('div', { id: 'me-tags' });
  const dialog = confirmDialog();

  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'My repository'), h('p', { class: 'lead' }, 'Your flists as ', h('strong', {}, user), '. Select some to act on them.')),
      h('div', { class: 'btn-row' }, h('a', { href: repoPath(user), class: 'btn' }, 'Public page'), h('a', { href: '/upload', class: 'btn btn-primary' }, 'Upload'))),
    toolbar, panel, list,
    h('h2', {}, 'Tags'), tagsBox, dialog.el,
  );

  let entries = [];
  let tags = [];
  const byName = (n) => entries.find((e) => e.name === n);

  const refreshButtons = () => {
    const n = selected.length;
    const items = selected.map(byName).filter(Boolean);
    const flistsOnly = items.every((e) => e.name.endsWith('.flist'));
    buttons.rename.disabled = n !== 1;
    buttons.link.disabled = n !== 1 || !flistsOnly;
    buttons.tag.disabled = n === 0 || !flistsOnly;
    buttons.merge.disabled = n < 2 || !flistsOnly;
    buttons.delete.disabled = n === 0;
    status.textContent = n === 0 ? 'Nothing selected' : `${n} selected: ${selected.join(', ')}`;
    for (const row of list.querySelectorAll('tr[data-name]')) row.classList.toggle('selected', selected.includes(row.dataset.name));
  };

  const load = async () => {
    let repo;
    try {
      repo = await ctx.api.get(`/api/ui/repository/${enc(user)}`);
    } catch (e) {
      if (e.status === 404) repo = { flists: [], tags: [] }; // a user with nothing published yet
      else {
        list.replaceChildren(errorBox(`Cannot read your repository: ${e.message}`));
        return;
      }
    }
    entries = repo.flists || [];
    tags = repo.tags || [];
    for (let i = selected.length - 1; i >= 0; i--) if (!byName(selected[i])) selected.splice(i, 1);
    const all = h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select all' });
    all.checked = entries.length > 0 && selected.length === entries.length;
    all.addEventListener('change', () => {
      selected.splice(0, selected.length, ...(all.checked ? entries.map((e) => e.name) : []));
      for (const cb of list.querySelectorAll('input[data-pick]')) cb.checked = all.checked;
      refreshButtons();
    });
    list.replaceChildren(entries.length ? table([
      { label: all, class: 'check', cell: (e) => pick(e.name) },
      { label: 'Name', cell: (e) => (e.name.endsWith('.flist') ? h('a', { href: flistPath(user, e.name) }, e.name) : e.name) },
      { label: 'Type', cell: (e) => typeBadge(e.type) },
      { label: 'Target', class: 'target', cell: (e) => (e.target ? (targetPath(e.target) ? h('a', { href: targetPath(e.target) }, `→ ${e.target}`) : `→ ${e.target}`) : h('span', { class: 'muted' }, '—')) },
      { label: 'Size', class: 'num', cell: (e) => fmtBytes(e.size) },
      { label: 'Updated', class: 'nowrap', cell: (e) => timeEl(e.updated) },
    ], entries, { caption: `Flists of ${user}`, rowHeader: false, rowAttrs: (e) => ({ 'data-name': e.name }) }) : empty('Nothing here yet: upload a tarball to create your first flist.'));
    refreshButtons();
    await loadTags();
  };

  const pick = (name) => {
    const cb = h('input', { type: 'checkbox', 'data-pick': name, 'aria-label': `Select ${name}`, checked: selected.includes(name) });
    cb.addEventListener('change', () => {
      const i = selected.indexOf(name);
      if (cb.checked && i < 0) selected.push(name);
      if (!cb.checked && i >= 0) selected.splice(i, 1);
      refreshButtons();
    });
    return cb;
  };

  const loadTags = async () => {
    if (!tags.length) {
      tagsBox.replaceChildren(h('p', { class: 'muted' }, 'No tags. Select flists and use “Tag” to group them under a name (e.g. a release).'));
      return;
    }
    const blocks = await Promise.all(tags.map(async (t) => {
      let items = [];
      try {
        items = await ctx.api.get(`/api/flist/${enc(user)}/tags/${enc(t)}`);
      } catch (e) {
        return h('div', { class: 'card' }, h('h3', {}, t), errorBox(e.message));
      }
      return h('section', { class: 'card', 'data-tag': t, 'aria-label': `Tag ${t}` },
        h('div', { class: 'card-head' }, h('h3', {}, h('a', { href: tagPath(user, t) }, t)), h('span', { class: 'muted' }, `${items.length} ${items.length === 1 ? 'entry' : 'entries'}`)),
        h('ul', { class: 'tag-list' }, items.map((it) => {
          const rm = h('button', { type: 'button', class: 'btn btn-small btn-quiet', 'aria-label': `Remove ${it.name} from tag ${t}` }, '✕');
          rm.addEventListener('click', () => run(`Removed ${it.name} from tag ${t}`, async () => {
            const [repo, source] = splitTarget(it.target, user, it.name);
            await ctx.api.del(`/api/flist/me/${enc(t)}/${enc(it.name)}/tag/${enc(repo)}/${enc(source)}`);
          }));
          return h('li', { class: 'btn-row' }, h('span', {}, it.name, it.target ? h('span', { class: 'muted' }, ` → ${it.target}`) : null), rm);
        })));
    }));
    tagsBox.replaceChildren(...blocks);
  };

  /** Run one change; on success reload, on failure show the hub's message. */
  const run = async (done, fn) => {
    for (const b of Object.values(buttons)) b.disabled = true;
    try {
      await fn();
      ctx.notify(done, 'success');
      closePanel();
      selected.splice(0, selected.length);
    } catch (e) {
      ctx.notify(e.message, 'error');
      panelError(e.message);
      refreshButtons();
      return false;
    }
    await load();
    return true;
  };

  // -- the action panel: one small form per action
  let panelErrorBox = null;
  const panelError = (m) => {
    if (panelErrorBox) panelErrorBox.replaceChildren(errorBox(m));
  };
  const closePanel = () => {
    panel.hidden = true;
    panel.replaceChildren();
    panelErrorBox = null;
  };
  const openPanel = (title, fieldLabel, value, hint, verb, onSubmit) => {
    const input = h('input', { type: 'text', id: 'action-input', value, autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'action-hint' });
    panelErrorBox = h('div', { id: 'action-error' });
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    cancel.addEventListener('click', () => {
      closePanel();
      buttons.rename.focus();
    });
    const form = h('form', { class: 'inline-form', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'action-input' }, fieldLabel), input),
      h('button', { type: 'submit', class: 'btn btn-primary', id: 'action-submit' }, verb), cancel);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const v = input.value.trim();
      if (!v) {
        panelError(`${fieldLabel}: enter a name`);
        input.focus();
        return;
      }
      await onSubmit(v);
    });
    panel.replaceChildren(h('h2', { id: 'action-h' }, title), h('p', { class: 'muted', id: 'action-hint' }, hint), form, panelErrorBox);
    panel.hidden = false;
    input.focus();
    input.select();
  };

  buttons.rename.addEventListener('click', () => {
    const src = selected[0];
    openPanel(`Rename ${src}`, 'New name', bare(src), '“.flist” is added when missing. Links to the old name stop working.', 'Rename', async (dest) => {
      const full = src.endsWith('.flist') && !dest.endsWith('.flist') ? `${dest}.flist` : dest;
      if (full !== src && byName(full)) {
        const ok = await dialog.ask(`Replace ${full}?`, `${full} already exists in ${user}: renaming ${src} to it replaces it.`, 'Replace');
        if (!ok) return;
      }
      await run(`Renamed ${src} to ${full}`, () => ctx.api.post(`/api/flist/me/${enc(src)}/rename/${enc(dest)}`));
    });
  });
  buttons.link.addEventListener('click', () => {
    const src = selected[0];
    openPanel(`Link to ${src}`, 'Link name', `${bare(src)}-latest`, 'A link is another name for the flist (like a symlink): it follows the flist when you upload a new one under that name.', 'Create link', (link) =>
      run(`Linked ${link} → ${src}`, () => ctx.api.post(`/api/flist/me/${enc(src)}/link/${enc(link)}`)));
  });
  buttons.tag.addEventListener('click', () => {
    const srcs = [...selected];
    openPanel(`Tag ${srcs.length === 1 ? srcs[0] : `${srcs.length} flists`}`, 'Tag name', '', `Adds ${srcs.join(', ')} to the tag (created when new), e.g. a release name.`, 'Tag', (tag) =>
      run(`Tagged ${srcs.join(', ')} as ${tag}`, async () => {
        for (const s of srcs) await ctx.api.post(`/api/flist/me/${enc(tag)}/${enc(s)}/tag/${enc(user)}/${enc(s)}`);
      }));
  });
  buttons.merge.addEventListener('click', () => {
    const srcs = [...selected];
    openPanel(`Merge ${srcs.length} flists`, 'Name of the merged flist', `${bare(srcs[0])}-merged`, `In this order: ${srcs.join(', ')}. Where paths collide, the first one wins. No data is copied.`, 'Merge', (target) =>
      run(`Merged ${srcs.join(', ')} into ${target}`, () => ctx.api.post(`/api/flist/me/merge/${enc(target)}`, srcs.map((s) => `${user}/${s}`))));
  });
  buttons.delete.addEventListener('click', async () => {
    const srcs = [...selected];
    closePanel();
    const ok = await dialog.ask(`Delete ${srcs.length === 1 ? srcs[0] : `${srcs.length} flists`}?`, `${srcs.join(', ')} will be removed from ${user}. Links pointing at ${srcs.length === 1 ? 'it' : 'them'} stop working. This cannot be undone.`, 'Delete');
    if (!ok) return;
    await run(`Deleted ${srcs.join(', ')}`, async () => {
      for (const s of srcs) await ctx.api.del(`/api/flist/me/${enc(s)}`);
    });
  });

  await load();
}

function splitTarget(target, user, name) {
  const parts = String(target || '').split('/');
  return parts.length === 2 ? parts : [user, name];
}

/** A modal confirmation (<dialog>); ask() resolves true when confirmed. */
function confirmDialog() {
  const title = h('h2', { id: 'confirm-h' }, '');
  const text = h('p', { id: 'confirm-text' }, '');
  const yes = h('button', { type: 'button', class: 'btn btn-danger-solid', id: 'confirm-yes' }, 'Delete');
  const no = h('button', { type: 'button', class: 'btn', id: 'confirm-no' }, 'Cancel');
  const el = h('dialog', { 'aria-labelledby': 'confirm-h', 'aria-describedby': 'confirm-text' }, title, text, h('div', { class: 'btn-row' }, yes, no));
  let resolve = null;
  const close = (v) => {
    if (el.open) el.close();
    if (resolve) resolve(v);
    resolve = null;
  };
  yes.addEventListener('click', () => close(true));
  no.addEventListener('click', () => close(false));
  el.addEventListener('cancel', () => close(false));
  return {
    el,
    ask(t, body, verb) {
      title.textContent = t;
      text.textContent = body;
      yes.textContent = verb;
      el.showModal();
      no.focus();
      return new Promise((r) => (resolve = r));
    },
  };
}
