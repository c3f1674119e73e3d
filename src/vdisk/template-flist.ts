// A template from an flist holding a raw disk image (published on the hub like any flist):
// source `flist:<flist path or http(s) URL>[#<store URL>]`, template vdisk = the image's path
// inside the flist. Serves db templates by block index; every fetch bounded like the others.
import { G8osError } from '../errors';
import { storeFromBackend } from '../flist/backend';
import { fetchBlock } from '../flist/content';
import { openFlist } from '../flist/open';
import { BLOCK_SIZE, type FlistReader, S_IFMT, S_IFREG } from '../flist/types';
import { openStore } from '../store/index';
import type { BlockStore } from '../store/types';
import { bounded, type TemplateSource } from './template';

export class FlistTemplate implements TemplateSource {
  readonly url: string;
  private opened: Promise<{ reader: FlistReader; store: BlockStore }> | undefined;
  private readonly cache = new Map<string, Promise<Buffer>>();

  constructor(private readonly location: string, private readonly storeUrl: string | undefined, private readonly blockSize: number, private readonly timeoutMs: number) {
    this.url = `flist:${location}`;
  }

  private open(): Promise<{ reader: FlistReader; store: BlockStore }> {
    this.opened ??= (async () => {
      const reader = await openFlist(this.location);
      const url = this.storeUrl ?? storeFromBackend(reader.metadata().backend);
      if (!url) throw new G8osError('invalid', `${this.url}: no store given and the flist names none`);
      return { reader, store: await openStore(url) };
    })();
    this.opened.catch(() => (this.opened = undefined));
    return this.opened;
  }

  async byHash(): Promise<Buffer | null> {
    throw new G8osError('invalid', `${this.url}: an flist template serves db vdisks (by block index), not boot`, { errno: 'EIO' });
  }

  lba(): Promise<Map<string, Buffer>> {
    return this.byHash() as never;
  }

  byIndex(file: string, index: number): Promise<Buffer | null> {
    return bounded(this.read(file, index), this.timeoutMs, `template ${this.url}: block ${index} of ${file}`).catch((e) => {
      throw e instanceof G8osError ? e : new G8osError('unavailable', `${this.url}: ${(e as Error).message}`, { cause: e, errno: 'EIO' });
    });
  }

  private async read(file: string, index: number): Promise<Buffer | null> {
    const { reader, store } = await this.open();
    const e = reader.stat(file);
    if (!e || (e.mode & S_IFMT) !== S_IFREG) throw new G8osError('not_found', `${this.url}: no regular file ${file}`, { errno: 'EIO' });
    const start = index * this.blockSize;
    if (start >= e.size) return null;
    const out = Buffer.alloc(this.blockSize);
    for (let pos = start; pos < Math.min(start + this.blockSize, e.size);) {
      const n = Math.floor(pos / BLOCK_SIZE);
      const ref = e.blocks?.[n];
      if (!ref) throw new G8osError('corrupt', `${this.url}: ${file} has no block ${n}`, { errno: 'EIO' });
      const key = `${file}\0${n}`;
      let p = this.cache.get(key);
      if (!p) {
        p = fetchBlock(store, ref, reader.format, file);
        this.cache.set(key, p);
        p.catch(() => this.cache.delete(key));
        if (this.cache.size > 8) this.cache.delete(this.cache.keys().next().value as string);
      }
      const blk = await p;
      const from = pos - n * BLOCK_SIZE;
      const k = Math.min(blk.length - from, start + this.blockSize - pos);
      if (k <= 0) break;
      blk.copy(out, pos - start, from, from + k);
      pos += k;
    }
    return out.equals(Buffer.alloc(this.blockSize)) ? null : out;
  }

  async close(): Promise<void> {
    const o = await this.opened?.catch(() => undefined);
    o?.reader.close();
    await o?.store.close();
  }
}
