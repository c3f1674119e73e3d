// The agent's command bus is a real redis-server it starts, watches and restarts
// (core0-protocol.md §1.2, §15): loopback and a unix socket by default, optional requirepass,
// no persistence.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface RedisServerOptions {
  dir: string;
  /** TCP port; 0 = unix socket only */
  port: number;
  /** addresses to bind (default 127.0.0.1) */
  bind?: string[];
  password?: string;
  binary?: string;
  log?: (line: string) => void;
}

const READY = /Ready to accept connections|The server is now ready to accept connections/;
const START_TIMEOUT_MS = 10_000;

export class RedisServer {
  readonly socket: string;
  private child?: ChildProcess;
  private stopping = false;
  private restarts = 0;

  constructor(private readonly o: RedisServerOptions) {
    this.socket = path.join(o.dir, 'redis.sock');
  }

  private config(): string {
    const quote = (s: string): string => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
    const lines = [
      `bind ${(this.o.bind ?? ['127.0.0.1']).join(' ')}`,
      `port ${this.o.port}`,
      `unixsocket ${quote(this.socket)}`,
      'unixsocketperm 700',
      'protected-mode yes',
      'save ""',
      'appendonly no',
      `dir ${quote(this.o.dir)}`,
      'daemonize no',
      'loglevel notice',
      'logfile ""',
      'databases 16',
    ];
    if (this.o.password) lines.push(`requirepass ${quote(this.o.password)}`);
    return `${lines.join('\n')}\n`;
  }

  /** Starts redis-server and resolves once it accepts connections. */
  async start(): Promise<void> {
    fs.mkdirSync(this.o.dir, { recursive: true, mode: 0o700 });
    if (Buffer.byteLength(this.socket) > 100) throw new Error(`data directory path too long for a unix socket: ${this.socket}`);
    const conf = path.join(this.o.dir, 'redis.conf');
    fs.writeFileSync(conf, this.config(), { mode: 0o600 });
    await this.killLeftover();
    fs.rmSync(this.socket, { force: true });
    const child = spawn(this.o.binary ?? 'redis-server', [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    if (child.pid) fs.writeFileSync(this.pidFile, `${child.pid}\n`);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(`redis-server did not start within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
      const onData = (d: Buffer): void => {
        out += d.toString();
        if (READY.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      };
      function fail(why: string): void {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(why));
      }
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('error', (e) => fail(`cannot run redis-server: ${e.message} (apt-get install redis-server)`));
      child.once('exit', (code) => {
        const last = out.trim().split('\n').filter((l) => /#|error|Error/.test(l)).pop() ?? `exit code ${code}`;
        const hint = /Address already in use/.test(out) ? ` (port ${this.o.port} is taken: another redis-server? pick --redis-port)` : '';
        fail(`redis-server exited: ${last.replace(/^\d+:[A-Z] .*? [#*-] /, '')}${hint}`);
      });
    });
    child.stdout!.removeAllListeners('data');
    child.stderr!.removeAllListeners('data');
    child.stdout!.resume();
    child.stderr!.resume();
    child.once('exit', (code, sig) => {
      if (this.stopping) return;
      this.o.log?.(`redis-server died (${sig ?? `code ${code}`}): restarting`);
      this.respawn();
    });
  }

  private respawn(): void {
    const delay = Math.min(100 * 2 ** this.restarts++, 5000);
    setTimeout(() => {
      if (this.stopping) return;
      this.start().then(
        () => (this.restarts = 0),
        (e: Error) => {
          this.o.log?.(`redis-server restart failed: ${e.message}`);
          this.respawn();
        },
      );
    }, delay);
  }

  private get pidFile(): string {
    return path.join(this.o.dir, 'redis.pid');
  }

  /** A redis-server left by an agent that was killed holds the port and socket: stop it. */
  private async killLeftover(): Promise<void> {
    let pid = 0;
    try {
      pid = Number(fs.readFileSync(this.pidFile, 'utf8').trim());
      if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('redis-server')) return;
    } catch {
      return;
    }
    this.o.log?.(`stopping the redis-server (pid ${pid}) a previous agent left running`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
    fs.rmSync(this.socket, { force: true });
    fs.rmSync(this.pidFile, { force: true });
  }
}
