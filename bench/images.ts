// Real images for the benchmarks, built from Debian's own packages: a bookworm minbase rootfs
// with python3 and one with nodejs (the larger stack), each as .tar and .tar.gz, plus a
// `docker save` tarball of the python one (manifest.json, an image config with Cmd and Env, one
// layer). Built with mmdebstrap (debootstrap when mmdebstrap is missing) and cached between runs
// under /var/cache/g8os-bench/images (G8OS_BENCH_IMAGES) keyed by the recipe: a later run with
// the same recipe reuses the files; change the recipe and new ones are built beside them.
//
// `node dist/bench/images.js [python|node …]` builds (or finds) them and prints where they are.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { log, onCleanup } from '../harness/cleanup';
import { MiB } from '../harness/paths';
import { type BenchResult, cacheDir, cached, type Context, measure, type Table } from './lib';

export const MIRROR = process.env.G8OS_BENCH_MIRROR ?? 'http://deb.debian.org/debian';
const SOURCE_DATE_EPOCH = 1_700_000_000; // fixed file times (mmdebstrap honours it)
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Recipe {
  suite: string;
  variant: string;
  include: string[];
  arch: string;
  mirror: string;
  epoch: number;
}

/** What each image is made of; the cache key is a hash of this (and of nothing else). */
export const RECIPES = {
  python: { suite: 'bookworm', variant: 'minbase', include: ['python3'], arch: 'amd64', mirror: MIRROR, epoch: SOURCE_DATE_EPOCH },
  node: { suite: 'bookworm', variant: 'minbase', include: ['nodejs'], arch: 'amd64', mirror: MIRROR, epoch: SOURCE_DATE_EPOCH },
} satisfies Record<string, Recipe>;
export type ImageName = keyof typeof RECIPES;

/** The program each image is measured with, and the first line it prints. */
export const HELLO: Record<ImageName, { argv: string[]; expect: string }> = {
  python: { argv: ['python3', '-c', 'print(1)'], expect: '1' },
  node: { argv: ['node', '-e', 'console.log(1)'], expect: '1' },
};

export interface ImageInfo {
  recipe: Recipe;
  tool: string;
  built: string;
  build_s: number;
  tar_bytes: number;
  tgz_bytes: number;
  gzip_s: number;
  entries: number;
  packages: number;
  /** version of each included package, from the image's dpkg status */
  versions: Record<string, string>;
  docker_bytes?: number;
}

export interface Image {
  name: ImageName;
  tar: string;
  tgz: string;
  /** docker save tarball (python only) */
  docker?: string;
  info: ImageInfo;
  /** true when this run built it */
  fresh: boolean;
}

export function imagesDir(): string {
  const want = process.env.G8OS_BENCH_IMAGES ?? '/var/cache/g8os-bench/images';
  try {
    fs.mkdirSync(want, { recursive: true });
    fs.accessSync(want, fs.constants.W_OK);
    return want;
  } catch {
    const dir = path.join(cacheDir(), 'images');
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }
}

const keyOf = (r: Recipe): string => createHash('sha256').update(JSON.stringify(r)).digest('hex').slice(0, 12);
const has = (cmd: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
};

/** The rootfs tarball: mmdebstrap writes it directly; debootstrap builds a tree that tar packs. */
async function bootstrap(r: Recipe, out: string): Promise<{ tool: string; seconds: number }> {
  const env = { ...process.env, SOURCE_DATE_EPOCH: String(r.epoch), DEBIAN_FRONTEND: 'noninteractive' };
  if (has('mmdebstrap')) {
    const s = await measure('mmdebstrap', [
      '--mode=root', `--variant=${r.variant}`, `--architectures=${r.arch}`, '--format=tar', `--include=${r.include.join(',')}`, '--quiet', r.suite, out, r.mirror,
    ], { env });
    return { tool: `mmdebstrap ${execFileSync('mmdebstrap', ['--version']).toString().trim().split(' ').pop()}`, seconds: s.wallS };
  }
  if (!has('debootstrap')) throw new Error('neither mmdebstrap nor debootstrap is installed (apt-get install mmdebstrap)');
  const tree = `${out}.d`;
  const unregister = onCleanup(() => fs.rmSync(tree, { recursive: true, force: true }));
  try {
    const s = await measure('debootstrap', [`--variant=${r.variant}`, `--arch=${r.arch}`, `--include=${r.include.join(',')}`, r.suite, tree, r.mirror], { env });
    fs.rmSync(path.join(tree, 'var/cache/apt/archives'), { recursive: true, force: true });
    fs.mkdirSync(path.join(tree, 'var/cache/apt/archives/partial'), { recursive: true });
    const t = await measure('tar', ['--numeric-owner', '--sort=name', `--mtime=@${r.epoch}`, '-cf', out, '-C', tree, '.'], { env });
    return { tool: 'debootstrap', seconds: s.wallS + t.wallS };
  } finally {
    fs.rmSync(tree, { recursive: true, force: true });
    unregister();
  }
}

