// Loopback ports for the daemons a harness starts.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { inNetns } from './netns';

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

const CONNECT = `require('net').connect(Number(process.argv[2]), process.argv[1]).on('connect', () => process.exit(0)).on('error', () => process.exit(1))`;

/** Whether something accepts TCP connections on host:port (inside the network namespace when given). */
export function portOpen(port: number, host = '127.0.0.1', netns?: string): Promise<boolean> {
  if (netns) {
    // our sockets live in our namespace: ask a short process inside that one
    return new Promise((resolve) => {
      const argv = inNetns(netns, [process.execPath, '-e', CONNECT, host, String(port)]);
      const c = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
      c.once('error', () => resolve(false));
      c.once('exit', (code) => resolve(code === 0));
    });
  }
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
