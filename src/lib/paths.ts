// Where the checkout lives, for the files it ships (bin/g8os, dist/g8init, web/).
import fs from 'node:fs';
import path from 'node:path';

/** The checkout's root: the nearest directory above this module (src/ or its build in dist/) holding bin/g8os. */
export function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'bin/g8os')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}
