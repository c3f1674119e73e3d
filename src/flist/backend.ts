// The `backend` metadata (where an flist's blocks live). 0-hub writes {host, port, namespace}
// for a 0-db; we also write `url`, our store URL (password removed), which readers ignoring
// unknown keys skip, and which our readers prefer.
export interface BackendMeta {
  host?: string;
  port?: number;
  namespace?: string;
  password?: string;
  socket?: string;
  token?: string;
  url?: string;
}

/** Store URL without credentials (user:password@ removed). */
export function publicUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, u.pathname === '/' && !url.endsWith('/') ? '' : '/');
  } catch {
    return url;
  }
}

export function backendFor(storeUrl: string): string {
  const url = publicUrl(storeUrl);
  const meta: BackendMeta = { url };
  const u = new URL(url);
  if (u.protocol === 'zdb:' || u.protocol === 'redis:') {
    meta.host = u.hostname;
    meta.port = Number(u.port || (u.protocol === 'zdb:' ? 9900 : 6379));
    const ns = u.pathname.replace(/^\//, '');
    if (ns) meta.namespace = ns;
  }
  return JSON.stringify(meta);
}

/** The store URL an flist's backend metadata names, or undefined when it has none. */
export function storeFromBackend(json: string | undefined): string | undefined {
  if (!json) return undefined;
  let m: BackendMeta;
  try {
    m = JSON.parse(json) as BackendMeta;
  } catch {
    throw new Error(`flist backend metadata is not JSON: ${json.slice(0, 80)}`);
  }
  if (m.url) return m.url;
  if (!m.host) return undefined;
  // Upstream backends are 0-db namespaces (flist-format.md §9, §10.2).
  const auth = m.password ? `${encodeURIComponent(m.password)}@` : '';
  return `zdb://${auth}${m.host}:${m.port || 9900}/${m.namespace ?? 'default'}`;
}
