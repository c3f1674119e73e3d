// Spawns a throw-away real redis-server on a free loopback port for tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_SERVER = '/usr/bin/redis-server';

export interface RedisServer {
  port: number;
  /** redis://[:password@]127.0.0.1:port */
  url: string;
  /** Unix socket the server also listens on (for redis+unix:// tests). */
  socket: string;
  stop(): Promise<void>;
}

/** A loopback port that was free a moment ago (bind to 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when something on the port answers PING (or NOAUTH: up, but wants a password). */
function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG') || buf.startsWith('-NOAUTH'));
    });
  });
}

export async function startRedis(opts: { password?: string } = {}): Promise<RedisServer> {
  // The free port can be taken between our check and redis binding it: try a few times.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(opts: { password?: string }): Promise<RedisServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'g8os-redis-'));
  const port = await freePort();
  const socket = path.join(dir, 'redis.sock');
  const log = path.join(dir, 'redis.log');
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    '--logfile', log,
    '--unixsocket', socket,
    '--unixsocketperm', '700',
  ];
  if (opts.password) args.push('--requirepass', opts.password);
  const child: ChildProcess = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
  let exited: string | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? code}`;
      resolve();
    });
    child.once('error', (err) => {
      exited = err.message;
      resolve();
    });
  });

  const cleanup = async (): Promise<void> => {
    if (!exited) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exitPromise;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) {
      let tail = '';
      try {
        tail = readFileSync(log, 'utf8').split('\n').slice(-5).join('\n');
      } catch {
        // no log written
      }
      await cleanup();
      throw new Error(`redis-server ${exited}${tail ? `:\n${tail}` : ''}`);
    }
    if (await pingOnce(port)) break;
    if (Date.now() > deadline) {
      await cleanup();
      throw new Error(`redis-server did not answer PING on 127.0.0.1:${port} within 10 s`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  return { port, url: `redis://${auth}127.0.0.1:${port}`, socket, stop: cleanup };
}
