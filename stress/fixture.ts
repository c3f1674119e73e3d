// The small flist the rw-layer suites start from: files at block-boundary sizes (copied up on
// first write), files that are never touched (checked at the end), one bigger file for fio.
import fs from 'node:fs';
import path from 'node:path';
import { type FixtureEntry, mixedBytes, randomBytes, T0, writeTarFile } from '../test/helpers/tarballs';
import { MiB } from '../harness/paths';
import { flistCreate } from './mount';
import { BLOCK } from './suite';

export interface Fixture {
  flist: string;
  tarball: string;
  store: string;
  /** path → content, for every regular file of the flist */
  files: Map<string, Buffer>;
}

/** Sizes of the files fsx starts from (lower/f0 … lower/f5). */
export const LOWER_SIZES = [0, 1000, BLOCK - 1, BLOCK + 1, 3 * BLOCK + 17, 2 * MiB + 5];

export async function makeFixture(dir: string, fioBytes: number): Promise<Fixture> {
  fs.mkdirSync(dir, { recursive: true });
  const files = new Map<string, Buffer>();
  const entries: FixtureEntry[] = [];
  const root = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0 };
  const d = (p: string): void => void entries.push({ path: p, type: 'dir', mode: 0o755, ...root });
  const f = (p: string, content: Buffer): void => {
    files.set(p, content);
    entries.push({ path: p, type: 'file', mode: 0o644, ...root, content });
  };
  d('lower');
  LOWER_SIZES.forEach((size, i) => f(`lower/f${i}`, i % 2 ? randomBytes(size, 100 + i) : mixedBytes(size, 100 + i)));
  d('keep');
  [7, BLOCK, BLOCK * 2 + 3, 100_000].forEach((size, i) => f(`keep/k${i}`, mixedBytes(size, 200 + i)));
  d('fio');
  f('fio/big.bin', mixedBytes(fioBytes, 300));
  const tarball = path.join(dir, 'fixture.tar');
  await writeTarFile(tarball, entries);
  const store = `dir://${path.join(dir, 'blocks')}`;
  const flist = path.join(dir, 'fixture.flist');
  await flistCreate(tarball, flist, store);
  return { flist, tarball, store, files };
}
