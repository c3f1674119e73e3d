// Host port forwards into a container: a userspace TCP proxy in the agent (the original ran one
// `socat tcp-listen:<host>,reuseaddr,fork tcp-connect:<ip>:<guest>` job per mapping).
import net from 'node:net';

export interface Forward {
  host: number;
  guest: number;
  close(): Promise<void>;
}

/** Listens on 0.0.0.0:host and pipes each connection to ip:guest; rejects when it cannot listen. */
export function forward(host: number, ip: string, guest: number): Promise<Forward> {
  const open = new Set<net.Socket>();
  // half-open: a client that shuts down its sending side still gets the whole answer
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: ip, port: guest, allowHalfOpen: true });
    open.add(client).add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    // an end travels through (pipe ends the other side's writing); an error or close ends both
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      reject(new Error(e.code === 'EADDRINUSE' ? `host port ${host} is in use` : `cannot listen on port ${host}: ${e.code ?? e.message}`));
    });
    server.listen({ port: host, host: '0.0.0.0', exclusive: true }, () => {
      server.on('error', () => undefined);
      resolve({
        host,
        guest,
        close: () =>
          new Promise<void>((done) => {
            for (const s of open) s.destroy();
            open.clear();
            server.close(() => done());
          }),
      });
    });
  });
}
