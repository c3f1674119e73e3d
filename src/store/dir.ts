// dir:///abs/path — blocks as files at <root>/<hex[0:2]>/<hex[2:4]>/<hex>.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, linkSync, mkdirSync, openSync, promises as fs, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { type BlockStore, StoreError } from './types';
import { errorText, hexId, limiter, type Limit } from './retry';

export class DirStore implements BlockStore {
  readonly writable = true;
  private readonly limit: Limit;
  /** Fan-out directories known to exist: saves a mkdir per block on the ingest path. */
  private readonly made = new Set<string>();

  constructor(
    readonly root: string,
    readonly url: string = `dir://${root}`,
    concurrency = 64,
  ) {
    if (!path.isAbsolute(root)) throw new StoreError(`dir store root must be an absolute path: ${root}`, 'invalid');
    // Bounded so a big exists() batch cannot run out of file descriptors.
    this.limit = limiter(concurrency);
  }

  pathOf(id: Buffer): string {
    const hex = hexId(id);
    return path.join(this.root, hex.slice(0, 2), hex.slice(2, 4), hex);
  }

  async get(id: Buffer): Promise<Buffer | null> {
    const file = this.pathOf(id);
    try {
      return await this.limit(() => fs.readFile(file));
    } catch (err) {
      if (isMissing(err)) return null;
      throw new StoreError(`dir store ${this.url}: cannot read ${file}: ${errorText(err)}`);
    }
  }

  async put(id: Buffer, data: Buffer): Promise<void> {
    const file = this.pathOf(id);
    await this.limit(async () => {
      if (await present(file)) return;
      const dir = path.dirname(file);
      // Temp name starts with "." and never looks like a block; same dir so rename is atomic.
      const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
      try {
        if (!this.made.has(dir)) {
          await fs.mkdir(dir, { recursive: true });
          this.made.add(dir);
        }
        const fh = await fs.open(tmp, 'wx', 0o644);
        try {
          await fh.writeFile(data);
          // Without this a crash could leave a short file under the final name, which
          // exists() would then report as present forever.
          await fh.datasync();
        } finally {
          await fh.close();
        }
        await fs.rename(tmp, file);
      } catch (err) {
        await fs.rm(tmp, { force: true }).catch(() => undefined);
        throw new StoreError(`dir store ${this.url}: cannot write ${file}: ${errorText(err)}`);
      }
    });
  }

  /**
   * Synchronous put for worker threads (the builder's encoders); same atomic temp + rename.
   * Returns false when the block was already there.
   */
  putSync(id: Buffer, data: Buffer): boolean {
    const file = this.pathOf(id);
    if (existsSync(file)) return false;
    const dir = path.dirname(file);
    const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      if (!this.made.has(dir)) {
        mkdirSync(dir, { recursive: true });
        this.made.add(dir);
      }
      const fd = openSync(tmp, 'wx', 0o644);
      try {
        let off = 0;
        while (off < data.length) off += writeSync(fd, data, off, data.length - off);
        fdatasyncSync(fd);
      } finally {
        closeSync(fd);
      }
      // link, not rename: when another worker placed the same block first it fails with
      // EEXIST, so each block is counted as written exactly once.
      try {
        linkSync(tmp, file);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw err;
      } finally {
        rmSync(tmp, { force: true });
      }
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new StoreError(`dir store ${this.url}: cannot write ${file}: ${errorText(err)}`);
    }
  }

  async exists(ids: Buffer[]): Promise<boolean[]> {
    return Promise.all(ids.map((id) => {
      const file = this.pathOf(id);
      return this.limit(() => present(file));
    }));
  }

  async close(): Promise<void> {}
}

function isMissing(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function present(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch (err) {
    if (isMissing(err)) return false;
    throw new StoreError(`cannot check ${file}: ${errorText(err)}`);
  }
}
