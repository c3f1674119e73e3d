// Timing a command to its first output line (runc run, g8os container run), the runc bundle it
// needs, and the scratch space, namespace and agent of the agent and container benches.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Agent, startAgent } from '../harness/agent';
import { Client } from '../src/agent/client';
import { log, onCleanup, tail } from '../harness/cleanup';
import { mountsUnder, withTmpfs } from '../harness/mounts';
import { makeNetns, type Netns } from '../harness/netns';
import { G8OS } from '../harness/paths';
import { killTree } from '../harness/procs';

export const secondsSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

/** A failure as one line, for a table note. */
export const why = (e: unknown): string => ((e as Error).message ?? String(e)).replace(/\s*\n\s*/g, ' / ').slice(0, 400);

/** A tmpfs scratch dir and a network namespace for fn; what fn left mounted below dir is reported (withTmpfs detaches it). */
export function inScratchNetns<T>(label: string, bytes: number, fn: (dir: string, ns: Netns) => Promise<T>): Promise<T> {
  return withTmpfs(bytes, async (dir) => {
    const ns = makeNetns('b');
    try {
      return await fn(dir, ns);
    } finally {
      ns.remove();
      const left = mountsUnder(dir);
      if (left.length) log(`${label}: mounts left under the scratch dir, detaching: ${left.join(', ')}`);
    }
  });
}

/** `g8os agent` in the namespace with its data and block cache where we say; stop() also removes what it left. */
export const agentIn = (ns: Netns, data: string, cache: string): Promise<Agent> => startAgent({ netns: ns.name, data, cache, sweepOnStop: true });

export interface FirstLine {
  /** spawn to the expected first line, seconds */
  firstS: number;
  /** spawn to exit */
  totalS: number;
}

/** Spawns argv; times the first stdout line equal to `expect`, then the exit (which must be 0). */
export function firstLine(label: string, argv: string[], expect: string, timeoutMs: number): Promise<FirstLine> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const kill = (): void => killTree(child.pid!);
    const unregister = onCleanup(kill);
    let out = '';
    let err = '';
    let firstS = NaN;
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`${label}: no exit within ${timeoutMs / 1000} s${err || out ? `; last output: ${tail(err || out, 3)}` : ', no output'}`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      if (!Number.isNaN(firstS)) return;
      out += d.toString();
      if (out.split('\n').slice(0, -1).some((l) => l.trimEnd() === expect)) firstS = secondsSince(t0);
    });
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-16384)));
    child.once('error', (e) => (clearTimeout(timer), unregister(), reject(e)));
    child.once('close', (code, sig) => {
      const totalS = secondsSince(t0);
      clearTimeout(timer);
      unregister();
      if (code !== 0) reject(new Error(`${label}: exit ${code ?? sig}: ${tail(err || out, 3)}`));
      else if (Number.isNaN(firstS)) reject(new Error(`${label}: no "${expect}" line in its output: ${tail(out + err, 3)}`));
      else resolve({ firstS, totalS });
    });
  });
}

/** An OCI bundle of the rootfs tarball for runc: `runc spec`, then args, terminal and root path. */
export function runcBundle(tar: string, bundle: string, args = ['/bin/echo', 'hello']): void {
  const rootfs = path.join(bundle, 'rootfs');
  fs.mkdirSync(rootfs, { recursive: true });
  execFileSync('tar', ['-xf', tar, '-C', rootfs, '--same-owner', '--numeric-owner']);
  runcConfig(bundle, args, rootfs);
}

/** `runc spec` in the bundle, then args, no terminal and the root path (relative: inside the bundle). */
export function runcConfig(bundle: string, args: string[], root = 'rootfs'): void {
  fs.mkdirSync(bundle, { recursive: true });
  execFileSync('runc', ['spec', '--bundle', bundle], { stdio: 'pipe' });
  const file = path.join(bundle, 'config.json');
  const c = JSON.parse(fs.readFileSync(file, 'utf8')) as { process: { terminal: boolean; args: string[] }; root: { path: string } };
  c.process.terminal = false;
  c.process.args = args;
  c.root.path = root;
  fs.writeFileSync(file, JSON.stringify(c, null, 1));
}

export async function runcRun(bundle: string, id: string, expect = 'hello'): Promise<FirstLine> {
  const del = (): void => {
    spawnSync('runc', ['delete', '-f', id], { stdio: 'ignore' });
  };
  const unregister = onCleanup(del);
  try {
    return await firstLine('runc run', ['runc', 'run', '--bundle', bundle, id], expect, 60_000);
  } finally {
    del();
    unregister();
  }
}

const CONTAINER_TIMEOUT_MS = 120_000;

/** `g8os container run <flist> [-- argv]` to its first `expect` line; an empty argv runs the flist's entrypoint. */
export async function containerRun(agent: Agent, flist: string, argv = ['/bin/echo', 'hello'], expect = 'hello'): Promise<FirstLine> {
  try {
    const cmd = argv.length ? ['--', ...argv] : [];
    return await firstLine('g8os container run', [process.execPath, G8OS, 'container', 'run', flist, '--agent', agent.socket, ...cmd], expect, CONTAINER_TIMEOUT_MS);
  } catch (e) {
    const last = tail(agent.log(), 1);
    throw new Error(`${(e as Error).message}${last ? ` (agent's last log line: ${last})` : ''}`);
  }
}

/**
 * What `g8os container run` does, through an already open client (no CLI start-up): corex.create
 * with the default nic, then core.system argv in it to its result (the command's exit), whose
 * first stdout line must be `expect`. firstS = create + dispatch; totalS adds corex.terminate.
 */
export async function protocolRun(client: Client, flist: string, argv: string[], expect: string): Promise<FirstLine & { createS: number; dispatchS: number }> {
  const t0 = process.hrtime.bigint();
  const id = await client.json<number>('corex.create', { root: flist, host_network: false, nics: [{ type: 'default' }], privileged: false }, 300);
  try {
    const createS = secondsSince(t0);
    const r = await (await client.dispatch(id, 'core.system', { name: argv[0], args: argv.slice(1), dir: '', stdin: '', env: null })).get(120);
    const firstS = secondsSince(t0);
    const first = (r.streams?.[0] ?? '').split('\n')[0].trimEnd();
    if (r.state !== 'SUCCESS' || first !== expect) throw new Error(`${argv.join(' ')} in container ${id}: ${r.state}, stdout ${JSON.stringify(r.streams?.[0])}, stderr ${JSON.stringify(r.streams?.[1]?.slice(-300))}`);
    await client.json('corex.terminate', { container: id }, 120);
    return { firstS, totalS: secondsSince(t0), createS, dispatchS: firstS - createS };
  } catch (e) {
    await client.json('corex.terminate', { container: id }, 60).catch(() => undefined);
    throw e;
  }
}
