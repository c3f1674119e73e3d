// Cross-process block trust (issue 12): a block file hashed once on this node is not hashed
// again by the next reader process; a file changed in place afterwards is hashed again and,
// being corrupt, never served. Each reader is its own Node process (bin's dist/ build) over
// one cache directory and a real dir:// store.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBlock } from '../src/flist/codec';
import { hashReady } from '../src/flist/hash';
import { BLOCK_SIZE } from '../src/flist/types';
import { DirStore } from '../src/store/dir';
import { ROOT } from './helpers/cli';

const run = promisify(execFile);
const DIST = path.join(ROOT, 'dist');

// One reader process: reads every block through a BlockCache, prints the stats and each block's sha256.
const READER = `
const crypto = require('node:crypto');
const { BlockCache } = require(${JSON.stringify(path.join(DIST, 'src/fs/cache.js'))});
const { DirStore } = require(${JSON.stringify(path.join(DIST, 'src/store/dir.js'))});
const [dir, root, list] = process.argv.slice(1);
(async () => {
  const c = new BlockCache({ dir, store: new DirStore(root), log: () => {} });
  const sums = [];
  for (const r of JSON.parse(list)) {
    const b = await c.block({ id: Buffer.from(r.id, 'hex'), key: Buffer.from(r.key, 'hex') }, 'gen2');
    sums.push(crypto.createHash('sha256').update(b).digest('hex'));
  }
  await c.close();
  process.stdout.write(JSON.stringify({ stats: c.stats(), sums }));
})().catch((e) => { process.stderr.write(String(e.stack)); process.exit(1); });
`;

let tmp: string;
let storeRoot: string;
let list: string;
const sums: string[] = [];
const ids: string[] = [];

interface Result {
  stats: { verified: number; trusted: number; diskHits: number; misses: number; corrupt: number; errors: number };
  sums: string[];
}

async function reader(cache: string): Promise<Result> {
  const { stdout } = await run(process.execPath, ['-e', READER, cache, storeRoot, list], { timeout: 60_000 });
  return JSON.parse(stdout) as Result;
}

const fileOf = (cache: string, id: string): string => path.join(cache, 'blocks', id.slice(0, 2), id.slice(2, 4), id);

beforeAll(async () => {
  await hashReady();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-trust-'));
  storeRoot = path.join(tmp, 'store');
  const store = new DirStore(storeRoot);
  const refs: { id: string; key: string }[] = [];
  for (let i = 0; i < 4; i++) {
    const plain = crypto.randomBytes(i === 3 ? 12_345 : BLOCK_SIZE);
    const b = encodeBlock(plain);
    await store.put(b.id, b.cipher);
    refs.push({ id: b.id.toString('hex'), key: b.key.toString('hex') });
    ids.push(b.id.toString('hex'));
    sums.push(crypto.createHash('sha256').update(plain).digest('hex'));
  }
  await store.close();
  list = JSON.stringify(refs);
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('block trust across processes', () => {
  it('the second process reads every block from disk without hashing it; a block flipped in place is caught', async () => {
    const cache = path.join(tmp, 'cache');
    const first = await reader(cache);
    expect(first.sums).toEqual(sums);
    expect(first.stats).toMatchObject({ misses: 4, errors: 0 });

    const second = await reader(cache);
    expect(second.sums).toEqual(sums);
    expect(second.stats).toMatchObject({ diskHits: 4, misses: 0, verified: 0, trusted: 4, errors: 0 });

    // a flipped byte written in place, mtime even set back: ctime still moves
    const victim = fileOf(cache, ids[1]);
    const before = fs.statSync(victim);
    const fd = fs.openSync(victim, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 1000);
    fs.writeSync(fd, Buffer.from([b[0] ^ 0x01]), 0, 1, 1000);
    fs.closeSync(fd);
    fs.utimesSync(victim, before.atime, before.mtime);

    const third = await reader(cache);
    expect(third.sums).toEqual(sums); // never the flipped bytes
    expect(third.stats).toMatchObject({ corrupt: 1, misses: 1, trusted: 3, errors: 0 });

    // refetched and verified by the third: the fourth trusts all four again
    const fourth = await reader(cache);
    expect(fourth.sums).toEqual(sums);
    expect(fourth.stats).toMatchObject({ verified: 0, trusted: 4, misses: 0 });
  });

  it('a garbled or truncated trust log costs hashing, never wrong bytes', async () => {
    const cache = path.join(tmp, 'cache-garbled');
    await reader(cache);
    const log = path.join(cache, 'verified');
    const text = fs.readFileSync(log, 'utf8');
    // half a line, then a line naming the right id with a made-up identity
    fs.writeFileSync(log, `${text.slice(0, text.length / 2)}\n${ids[0]} ${'0'.repeat(32)} 1 2 3 4 5\n`);
    const r = await reader(cache);
    expect(r.sums).toEqual(sums);
    expect(r.stats.errors).toBe(0);
    expect(r.stats.verified + r.stats.trusted).toBe(4);
    expect(r.stats.verified).toBeGreaterThanOrEqual(2);
  });
});
