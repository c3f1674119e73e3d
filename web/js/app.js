// The shell of the hub's pages: router, layout, navigation, login state, notifications.
//
// ## The shell contract (page modules code against this)
// - web/index.html has one <main id="main">, a header with nav links (Home, Search, Upload,
//   My repository, Node — Node only when GET /api/node says {available: true}), the login
//   state area (#session) and an aria-live region for notifications (#notices). It loads
//   /web/style.css, /web/node.css and this module. No inline scripts or styles anywhere (CSP:
//   script-src 'self'; style-src 'self'): use classes, or el.style.setProperty() from script.
// - Router: location.pathname → page module (table ROUTES below); /node loads
//   /web/js/pages/node.js. Same-origin <a href="/…"> clicks navigate without reloading, except
//   links with `download`, `target`, `data-native`, or to downloads/the API (.flist, .md5,
//   .json, .txt, /api/, /listen/).
// - A page module: `export default async function render(main, params, ctx)`
//     main    the emptied <main id="main"> (the page's <h1> goes first in it)
//     params  the route's params (decoded), plus `query`: URLSearchParams of location.search
//     ctx = { api, token(), user(), navigate(path, {replace}), notify(message, kind),
//             setTitle(text), refreshSession(), readonly() }
//       api       web/js/api.js (get/post/del/upload/events; bearer token when logged in)
//       token()   the login token or '' ; user() the logged-in user name or '' (checked
//                 with GET /api/flist/me at start and on login)
//       notify    kind: 'info' | 'success' | 'error' (errors stay until dismissed)
//       readonly() true when the hub refused the token check with "readonly mode"
//       refreshSession() re-checks the token (after a login), resolves with the user name
//   It may return a cleanup function, called when the page is left (close event streams,
//   clear timers). While it renders, main has aria-busy="true"; "false" once it resolved.
//   After a navigation the page's first <h1> gets the focus (screen readers announce it).
// - Login: the token is kept in localStorage under "g8os.token" (api.js TOKEN_KEY); /login
//   takes a token and checks it with GET /api/flist/me; the header's "Log out" clears it.
// - Helpers for pages: web/js/ui.js (h() element builder, fmtBytes, fmtDate, fmtAgo, timeEl,
//   table, commandBox, errorBox, loading, flistPath, typeBadge, jobId, debounce).
import { api, getToken, setToken } from './api.js';
import { h } from './ui.js';

const dec = (s) => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

/** [pattern, module, nav key, param names] — first match wins. */
const ROUTES = [
  [/^\/$/, 'home', 'home', []],
  [/^\/search\/?$/, 'search', 'search', []],
  [/^\/upload\/?$/, 'upload', 'upload', []],
  [/^\/me\/?$/, 'me', 'me', []],
  [/^\/login\/?$/, 'login', '', []],
  [/^\/node\/?$/, 'node', 'node', []],
  [/^\/([^/]+)\/tags\/([^/]+)\/?$/, 'repo', '', ['user', 'tag']],
  [/^\/([^/]+)\/([^/]+)\.md$/, 'flist', '', ['user', 'name']],
  [/^\/([^/]+)\/?$/, 'repo', '', ['user']],
];

const main = document.getElementById('main');
const notices = document.getElementById('notices');
const sessionEl = document.getElementById('session');
const nodeNav = document.getElementById('nav-node');

const state = { user: '', checked: false, readonly: false, sessionError: '' };
let cleanup = null;
let generation = 0;

function setTitle(text) {
  document.title = text ? `${text} · g8os hub` : 'g8os hub';
}

/** Show a notification in the aria-live region. */
function notify(message, kind = 'info') {
  const text = String(message ?? '');
  const close = h('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss' }, '×');
  const el = h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('span', { class: 'notice-text' }, text), close);
  close.addEventListener('click', () => el.remove());
  notices.append(el);
  while (notices.children.length > 4) notices.firstElementChild.remove();
  if (kind !== 'error') setTimeout(() => el.remove(), 6000);
  return el;
}

function clearErrors() {
  for (const el of [...notices.querySelectorAll('.notice-error')]) el.remove();
}

