// The cloud-init metadata service on 169.254.169.254:80 (the address is on the gateway's
// loopback). A client is known by its source address, which the static leases tie to one MAC.
// Paths: NoCloud-net keyed by MAC (`/<mac>/user-data`, `/<mac>/meta-data`, for
// `ds=nocloud-net;s=http://169.254.169.254/<mac>/`) and the EC2-style `/latest/user-data`,
// `/latest/meta-data[/<key>]` for the asking client.
import http from 'node:http';
import type { DhcpHost, GwConfig } from './model';

interface Client extends DhcpHost {
  nic: string;
}

export class Metadata {
  private byIp = new Map<string, Client>();
  private byMac = new Map<string, Client>();
  private server?: http.Server;

  swap(c: GwConfig): void {
    const byIp = new Map<string, Client>();
    const byMac = new Map<string, Client>();
    for (const n of c.nics)
      for (const h of n.dhcpserver?.hosts ?? []) {
        const cl = { ...h, nic: n.name };
        byIp.set(h.ipaddress, cl);
        byMac.set(h.macaddress, cl);
      }
    this.byIp = byIp;
    this.byMac = byMac;
  }

  listen(port: number, host: string): Promise<void> {
    const s = http.createServer((req, res) => this.handle(req, res));
    this.server = s;
    return new Promise((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, host, () => resolve());
    });
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const send = (code: number, body: string): void => {
      res.writeHead(code, { 'content-type': 'text/plain' }).end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'only GET\n');
    const url = (req.url ?? '/').split('?')[0].replace(/\/+$/, '');
    const src = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    let client: Client | undefined;
    let rest: string;
    const m = /^\/([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})(\/.*)?$/.exec(url);
    if (m) {
      client = this.byMac.get(m[1].toLowerCase());
      // a client reads its own entry only: the MAC in the path must be the one its address belongs to
      if (client && client.ipaddress !== src) return send(403, `${m[1]} is not the client at ${src}\n`);
      rest = m[2] ?? '';
    } else {
      client = this.byIp.get(src);
      rest = url.replace(/^\/latest/, '');
    }
    if (!client) return send(404, `no cloud-init data for ${m ? m[1] : src}\n`);
    const meta: Record<string, string> = { 'instance-id': client.hostname, 'local-hostname': client.hostname, hostname: client.hostname, mac: client.macaddress, 'local-ipv4': client.ipaddress };
    if (rest === '/user-data') return send(200, client.cloudinit?.userdata ?? '');
    if (rest === '/meta-data' && m) return send(200, client.cloudinit?.metadata ?? Object.entries(meta).filter(([k]) => k === 'instance-id' || k === 'local-hostname').map(([k, v]) => `${k}: ${v}`).join('\n') + '\n');
    if (rest === '/meta-data') return send(200, `${Object.keys(meta).join('\n')}\n`);
    const k = /^\/meta-data\/([a-z0-9-]+)$/.exec(rest);
    if (k && meta[k[1]] !== undefined) return send(200, meta[k[1]]);
    if (rest === '') return send(200, 'meta-data\nuser-data\n');
    send(404, `no ${rest}\n`);
  }
}
