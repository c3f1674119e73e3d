// How a container runs an flist, from its metadata (flist-format.md §9): the agent starts it
// this way and the hub's pages show it the same way.

/** `environ`: a JSON object of strings (values stringified); a malformed one counts as none. */
export function environOf(meta: Record<string, string>): Record<string, string> {
  if (!meta.environ) return {};
  try {
    const e = JSON.parse(meta.environ) as unknown;
    if (e && typeof e === 'object' && !Array.isArray(e)) return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, String(v)]));
  } catch {
    // a malformed environ is ignored, as the hub would not write one
  }
  return {};
}

/** `entrypoint` as argv: a JSON list of strings, or a string (JSON or not) run by /bin/sh -c. */
export function entrypointOf(meta: Record<string, string>): string[] | undefined {
  if (!meta.entrypoint) return undefined;
  try {
    const e = JSON.parse(meta.entrypoint) as unknown;
    if (Array.isArray(e) && e.length && e.every((x) => typeof x === 'string')) return e as string[];
    if (typeof e === 'string' && e) return ['/bin/sh', '-c', e];
    return undefined;
  } catch {
    return ['/bin/sh', '-c', meta.entrypoint];
  }
}
