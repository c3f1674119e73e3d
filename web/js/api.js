// The hub's JSON API as the pages use it. Every call sends `Authorization: Bearer <token>` when
// logged in, and rejects with an Error whose message is the hub's one-line `message` and whose
// `.status` is the HTTP status (0 for a network failure).
//
//   api.get(path) / api.post(path, body?) / api.del(path)  → the parsed JSON answer
//   api.upload(path, formData, { headers, onProgress(loaded, total) })  → XHR with progress
//   api.events(path) → server-sent events over fetch (so the token goes along too):
//       const es = api.events('/listen/' + job);
//       es.on('message', (data) => …);   // each `data:` (JSON-parsed when it is JSON)
//       es.on('end', (data) => …);       // any named event (`event: end`) by its name
//       es.on('error', (err) => …);      // HTTP error or network failure (err.status, err.message)
//       es.on('close', () => …);         // the stream ended (after the last event)
//       es.close();                      // stop listening (call it from the page's cleanup)

export const TOKEN_KEY = 'g8os.token';

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lasts for this page only */
  }
}

function authHeaders(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const t = getToken();
  if (t && !('Authorization' in h)) h.Authorization = `Bearer ${t}`;
  if (h.Authorization === null) delete h.Authorization;
  return h;
}

/** An Error carrying the hub's message (first line) and the HTTP status. */
export function hubError(status, message) {
  const text = String(message || (status ? `HTTP ${status}` : 'network error')).split('\n')[0];
  const e = new Error(text);
  e.status = status;
  return e;
}

async function answer(res) {
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    throw hubError(res.status, (body && body.message) || (text && text.length < 200 && !text.startsWith('<') ? text.trim() : res.statusText));
  }
  if (body === undefined && text) return text;
  return body;
}

async function call(method, path, body, headers = {}) {
  const init = { method, headers: authHeaders(headers), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw hubError(0, `cannot reach the hub: ${e.message}`);
  }
  return answer(res);
}

/** A multipart upload with transfer progress. Resolves with the JSON answer. */
function upload(path, form, opts = {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', path);
    for (const [k, v] of Object.entries(authHeaders(opts.headers))) xhr.setRequestHeader(k, v);
    if (opts.onProgress) {
      xhr.upload.addEventListener('progress', (e) => opts.onProgress(e.loaded, e.lengthComputable ? e.total : 0));
      xhr.upload.addEventListener('load', () => opts.onSent?.());
    }
    xhr.addEventListener('load', () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = undefined;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(hubError(xhr.status, (body && body.message) || xhr.statusText));
    });
    xhr.addEventListener('error', () => reject(hubError(0, 'the upload failed: the connection to the hub was lost')));
    xhr.addEventListener('abort', () => reject(hubError(0, 'the upload was cancelled')));
    xhr.send(form);
  });
  promise.abort = () => xhr.abort();
  return promise;
}

/** Server-sent events read with fetch (EventSource cannot send the Authorization header). */
function events(path) {
  const handlers = new Map();
  const ctrl = new AbortController();
  let closed = false;
  const emit = (type, ...args) => {
    for (const fn of handlers.get(type) || []) {
      try {
        fn(...args);
      } catch (e) {
        console.warn('event handler failed:', e);
      }
    }
  };
  const es = {
    on(type, fn) {
      if (!handlers.has(type)) handlers.set(type, []);
      handlers.get(type).push(fn);
      return es;
    },
    close() {
      closed = true;
      ctrl.abort();
    },
    get closed() {
      return closed;
    },
  };
  (async () => {
    let res;
    try {
      res = await fetch(path, { headers: authHeaders({ Accept: 'text/event-stream' }), signal: ctrl.signal, cache: 'no-store' });
    } catch (e) {
      if (!closed) emit('error', hubError(0, `cannot reach the hub: ${e.message}`));
      return;
    }
    if (!res.ok) {
      try {
        await answer(res);
      } catch (e) {
        if (!closed) emit('error', e);
      }
      return;
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let type = '';
    let data = [];
    const dispatch = () => {
      if (!data.length) {
        type = '';
        return;
      }
      const raw = data.join('\n');
      let value = raw;
      try {
        value = JSON.parse(raw);
      } catch {
        /* plain text data */
      }
      emit(type || 'message', value);
      type = '';
      data = [];
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
          if (line === '') dispatch();
          else if (line.startsWith(':')) continue;
          else {
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (field === 'data') data.push(val);
            else if (field === 'event') type = val;
          }
        }
      }
      dispatch();
    } catch (e) {
      if (!closed) emit('error', hubError(0, `lost the connection to the hub: ${e.message}`));
      return;
    }
    if (!closed) {
      closed = true;
      emit('close');
    }
  })();
  return es;
}

export const api = {
  get: (path, headers) => call('GET', path, undefined, headers),
  post: (path, body, headers) => call('POST', path, body, headers),
  del: (path, headers) => call('DELETE', path, undefined, headers),
  upload,
  events,
};

export default api;
