// The harness itself (harness/daemon.ts, procs.ts, cleanup.ts) on real processes: the three ready
// modes, a clear error when a daemon exits or stalls before it is ready, stop() taking the whole
// tree (also what ignores SIGTERM or left the group), kill() as a crash that leaves children
// until stop(), and cleanups run when the process exits or is signalled.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../harness/cleanup';
import { type Daemon, startDaemon } from '../harness/daemon';
import { REPO } from '../harness/paths';
import { freePort, portOpen } from '../harness/ports';
import { descendants, processAlive } from '../harness/procs';

// the stop test needs setsid (util-linux)
if (spawnSync('setsid', ['true']).status !== 0) throw new Error('setsid is missing (util-linux)');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-harness-test-'));
const started: Daemon[] = [];
const stray: number[] = [];

afterEach(async () => {
  for (const d of started.splice(0)) await d.stop(1000);
  for (const p of stray.splice(0)) if (processAlive(p)) process.kill(p, 'SIGKILL');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sh = async (script: string, ready: Parameters<typeof startDaemon>[0]['ready'], timeoutMs = 10_000): Promise<Daemon> => {
  const d = await startDaemon({ cmd: 'sh', args: ['-c', script], ready, timeoutMs, label: 'test sh' });
  started.push(d);
  return d;
};

/** Polls until none of pids is alive (a killed process takes a moment to go); the ones still alive. */
async function gone(pids: number[], ms = 3000): Promise<number[]> {
  const until = Date.now() + ms;
  let left = pids.filter(processAlive);
  while (left.length && Date.now() < until) {
    await sleep(50);
    left = left.filter(processAlive);
  }
  return left;
}

/** The numbers a script printed, one per line, once it printed `n` of them. */
async function printedPids(d: Daemon, n: number): Promise<number[]> {
  for (let i = 0; i < 100; i++) {
    const pids = d.stdout().split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
    if (pids.length >= n) return pids;
    await sleep(50);
  }
  throw new Error(`the script did not print ${n} pids: ${d.log()}`);
}

describe('ready modes', () => {
  it('a line: ready once a matching line is printed, output before it kept', async () => {
    const d = await sh('echo starting; sleep 0.3; echo "ready on 42" >&2; sleep 30', /^ready on \d+$/);
    expect(d.alive()).toBe(true);
    expect(d.stdout()).toContain('starting');
    expect(d.stderr()).toContain('ready on 42');
  });

  it('a port: ready once something accepts connections there', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const d = await startDaemon({
      cmd: process.execPath, label: 'late listener', timeoutMs: 10_000, ready: { port },
      args: ['-e', `setTimeout(() => require('net').createServer((s) => s.end()).listen(${port}, '127.0.0.1'), 300)`],
    });
    started.push(d);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await portOpen(port)).toBe(true);
  });

  it('a probe: ready once the function says so', async () => {
    const flag = path.join(tmp, 'flag');
    const d = await sh(`sleep 0.3; touch ${flag}; sleep 30`, () => fs.existsSync(flag));
    expect(d.alive()).toBe(true);
    expect(fs.existsSync(flag)).toBe(true);
  });
});

describe('failing to start', () => {
  it('an exit before ready is one clear error with its code and last output, nothing left', async () => {
    await expect(startDaemon({ cmd: 'sh', args: ['-c', 'echo "bad config: no such port" >&2; exit 3'], ready: /listening/, label: 'broken', timeoutMs: 10_000 }))
      .rejects.toThrow(/^broken exited \(3\) before it was ready:\s+bad config: no such port/);
  });

  it('not ready in time: an error naming the timeout, and the process tree is killed', async () => {
    const pidFile = path.join(tmp, 'stalled.pid');
    const t0 = Date.now();
    await expect(startDaemon({ cmd: 'sh', args: ['-c', `sleep 60 & echo $! > ${pidFile}; echo waiting; wait`], ready: /never/, label: 'stalled', timeoutMs: 700 }))
      .rejects.toThrow(/^stalled did not start within 0.7 s:\s+waiting/);
    expect(Date.now() - t0).toBeLessThan(6000);
    const child = Number(fs.readFileSync(pidFile, 'utf8'));
    stray.push(child);
    expect(await gone([child])).toEqual([]);
  });
});

