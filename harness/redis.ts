// A throw-away real redis-server on a free loopback port (and a unix socket).
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startDaemon } from './daemon';
import { freePort } from './ports';

export const REDIS_SERVER = '/usr/bin/redis-server';

export interface RedisServer {
  port: number;
  /** redis://[:password@]127.0.0.1:port */
  url: string;
  /** Unix socket the server also listens on (for redis+unix:// tests). */
  socket: string;
  stop(): Promise<void>;
}

/** Whether something on the port answers PING (or NOAUTH: up, but wants a password). */
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
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no',
    '--logfile', log, '--unixsocket', socket, '--unixsocketperm', '700',
  ];
  if (opts.password) args.push('--requirepass', opts.password);
  try {
    const d = await startDaemon({ label: 'redis-server', cmd: REDIS_SERVER, args, ready: () => pingOnce(port), timeoutMs: 10_000, graceMs: 3000 });
    const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
    return {
      port, url: `redis://${auth}127.0.0.1:${port}`, socket,
      async stop() {
        await d.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    let logTail = '';
    try {
      logTail = readFileSync(log, 'utf8').split('\n').slice(-5).join('\n');
    } catch {
      // no log written
    }
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(e as Error).message}${logTail ? `\n${logTail}` : ''}`);
  }
}
