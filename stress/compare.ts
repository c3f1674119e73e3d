// Content verification against the source tarball, byte for byte: the tarball (plain or gzip)
// is streamed once with tar-stream and every member's bytes are compared, chunk by chunk as they
// pass, with the same file read back from the system under test (a mounted flist, or an flist's
// blocks from a store), so wrong bytes are counted exactly and nothing is held whole in memory.
// Also checked: types, symlink targets, sizes, and in reverse that the tree has nothing the
// tarball does not (members or their implied parent directories). Tar semantics as in
// bench/verify-tarball.ts: the last of duplicate members wins; names are normalised.
import fs from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';
import { fileContent } from '../src/flist/content';
import type { Entry, FlistReader } from '../src/flist/types';
import type { BlockStore } from '../src/store/types';
import { normalise, openTarball } from '../bench/verify-tarball';
import { diffBytes, firstDiff, type Tally } from './suite';

export type Kind = 'file' | 'dir' | 'link' | 'other';

/** Sequential reads of one file. */
export interface SeqReader {
  size: number;
  /** the next n bytes (fewer at the end of the file) */
  read(n: number): Promise<Buffer>;
  close(): void;
}

/** The tree under test. */
export interface TreeSource {
  kind(p: string): Kind | undefined;
  open(p: string): Promise<SeqReader>;
  readlink(p: string): string;
  entries(): Iterable<{ path: string; kind: Kind }>;
}

function members(file: string): ReturnType<typeof tar.extract> {
  const extract = tar.extract();
  const source = openTarball(file);
  source.on('error', (e) => extract.destroy(e));
  source.pipe(extract);
  return extract;
}