describe('stopping', () => {
  it('stop(): SIGTERM first; a daemon that honours it exits of it at once', async () => {
    const d = await sh('echo up; sleep 30 & wait', 'up');
    const t0 = Date.now();
    const exit = await d.stop(5000);
    expect(exit.signal).toBe('SIGTERM');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('stop(): after the grace period, SIGKILL of the tree, also a child ignoring SIGTERM and one that left the group', async () => {
    // SIGTERM ignored by the shell and, inherited, by both sleeps; the second one in its own session
    const d = await sh('trap "" TERM; sleep 60 & echo $!; setsid sleep 60 & echo $!; echo ready; wait', 'ready');
    const kids = await printedPids(d, 2);
    stray.push(...kids);
    expect(kids.every(processAlive)).toBe(true);
    expect(descendants(d.pid)).toEqual(expect.arrayContaining(kids));
    const t0 = Date.now();
    const exit = await d.stop(600);
    const took = Date.now() - t0;
    expect(exit.signal).toBe('SIGKILL');
    expect(took).toBeGreaterThanOrEqual(550); // it waited the grace period
    expect(took).toBeLessThan(5000);
    expect(await gone(kids)).toEqual([]);
  });

  it('kill(): the process alone dies (a crash); its children live on until stop()', async () => {
    const d = await sh('sleep 60 & echo $!; echo ready; wait', 'ready');
    const [kid] = await printedPids(d, 1);
    stray.push(kid);
    const exit = await d.kill();
    expect(exit.signal).toBe('SIGKILL');
    expect(d.alive()).toBe(false);
    await sleep(200);
    expect(processAlive(kid)).toBe(true);
    await d.stop(1000);
    expect(await gone([kid])).toEqual([]);
  });
});

describe('cleanups', () => {
  // A separate Node process using the built harness (dist/harness, from `bash scripts/setup.sh`).
  const script = (end: string): string => `
    const fs = require('fs');
    const { onCleanup } = require(${JSON.stringify(path.join(REPO, 'dist/harness/cleanup.js'))});
    const { startDaemon } = require(${JSON.stringify(path.join(REPO, 'dist/harness/daemon.js'))});
    onCleanup(() => fs.writeFileSync(process.argv[1], 'cleaned'));
    startDaemon({ cmd: 'sleep', args: ['60'] }).then((d) => { console.log(d.pid); ${end} });
  `;
  const runChild = (end: string, marker: string): { child: ReturnType<typeof spawn>; pid: Promise<number> } => {
    const child = spawn(process.execPath, ['-e', script(end), marker], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(Number(out.trim()));
      });
      child.once('exit', (code) => reject(new Error(`harness child exited (${code}) before printing the daemon's pid`)));
    });
    return { child, pid };
  };

  it('on a normal exit: the cleanups run and the daemons it started are killed', async () => {
    const marker = path.join(tmp, 'exit-marker');
    const { child, pid } = runChild('process.exit(0);', marker);
    const sleepPid = await pid;
    stray.push(sleepPid);
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(0);
    expect(fs.readFileSync(marker, 'utf8')).toBe('cleaned');
    expect(await gone([sleepPid])).toEqual([]);
  });

  it('on SIGTERM: the cleanups run, then it dies of the signal', async () => {
    const marker = path.join(tmp, 'term-marker');
    const { child, pid } = runChild('', marker);
    const sleepPid = await pid;
    stray.push(sleepPid);
    const exit = new Promise<[number | null, string | null]>((r) => child.once('exit', (c, s) => r([c, s])));
    child.kill('SIGTERM');
    expect(await exit).toEqual([null, 'SIGTERM']);
    expect(fs.readFileSync(marker, 'utf8')).toBe('cleaned');
    expect(await gone([sleepPid])).toEqual([]);
  });
});
