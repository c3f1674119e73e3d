// What the mount service checks before it mounts an flist: its run metadata, and that its
// store has its blocks, so a missing or unreachable store fails the create instead of the first
// read inside the container.
import { storeFromBackend } from '../flist/backend';
import { openFlist } from '../flist/open';
import { entrypointOf, environOf } from '../flist/runmeta';
import { openStore } from '../store';

export interface FlistInfo {
  /** the flist's `environ` metadata (flist-format.md §9) */
  environ: Record<string, string>;
  /** its `entrypoint` metadata as argv (a JSON list, or a string run by /bin/sh -c) */
  entrypoint?: string[];
}

/** How many blocks of an flist are looked up in its store before mounting it (all, up to this). */
const PROBE_BLOCKS = 4096;

/**
 * Reads an flist's metadata and checks that its store has its blocks (all of them, or an even
 * sample of a large flist), so a missing or unreachable store fails the create instead of the
 * first read inside the container.
 */
export async function inspectFlist(source: string, storageUrl: string | undefined): Promise<FlistInfo> {
  const r = await openFlist(source);
  try {
    const meta = r.metadata();
    const environ = environOf(meta);
    const entrypoint = entrypointOf(meta);
    const seen = new Map<string, Buffer>();
    for (const e of r.walk()) for (const b of e.blocks ?? []) seen.set(b.id.toString('hex'), b.id);
    const ids = [...seen.values()];
    if (ids.length) {
      const url = storageUrl ?? storeFromBackend(meta.backend);
      if (!url) throw new Error(`${source} names no block store (pass storage)`);
      const step = Math.max(1, ids.length / PROBE_BLOCKS);
      const sample: Buffer[] = [];
      for (let i = 0; i < ids.length; i += step) sample.push(ids[Math.floor(i)]);
      const store = await openStore(url);
      try {
        const has = await store.exists(sample);
        const missing = has.filter((x) => !x).length;
        if (missing) throw new Error(`${missing} of ${sample.length} blocks of ${source} are missing from ${store.url}`);
      } finally {
        await store.close().catch(() => undefined);
      }
    }
    return { environ, entrypoint };
  } finally {
    r.close();
  }
}
