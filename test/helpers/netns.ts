// Network namespaces for container tests, and a container agent running inside one. Node cannot
// enter a network namespace itself, so the networking tests drive a `Containers` in a child
// process started with `nsenter --net=<ns>` (only the network namespace: mounts and cgroups stay
// the host's, so the test sees and checks them). The host's network never changes.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { inNetns, makeNetns, type Netns as Made } from '../../harness/netns';
import { ROOT } from './cli';

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function exec(file: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; signal?: string }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

export class Netns {
  private constructor(private readonly made: Made) {}

  get name(): string {
    return this.made.name;
  }

  get path(): string {
    return this.made.path;
  }

  static async create(): Promise<Netns> {
    return new Netns(makeNetns('t'));
  }

  /** Runs a host program inside the namespace. */
  exec(file: string, args: string[], timeoutMs?: number): Promise<RunResult> {
    const [cmd, ...rest] = inNetns(this.name, [file, ...args]);
    return exec(cmd, rest, timeoutMs);
  }

  /** Link names in the namespace. */
  async links(): Promise<string[]> {
    const r = await exec('ip', ['-n', this.name, '-j', 'link', 'show']);
    return (JSON.parse(r.stdout || '[]') as { ifname: string }[]).map((l) => l.ifname);
  }

  async delete(): Promise<void> {
    this.made.remove();
  }
}

/** What the child runs: a Containers and the corex/bridge handlers, driven over the IPC channel. */
const CHILD = String.raw`
const dist = process.env.G8T_DIST;
const { Containers } = require(dist + '/src/agent/containers');
const { corexHandlers } = require(dist + '/src/agent/builtins/corex');
const { bridgeHandlers } = require(dist + '/src/agent/builtins/bridge');
const http = require('http');
const exits = [];
const c = new Containers({ ...JSON.parse(process.env.G8T_OPTS), log: (l) => process.stderr.write(l + '\n'), onExit: (id) => exits.push(id) });
const handlers = { ...bridgeHandlers(c), ...corexHandlers(c, (id, cmd) => cmd.id) };
function run(id, argv, ms) {
  return new Promise((resolve, reject) => {
    const child = c.place(id).spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), ms || 20000);
    child.on('error', reject);
    child.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
  });
}
const ops = {
  init: () => c.init(),
  create: (a) => c.create(a),
  terminate: (id) => c.terminate(id),
  shutdown: () => c.shutdown(),
  list: () => c.list(),
  address: (id) => c.address(id),
  exits: () => exits,
  run,
  handler: (name, args) => handlers[name](args, {}),
  // an http server in the agent's namespace answering text, or a file's bytes
  serve: (host, port, text, file) => new Promise((resolve, reject) => {
    const s = http.createServer((q, r) => (file ? require('fs').createReadStream(file).pipe(r) : r.end(text)));
    s.on('error', reject);
    s.listen(port, host, () => resolve(s.address().port));
  }),
};
process.on('message', async (m) => {
  try {
    const value = await ops[m.op](...m.args);
    process.send({ seq: m.seq, value: value === undefined ? null : value });
  } catch (e) {
    process.send({ seq: m.seq, error: e.message, status: e.code === undefined ? null : e.code, name: e.name });
  }
});
// the test went away: leave nothing behind
process.on('disconnect', () => c.shutdown().finally(() => process.exit(0)));
process.send({ ready: true });
`;

export class RemoteError extends Error {
  constructor(message: string, readonly code: number | null, readonly kind: string) {
    super(message);
  }
}

/** A Containers in a child process (inside `ns` when given). */
export class RemoteContainers {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly exited: Promise<void>;
  stderr = '';

  private constructor(readonly child: ChildProcess) {
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.on('message', (m: { seq?: number; value?: unknown; error?: string; status?: number | null; name?: string }) => {
      const w = m.seq === undefined ? undefined : this.waiting.get(m.seq);
      if (!w) return;
      this.waiting.delete(m.seq!);
      if (m.error !== undefined) w.reject(new RemoteError(m.error, m.status ?? null, m.name ?? 'Error'));
      else w.resolve(m.value);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        for (const w of this.waiting.values()) w.reject(new Error(`the container agent exited: ${this.stderr.trim()}`));
        this.waiting.clear();
        resolve();
      }),
    );
  }

  static async start(ns: Netns | null, opts: Record<string, unknown>): Promise<RemoteContainers> {
    const [file, ...args] = inNetns(ns?.name, [process.execPath, '-e', CHILD]);
    const child = spawn(file, args, {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, G8T_DIST: path.join(ROOT, 'dist'), G8T_OPTS: JSON.stringify(opts) },
    });
    const r = new RemoteContainers(child);
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', () => reject(new Error(`the container agent did not start: ${r.stderr}`)));
    });
    return r;
  }

  call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ seq, op, args });
    });
  }

  run(id: number, argv: string[], ms?: number): Promise<RunResult> {
    return this.call<RunResult>('run', id, argv, ms);
  }

  /** shutdown, then the process ends; SIGKILL if it does not within the time. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.call('shutdown').catch(() => undefined);
    this.child.disconnect();
    await this.exited;
    clearTimeout(t);
  }
}

export const g8initBuilt = (): boolean => {
  const bin = path.join(ROOT, 'dist/g8init');
  const src = path.join(ROOT, 'src/agent/native/g8init.c');
  return fs.existsSync(bin) && fs.statSync(bin).mtimeMs >= fs.statSync(src).mtimeMs;
};
