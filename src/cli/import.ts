// `g8os hub import <image.tar>`: a docker save / OCI image layout tarball → flist, on a hub
// (POST /api/flist/me/docker) or, with --local, here (blocks to --store, flist to -o).
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { formatBytes, UsageError } from './util';

interface ImportOptions {
  hub?: string;
  token?: string;
  name?: string;
  local?: boolean;
  output?: string;
  store?: string;
}

interface Stats {
  regular: number;
  directory: number;
  symlink: number;
  layers: number;
  fullsize: number;
  uploaded_chunks: number;
}

const summary = (s: Stats): string =>
  `${s.layers} layers → ${s.regular} files, ${s.directory} dirs, ${s.symlink} symlinks, ${formatBytes(s.fullsize)}; ${s.uploaded_chunks} new blocks`;

export function importCommand(): Command {
  return new Command('import')
    .description('turn a docker save or OCI image layout tarball into an flist on a hub (or here, with --local); prints its URL')
    .argument('<image>', 'image tarball (docker save, or tar of an OCI image layout; may be gzipped)')
    .option('--hub <url>', 'hub base URL', process.env.G8OS_HUB)
    .option('--token <token>', 'API token (default $G8OS_TOKEN)', process.env.G8OS_TOKEN)
    .option('--name <name>', 'flist name (default: from the image reference)')
    .option('--local', 'convert here instead of on a hub')
    .option('-o, --output <file>', 'with --local: flist file to write (default ./<name>.flist)')
    .option('--store <url>', 'with --local: block store for the layers\' blocks')
    .action(async (image: string, o: ImportOptions) => {
      const st = await fs.promises.stat(image).catch((e: NodeJS.ErrnoException) => {
        throw new UsageError(`cannot read ${image}: ${e.code ?? e.message}`);
      });
      if (!st.isFile()) throw new UsageError(`${image} is not a file`);
      if (o.local) await importLocal(image, o);
      else await importToHub(image, o, st.size);
    });
}

async function importToHub(image: string, o: ImportOptions, size: number): Promise<void> {
  if (!o.hub) throw new UsageError('--hub <url> is required (or --local)');
  if (!o.token) throw new UsageError('--token <token> is required (or set G8OS_TOKEN)');
  const base = o.hub.replace(/\/+$/, '');
  const form = new FormData();
  if (o.name) form.append('name', o.name);
  form.append('file', await fs.openAsBlob(image), path.basename(image));
  process.stderr.write(`uploading ${path.basename(image)} (${formatBytes(size)}) to ${base} for conversion…\n`);
  let res: globalThis.Response;
  try {
    res = await fetch(`${base}/api/flist/me/docker`, { method: 'POST', headers: { authorization: `Bearer ${o.token}` }, body: form });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach hub ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  const text = await res.text();
  let body: { status?: string; message?: string; payload?: { name: string; url?: string; files: Stats } };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new Error(`hub answered HTTP ${res.status} with a non-JSON body: ${text.slice(0, 120)}`);
  }
  if (!res.ok || body.status !== 'success' || !body.payload) throw new Error(`hub refused the image (HTTP ${res.status}): ${body.message ?? text.slice(0, 200)}`);
  process.stderr.write(`${body.payload.name}: ${summary(body.payload.files)}\n`);
  process.stdout.write(`${body.payload.url ?? `${base}/${body.payload.name}`}\n`);
}

async function importLocal(image: string, o: ImportOptions): Promise<void> {
  if (!o.store) throw new UsageError('--local needs --store <url> for the blocks');
  const [{ openStore }, { convertImage }, { writeFlist }, { backendFor }, { flistName }] = await Promise.all([
    import('../store'), import('../flist/oci'), import('../flist/writer'), import('../flist/backend'), import('../hub/registry'),
  ]);
  const wanted = o.name ? flistName(o.name) : undefined;
  const store = await openStore(o.store, { token: o.token });
  try {
    const result = await convertImage(image, { store, onWarning: (w) => process.stderr.write(`g8os: warning: ${w}\n`) });
    const output = o.output ?? wanted ?? result.name;
    await writeFlist(result.tree, output, { ...result.metadata, backend: backendFor(o.store) });
    process.stderr.write(`${path.basename(output)}: ${summary(result.stats)}\n`);
    process.stdout.write(`${output}\n`);
  } finally {
    await store.close();
  }
}
