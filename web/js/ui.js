// Small DOM and formatting helpers shared by the pages (no framework).
//
//   h('a', { href: '/x', class: 'btn' }, 'text', childNode, [more, children])
//     attributes: `class`, `text`, `on<event>` functions (onclick …), booleans (true → "",
//     false/null/undefined → left out), everything else by setAttribute. Never inline styles
//     (the CSP forbids them): use classes, or el.style.setProperty from script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** 1536 → "1.5 KiB" */
export function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

export function fmtCount(n) {
  return typeof n === 'number' ? n.toLocaleString('en') : '—';
}

/** epoch seconds → "2024-05-01 13:45" (local time) */
export function fmtDate(sec) {
  if (!sec) return '—';
  const d = new Date(sec * 1000);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** epoch seconds → "3 min ago" */
export function fmtAgo(sec) {
  if (!sec) return '—';
  const s = Math.round(Date.now() / 1000 - sec);
  if (s < 45) return 'just now';
  const steps = [[60, 'min'], [3600, 'h'], [86400, 'd'], [86400 * 30, 'mo'], [86400 * 365, 'y']];
  let out = '';
  for (let i = steps.length - 1; i >= 0; i--) {
    if (s >= steps[i][0] * (i === 0 ? 1 : 0.95)) {
      out = `${Math.max(1, Math.round(s / steps[i][0]))} ${steps[i][1]} ago`;
      break;
    }
  }
  return out || 'just now';
}

/** A <time> with the date and, as title, the exact time. */
export function timeEl(sec, ago = false) {
  if (!sec) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: new Date(sec * 1000).toISOString(), title: fmtDate(sec) }, ago ? fmtAgo(sec) : fmtDate(sec));
}

const enc = encodeURIComponent;

/** The flist page of user/name ("busybox.flist" → /user/busybox.flist.md). */
export function flistPath(user, name) {
  const n = name.endsWith('.flist') ? name : `${name}.flist`;
  return `/${enc(user)}/${enc(n)}.md`;
}

export const repoPath = (user) => `/${enc(user)}`;
export const tagPath = (user, tag) => `/${enc(user)}/tags/${enc(tag)}`;

/** A cleaned link target ("bob/app.flist", "bob/tags/v1") → the page that shows it. */
export function targetPath(target) {
  const parts = String(target).split('/');
  if (parts.length === 3 && parts[1] === 'tags') return tagPath(parts[0], parts[2]);
  if (parts.length === 2) return parts[1].endsWith('.flist') ? flistPath(parts[0], parts[1]) : tagPath(parts[0], parts[1]);
  return null;
}

const TYPE_LABEL = { regular: 'flist', symlink: 'link', crosslink: 'link', taglink: 'tag link', crosstag: 'tag link', tag: 'tag' };

export function typeBadge(type) {
  return h('span', { class: `badge badge-${type}` }, TYPE_LABEL[type] || type);
}

/** Copy text to the clipboard (with a fallback for non-secure origins). */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const ta = h('textarea', { class: 'offscreen', 'aria-hidden': 'true', readonly: true });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** A command line with a Copy button. */
export function commandBox(label, command, notify) {
  const id = `cmd-${Math.random().toString(36).slice(2, 9)}`;
  const code = h('code', { id }, command);
  const btn = h('button', { type: 'button', class: 'btn btn-small', 'aria-describedby': id }, 'Copy');
  btn.addEventListener('click', async () => {
    const ok = await copyText(command);
    btn.textContent = ok ? 'Copied' : 'Copy failed';
    if (notify) notify(ok ? `Copied: ${command}` : 'Could not copy: select the command and copy it by hand', ok ? 'info' : 'error');
    setTimeout(() => (btn.textContent = 'Copy'), 1600);
  });
  return h('div', { class: 'command' }, h('div', { class: 'command-label' }, label), h('div', { class: 'command-line' }, h('pre', {}, code), btn));
}

/** A table from column specs [{ label, cell(row) → node|string, class? }]. */
export function table(columns, rows, opts = {}) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label))));
  const body = h('tbody', {}, rows.map((r) => h('tr', opts.rowAttrs ? opts.rowAttrs(r) : {}, columns.map((c, i) => {
    const v = c.cell(r);
    return i === 0 && opts.rowHeader !== false ? h('th', { scope: 'row', class: c.class }, v) : h('td', { class: c.class }, v);
  }))));
  const t = h('table', { class: ['data', opts.class] }, opts.caption ? h('caption', { class: opts.captionClass || 'visually-hidden' }, opts.caption) : null, head, body);
  return h('div', { class: 'table-wrap' }, t);
}

/** A muted "nothing here" paragraph. */
export const empty = (text) => h('p', { class: 'empty' }, text);

/** An inline error box (role=alert) with the hub's message. */
export function errorBox(message) {
  return h('div', { class: 'alert alert-error', role: 'alert' }, message);
}

/** Loading placeholder. */
export const loading = (text = 'Loading…') => h('p', { class: 'loading', role: 'status' }, text);

/** A random id for X-Job-Id (crypto.randomUUID needs a secure context; this does not). */
export function jobId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** Debounce fn by ms. */
export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
