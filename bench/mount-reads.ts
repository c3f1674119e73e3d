// The reads of the mount bench, timed inside the reader (no start-up in the figure): whole
// files with 1 MiB reads, 4 KiB random preads, and raw block GETs from the hub.
import { measure } from './lib';

/** Reads whole files with 1 MiB reads: the listed ones (paths relative to root), or with list '-' every regular file under root (walk included in the time). */
const SEQ_READS = `
import os, sys, time, json
root, lst = sys.argv[1], sys.argv[2]
buf = bytearray(1 << 20)
n = files = 0
def read(p):
    global n, files
    fd = os.open(p, os.O_RDONLY)
    try:
        while True:
            k = os.readv(fd, [buf])
            if k == 0: break
            n += k
    finally:
        os.close(fd)
    files += 1
def walk(d):
    with os.scandir(d) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False): walk(e.path)
            elif e.is_file(follow_symlinks=False): read(e.path)
t = time.perf_counter()
if lst == '-': walk(root)
else:
    for rel in open(lst).read().split('\\n'):
        if rel: read(root + rel)
print(json.dumps({'bytes': n, 'files': files, 's': time.perf_counter() - t}))
`;

export interface SeqRead {
  mbs: number;
  bytes: number;
  files: number;
}

/** MB/s of reading the listed files (or the whole tree), timed inside the reader (no start-up). */
export async function seqRead(root: string, list: string, expectBytes?: number): Promise<SeqRead> {
  const s = await measure('python3', ['-c', SEQ_READS, root, list]);
  const r = JSON.parse(s.stdout.trim()) as { bytes: number; files: number; s: number };
  if (expectBytes !== undefined && r.bytes !== expectBytes) throw new Error(`reading ${root} (${list}): ${r.bytes} bytes, expected ${expectBytes}`);
  return { mbs: r.bytes / 1e6 / r.s, bytes: r.bytes, files: r.files };
}

const RANDOM_READS = `
import os, sys, random, time
root, lst, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = [l.split('\\t') for l in open(lst).read().split('\\n') if l]
fds = [os.open(root + p, os.O_RDONLY) for p, _ in files]
blocks = [int(size) // 4096 for _, size in files]
r = random.Random(seed)
offs = [(fds[i], r.randrange(blocks[i]) * 4096) for i in r.choices(range(len(files)), weights=blocks, k=n)]
t = time.perf_counter()
for fd, o in offs:
    if len(os.pread(fd, 4096, o)) != 4096: sys.exit('short read at %d' % o)
print(n / (time.perf_counter() - t))
`;

/** ops/s of n 4 KiB preads at seeded random aligned offsets over the listed files (path\tsize), offsets spread by size. */
export async function randomReads(root: string, list: string, n: number, seed = 1): Promise<number> {
  const s = await measure('python3', ['-c', RANDOM_READS, root, list, String(n), String(seed)]);
  return Number(s.stdout.trim());
}

export const RAW_GET = `
const [hub, idsFile, par] = process.argv.slice(1);
const ids = require('fs').readFileSync(idsFile, 'utf8').split('\\n').filter(Boolean);
let next = 0, bytes = 0;
async function worker() {
  while (next < ids.length) {
    const id = ids[next++];
    const res = await fetch(hub + '/api/blocks/' + id);
    if (!res.ok) throw new Error('GET ' + id + ': ' + res.status);
    bytes += (await res.arrayBuffer()).byteLength;
  }
}
const t = process.hrtime.bigint();
Promise.all(Array.from({ length: Number(par) }, worker)).then(() => {
  console.log(JSON.stringify({ bytes, s: Number(process.hrtime.bigint() - t) / 1e9 }));
}, (e) => { console.error(e.message); process.exit(1); });
`;
