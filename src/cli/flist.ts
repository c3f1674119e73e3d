// `g8os flist …`: build, inspect, read, check and merge flists.
import { Command } from 'commander';
import type { BlockStore } from '../store/types';
// Heavier modules are loaded inside the verbs that need them, to keep start-up short.
import { backendFor, storeFromBackend } from '../flist/backend';
import { openFlist } from '../flist/open';
import { openStore } from '../store';
import type { Entry, FlistReader } from '../flist/types';
import { formatBytes, modeString, parseMeta, printJson, UsageError } from './util';

async function withFlist<T>(file: string, fn: (r: FlistReader) => Promise<T> | T): Promise<T> {
  const r = await openFlist(file);
  try {
    return await fn(r);
  } finally {
    r.close();
  }
}

/** The store to read from: --store, else the flist's backend metadata. */
async function storeFor(r: FlistReader, explicit: string | undefined, file: string): Promise<BlockStore> {
  const url = explicit ?? storeFromBackend(r.metadata().backend);
  if (!url) throw new UsageError(`${file} names no backend store: pass --store <url>`);
  return openStore(url);
}

function entryJson(e: Entry): Record<string, unknown> {
  const o: Record<string, unknown> = {
    path: `/${e.path}`, name: e.name, type: e.kind === 'special' ? e.special : e.kind,
    mode: (e.mode & 0o7777).toString(8).padStart(4, '0'), uid: e.uid, gid: e.gid, uname: e.uname, gname: e.gname,
    size: e.size, mtime: e.mtime, ctime: e.ctime,
  };
  if (e.target !== undefined) o.target = e.target;
  if (e.rdev) o.rdev = `${e.rdev.major},${e.rdev.minor}`;
  if (e.blocks) o.blocks = e.blocks.map((b) => ({ id: b.id.toString('hex'), key: b.key.toString('hex') }));
  return o;
}

function owner(e: Entry): string {
  return `${e.uname || e.uid} ${e.gname || e.gid}`;
}

function lsLine(e: Entry): string {
  const size = e.rdev ? `${e.rdev.major}, ${e.rdev.minor}` : String(e.size);
  const when = new Date(e.mtime * 1000).toISOString().replace('T', ' ').slice(0, 16);
  const name = e.kind === 'link' ? `${e.name || '/'} -> ${e.target}` : e.name || '/';
  return `${modeString(e.mode)} ${owner(e).padEnd(17)} ${size.padStart(10)} ${when} ${name}`;
}

