// Rewriting one metadata key of an flist file atomically: a packed flist's database is changed
// in an extracted copy and the archive repacked to a temp file renamed over the original; a
// bare database (or an extracted directory) changes in one SQLite statement.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { invalid } from '../errors';
import { DB_NAME, detectContainer, extractDb, packFlist } from './archive';

/** Set `key` to `value`, or delete it when `value` is null. Generation-3 flists are refused. */
export async function setMetadata(file: string, key: string, value: string | null): Promise<void> {
  const kind = await detectContainer(file);
  const apply = (dbFile: string): void => {
    const db = new Database(dbFile, { fileMustExist: true });
    try {
      if (db.prepare("SELECT 1 FROM sqlite_master WHERE name='inode'").get()) {
        throw invalid(`${file} is a generation-3 flist; its metadata is read-only here`);
      }
      db.exec('CREATE TABLE IF NOT EXISTS metadata (key VARCHAR(64) PRIMARY KEY, value TEXT)');
      if (value === null) db.prepare('DELETE FROM metadata WHERE key = ?').run(key);
      else db.prepare('INSERT OR REPLACE INTO metadata (key, value) VALUES (?, ?)').run(key, value);
    } finally {
      db.close();
    }
  };
  if (kind === 'sqlite' || kind === 'directory') return apply(kind === 'sqlite' ? file : path.join(file, DB_NAME));
  const x = await extractDb(file);
  try {
    apply(x.db);
    await packFlist(x.db, file, { router: x.router });
  } finally {
    if (x.tempDir) await fs.promises.rm(x.tempDir, { recursive: true, force: true });
  }
}