/** Package count and the included packages' versions, from /var/lib/dpkg/status in the tarball. */
function dpkgStatus(tar: string, include: string[]): { packages: number; versions: Record<string, string> } {
  const status = execFileSync('tar', ['-xOf', tar, './var/lib/dpkg/status'], { maxBuffer: 64 * MiB }).toString();
  const versions: Record<string, string> = {};
  let packages = 0;
  for (const para of status.split(/\n\n+/)) {
    const name = /^Package: (.+)$/m.exec(para)?.[1];
    if (!name || !/^Status: .* installed$/m.test(para)) continue;
    packages++;
    if (include.includes(name)) versions[name] = /^Version: (.+)$/m.exec(para)?.[1] ?? '?';
  }
  return { packages, versions };
}

const sha256File = (file: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const h = createHash('sha256');
    fs.createReadStream(file, { highWaterMark: 4 * MiB }).on('data', (d) => h.update(d)).on('error', reject).on('end', () => resolve(h.digest('hex')));
  });

/**
 * A `docker save` tarball (legacy form, as docker < 25 writes it and src/hub/oci.ts reads it):
 * <layer id>/{VERSION,json,layer.tar}, <config sha256>.json, manifest.json, repositories.
 */
export async function dockerSave(layerTar: string, out: string, config: { Cmd?: string[]; Entrypoint?: string[]; Env?: string[] }, ref: string): Promise<void> {
  const diff = await sha256File(layerTar);
  const id = createHash('sha256').update(`\n${diff}`).digest('hex');
  const created = new Date(SOURCE_DATE_EPOCH * 1000).toISOString();
  const cfg = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', created, config,
    rootfs: { type: 'layers', diff_ids: [`sha256:${diff}`] },
    history: [{ created, created_by: `bench/images.ts: mmdebstrap ${ref}` }],
  }));
  const cfgHex = createHash('sha256').update(cfg).digest('hex');
  const stage = `${out}.stage`;
  const unregister = onCleanup(() => fs.rmSync(stage, { recursive: true, force: true }));
  try {
    fs.mkdirSync(path.join(stage, id), { recursive: true });
    fs.writeFileSync(path.join(stage, id, 'VERSION'), '1.0');
    fs.writeFileSync(path.join(stage, id, 'json'), JSON.stringify({ id, created, config }));
    try {
      fs.linkSync(layerTar, path.join(stage, id, 'layer.tar'));
    } catch {
      fs.copyFileSync(layerTar, path.join(stage, id, 'layer.tar'));
    }
    fs.writeFileSync(path.join(stage, `${cfgHex}.json`), cfg);
    fs.writeFileSync(path.join(stage, 'manifest.json'), JSON.stringify([{ Config: `${cfgHex}.json`, RepoTags: [ref], Layers: [`${id}/layer.tar`] }]));
    const [repo, tag] = [ref.slice(0, ref.lastIndexOf(':')), ref.slice(ref.lastIndexOf(':') + 1)];
    fs.writeFileSync(path.join(stage, 'repositories'), JSON.stringify({ [repo]: { [tag]: id } }));
    execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', `--mtime=@${SOURCE_DATE_EPOCH}`, '-cf', out, '-C', stage, id, `${cfgHex}.json`, 'manifest.json', 'repositories']);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
    unregister();
  }
}

const mb = (n: number): string => `${(n / 1e6).toFixed(0)} MB`;

