// Upload: a root filesystem tarball or a Docker/OCI image tarball becomes an flist. Two progress
// bars: the transfer (XHR upload progress) and the hub's processing (server-sent events on
// /listen/<job>, the X-Job-Id we chose). Ends on the new flist's page.
import { errorBox, flistPath, fmtBytes, h, jobId } from '../ui.js';

const KINDS = {
  rootfs: { endpoint: '/api/flist/me/upload', title: 'Root filesystem tarball', hint: '.tar, .tar.gz or .tgz of a whole tree (e.g. a rootfs); a .README.md at its root becomes the readme.' },
  image: { endpoint: '/api/flist/me/docker', title: 'Docker / OCI image tarball', hint: 'the output of docker save (or an OCI image layout as .tar); entrypoint, environment and ports are kept.' },
};

export default async function render(main, params, ctx) {
  ctx.setTitle('Upload');
  let cleanup = () => undefined;
  const user = ctx.user();

  const fileInput = h('input', { type: 'file', id: 'upload-file', name: 'file', accept: '.tar,.tar.gz,.tgz,.gz,application/x-tar,application/gzip', 'aria-describedby': 'upload-file-hint' });
  const fileInfo = h('p', { id: 'upload-file-hint' }, 'Choose a file, or drop it here.');
  const nameInput = h('input', { type: 'text', id: 'upload-name', name: 'name', autocomplete: 'off', spellcheck: 'false', placeholder: 'from the file name', 'aria-describedby': 'upload-name-hint' });
  const radios = Object.entries(KINDS).map(([k, v], i) => h('label', { class: 'choice' },
    h('input', { type: 'radio', name: 'kind', value: k, checked: i === 0 }),
    h('span', {}, h('strong', {}, v.title), h('span', { class: 'hint' }, v.hint))));
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'upload-submit' }, 'Upload');
  const formError = h('div', { id: 'upload-error' });
  const drop = h('div', { class: 'dropzone' }, h('label', { for: 'upload-file' }, 'File'), h('div', {}, fileInput), fileInfo);

  const transfer = progressBlock('transfer', 'Transfer');
  const processing = progressBlock('processing', 'Processing on the hub');
  const statusLine = h('p', { class: 'visually-hidden', id: 'upload-status', 'aria-live': 'polite' });
  const progressCard = h('section', { class: 'card', id: 'upload-progress', 'aria-labelledby': 'progress-h', hidden: true },
    h('h2', { id: 'progress-h' }, 'Progress'), transfer.el, processing.el, statusLine);

  const form = h('form', { id: 'upload-form', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'What are you uploading?'), h('div', { class: 'choices' }, radios)),
    drop,
    h('div', { class: 'field' },
      h('label', { for: 'upload-name' }, 'Flist name ', h('span', { class: 'hint' }, '(optional)')), nameInput,
      h('span', { class: 'hint', id: 'upload-name-hint' }, 'Letters, digits, “.”, “-”, “_”; “.flist” is added.')),
    formError,
    h('div', { class: 'btn-row' }, submit, h('span', { class: 'muted' }, user ? `into the repository ${user}` : '')));

  main.append(
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Upload'), h('p', { class: 'lead' }, 'Turn a tarball or a container image into an flist: its files are split into blocks stored on this hub, and the flist indexes them.'))),
    ...(user ? [] : ctx.readonly() ? [h('div', { class: 'alert alert-error', id: 'readonly-hint' }, 'This hub is read-only (it answered “readonly mode”): it takes no uploads.')]
      : [h('div', { class: 'alert alert-info', id: 'login-hint' }, 'You are not logged in. ', h('a', { href: '/login' }, 'Log in'), ' with your token first to upload.')]),
    h('div', { class: 'grid-2' }, h('section', { class: 'card', 'aria-label': 'Upload form' }, form), progressCard),
  );

  const kind = () => form.querySelector('input[name=kind]:checked').value;

  // Detect an image tarball (docker save / OCI layout) by its member names.
  fileInput.addEventListener('change', async () => {
    const f = fileInput.files[0];
    formError.replaceChildren();
    if (!f) {
      fileInfo.textContent = 'Choose a file, or drop it here.';
      return;
    }
    fileInfo.textContent = `${f.name} · ${fmtBytes(f.size)}`;
    const detected = await looksLikeImage(f).catch(() => false);
    if (detected) {
      form.querySelector('input[value=image]').checked = true;
      fileInfo.textContent = `${f.name} · ${fmtBytes(f.size)} · looks like a container image`;
    } else if (/\.(tar\.gz|tgz)$/i.test(f.name)) {
      form.querySelector('input[value=rootfs]').checked = true;
    }
  });
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => {
    e.preventDefault();
    drop.classList.add('dragging');
  });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('dragging'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) {
      fileInput.files = e.dataTransfer.files;
      fileInput.dispatchEvent(new Event('change'));
    }
  });

  const fail = (message) => {
    formError.replaceChildren(errorBox(message));
    ctx.notify(message, 'error');
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.replaceChildren();
    const file = fileInput.files[0];
    if (!ctx.token()) {
      fail('You are not logged in: log in first (with your hub token on the Log in page), then upload.');
      return;
    }
    if (!file) {
      fail('Choose a file to upload first.');
      fileInput.focus();
      return;
    }
    const k = kind();
    const job = jobId();
    const body = new FormData();
    const name = nameInput.value.trim();
    if (name) body.append('name', name); // before the file: the hub names the flist as it starts
    body.append('file', file, file.name);

    submit.disabled = true;
    fileInput.disabled = true;
    progressCard.hidden = false;
    transfer.set(0, `Sending ${file.name} (${fmtBytes(file.size)})`);
    processing.set(0, k === 'image' ? 'Waiting for the image to arrive' : 'Waiting for the first bytes');
    statusLine.textContent = `Uploading ${file.name}`;

    let events = null;
    let listening = false;
    let finished = false;
    const listen = () => {
      if (listening || finished) return;
      listening = true;
      events = ctx.api.events(`/listen/${job}`);
      events.on('message', (ev) => {
        if (!ev || typeof ev !== 'object') return;
        if (ev.status === 'update') processing.set(ev.progress, ev.message);
        else if (ev.status === 'info') processing.set(100, 'Done');
        else if (ev.status === 'error') processing.fail(ev.message);
      });
      events.on('error', (err) => {
        listening = false;
        // the job exists once the hub has the request's headers: try again shortly
        if (err.status === 404 && !finished) setTimeout(listen, 250);
      });
    };
    cleanup = () => {
      finished = true;
      if (events) events.close();
      if (xhr) xhr.abort();
    };

    let lastPct = -1;
    const xhr = ctx.api.upload(KINDS[k].endpoint, body, {
      headers: { 'X-Job-Id': job },
      onProgress(loaded, total) {
        const pct = total ? Math.floor((loaded / total) * 100) : 0;
        if (pct !== lastPct) {
          lastPct = pct;
          transfer.set(pct, `${fmtBytes(loaded)} of ${fmtBytes(total || file.size)}`);
          if (pct % 25 === 0) statusLine.textContent = `Transfer ${pct} %`;
        }
        listen();
      },
      onSent() {
        transfer.set(100, `${fmtBytes(file.size)} sent`);
        statusLine.textContent = 'Transfer 100 %, processing on the hub';
        listen();
      },
    });
    let result;
    try {
      result = await xhr;
    } catch (err) {
      finished = true;
      if (events) events.close();
      if (transfer.value < 100) transfer.fail();
      processing.fail(err.message);
      submit.disabled = false;
      fileInput.disabled = false;
      statusLine.textContent = `Upload failed: ${err.message}`;
      const readonly = /readonly|read-only/i.test(err.message);
      fail(readonly
        ? `This hub is read-only: it takes no uploads (${err.message}).`
        : err.status === 401 ? `The hub refused your token: ${err.message}. Log in again.` : `Upload failed: ${err.message}`);
      return;
    }
    finished = true;
    if (events) events.close();
    const payload = (result && result.payload) || {};
    const flist = payload.name || payload.file;
    transfer.set(100, `${fmtBytes(file.size)} sent`);
    processing.set(100, flist ? `${flist} is ready` : 'Ready');
    statusLine.textContent = `Upload complete: ${flist || ''}`;
    ctx.notify(`Uploaded: ${ctx.user()}/${flist} is ready`, 'success');
    const me = ctx.user();
    if (flist && me) {
      const t = setTimeout(() => ctx.navigate(flistPath(me, flist)), 700);
      cleanup = () => clearTimeout(t);
    } else {
      submit.disabled = false;
      fileInput.disabled = false;
    }
  });

  return () => cleanup();
}