export function flistCommand(): Command {
  const cmd = new Command('flist').description('build, inspect and read flists');

  cmd
    .command('create')
    .description('build an flist from a directory, .tar or .tar.gz; blocks go to the store')
    .argument('<source>', 'directory or tarball')
    .requiredOption('-o, --output <file>', 'flist file to write')
    .requiredOption('--store <url>', 'block store: dir:///path, redis://, zdb://, http(s)://')
    .option('--meta <key=value...>', 'extra metadata rows', [])
    .option('--no-backend', 'do not record the store in the flist metadata')
    .option('--max-size <bytes>', 'refuse archives expanding beyond this many bytes', (v) => Number(v))
    .option('--token <token>', 'token for an http(s) store', process.env.G8OS_TOKEN)
    .option('--json', 'print the build statistics as JSON')
    .action(async (source: string, o: { output: string; store: string; meta: string[]; backend: boolean; maxSize?: number; token?: string; json?: boolean }) => {
      const { buildFromPath } = await import('../flist/builder');
      const { writeFlist } = await import('../flist/writer');
      const meta = parseMeta(o.meta);
      const store = await openStore(o.store, { token: o.token });
      const started = Date.now();
      try {
        const warnings: string[] = [];
        const { tree, stats } = await buildFromPath(source, {
          store, maxExpandedBytes: o.maxSize, onWarning: (w) => warnings.push(w),
        });
        if (o.backend) meta.backend = backendFor(o.store);
        await writeFlist(tree, o.output, meta);
        for (const w of warnings) process.stderr.write(`g8os: warning: ${w}\n`);
        const secs = (Date.now() - started) / 1000;
        if (o.json) printJson({ output: o.output, ...stats, seconds: secs });
        else {
          process.stderr.write(
            `${o.output}: ${stats.regular} files, ${stats.directory} dirs, ${stats.symlink} symlinks, ${stats.special} specials, ` +
              `${formatBytes(stats.fullsize)} in ${secs.toFixed(1)} s (${formatBytes(stats.fullsize / Math.max(secs, 0.001))}/s); ` +
              `${stats.blocks} blocks, ${stats.uploaded_chunks} new (${formatBytes(stats.uploaded_bytes)} written)\n`,
          );
        }
      } finally {
        await store.close();
      }
    });

  cmd
    .command('ls')
    .description('list a directory of the flist')
    .argument('<flist>')
    .argument('[path]', 'directory inside the flist', '/')
    .option('--json', 'one JSON array')
    .action(async (file: string, p: string, o: { json?: boolean }) =>
      withFlist(file, (r) => {
        const entry = r.stat(p);
        if (!entry) throw new UsageError(`${p}: no such file or directory in ${file}`);
        const list = entry.kind === 'dir' ? r.list(p) : [entry];
        if (o.json) printJson(list.map(entryJson));
        else process.stdout.write(list.map((e) => `${lsLine(e)}\n`).join(''));
      }));

  cmd
    .command('find')
    .description('list every path below a directory of the flist')
    .argument('<flist>')
    .argument('[path]', 'directory inside the flist', '/')
    .option('--json', 'one JSON array of entries')
    .option('--type <t>', 'only entries of this type: d, f, l or s')
    .action(async (file: string, p: string, o: { json?: boolean; type?: string }) =>
      withFlist(file, (r) => {
        const start = r.stat(p);
        if (!start) throw new UsageError(`${p}: no such file or directory in ${file}`);
        const prefix = start.path;
        const want = o.type ? ({ d: 'dir', f: 'file', l: 'link', s: 'special' } as Record<string, string>)[o.type] : undefined;
        if (o.type && !want) throw new UsageError(`--type ${o.type}: expected d, f, l or s`);
        const out: Entry[] = [];
        const lines: string[] = [];
        for (const e of r.walk()) {
          if (prefix && e.path !== prefix && !e.path.startsWith(`${prefix}/`)) continue;
          if (want && e.kind !== want) continue;
          if (o.json) out.push(e);
          else lines.push(`/${e.path}`);
          if (lines.length >= 4096) process.stdout.write(lines.splice(0).join('\n') + '\n');
        }
        if (o.json) printJson(out.map(entryJson));
        else if (lines.length) process.stdout.write(lines.join('\n') + '\n');
      }));

  cmd
    .command('stat')
    .description('show one entry')
    .argument('<flist>')
    .argument('[path]', 'path inside the flist', '/')
    .option('--json', 'as JSON')
    .action(async (file: string, p: string, o: { json?: boolean }) =>
      withFlist(file, (r) => {
        const e = r.stat(p);
        if (!e) throw new UsageError(`${p}: no such file or directory in ${file}`);
        if (o.json) return printJson(entryJson(e));
        const lines = [
          `path: /${e.path}`,
          `type: ${e.kind === 'special' ? e.special : e.kind}`,
          `mode: ${modeString(e.mode)} (${(e.mode & 0o7777).toString(8).padStart(4, '0')})`,
          `owner: ${e.uname || '?'} (${e.uid}) ${e.gname || '?'} (${e.gid})`,
          `size: ${e.size}`,
          `mtime: ${new Date(e.mtime * 1000).toISOString()}`,
          `ctime: ${new Date(e.ctime * 1000).toISOString()}`,
        ];
        if (e.target !== undefined) lines.push(`target: ${e.target}`);
        if (e.rdev) lines.push(`device: ${e.rdev.major},${e.rdev.minor}`);
        if (e.blocks) lines.push(`blocks: ${e.blocks.length}`, ...e.blocks.map((b, i) => `  ${i} ${b.id.toString('hex')} ${b.key.toString('hex')}`));
        process.stdout.write(lines.join('\n') + '\n');
      }));

  cmd
    .command('cat')
    .description("write a file's bytes to stdout, fetching its blocks")
    .argument('<flist>')
    .argument('<path>')
    .option('--store <url>', 'block store (default: the flist backend)')
    .action(async (file: string, p: string, o: { store?: string }) =>
      withFlist(file, async (r) => {
        // like cat(1), follow symlinks (inside the flist: absolute targets start at its root)
        const { resolveEntry } = await import('../flist/resolve');
        const e = resolveEntry(r, p);
        if (!e) throw new UsageError(`${p}: no such file or directory in ${file}`);
        if (e.kind !== 'file') throw new UsageError(`${p}: not a regular file (${e.kind === 'special' ? e.special : e.kind})`);
        const { fileContent } = await import('../flist/content');
        const store = await storeFor(r, o.store, file);
        try {
          for await (const chunk of fileContent(store, e, r.format)) {
            if (!process.stdout.write(chunk)) await new Promise((res) => process.stdout.once('drain', res));
          }
        } finally {
          await store.close();
        }
      }));

  cmd
    .command('metadata')
    .description('print all metadata, one key, or set a key (value "-" deletes it)')
    .argument('<flist>')
    .argument('[key]')
    .argument('[value]')
    .option('--json', 'print all metadata as one JSON object')
    .action(async (file: string, key: string | undefined, value: string | undefined, o: { json?: boolean }) => {
      if (value !== undefined) {
        if (/^https?:\/\//i.test(file)) throw new UsageError(`${file}: cannot change the metadata of a remote flist; download it first`);
        const { setMetadata } = await import('../flist/metadata');
        return setMetadata(file, key!, value === '-' ? null : value);
      }
      await withFlist(file, (r) => {
        const m = r.metadata();
        if (key !== undefined) {
          if (!(key in m)) throw new UsageError(`${file} has no metadata key ${JSON.stringify(key)}`);
          process.stdout.write(`${m[key]}\n`);
        } else if (o.json) printJson(m);
        else process.stdout.write(Object.entries(m).map(([k, v]) => `${k}: ${v}\n`).join(''));
      });
    });

  cmd
    .command('check')
    .description('verify that every block is present in the store and decodes to its key')
    .argument('<flist>')
    .option('--store <url>', 'block store (default: the flist backend)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, o: { store?: string; json?: boolean }) =>
      withFlist(file, async (r) => {
        const store = await storeFor(r, o.store, file);
        try {
          const { checkFlist } = await import('../flist/check');
          const { blocks, ok, missing, corrupt, problems } = await checkFlist(r, store, { verify: true });
          const result = { blocks, ok, missing, corrupt, problems };
          if (o.json) printJson(result);
          else {
            for (const p of result.problems) process.stderr.write(`${p}\n`);
            process.stdout.write(`${result.blocks} blocks: ${result.ok} ok, ${result.missing} missing, ${result.corrupt} corrupt\n`);
          }
          if (result.missing || result.corrupt) process.exitCode = 1;
        } finally {
          await store.close();
        }
      }));

  cmd
    .command('merge')
    .description('merge flists into one; on path collisions the first flist given wins')
    .requiredOption('-o, --output <file>', 'flist file to write')
    .argument('<flists...>')
    .action(async (files: string[], o: { output: string }) => {
      if (files.length < 2) throw new UsageError('merge needs at least two flists');
      const { mergeFlists } = await import('../flist/merge');
      const { writeFlist } = await import('../flist/writer');
      const { tree, metadata } = await mergeFlists(files);
      await writeFlist(tree, o.output, metadata);
    });

  cmd
    .command('stats')
    .description('count entries, blocks and bytes')
    .argument('<flist>')
    .option('--json', 'one JSON object')
    .action(async (file: string, o: { json?: boolean }) =>
      withFlist(file, (r) => {
        const s = r.stats();
        if (o.json) printJson(s);
        else process.stdout.write(`dirs ${s.dirs}\nfiles ${s.files}\nsymlinks ${s.symlinks}\nspecials ${s.specials}\nblocks ${s.blocks}\nbytes ${s.bytes}\n`);
      }));

  cmd
    .command('prefetch')
    .description('warm the shared block cache with the blocks of an flist, or of the files of a running mount')
    .argument('<source>', 'a g8os mount point (its files are read through it), or an flist: local path, http(s):// URL, user/name')
    .argument('[paths...]', 'files or directories inside it (default: everything)')
    .option('--cache <dir>', 'block cache directory (default: the one g8os mount uses)')
    .option('--storage-url <url>', 'block store (default: the flist backend metadata)')
    .option('--hub <url>', 'hub for user/name flists (default: $G8OS_HUB)')
    .action(async (source: string, paths: string[], o: { cache?: string; storageUrl?: string; hub?: string }) => {
      const { prefetch } = await import('./prefetch');
      process.exitCode = await prefetch(source, paths, o);
    });

  return cmd;
}