/** The image, built now if the cache does not have it (printing the build's time and sizes once). */
export async function realImage(name: ImageName): Promise<Image> {
  const recipe: Recipe = RECIPES[name];
  const base = path.join(imagesDir(), `${name}-${recipe.suite}-${keyOf(recipe)}`);
  let fresh = false;
  const infoFile = await cached(`${base}.json`, async (tmpInfo) => {
    fresh = true;
    log(`images: building ${name} (debian ${recipe.suite} ${recipe.variant} + ${recipe.include.join(', ')}) from ${recipe.mirror}; cached in ${path.dirname(base)}`);
    let tool = '';
    let seconds = 0;
    await cached(`${base}.tar`, async (tmp) => {
      ({ tool, seconds } = await bootstrap(recipe, tmp));
    });
    let gzipS = NaN;
    await cached(`${base}.tar.gz`, async (tmp) => {
      gzipS = (await measure('sh', ['-c', 'gzip -6 -n -c "$0" > "$1"', `${base}.tar`, tmp])).wallS;
    });
    const entries = Number(execFileSync('sh', ['-c', 'tar -tf "$0" | wc -l', `${base}.tar`]).toString().trim());
    const info: ImageInfo = {
      recipe, tool: tool || 'unknown (tarball was already cached)', built: new Date().toISOString(), build_s: Number(seconds.toFixed(1)),
      tar_bytes: fs.statSync(`${base}.tar`).size, tgz_bytes: fs.statSync(`${base}.tar.gz`).size, gzip_s: Number(gzipS.toFixed(1)),
      entries, ...dpkgStatus(`${base}.tar`, recipe.include),
    };
    fs.writeFileSync(tmpInfo, `${JSON.stringify(info, null, 1)}\n`);
    log(`images: ${name} built with ${info.tool} in ${info.build_s} s (+ gzip ${info.gzip_s} s): ${mb(info.tar_bytes)} .tar, ${mb(info.tgz_bytes)} .tar.gz, ${entries} entries, ${info.packages} packages, ${Object.entries(info.versions).map(([p, v]) => `${p} ${v}`).join(', ')}`);
  });
  const info = JSON.parse(fs.readFileSync(infoFile, 'utf8')) as ImageInfo;
  const image: Image = { name, tar: `${base}.tar`, tgz: `${base}.tar.gz`, info, fresh };
  // A cache someone pruned by hand: rebuild only what is missing.
  for (const f of [image.tar, image.tgz]) if (!fs.existsSync(f)) {
    fs.rmSync(infoFile);
    return realImage(name);
  }
  if (name === 'python') {
    image.docker = await cached(`${base}-docker.tar`, async (tmp) => {
      const t0 = process.hrtime.bigint();
      await dockerSave(image.tar, tmp, { Cmd: HELLO.python.argv, Env: [PATH_ENV, 'LANG=C.UTF-8'] }, `g8os-bench/python:${recipe.suite}`);
      log(`images: docker save tarball of python assembled in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s: ${mb(fs.statSync(tmp).size)}`);
    });
    info.docker_bytes = fs.statSync(image.docker).size;
  }
  return image;
}

/** The images a run needs: python only in quick mode. */
export async function realImages(quick: boolean): Promise<Image[]> {
  const out: Image[] = [];
  for (const n of (quick ? ['python'] : ['python', 'node']) as ImageName[]) out.push(await realImage(n));
  return out;
}

/** `--only images`: builds or finds them; one table of what they are. */
export async function imagesBench(ctx: Context): Promise<BenchResult> {
  const images = await realImages(ctx.quick);
  const t: Table = {
    title: 'Real images (Debian bookworm minbase, from Debian\'s packages)',
    headers: ['image', 'packages', 'entries', '.tar MB', '.tar.gz MB', 'docker save MB', 'built with', 'build s', 'this run'],
    rows: images.map((i) => [
      `${i.name}: ${Object.entries(i.info.versions).map(([p, v]) => `${p} ${v}`).join(', ')}`, i.info.packages, i.info.entries,
      (i.info.tar_bytes / 1e6).toFixed(0), (i.info.tgz_bytes / 1e6).toFixed(0), i.info.docker_bytes ? (i.info.docker_bytes / 1e6).toFixed(0) : '–',
      i.info.tool, `${i.info.build_s} (+ gzip ${i.info.gzip_s})`, i.fresh ? 'built' : 'cached',
    ]),
    notes: [`Recipes in bench/images.ts; files in ${imagesDir()} (built once, reused while the recipe is unchanged). Mirror ${MIRROR}.`],
  };
  ctx.print(t);
  return {
    name: 'images',
    tables: [t],
    data: Object.fromEntries(images.map((i) => [i.name, { ...i.info, fresh: i.fresh }])),
  };
}

if (require.main === module) {
  const names = process.argv.slice(2) as ImageName[];
  for (const n of names) if (!(n in RECIPES)) {
    process.stderr.write(`usage: node dist/bench/images.js [${Object.keys(RECIPES).join('|')} …]\n`);
    process.exit(2);
  }
  void (async () => {
    for (const n of names.length ? names : (Object.keys(RECIPES) as ImageName[])) {
      const i = await realImage(n);
      process.stdout.write(`${n}\t${i.tar}\t${i.tgz}${i.docker ? `\t${i.docker}` : ''}\n`);
    }
  })().catch((e: Error) => {
    process.stderr.write(`images: ${e.message}\n`);
    process.exitCode = 1;
  });
}