function progressBlock(id, label) {
  const bar = h('progress', { id: `${id}-bar`, max: '100', value: '0', 'aria-labelledby': `${id}-label`, 'aria-describedby': `${id}-message` });
  const pct = h('span', { class: 'pct', id: `${id}-pct` }, '0 %');
  const message = h('p', { class: 'progress-message', id: `${id}-message` });
  const el = h('div', { class: 'progress-block' }, h('div', { class: 'progress-label' }, h('span', { id: `${id}-label` }, label), pct), bar, message);
  let current = 0;
  return {
    el,
    set(value, text) {
      const v = Math.max(current, Math.min(100, Math.round(Number(value) || 0)));
      current = v;
      bar.value = v;
      bar.classList.remove('failed');
      pct.textContent = `${v} %`;
      if (text !== undefined) message.textContent = text;
    },
    get value() {
      return current;
    },
    fail(text) {
      bar.classList.add('failed');
      pct.textContent = `${current} % · failed`;
      if (text !== undefined) message.textContent = text;
    },
  };
}

/** A plain tar whose first members include manifest.json / oci-layout / index.json. */
async function looksLikeImage(file) {
  if (/\.(gz|tgz)$/i.test(file.name)) return false;
  let off = 0;
  for (let i = 0; i < 64 && off + 512 <= file.size; i++) {
    const hdr = new Uint8Array(await file.slice(off, off + 512).arrayBuffer());
    if (hdr.every((b) => b === 0)) return false;
    const str = (a, b) => new TextDecoder().decode(hdr.subarray(a, b)).replace(/\0.*$/s, '');
    const name = (str(345, 500) ? `${str(345, 500)}/` : '') + str(0, 100);
    if (/^(\.\/)?(manifest\.json|oci-layout|index\.json|repositories)$/.test(name)) return true;
    const size = parseInt(str(124, 136).trim() || '0', 8) || 0;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return false;
}
