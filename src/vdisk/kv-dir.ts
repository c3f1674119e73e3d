// KvServer in a local directory: one file per hash field and per block, written to a temporary
// name then renamed; flush() fsyncs what was written since the last flush. One process owns a
// directory at a time (the counts are kept consistent by an in-process lock per block).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { G8osError } from '../errors';
import type { KvServer } from './kv';

const enc = (s: string): string => encodeURIComponent(s).replace(/\./g, '%2E');

export class DirKv implements KvServer {
  readonly url: string;
  private readonly dirty = new Set<string>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(readonly root: string) {
    this.url = `dir://${root}`;
  }

  private hpath(key: string, field?: string): string {
    const d = path.join(this.root, 'h', enc(key));
    return field === undefined ? d : path.join(d, enc(field));
  }
  private bpath(kind: 'b' | 'r' | 's', hash: Buffer): string {
    const hex = hash.toString('hex');
    return path.join(this.root, kind, hex.slice(0, 2), hex);
  }

  private async lock<T>(k: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(k) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(k, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(k) === tail) this.locks.delete(k);
    }
  }

  private async readOrNull(p: string): Promise<Buffer | null> {
    try {
      return await fs.readFile(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw wrap(e, `read ${p}`);
    }
  }

  private async writeAtomic(p: string, data: Buffer | string): Promise<void> {
    const dir = path.dirname(p);
    const tmp = `${p}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(tmp, data);
      await fs.rename(tmp, p);
    } catch (e) {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      throw wrap(e, `write ${p}`);
    }
    this.dirty.add(p);
    this.dirty.add(dir);
  }

  private async remove(p: string): Promise<void> {
    try {
      await fs.rm(p, { force: true, recursive: true });
    } catch (e) {
      throw wrap(e, `remove ${p}`);
    }
    this.dirty.add(path.dirname(p));
  }

  hget(key: string, field: string): Promise<Buffer | null> {
    return this.readOrNull(this.hpath(key, field));
  }
  hset(key: string, field: string, value: Buffer): Promise<void> {
    return this.writeAtomic(this.hpath(key, field), value);
  }
  hsetnx(key: string, field: string, value: Buffer): Promise<void> {
    const p = this.hpath(key, field);
    return this.lock(p, async () => {
      if ((await this.readOrNull(p)) === null) await this.writeAtomic(p, value);
    });
  }
  hdel(key: string, field: string): Promise<void> {
    return this.remove(this.hpath(key, field));
  }
  async hgetall(key: string): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    let names: string[];
    try {
      names = await fs.readdir(this.hpath(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw wrap(e, `list ${key}`);
    }
    for (const n of names) {
      if (n.endsWith('.tmp')) continue;
      const v = await this.readOrNull(path.join(this.hpath(key), n));
      if (v) out.set(decodeURIComponent(n), v);
    }
    return out;
  }
  del(key: string): Promise<void> {
    return this.remove(this.hpath(key));
  }
  async rename(from: string, to: string): Promise<void> {
    // a directory cannot replace a non-empty one: move the old aside first (two renames)
    const src = this.hpath(from);
    const dst = this.hpath(to);
    const aside = `${dst}.old-${process.pid}-${Date.now()}.tmp`;
    try {
      await fs.rename(dst, aside).catch((e) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      });
      await fs.rename(src, dst).catch((e) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      });
    } catch (e) {
      throw wrap(e, `rename ${from} to ${to}`);
    }
    this.dirty.add(path.dirname(dst));
    await this.remove(aside);
  }

  blockGet(hash: Buffer): Promise<Buffer | null> {
    return this.readOrNull(this.bpath('b', hash));
  }
  blockPut(hash: Buffer, data: Buffer, refs: number): Promise<void> {
    return this.lock(hash.toString('hex'), async () => {
      const cur = await this.readOrNull(this.bpath('b', hash));
      if (cur && !cur.equals(data)) {
        throw new G8osError('corrupt', `${this.url}: hash collision on block ${hash.toString('hex')}`, { errno: 'EIO' });
      }
      if (!cur) await this.writeAtomic(this.bpath('b', hash), data);
      if (refs) await this.addRef(hash, refs);
    });
  }
  private async addRef(hash: Buffer, delta: number): Promise<void> {
    const p = this.bpath('r', hash);
    const n = Number((await this.readOrNull(p))?.toString() ?? 0) + delta;
    if (n <= 0) {
      await this.remove(p);
      await this.writeAtomic(this.bpath('s', hash), '');
    } else {
      await this.writeAtomic(p, String(n));
      await this.remove(this.bpath('s', hash));
    }
  }
  async blockRef(hashes: Buffer[], delta: number): Promise<void> {
    for (const h of hashes) await this.lock(h.toString('hex'), () => this.addRef(h, delta));
  }
  async blockRefs(hash: Buffer): Promise<number> {
    return Number((await this.readOrNull(this.bpath('r', hash)))?.toString() ?? 0);
  }
  async sweep(): Promise<number> {
    let deleted = 0;
    const sdir = path.join(this.root, 's');
    let shards: string[] = [];
    try {
      shards = await fs.readdir(sdir);
    } catch {
      return 0;
    }
    for (const shard of shards) {
      for (const hex of await fs.readdir(path.join(sdir, shard)).catch(() => [] as string[])) {
        if (hex.endsWith('.tmp')) continue;
        const h = Buffer.from(hex, 'hex');
        await this.lock(hex, async () => {
          if ((await this.readOrNull(this.bpath('r', h))) === null) {
            if ((await this.readOrNull(this.bpath('b', h))) !== null) deleted++;
            await this.remove(this.bpath('b', h));
          }
          await this.remove(this.bpath('s', h));
        });
      }
    }
    return deleted;
  }

  async flush(): Promise<void> {
    const paths = [...this.dirty];
    this.dirty.clear();
    try {
      for (const p of paths) {
        let fh: fs.FileHandle;
        try {
          fh = await fs.open(p, 'r');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed since
          throw e;
        }
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
    } catch (e) {
      for (const p of paths) this.dirty.add(p);
      throw wrap(e, 'fsync');
    }
  }
  async close(): Promise<void> {}
}

function wrap(e: unknown, what: string): G8osError {
  const err = e as NodeJS.ErrnoException;
  const errno = err.code === 'ENOSPC' || err.code === 'EDQUOT' ? 'ENOSPC' : 'EIO';
  return new G8osError(errno === 'ENOSPC' ? 'unavailable' : 'internal', `dir store: ${what}: ${err.message}`, { cause: e, errno });
}
