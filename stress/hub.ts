// Suite 4. The hub under parallel uploads and downloads on loopback: N `g8os hub upload`
// processes of different generated tarballs (.tar and .tar.gz) at once, uploads aborted in the
// middle of the transfer, and meanwhile bounded loops downloading a published .flist (its bytes
// must never change and match its .md5) and GETting its blocks (full and ranged; each must hash
// to its id). Afterwards every published flist is verified against its tarball through the hub's
// block endpoint, byte for byte, and nothing of an aborted upload may be published or left in
// the hub's temp directories.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { closingPart, fieldPart, filePart } from '../src/cli/hub-client';
import { blake2b128, hashReady } from '../src/flist/hash';
import { openGen2 } from '../src/flist/reader';
import { openStore } from '../src/store';
import { writeBigTarFile } from '../test/helpers/tarballs';
import { compareTarball, flistSource } from './compare';
import { log, sleep } from '../harness/cleanup';
import { startHub } from '../harness/hub';
import { withTmpfs } from '../harness/mounts';
import { G8OS, MiB } from '../harness/paths';
import { run } from '../harness/procs';
import { by, type Context, type SuiteResult, Tally } from './suite';

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url, { headers });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** Sends the multipart head and `fraction` of the file, then drops the connection. */
function abortedUpload(hubUrl: string, token: string, file: string, name: string, fraction: number): Promise<string> {
  const boundary = `g8os-${crypto.randomBytes(12).toString('hex')}`;
  const head = Buffer.concat([fieldPart(boundary, 'name', name), filePart(boundary, path.basename(file))]);
  const size = fs.statSync(file).size;
  const total = head.length + size + closingPart(boundary).length;
  return new Promise((resolve) => {
    const req = http.request(`${hubUrl}/api/flist/me/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(total) },
    });
    req.on('error', () => resolve('dropped')); // ours: destroyed on purpose
    req.on('response', (res) => {
      res.resume();
      resolve(`answered ${res.statusCode} before the drop`);
    });
    req.write(head);
    const stop = Math.floor(size * fraction);
    const stream = fs.createReadStream(file, { start: 0, end: stop - 1, highWaterMark: 256 * 1024 });
    stream.on('data', (d) => {
      if (!req.write(d)) {
        stream.pause();
        req.once('drain', () => stream.resume());
      }
    });
    stream.on('end', () => setTimeout(() => req.destroy(), 100));
  });
}

const USER = 'stress';

export async function hubSuite(ctx: Context): Promise<SuiteResult> {
  const t = new Tally('hub');
  const t0 = Date.now();
  const n = by(ctx, 3, 6, 12);
  const aborts = by(ctx, 1, 2, 4);
  const loops = by(ctx, 2, 4, 6);
  const files = by(ctx, 150, 300, 800);
  const bytes = by(ctx, 12, 32, 96) * MiB;
  await hashReady();
  await withTmpfs(n * bytes * 4 + 512 * MiB, async (dir) => {
    log(`hub: generating ${n} tarballs of ${bytes / MiB} MiB`);
    const tarballs: string[] = [];
    for (let i = 0; i < n; i++) {
      const gz = i % 2 === 1;
      const f = path.join(dir, `t${i}.tar${gz ? '.gz' : ''}`);
      await writeBigTarFile(f, { files: files + i * 7, totalBytes: bytes + i * 65_537, seed: ctx.seed + i, gzip: gz });
      tarballs.push(f);
    }
    const hub = await startHub({ dir });
    const token = hub.token(USER);
    try {
      const upload = async (i: number): Promise<void> => {
        const r = await run(process.execPath, [G8OS, 'hub', 'upload', tarballs[i], '--hub', hub.url, '--token', token, '--name', `t${i}`], { allowFail: true });
        t.ops++;
        if (r.code !== 0) t.error(`hub upload t${i}: exit ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
      };
      // The base flist the download loops read, published first.
      await upload(0);
      const base = await get(`${hub.url}/${USER}/t0.flist`);
      if (base.status !== 200) throw new Error(`GET t0.flist: ${base.status}`);
      const md5 = (await get(`${hub.url}/${USER}/t0.flist.md5`)).body.toString().trim().split(/\s/)[0];
      if (crypto.createHash('md5').update(base.body).digest('hex') !== md5) t.wrong(base.body.length, 't0.flist does not match its .md5');
      const baseFile = path.join(dir, 't0.flist');
      fs.writeFileSync(baseFile, base.body);
      const reader = await openGen2(baseFile);
      const ids: string[] = [];
      for (const e of reader.walk()) for (const b of e.blocks ?? []) ids.push(b.id.toString('hex'));
      reader.close();
      log(`hub: ${n - 1} uploads + ${aborts} aborted ones at once, ${loops} download loops over t0's ${ids.length} blocks`);

      let uploading = true;
      let downloads = 0;
      let blockGets = 0;
      const rand = crypto.createHash('sha256').update(String(ctx.seed)).digest().readUInt32LE(0);
      let k = rand;
      const loop = async (j: number): Promise<void> => {
        while (uploading) {
          k = (Math.imul(k, 1664525) + 1013904223 + j) >>> 0;
          try {
            if (k % 8 === 0) {
              const r = await get(`${hub.url}/${USER}/t0.flist`);
              downloads++;
              t.bytesChecked += r.body.length;
              if (r.status !== 200) t.error(`GET t0.flist: ${r.status}`);
              else if (!r.body.equals(base.body)) t.wrong(Math.max(1, r.body.length), 't0.flist changed between downloads');
            } else {
              const id = ids[k % ids.length];
              const r = await get(`${hub.url}/api/blocks/${id}`);
              blockGets++;
              t.bytesChecked += r.body.length;
              if (r.status !== 200) t.error(`GET block ${id}: ${r.status}`);
              else if (blake2b128(r.body).toString('hex') !== id) t.wrong(r.body.length, `block ${id} does not hash to its id`);
              else if (k % 3 === 0 && r.body.length > 10) {
                const a = (k >>> 3) % (r.body.length - 1);
                const b = Math.min(r.body.length - 1, a + 1 + ((k >>> 7) % 65536));
                const p = await get(`${hub.url}/api/blocks/${id}`, { range: `bytes=${a}-${b}` });
                blockGets++;
                const want = r.body.subarray(a, b + 1);
                if (p.status !== 206) t.error(`GET block ${id} bytes=${a}-${b}: ${p.status}`);
                else if (!p.body.equals(want)) t.wrong(Math.max(1, want.length), `block ${id} range ${a}-${b} differs`);
              }
            }
          } catch (e) {
            t.error(`download loop: ${(e as Error).message}`);
            await sleep(100);
          }
        }
      };
      const loopsDone = Promise.all(Array.from({ length: loops }, (_, j) => loop(j)));
      const work: Promise<void>[] = [];
      for (let i = 1; i < n; i++) work.push(upload(i));
      for (let a = 0; a < aborts; a++) {
        work.push(
          sleep(200 * a).then(async () => {
            const how = await abortedUpload(hub.url, token, tarballs[a % n], `abort-${a}`, 0.3 + (0.4 * a) / Math.max(1, aborts));
            t.ops++;
            t.expectedErrors++;
            if (how !== 'dropped') t.error(`aborted upload abort-${a}: the hub ${how}`);
          }),
        );
      }
      await Promise.all(work);
      uploading = false;
      await loopsDone;
      t.ops += downloads + blockGets;

      // Nothing of the aborted uploads: not listed, not downloadable, no temp files left.
      const list = await get(`${hub.url}/api/flist/${USER}`);
      for (let a = 0; a < aborts; a++) {
        if (list.body.toString().includes(`abort-${a}`)) t.error(`aborted upload abort-${a} is listed`);
        const r = await get(`${hub.url}/${USER}/abort-${a}.flist`);
        if (r.status !== 404) t.error(`aborted upload abort-${a}.flist answers ${r.status}`);
      }
      const leftovers = (): string[] =>
        [path.join(hub.data, 'tmp'), path.join(dir, 'hub-tmp')].flatMap((d) => (fs.existsSync(d) ? fs.readdirSync(d).map((f) => path.join(d, f)) : []));
      for (let i = 0; i < 50 && leftovers().length; i++) await sleep(200);
      for (const f of leftovers()) t.error(`left in the hub's temp directories after every upload ended: ${f}`);

      // Every published flist against its tarball, through the hub's block endpoint.
      const store = await openStore(hub.url);
      try {
        for (let i = 0; i < n; i++) {
          const r = await get(`${hub.url}/${USER}/t${i}.flist`);
          if (r.status !== 200) {
            t.error(`t${i}.flist: ${r.status}`);
            continue;
          }
          const f = path.join(dir, `check-${i}.flist`);
          fs.writeFileSync(f, r.body);
          const rd = await openGen2(f);
          try {
            const s = await compareTarball(tarballs[i], flistSource(rd, store), t, `t${i}`);
            log(`hub: t${i}.flist verified against ${path.basename(tarballs[i])}: ${s.files} files, ${(s.bytes / 1e6).toFixed(1)} MB`);
          } finally {
            rd.close();
          }
        }
      } finally {
        await store.close();
      }
      t.data = { uploads: n, aborted: aborts, download_loops: loops, flist_downloads: downloads, block_gets: blockGets, tarball_mib: bytes / MiB };
    } finally {
      await hub.stop();
    }
  }, ctx.work);
  return t.result(`${n} concurrent uploads + ${aborts} aborted, ${loops} download loops, every flist verified`, (Date.now() - t0) / 1000);
}
