// The reliability suites in their short CI form (`node dist/stress/run.js --ci`): fsx on the rw
// layer, fio + the read-only content pass, 8 readers while the hub restarts, the hub under
// parallel uploads/downloads, the agent with 300 jobs. Every suite must find 0 wrong bytes and
// 0 unexpected errors. `npm run stress [-- --quick]` runs the longer forms.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { ROOT } from './helpers/cli';

interface Suite {
  name: string;
  ops: number;
  errors: number;
  wrongBytes: number;
  problems: string[];
}

const results = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-stress-ci-'));
afterAll(() => fs.rmSync(results, { recursive: true, force: true }));

it('stress --ci: every suite runs, no wrong byte, no unexpected error', async () => {
  const run = path.join(ROOT, 'dist/stress/run.js');
  expect(fs.existsSync(run), `${run} is missing: run npm run build`).toBe(true);
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn(process.execPath, [run, '--ci', '--results', results], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 200_000);
    child.once('close', (code) => (clearTimeout(timer), resolve({ code, text })));
  });
  const file = fs.readdirSync(results).find((f) => f.endsWith('-ci.json'));
  expect(file, `no results file; output:\n${out.text.slice(-4000)}`).toBeDefined();
  const doc = JSON.parse(fs.readFileSync(path.join(results, file!), 'utf8')) as { suites: Suite[] };
  expect(doc.suites.map((s) => s.name)).toEqual(['fsx', 'fio', 'concurrency', 'hub', 'agent']);
  for (const s of doc.suites) {
    const why = `${s.name}: ${s.problems.slice(0, 5).join(' | ')}`;
    expect(s.ops, why).toBeGreaterThan(0);
    expect(s.wrongBytes, why).toBe(0);
    expect(s.errors, why).toBe(0);
  }
  expect(out.code, out.text.slice(-4000)).toBe(0);
}, 240_000);
