// Reach a TCP server that runs inside a test network namespace from the test process (fetch,
// a browser), without changing the host's network: no veth, no address, no route.
//
// A relay inside the namespace accepts on a unix socket (a file: reachable from every network
// namespace) and connects to 127.0.0.1:<port> there; the test process listens on the SAME port
// on the host's loopback and relays each connection to that socket. So http://127.0.0.1:<port>/
// names the same server on both sides, including in the URLs it prints and writes into flists
// (what the agent's containers fetch from inside the namespace).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startDaemon } from '../../harness/daemon';

const RELAY = String.raw`
const net = require('net');
const [sock, port] = [process.env.G8T_SOCK, Number(process.env.G8T_PORT)];
const server = net.createServer((c) => {
  const u = net.connect(port, '127.0.0.1');
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
});
server.listen(sock, () => process.stdout.write('relay ready\n'));
process.on('SIGTERM', () => process.exit(0));
`;

export interface ExposedPort {
  url: string;
  close(): Promise<void>;
}

/** Makes 127.0.0.1:<port> of the namespace answer on 127.0.0.1:<port> of the host. */
export async function exposeNetnsPort(netns: string, port: number): Promise<ExposedPort> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-relay-'));
  const sock = path.join(dir, 'relay.sock');
  const relay = await startDaemon({
    label: 'relay', cmd: process.execPath, args: ['-e', RELAY], netns, env: { G8T_SOCK: sock, G8T_PORT: String(port) }, ready: 'relay ready', timeoutMs: 10_000,
  });
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const u = net.connect(sock);
    conns.add(c).add(u);
    c.pipe(u).pipe(c);
    const drop = (): void => {
      c.destroy();
      u.destroy();
      conns.delete(c);
      conns.delete(u);
    };
    c.on('error', drop).on('close', drop);
    u.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of conns) c.destroy();
      });
      await relay.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
