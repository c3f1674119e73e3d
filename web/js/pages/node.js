// The node page (/node): the agent running beside this hub. Its containers (refreshed every few
// seconds), a form to start a container from an flist with a command whose output streams live
// into a log panel, terminate buttons, and the running jobs. Talks only to /api/node/* and, for
// the flist picker, /api/ui/repositories + /api/ui/repository/:user (see web/README.md).
//
// Output streaming: GET /api/node/jobs/:job/output is server-sent events behind a Bearer token;
// ctx.api.events reads it with fetch() (an EventSource cannot send the Authorization header).

const REFRESH_MS = 3000;
const MAX_LINES = 5000; // the log panel keeps the newest lines
const MAX_REPOS = 40; // the flist picker lists this many repositories (newest first)
const JOBS_KEY = 'g8os.node.jobs'; // container id -> {job, command} started from this browser

export default async function render(main, params, ctx) {
  ctx.setTitle('Node');

  const page = el('div', { class: 'node-page' });
  const head = el('div', { class: 'page-head' },
    el('div', {},
      el('h1', {}, 'Node'),
      el('p', { class: 'lead' }, 'The agent beside this hub: start a container from an flist, watch its output live, terminate it.')));
  page.append(head);
  main.append(page);

  let available = false;
  try {
    available = Boolean((await ctx.api.get('/api/node')).available);
  } catch (e) {
    page.append(el('div', { class: 'alert alert-error', role: 'alert' }, `Could not reach the node API: ${e.message}`));
    return () => {};
  }
  if (!available) {
    page.append(el('div', { class: 'alert alert-info', role: 'status' },
      el('strong', {}, 'No agent runs beside this hub. '),
      'Start the hub with ', el('code', {}, 'g8os hub --agent <redis://… | socket>'), ', or run both with ', el('code', {}, 'npm start'), '.'));
    return () => {};
  }
  if (!ctx.token()) {
    // the shell routes same-origin links; ?next= asks the login page to come back here
    const link = el('a', { href: `/login?next=${encodeURIComponent(location.pathname + location.search)}`, class: 'btn btn-primary' }, 'Log in');
    page.append(el('section', { class: 'card node-login', 'aria-labelledby': 'node-login-title' },
      el('h2', { id: 'node-login-title' }, 'Log in to control this node'),
      el('p', {}, 'Listing, starting and terminating containers needs your hub token.'),
      link));
    return () => {};
  }

  // ---- state --------------------------------------------------------------------------------
  let stopped = false;
  let timer = 0;
  let stream = null; // {es, job, container}: the output being shown
  const knownJobs = loadKnownJobs();

  // ---- layout -------------------------------------------------------------------------------
  // status: what happened (a live region); updated: when the tables were last refreshed (not
  // live, or a screen reader would announce it every few seconds)
  const status = el('p', { class: 'node-status', role: 'status' });
  const updated = el('span', { class: 'node-updated' }, 'Loading…');
  head.firstElementChild.append(el('div', { class: 'node-statusbar' }, el('span', { class: 'node-dot', 'aria-hidden': 'true' }), updated, status));

  const form = startForm();
  const output = outputPanel();
  const containers = containersTable();
  const jobs = jobsTable();
  const confirm = confirmDialog();
  page.append(
    el('div', { class: 'node-grid' }, form.card, output.card),
    containers.card,
    jobs.card,
    confirm.dialog,
  );

  // ---- the start form -----------------------------------------------------------------------
  function startForm() {
    const select = el('select', { id: 'node-flist', name: 'flist', 'aria-describedby': 'node-flist-hint' },
      el('option', { value: '' }, 'Loading flists…'));
    const url = el('input', { id: 'node-url', name: 'url', type: 'text', inputmode: 'url', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'https://hub.example.org/user/name.flist', 'aria-describedby': 'node-flist-hint' });
    const command = el('input', { id: 'node-command', name: 'command', type: 'text', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'echo hello', 'aria-describedby': 'node-command-hint', class: 'mono' });
    const name = el('input', { id: 'node-name', name: 'name', type: 'text', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'web', maxlength: '63', 'aria-describedby': 'node-name-hint' });
    const error = el('div', { class: 'alert alert-error', id: 'node-form-error', role: 'alert', hidden: '' });
    const submit = el('button', { type: 'submit', class: 'btn btn-primary' }, 'Start container');
    const f = el('form', { class: 'node-form', novalidate: '' },
      field('node-flist', 'Flist', select),
      field('node-url', 'or an flist URL', url, 'node-flist-hint', 'A URL, when given, is used instead of the list.'),
      field('node-command', 'Command', command, 'node-command-hint', 'Runs with sh -c. Empty: the flist\'s entrypoint.'),
      field('node-name', el('span', {}, 'Name ', el('span', { class: 'muted node-optional' }, '(optional)')), name, 'node-name-hint', 'The container\'s hostname.'),
      error,
      el('div', { class: 'btn-row node-actions' }, submit));
    const card = el('section', { class: 'card node-start', 'aria-labelledby': 'node-start-title' },
      el('h2', { id: 'node-start-title' }, 'Start a container'), f);

    const showError = (message, input) => {
      error.textContent = message;
      error.hidden = !message;
      for (const i of [select, url, command, name]) i.removeAttribute('aria-invalid');
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
    };
    url.addEventListener('input', () => {
      select.disabled = url.value.trim() !== '';
    });

    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      const flist = url.value.trim() || select.value;
      if (!flist) return showError('Choose an flist, or give its URL.', select.disabled ? url : select);
      const body = { flist };
      const cmd = command.value.trim();
      if (cmd) body.command = cmd;
      const n = name.value.trim();
      if (n) body.name = n;
      showError('');
      submit.disabled = true;
      submit.classList.add('node-busy');
      submit.textContent = 'Starting…';
      status.textContent = `Starting a container from ${flist}…`;
      try {
        const r = await ctx.api.post('/api/node/containers', body);
        if (stopped) return;
        knownJobs.set(String(r.id), { job: r.job, command: cmd || '(entrypoint)' });
        saveKnownJobs(knownJobs);
        status.textContent = '';
        ctx.notify(`Container ${r.id} started`, 'success');
        follow(r.job, r.id, cmd || '(entrypoint)');
        refresh();
      } catch (err) {
        if (stopped) return;
        const message = err.message || String(err);
        // the hub names the field it refuses ("name: …", "flist: …", "command: …")
        const which = /^(name|flist|command):/.exec(message)?.[1];
        showError(message, which === 'name' ? name : which === 'command' ? command : which === 'flist' ? (select.disabled ? url : select) : null);
        status.textContent = '';
      } finally {
        submit.disabled = false;
        submit.classList.remove('node-busy');
        submit.textContent = 'Start container';
      }
    });
    return { card, select, url };
  }

  async function loadFlists() {
    const { select } = form;
    const wanted = (params.query || new URLSearchParams(location.search)).get('flist');
    let repos = [];
    try {
      repos = (await ctx.api.get('/api/ui/repositories')).repositories || [];
    } catch (e) {
      select.replaceChildren(el('option', { value: '' }, 'Could not list flists'));
      return;
    }
    const me = ctx.user && ctx.user();
    repos.sort((a, b) => (b.name === me) - (a.name === me)); // mine first, then newest first
    const lists = await Promise.all(repos.slice(0, MAX_REPOS).map((r) =>
      ctx.api.get(`/api/ui/repository/${encodeURIComponent(r.name)}`).catch(() => null)));
    if (stopped) return;
    const groups = [];
    let count = 0;
    for (const repo of lists) {
      if (!repo || !repo.flists || !repo.flists.length) continue;
      const g = el('optgroup', { label: repo.name });
      for (const f of repo.flists) {
        const value = `${repo.name}/${f.name}`;
        const label = f.target ? `${value} → ${f.target}` : value;
        g.append(el('option', { value }, label));
        count++;
      }
      groups.push(g);
    }
    if (!count) {
      select.replaceChildren(el('option', { value: '' }, 'No flists on this hub yet'));
      if (wanted) {
        form.url.value = wanted;
        select.disabled = true;
      }
      return;
    }
    select.replaceChildren(el('option', { value: '' }, `Choose an flist (${count} on this hub)…`), ...groups);
    if (wanted) {
      if ([...select.options].some((o) => o.value === wanted)) select.value = wanted;
      else {
        form.url.value = wanted; // a URL, or an flist the list does not show
        select.disabled = true;
      }
    }
  }

  // ---- the output panel ---------------------------------------------------------------------
  function outputPanel() {
    const meta = el('p', { class: 'node-output-meta' }, 'Start a container to see its output here.');
    const log = el('div', { class: 'node-log', id: 'node-output', role: 'log', 'aria-live': 'polite', 'aria-label': 'Command output', tabindex: '0' });
    const exit = el('p', { class: 'node-exit', id: 'node-exit', role: 'status', 'aria-live': 'polite' });
    const clear = el('button', { type: 'button', class: 'btn btn-small btn-quiet' }, 'Clear');
    clear.addEventListener('click', () => clearLines());
    const card = el('section', { class: 'card node-output', 'aria-labelledby': 'node-output-title' },
      el('div', { class: 'card-head node-output-head' },
        el('h2', { id: 'node-output-title' }, 'Output'),
        el('span', { class: 'node-legend', 'aria-hidden': 'true' },
          el('span', { class: 'node-key node-key-out' }, 'stdout'), el('span', { class: 'node-key node-key-err' }, 'stderr')),
        clear),
      meta, log, exit);
    return { card, meta, log, exit };
  }

  // Lines are queued and added once per animation frame: a fast command (or the replay of 5,000
  // kept lines) costs one layout per frame, not one per line.
  let pending = [];
  let frame = 0;
  function appendLine(streamNo, text) {
    pending.push([streamNo, text]);
    if (!frame) frame = requestAnimationFrame(flushLines);
  }
  function flushLines() {
    frame = 0;
    const { log } = output;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    const batch = pending.length > MAX_LINES ? pending.slice(-MAX_LINES) : pending;
    pending = [];
    const frag = document.createDocumentFragment();
    for (const [streamNo, text] of batch) {
      const line = el('div', { class: streamNo === 2 ? 'node-line node-stderr' : 'node-line node-stdout' });
      if (streamNo === 2) line.append(el('span', { class: 'visually-hidden' }, 'stderr: '));
      line.append(text);
      frag.append(line);
    }
    log.append(frag);
    for (let extra = log.childElementCount - MAX_LINES; extra > 0; extra--) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  function clearLines() {
    pending = [];
    output.log.replaceChildren();
  }

  function setExit(text, kind) {
    output.exit.textContent = text;
    output.exit.className = `node-exit${kind ? ` node-exit-${kind}` : ''}`;
  }

  /** Shows job's output (the lines so far, then live) in the panel; one stream at a time. */
  function follow(job, container, command) {
    if (stream) stream.es.close();
    const me = { es: null, job, container };
    stream = me;
    output.meta.replaceChildren(
      el('span', { class: 'node-tag' }, `container ${container}`), ' ',
      el('code', {}, command));
    let attempts = 0;
    const open = () => {
      clearLines(); // the server sends the lines so far first
      setExit('Running…', 'running');
      let ended = false;
      const es = ctx.api.events(`/api/node/jobs/${encodeURIComponent(job)}/output`);
      me.es = es;
      es.on('message', (d) => {
        if (d && typeof d.line === 'string') appendLine(d.stream, d.line);
      });
      es.on('skipped', (d) => {
        const n = d && typeof d === 'object' ? d.lines : 0;
        flushLines();
        output.log.append(el('div', { class: 'node-line node-skipped' }, `… ${n || 'some'} earlier line${n === 1 ? '' : 's'} not kept`));
      });
      es.on('end', (d) => {
        ended = true;
        d = d && typeof d === 'object' ? d : {};
        const code = d.exit ?? d.code;
        const ok = d.state === 'SUCCESS' && !code;
        let text = `Exited with status ${code ?? '?'}`;
        const why = [];
        if (code > 128 && code < 160) why.push(SIGNALS[code - 128] || `signal ${code - 128}`);
        if (d.state && !['SUCCESS', 'ERROR'].includes(d.state)) why.push(d.state); // TIMEOUT, KILLED, …
        if (why.length) text += ` (${why.join(', ')})`;
        if (d.message) text += `: ${d.message}`;
        setExit(text, ok ? 'ok' : 'failed');
      });
      const retry = (why) => {
        if (ended || stopped || stream !== me) return;
        // the connection dropped before the end: start over (the lines so far come again)
        if (++attempts > 5) return setExit(`Lost the output stream: ${why}`, 'failed');
        setTimeout(() => {
          if (!stopped && stream === me) open();
        }, 1000);
      };
      es.on('error', (e) => {
        if (e.status && e.status < 500) {
          ended = true;
          setExit(`Output unavailable: ${e.message}`, 'failed');
        } else retry(e.message);
      });
      es.on('close', () => retry('the stream closed early'));
    };
    open();
  }

  // ---- containers ---------------------------------------------------------------------------
  function containersTable() {
    const tbody = el('tbody');
    const empty = el('p', { class: 'empty', hidden: '' }, 'No containers are running.');
    const count = el('span', { class: 'muted node-count' });
    const heading = el('h2', { id: 'node-containers-title', tabindex: '-1' }, 'Containers');
    const table = el('table', { class: 'data node-containers' },
      el('caption', { class: 'visually-hidden' }, 'Running containers'),
      el('thead', {}, el('tr', {}, ...['ID', 'Name', 'Flist', 'Tags', 'Uptime', 'CPU', 'Memory'].map((h) =>
        el('th', { scope: 'col', class: /^(ID|Uptime|CPU|Memory)$/.test(h) ? 'num' : null }, h)),
        el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Actions')))),
      tbody);
    const wrap = el('div', { class: 'table-wrap' }, table);
    const card = el('section', { class: 'node-section', 'aria-labelledby': 'node-containers-title' },
      el('div', { class: 'card-head' }, heading, count),
      wrap, empty);
    return { card, tbody, table: wrap, empty, count, heading, rows: new Map() };
  }

  function renderContainers(list) {
    const t = containers;
    list.sort((a, b) => a.id - b.id);
    const seen = new Set();
    for (const c of list) {
      const key = String(c.id);
      seen.add(key);
      let row = t.rows.get(key);
      if (!row) {
        row = containerRow(c);
        t.rows.set(key, row);
      }
      row.update(c);
      t.tbody.append(row.tr); // keeps the order by id; moving a row keeps focus inside it
    }
    for (const [key, row] of t.rows) {
      if (!seen.has(key)) {
        row.tr.remove();
        t.rows.delete(key);
      }
    }
    for (const key of [...knownJobs.keys()]) if (!seen.has(key)) knownJobs.delete(key);
    saveKnownJobs(knownJobs);
    t.table.hidden = list.length === 0;
    t.empty.hidden = list.length !== 0;
    t.count.textContent = `${list.length} running`;
  }

  function containerRow(c) {
    const cells = {
      id: el('td', { class: 'num mono', 'data-label': 'ID' }),
      name: el('td', { 'data-label': 'Name' }),
      flist: el('td', { class: 'node-flist', 'data-label': 'Flist' }),
      tags: el('td', { 'data-label': 'Tags' }),
      uptime: el('td', { class: 'num', 'data-label': 'Uptime' }),
      cpu: el('td', { class: 'num', 'data-label': 'CPU' }),
      memory: el('td', { class: 'num', 'data-label': 'Memory' }),
      actions: el('td', { class: 'node-row-actions' }),
    };
    const tr = el('tr', { 'data-id': String(c.id) }, ...Object.values(cells));
    const show = el('button', { type: 'button', class: 'btn btn-small node-show' }, 'Output');
    const kill = el('button', { type: 'button', class: 'btn btn-small btn-danger node-terminate' }, 'Terminate');
    show.addEventListener('click', () => {
      const k = jobOf(c);
      if (k) {
        follow(k.job, c.id, k.command);
        output.log.focus();
      }
    });
    kill.addEventListener('click', async () => {
      const label = c.hostname ? `${c.id} (${c.hostname})` : String(c.id);
      if (!(await confirm.ask(`Terminate container ${label}?`, 'Its processes are killed and its writable layer is removed.'))) return kill.focus();
      kill.disabled = true;
      show.disabled = true;
      kill.textContent = 'Terminating…';
      tr.classList.add('node-leaving');
      try {
        await ctx.api.del(`/api/node/containers/${encodeURIComponent(c.id)}`);
        if (stopped) return;
        ctx.notify(`Container ${label} terminated`, 'success');
        const hadFocus = tr.contains(document.activeElement);
        await refresh();
        if (stopped) return;
        // the row (and its focused button) is gone: keep the keyboard user in the table
        if (hadFocus || document.activeElement === document.body) {
          const next = containers.tbody.querySelector('.node-terminate');
          (next || containers.heading).focus();
        }
      } catch (e) {
        if (stopped) return;
        ctx.notify(`Could not terminate container ${label}: ${e.message}`, 'error');
        kill.disabled = false;
        show.disabled = false;
        kill.textContent = 'Terminate';
        tr.classList.remove('node-leaving');
      }
    });
    cells.actions.append(show, kill);
    let last = '';
    return {
      tr,
      update(n) {
        c = n;
        show.hidden = !jobOf(n);
        show.setAttribute('aria-label', `Show the output of container ${n.id}`);
        kill.setAttribute('aria-label', `Terminate container ${n.id}`);
        cells.uptime.textContent = duration(n.uptime);
        cells.cpu.textContent = `${(Number(n.cpu) || 0).toFixed(1)} %`;
        cells.memory.textContent = n.memory ? bytes(n.memory) : '—'; // 0: not measured yet
        const sig = JSON.stringify([n.hostname, n.flist, n.tags]);
        if (sig === last) return;
        last = sig;
        cells.id.textContent = String(n.id);
        cells.name.textContent = n.hostname || '—';
        cells.flist.replaceChildren(flistLink(n.flist));
        const tags = Array.isArray(n.tags) ? n.tags : n.tags ? [n.tags] : [];
        cells.tags.replaceChildren(...(tags.length ? tags.map((t) => el('span', { class: 'node-tag' }, String(t))) : ['—']));
      },
    };
  }

  /** The command the hub started in container c (the hub says which job; this browser knows its text). */
  function jobOf(c) {
    const k = knownJobs.get(String(c.id));
    if (c.job) return { job: c.job, command: k && k.job === c.job ? k.command : `job ${shortId(c.job)}` };
    return k || null;
  }

  /** An flist on this hub links to its page; others show their URL. */
  function flistLink(flist) {
    if (!flist) return '—';
    let u;
    try {
      u = new URL(flist, location.origin);
    } catch {
      return el('span', { class: 'mono' }, String(flist));
    }
    const m = /^\/([^/]+)\/([^/]+\.flist)$/.exec(u.pathname);
    if (u.origin === location.origin && m) {
      return el('a', { href: `/${m[1]}/${m[2]}.md`, title: flist }, `${decodeURIComponent(m[1])}/${decodeURIComponent(m[2])}`);
    }
    return el('span', { class: 'mono', title: flist }, flist);
  }

  // ---- jobs ---------------------------------------------------------------------------------
  function jobsTable() {
    const tbody = el('tbody');
    const empty = el('p', { class: 'empty', hidden: '' }, 'No jobs are running.');
    const count = el('span', { class: 'muted node-count' });
    const table = el('table', { class: 'data node-jobs' },
      el('caption', { class: 'visually-hidden' }, 'Running jobs'),
      el('thead', {}, el('tr', {}, ...['Job', 'Command', 'Where', 'Started', 'CPU', 'Memory'].map((h) =>
        el('th', { scope: 'col', class: /^(Started|CPU|Memory)$/.test(h) ? 'num' : null }, h)))),
      tbody);
    const wrap = el('div', { class: 'table-wrap' }, table);
    const card = el('section', { class: 'node-section', 'aria-labelledby': 'node-jobs-title' },
      el('div', { class: 'card-head' }, el('h2', { id: 'node-jobs-title' }, 'Jobs'), count),
      wrap, empty);
    return { card, tbody, table: wrap, empty, count };
  }

  function renderJobs(list) {
    const t = jobs;
    list.sort((a, b) => (a.container ?? 0) - (b.container ?? 0) || (a.starttime ?? 0) - (b.starttime ?? 0));
    t.tbody.replaceChildren(...list.map((j) => el('tr', {},
      el('td', { class: 'mono node-jobid', title: String(j.id), 'data-label': 'Job' }, shortId(j.id)),
      el('td', { class: 'mono node-command', 'data-label': 'Command' }, commandText(j.command)),
      el('td', { 'data-label': 'Where' }, j.container ? `container ${j.container}` : 'host'),
      el('td', { class: 'num', 'data-label': 'Started', title: j.starttime ? new Date(j.starttime).toLocaleString() : '' }, j.starttime ? `${duration((Date.now() - j.starttime) / 1000)} ago` : '—'),
      el('td', { class: 'num', 'data-label': 'CPU' }, `${(Number(j.cpu) || 0).toFixed(1)} %`),
      el('td', { class: 'num', 'data-label': 'Memory' }, j.rss ? bytes(j.rss) : '—'))));
    t.table.hidden = list.length === 0;
    t.empty.hidden = list.length !== 0;
    t.count.textContent = `${list.length} running`;
  }

  // ---- confirmation -------------------------------------------------------------------------
  function confirmDialog() {
    const title = el('h2', { id: 'node-confirm-title' });
    const text = el('p', { id: 'node-confirm-text' });
    const cancel = el('button', { type: 'button', class: 'btn' }, 'Cancel');
    const ok = el('button', { type: 'button', class: 'btn btn-danger-solid' }, 'Terminate');
    const dialog = el('dialog', { class: 'node-dialog', 'aria-labelledby': 'node-confirm-title', 'aria-describedby': 'node-confirm-text' },
      title, text, el('div', { class: 'btn-row node-actions' }, cancel, ok));
    let resolve = null;
    const done = (v) => {
      if (dialog.open) dialog.close();
      if (resolve) resolve(v);
      resolve = null;
    };
    cancel.addEventListener('click', () => done(false));
    ok.addEventListener('click', () => done(true));
    dialog.addEventListener('close', () => done(false)); // Escape
    dialog.addEventListener('click', (e) => {
      if (e.target === dialog) done(false); // a click on the backdrop
    });
    return {
      dialog,
      ask(t, s) {
        if (resolve) resolve(false);
        title.textContent = t;
        text.textContent = s;
        dialog.showModal();
        cancel.focus();
        return new Promise((r) => (resolve = r));
      },
      close: () => done(false),
    };
  }

  // ---- refresh loop -------------------------------------------------------------------------
  let inFlight = null;
  let failing = '';
  function refresh() {
    if (!inFlight) inFlight = load().finally(() => (inFlight = null));
    return inFlight;
  }
  async function load() {
    const [c, j] = await Promise.allSettled([ctx.api.get('/api/node/containers'), ctx.api.get('/api/node/jobs')]);
    if (stopped) return;
    if (c.status === 'fulfilled') renderContainers(c.value.containers || []);
    if (j.status === 'fulfilled') renderJobs(j.value.jobs || []);
    const err = [c, j].find((r) => r.status === 'rejected');
    if (!err) {
      updated.textContent = `Agent connected · updated ${new Date().toLocaleTimeString()}`;
      if (failing) status.textContent = '';
      failing = '';
    } else {
      const e = err.reason;
      const text = e.status === 401 ? 'Your token was not accepted: log in again.' : `Could not refresh: ${e.message}`;
      updated.textContent = 'Agent unreachable';
      if (text !== failing) status.textContent = text; // announced once, not every refresh
      failing = text;
    }
    page.classList.toggle('node-failing', Boolean(failing));
  }
  async function loop() {
    await refresh();
    if (!stopped) timer = setTimeout(loop, REFRESH_MS);
  }

  await Promise.all([loop(), loadFlists()]);

  return () => {
    stopped = true;
    clearTimeout(timer);
    if (stream) stream.es?.close();
    stream = null;
    cancelAnimationFrame(frame);
    confirm.close();
  };
}

// ---- helpers --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
  for (const c of children) if (c !== undefined && c !== null && c !== false) e.append(c);
  return e;
}

function field(id, label, input, hintId, hint) {
  return el('div', { class: 'field' }, el('label', { for: id }, label), input, hint ? el('span', { class: 'hint', id: hintId }, hint) : null);
}

function loadKnownJobs() {
  try {
    return new Map(Object.entries(JSON.parse(sessionStorage.getItem(JOBS_KEY) || '{}')));
  } catch {
    return new Map();
  }
}

function saveKnownJobs(map) {
  try {
    sessionStorage.setItem(JOBS_KEY, JSON.stringify(Object.fromEntries(map)));
  } catch {
    // storage full or disabled: the Output buttons are a convenience
  }
}

const SIGNALS = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 13: 'SIGPIPE', 15: 'SIGTERM' };

function shortId(id) {
  const s = String(id ?? '');
  return s.length > 12 ? `${s.slice(0, 8)}…` : s;
}

function commandText(c) {
  if (c == null) return '—';
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.join(' ');
  return JSON.stringify(c);
}

function duration(seconds) {
  let s = Math.max(0, Math.floor(Number(seconds) || 0));
  if (s < 60) return `${s} s`;
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  return `${m} min ${s} s`;
}

function bytes(n) {
  n = Number(n) || 0;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}
