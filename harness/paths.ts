// The shared harness of test/, bench/ and stress/: daemons and their cleanup, ports, mounts,
// network namespaces, hub/redis/agent processes, results files. It is a top-level folder of its
// own so that none of the three imports another's tree; tsc compiles it into dist/harness for
// bench and stress (tsconfig "include"), vitest reads the TypeScript directly for the tests.
import fs from 'node:fs';
import path from 'node:path';

/** The repository root: the first folder above this file with a package.json (works from harness/ and dist/harness/). */
function findRoot(): string {
  for (let d = __dirname; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'bin', 'g8os'))) return d;
    if (path.dirname(d) === d) return path.resolve(__dirname, '..');
  }
}

export const REPO = findRoot();
/** The CLI every harness process runs (it loads dist/: build first). */
export const G8OS = path.join(REPO, 'bin', 'g8os');
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
