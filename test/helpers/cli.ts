// Runs the real CLI (bin/g8os → dist) in a child process.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { G8OS, REPO } from '../../harness/paths';

export const ROOT = REPO;
export const BIN = G8OS;
export const FIXTURES = path.resolve(ROOT, '../shared/fixtures/real-flists');
export const FUNK = path.join(FIXTURES, 'threefoldtech-funk-latest.flist');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  out: Buffer;
}

export function g8os(args: string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const o = Buffer.concat(out);
      resolve({ code, stdout: o.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), out: o });
    });
    child.stdin.end(opts.input);
  });
}
