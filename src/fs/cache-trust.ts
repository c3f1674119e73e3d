// Cross-process block trust: which cached files have been hashed against their key on this
// node, so every new reader process does not hash them again. An append-only log
// <cache>/verified, one line per verification: id, key, inode, size, mtime, ctime, when.
// A process trusts a cached file only when its stat still matches a line for the same id and
// key: a write in place (a flipped byte) changes mtime and ctime, so the file is hashed again;
// a lost or garbled line only costs one more hash. The log is never needed for correctness.
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { FileId } from './block-task';

/** A line is trusted only if written this long after the file last changed (coarse kernel timestamps). */
export const RACY_MS = 50;
/** A log larger than this is started afresh on open (trust is rebuilt by hashing). */
const MAX_LOG = 16 * 1024 * 1024;

export interface Trusted extends FileId {
  key: string;
}

const LINE = /^([0-9a-f]{32,64}) ([0-9a-f]{32,64}) (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)$/;

export class TrustLog {
  readonly file: string;
  private readonly entries = new Map<string, Trusted>();
  private offset = 0;
  private reading?: Promise<void>;
  private failed = false;

  constructor(dir: string) {
    this.file = path.join(dir, 'verified');
    try {
      if (fs.statSync(this.file).size > MAX_LOG) fs.renameSync(this.file, `${this.file}.old`);
    } catch {
      // no log yet
    }
  }

  /** The trusted identity of a block file for this key, after reading what other processes added. */
  async lookup(id: string, key: Buffer): Promise<FileId | undefined> {
    await this.refresh();
    const t = this.entries.get(id);
    return t && t.key === key.toString('hex') ? t : undefined;
  }

  /** Records that the file `file` of block `id` hashed to `key`. Best effort (a full disk only costs re-hashing). */
  async record(id: string, key: Buffer, file: FileId): Promise<void> {
    const at = Date.now();
    if (at - file.ctimeMs < RACY_MS) return; // changed too recently to tell a later write apart
    const t: Trusted = { ...file, key: key.toString('hex') };
    this.entries.set(id, t);
    const line = `${id} ${t.key} ${file.ino} ${file.size} ${file.mtimeMs} ${file.ctimeMs} ${at}\n`;
    try {
      await fsp.appendFile(this.file, line, { mode: 0o644 });
      this.failed = false;
    } catch {
      this.failed = true; // ENOSPC, EROFS: readers hash instead
    }
  }

  /** Whether the last write to the log failed. */
  get writeFailed(): boolean {
    return this.failed;
  }

  private refresh(): Promise<void> {
    this.reading ??= this.readTail().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async readTail(): Promise<void> {
    let fh: fs.promises.FileHandle;
    try {
      fh = await fsp.open(this.file, 'r');
    } catch {
      return;
    }
    try {
      const { size } = await fh.stat();
      if (size < this.offset) this.offset = 0; // started afresh
      if (size === this.offset) return;
      const buf = Buffer.alloc(size - this.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      const text = buf.toString('latin1', 0, bytesRead);
      const end = text.lastIndexOf('\n') + 1; // a line still being written is read next time
      this.offset += end;
      for (const line of text.slice(0, end).split('\n')) {
        const m = LINE.exec(line);
        if (!m) continue;
        const t: Trusted = { key: m[2], ino: Number(m[3]), size: Number(m[4]), mtimeMs: Number(m[5]), ctimeMs: Number(m[6]) };
        if (Number(m[7]) - t.ctimeMs < RACY_MS) continue;
        this.entries.set(m[1], t);
      }
    } finally {
      await fh.close();
    }
  }
}
