#!/usr/bin/env node
// Fails (exit 1) when the relative imports under a folder (default src/) form a cycle; type-only
// imports count too, since a circle of types still ties the modules' designs together.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

function sources(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.ts$/.test(e.name) && !/\.d\.ts$/.test(e.name)) out.push(p);
  }
  return out;
}

function resolve(from, spec) {
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  }
  return undefined;
}

/** Module → the modules it imports (relative specifiers only). */
function graph(root) {
  const g = new Map();
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]*|\.{1,2})['"]/gm;
  for (const f of sources(root)) {
    const text = fs.readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    const deps = new Set();
    for (const m of text.matchAll(re)) {
      const d = resolve(f, m[1]);
      if (d && d.startsWith(root + path.sep)) deps.add(d);
    }
    g.set(f, deps);
  }
  return g;
}

/** Strongly connected components of more than one module, or a module importing itself (Tarjan). */
function cycles(g) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const found = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || g.get(v).has(v)) found.push(scc.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return found;
}

module.exports = { graph, cycles };

if (require.main === module) {
  const root = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'src'));
  const found = cycles(graph(root));
  const rel = (f) => path.relative(process.cwd(), f);
  for (const c of found) console.log(`import cycle (${c.length} files): ${c.map(rel).join(' ')}`);
  console.log(found.length === 0 ? `no import cycles under ${rel(root) || '.'}` : `${found.length} import cycle(s)`);
  process.exit(found.length === 0 ? 0 : 1);
}