function navigate(path, opts = {}) {
  if (opts.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  return route();
}

function match(pathname) {
  for (const [re, mod, nav, names] of ROUTES) {
    const m = re.exec(pathname);
    if (!m) continue;
    const params = {};
    names.forEach((n, i) => (params[n] = dec(m[i + 1])));
    if (mod === 'flist' && !params.name.endsWith('.flist')) continue; // /<user>/<flist>.md only
    return { mod, nav, params };
  }
  return null;
}

function markNav(key) {
  for (const a of document.querySelectorAll('.site-nav a')) {
    if (a.dataset.nav === key) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  const gen = ++generation;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.warn('page cleanup failed:', e);
    }
    cleanup = null;
  }
  clearErrors();
  const m = match(location.pathname);
  markNav(m ? m.nav : '');
  main.replaceChildren();
  main.setAttribute('aria-busy', 'true');
  const params = { ...(m ? m.params : {}), query: new URLSearchParams(location.search) };
  const ctx = {
    api,
    token: getToken,
    user: () => state.user,
    navigate,
    notify,
    setTitle,
    refreshSession,
    readonly: () => state.readonly,
  };
  try {
    if (!m) {
      renderNotFound();
    } else {
      await sessionReady;
      if (gen !== generation) return;
      let mod;
      try {
        mod = await import(`./pages/${m.mod}.js`);
      } catch (e) {
        console.warn(`cannot load page ${m.mod}:`, e);
        throw new Error(`this page could not be loaded (${m.mod}.js)`);
      }
      if (gen !== generation) return;
      const ret = await mod.default(main, params, ctx);
      if (typeof ret === 'function') {
        if (gen === generation) cleanup = ret;
        else ret();
      }
    }
  } catch (e) {
    if (gen !== generation) return;
    main.replaceChildren(h('h1', {}, 'Something went wrong'), h('div', { class: 'alert alert-error', role: 'alert' }, e.message || String(e)));
    setTitle('Error');
  }
  if (gen !== generation) return;
  main.setAttribute('aria-busy', 'false');
  focusHeading();
}

let firstRender = true;
function focusHeading() {
  if (firstRender) {
    firstRender = false; // a fresh load keeps the browser's own focus
    return;
  }
  const h1 = main.querySelector('h1');
  const target = h1 || main;
  if (h1 && !h1.hasAttribute('tabindex')) h1.setAttribute('tabindex', '-1');
  if (!main.contains(document.activeElement) || document.activeElement === main) target.focus({ preventScroll: false });
  window.scrollTo(0, 0);
}

function renderNotFound() {
  setTitle('Not found');
  main.append(
    h('h1', {}, 'Page not found'),
    h('p', {}, 'There is no page at ', h('code', {}, location.pathname), '. ', h('a', { href: '/' }, 'Back to the repositories'), '.'),
  );
}

// -- login state -----------------------------------------------------------------------------

async function refreshSession() {
  const token = getToken();
  state.user = '';
  state.sessionError = '';
  if (token) {
    try {
      const r = await api.get('/api/flist/me');
      state.user = (r && r.payload && r.payload.username) || '';
    } catch (e) {
      if (e.status === 401) {
        setToken('');
        state.sessionError = `You were logged out: ${e.message}`;
      } else if (/readonly/i.test(e.message)) {
        state.readonly = true;
      } else {
        state.sessionError = e.message;
      }
    }
  }
  state.checked = true;
  renderSession();
  return state.user;
}

function renderSession() {
  const token = getToken();
  if (state.user) {
    const out = h('button', { type: 'button', class: 'btn btn-quiet btn-small' }, 'Log out');
    out.addEventListener('click', () => {
      setToken('');
      state.user = '';
      renderSession();
      notify('Logged out: the token was removed from this browser', 'info');
      if (location.pathname === '/me') navigate('/');
      else route();
    });
    sessionEl.replaceChildren(h('a', { href: '/me', class: 'session-user', title: 'My repository' }, h('span', { class: 'avatar', 'aria-hidden': 'true' }, state.user.slice(0, 1).toUpperCase()), h('span', {}, state.user)), out);
  } else if (token && state.readonly) {
    sessionEl.replaceChildren(h('span', { class: 'muted' }, 'read-only hub'));
  } else {
    sessionEl.replaceChildren(h('a', { href: '/login', class: 'btn btn-small' }, 'Log in'));
  }
}

async function checkNode() {
  try {
    const r = await fetch('/api/node', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!r.ok) return;
    const body = await r.json();
    nodeNav.hidden = !(body && body.available === true);
  } catch {
    /* no node page */
  }
}

// -- links -----------------------------------------------------------------------------------

const NATIVE = /(\.flist|\.md5|\.json|\.txt)$|^\/(api|listen|web)\//;

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download') || a.dataset.native !== undefined) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || NATIVE.test(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return; // in-page anchor
  e.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => route());

const sessionReady = refreshSession().then((user) => {
  if (state.sessionError) notify(state.sessionError, 'error');
  return user;
});
checkNode();
route();