/** A mounted tree, read with synchronous calls (it is served by another process). */
export function mountSource(root: string): TreeSource {
  const full = (p: string): string => path.join(root, p);
  const kindOf = (st: fs.Stats): Kind => (st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : 'other');
  return {
    kind(p) {
      try {
        return kindOf(fs.lstatSync(full(p)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
    async open(p) {
      const fd = fs.openSync(full(p), 'r');
      const size = fs.fstatSync(fd).size;
      let pos = 0;
      return {
        size,
        async read(n) {
          const buf = Buffer.allocUnsafe(n);
          let got = 0;
          while (got < n) {
            const k = fs.readSync(fd, buf, got, n - got, pos);
            if (k === 0) break;
            got += k;
            pos += k;
          }
          return buf.subarray(0, got);
        },
        close: () => fs.closeSync(fd),
      };
    },
    readlink: (p) => fs.readlinkSync(full(p)),
    *entries() {
      const todo = [''];
      while (todo.length) {
        const dir = todo.pop()!;
        for (const d of fs.readdirSync(full(dir), { withFileTypes: true })) {
          const p = dir ? `${dir}/${d.name}` : d.name;
          const kind: Kind = d.isFile() ? 'file' : d.isDirectory() ? 'dir' : d.isSymbolicLink() ? 'link' : 'other';
          yield { path: p, kind };
          if (kind === 'dir') todo.push(p);
        }
      }
    },
  };
}

/** Sequential reader over an async chunk iterator. */
function chunkReader(size: number, chunks: AsyncIterator<Buffer>): SeqReader {
  let buf: Buffer = Buffer.alloc(0);
  let done = false;
  return {
    size,
    async read(n) {
      while (buf.length < n && !done) {
        const r = await chunks.next();
        if (r.done) done = true;
        else buf = buf.length ? Buffer.concat([buf, r.value]) : r.value;
      }
      const out = buf.subarray(0, n);
      buf = buf.subarray(out.length);
      return out;
    },
    close: () => void chunks.return?.(undefined),
  };
}

/** An flist read through its store (the hub's block endpoint, a dir:// store, …). */
export function flistSource(reader: FlistReader, store: BlockStore): TreeSource {
  const kindOf = (e: Entry): Kind => (e.kind === 'file' ? 'file' : e.kind === 'dir' ? 'dir' : e.kind === 'link' ? 'link' : 'other');
  return {
    kind(p) {
      const e = reader.stat(p);
      return e ? kindOf(e) : undefined;
    },
    async open(p) {
      const e = reader.stat(p);
      if (!e || e.kind !== 'file') throw new Error(`/${p}: not a file in the flist`);
      return chunkReader(e.size, fileContent(store, e, reader.format)[Symbol.asyncIterator]());
    },
    readlink(p) {
      const e = reader.stat(p);
      if (!e || e.kind !== 'link') throw new Error(`/${p}: not a symlink in the flist`);
      return e.target ?? '';
    },
    *entries() {
      for (const e of reader.walk()) if (e.path !== '') yield { path: e.path, kind: kindOf(e) };
    },
  };
}

const CHUNK = 1 << 20;

/**
 * Compares a reader to the expected chunks; returns false when reading failed. The expected
 * chunks are always consumed to the end (leaving a tar entry's iterator early destroys it).
 */
async function compareStream(label: string, want: AsyncIterable<Buffer>, wantSize: number, r: SeqReader, t: Tally): Promise<boolean> {
  let off = 0;
  let wrong = 0;
  let first = -1;
  let failed: Error | undefined;
  for await (const chunk of want) {
    for (let i = 0; i < chunk.length && !failed; i += CHUNK) {
      const w = chunk.subarray(i, i + CHUNK);
      let got: Buffer;
      try {
        got = await r.read(w.length);
      } catch (e) {
        failed = e as Error;
        break;
      }
      const d = diffBytes(w, got);
      if (d && first < 0) first = off + firstDiff(w, got);
      wrong += d;
      off += w.length;
      t.bytesChecked += got.length;
    }
  }
  try {
    r.close();
  } catch {
    // reported below if it matters
  }
  if (failed) {
    t.error(`${label}: read failed at offset ${off}: ${failed.message}`);
    return false;
  }
  if (r.size > wantSize) {
    // extra bytes past the expected end count as wrong (missing ones were counted above)
    wrong += r.size - wantSize;
    if (first < 0) first = wantSize;
  }
  if (wrong) t.wrong(wrong, `${label}: ${wantSize} bytes expected, ${r.size} found, first difference at offset ${first}`);
  return true;
}

async function* bufferIter(r: SeqReader): AsyncGenerator<Buffer> {
  for (;;) {
    const b = await r.read(CHUNK);
    if (!b.length) return;
    yield b;
  }
}

export interface CompareSummary {
  members: number;
  files: number;
  bytes: number;
}

/** Verifies `src` against the tarball; everything found goes into the tally. */
export async function compareTarball(tarball: string, src: TreeSource, t: Tally, label: string): Promise<CompareSummary> {
  // Pass 1: which member wins for each path (the last one).
  const last = new Map<string, number>();
  let n = 0;
  for await (const m of members(tarball)) {
    last.set(normalise(m.header.name), ++n);
    m.resume();
  }
  // Pass 2: compare.
  const seen = new Set<string>(['']);
  const sum: CompareSummary = { members: 0, files: 0, bytes: 0 };
  n = 0;
  for await (const m of members(tarball)) {
    const h = m.header;
    const p = normalise(h.name);
    n++;
    const where = `${label} /${p}`;
    if (last.get(p) !== n || p === '') {
      m.resume();
      continue;
    }
    sum.members++;
    t.ops++;
    seen.add(p);
    let kind: Kind | undefined;
    try {
      kind = src.kind(p);
    } catch (e) {
      t.error(`${where}: stat failed: ${(e as Error).message}`);
      m.resume();
      continue;
    }
    const want: Kind = h.type === 'file' || h.type === 'contiguous-file' || h.type === 'link' ? 'file' : h.type === 'directory' ? 'dir' : h.type === 'symlink' ? 'link' : 'other';
    if (kind !== want) {
      t.error(`${where}: tar ${h.type}, found ${kind ?? 'nothing'}`);
      if (want === 'file' && h.type !== 'link') t.wrong(h.size ?? 0, `${where}: content missing`);
      m.resume();
      continue;
    }
    if (h.type === 'file' || h.type === 'contiguous-file') {
      sum.files++;
      sum.bytes += h.size ?? 0;
      let r: SeqReader;
      try {
        r = await src.open(p);
      } catch (e) {
        t.error(`${where}: open failed: ${(e as Error).message}`);
        m.resume();
        continue;
      }
      await compareStream(where, m as AsyncIterable<Buffer>, h.size ?? 0, r, t);
    } else {
      m.resume();
      if (h.type === 'symlink') {
        const got = src.readlink(p);
        if (got !== h.linkname) t.wrong(Math.max(1, diffBytes(Buffer.from(h.linkname ?? ''), Buffer.from(got))), `${where}: symlink target ${JSON.stringify(got)}, tar ${JSON.stringify(h.linkname)}`);
      } else if (h.type === 'link') {
        // a hard link: same bytes as its target (which is compared with the tarball itself)
        sum.files++;
        const to = normalise(h.linkname ?? '');
        try {
          const a = await src.open(to);
          const b = await src.open(p);
          await compareStream(`${where} (hard link to /${to})`, bufferIter(a), a.size, b, t);
          a.close();
        } catch (e) {
          t.error(`${where}: hard link to /${to}: ${(e as Error).message}`);
        }
      }
    }
  }
  // Reverse: nothing in the tree that the tarball does not have.
  const implied = new Set<string>();
  for (const p of seen) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) implied.add(parts.slice(0, i).join('/'));
  }
  for (const e of src.entries()) {
    if (seen.has(e.path)) continue;
    if (implied.has(e.path) && e.kind === 'dir') continue;
    t.error(`${label} /${e.path}: a ${e.kind} that is not in the tarball`);
  }
  return sum;
}
