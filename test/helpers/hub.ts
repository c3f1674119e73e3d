// Starts a real hub process (bin/g8os hub) on a free loopback port, for tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { BIN } from './cli';
import { freePort } from './redis';

export interface HubProcess {
  url: string;
  port: number;
  data: string;
  child: ChildProcess;
  /** output the hub printed so far */
  log(): string;
  /** Create a user (if new) and return a fresh token for it. */
  token(user: string): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit (crash simulation). */
  kill(): Promise<void>;
}

/** Data dirs this helper made: removed after the test file (restart tests reuse them meanwhile). */
const made = new Set<string>();
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  made.clear();
});

/** With `netns`, the hub runs inside that network namespace (reach it from there too). */
export async function startHub(opts: { data?: string; args?: string[]; port?: number; netns?: string } = {}): Promise<HubProcess> {
  let data = opts.data;
  if (!data) {
    data = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-hub-'));
    made.add(data);
  }
  const port = opts.port ?? (await freePort());
  const argv = [process.execPath, BIN, 'hub', '--listen', `127.0.0.1:${port}`, '--data', data, ...(opts.args ?? [])];
  if (opts.netns) argv.unshift('nsenter', `--net=/run/netns/${opts.netns}`, '--');
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub did not start within 15 s:\n${out}`)), 15_000);
    const check = (): void => {
      if (out.includes('hub listening')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hub exited with ${code} before listening:\n${out}`));
    });
  });
  const wait = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    data,
    child,
    log: () => out,
    token(user: string): string {
      const r = spawnSync(process.execPath, [BIN, 'hub', 'user', 'add', user, '--data', data], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`hub user add failed: ${r.stderr}`);
      return r.stdout.trim().split('\n').pop()!;
    },
    stop: () => wait('SIGTERM'),
    kill: () => wait('SIGKILL'),
  };
}
