// Log in with a hub token (kept in this browser's localStorage), checked with GET /api/flist/me.
import { getToken, setToken } from '../api.js';
import { errorBox, h } from '../ui.js';

export default async function render(main, params, ctx) {
  ctx.setTitle('Log in');
  const input = h('input', { type: 'password', id: 'login-token', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'login-token-hint' });
  const out = h('div', { id: 'login-result', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Log in');
  const form = h('form', { id: 'login-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'login-token' }, 'Token'), input,
      h('span', { class: 'hint', id: 'login-token-hint' }, 'Your hub token, e.g. printed by ', h('code', {}, 'g8os hub user add <name>'), ' (with ', h('code', {}, 'npm start'), ' it is in ', h('code', {}, '.g8os/token'), '). It stays in this browser only.')),
    h('div', { class: 'btn-row' }, submit));

  const current = ctx.user();
  main.append(
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Log in'), h('p', { class: 'lead' }, 'Uploading and managing your repository need your hub token.'))),
    h('section', { class: 'card', 'aria-label': 'Log in' }, current ? loggedIn(current, ctx) : null, form, out),
  );

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    out.replaceChildren();
    if (!token) {
      out.replaceChildren(errorBox('Paste your token first.'));
      input.focus();
      return;
    }
    submit.disabled = true;
    let user;
    try {
      const r = await ctx.api.get('/api/flist/me', { Authorization: `Bearer ${token}` });
      user = r && r.payload && r.payload.username;
    } catch (err) {
      submit.disabled = false;
      const msg = /readonly/i.test(err.message)
        ? `This hub is read-only (${err.message}): there is nothing to log in for.`
        : `The hub refused this token: ${err.message}`;
      out.replaceChildren(errorBox(msg));
      return;
    }
    submit.disabled = false;
    if (!user) {
      out.replaceChildren(errorBox('The hub did not say who this token belongs to.'));
      return;
    }
    const previous = getToken();
    setToken(token);
    await ctx.refreshSession();
    input.value = '';
    out.replaceChildren(h('div', { class: 'alert alert-ok', role: 'status' }, 'Logged in as ', h('strong', { id: 'login-user' }, user), '. ',
      h('a', { href: '/me' }, 'Go to your repository'), ' or ', h('a', { href: '/upload' }, 'upload a tarball'), '.'));
    ctx.notify(previous && previous !== token ? `Switched to ${user}` : `Logged in as ${user}`, 'success');
    // back to the page that sent us here (a path on this hub only)
    const next = new URLSearchParams(location.search).get('next');
    if (next && next.startsWith('/') && !next.startsWith('//')) ctx.navigate(next, { replace: true });
  });
  if (!current) input.focus();
}

function loggedIn(user, ctx) {
  const out = h('button', { type: 'button', class: 'btn btn-small' }, 'Log out');
  out.addEventListener('click', async () => {
    setToken('');
    await ctx.refreshSession();
    ctx.notify('Logged out', 'info');
    ctx.navigate('/login', { replace: true });
  });
  return h('div', { class: 'alert alert-info btn-row' }, h('span', {}, 'You are logged in as ', h('strong', {}, user), '. Use another token below, or'), out);
}
