// The module graph under src/ has no import cycle (issue 11); the checker itself is tested on a
// small tree it must find a cycle in, so a broken checker cannot pass silently.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const { graph, cycles } = require('../scripts/import-cycles.js') as {
  graph(root: string): Map<string, Set<string>>;
  cycles(g: Map<string, Set<string>>): string[][];
};

describe('import graph', () => {
  it('finds a cycle, including one through a type-only import and an index module', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-cycles-'));
    try {
      fs.mkdirSync(path.join(root, 'b'));
      fs.writeFileSync(path.join(root, 'a.ts'), "import { b } from './b';\nexport const a = b;\n");
      fs.writeFileSync(path.join(root, 'b', 'index.ts'), "import type { C } from '../c';\nexport const b: C = 1;\n");
      fs.writeFileSync(path.join(root, 'c.ts'), "export type C = number;\nimport('./a');\n");
      fs.writeFileSync(path.join(root, 'd.ts'), "// import { a } from './a'\nimport { a } from './a';\nexport const d = a;\n");
      const found = cycles(graph(root));
      expect(found.map((c) => c.map((f) => path.relative(root, f)))).toEqual([['a.ts', 'b/index.ts', 'c.ts']]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('src/ has no import cycle', () => {
    const root = path.join(__dirname, '..', 'src');
    const found = cycles(graph(root)).map((c) => c.map((f) => path.relative(root, f)).join(' → '));
    expect(found).toEqual([]);
  });
});
