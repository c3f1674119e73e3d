// The process inside a gateway's network namespace: it owns the `inet gw` table, the dnsmasq, the
// reverse proxy and the metadata service, and applies a whole new configuration on request:
// validate → render → `nft -c` (dry run) → commit (`nft -f` of the whole table, one
// transaction; dnsmasq files swapped by rename + SIGHUP; proxy and metadata tables swapped).
// A failure before the commit changes nothing; a failure during it puts the previous table and
// files back. Driven over HTTP on a unix socket in its directory (reachable from any netns).
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { G8osError, httpStatus, kindOf, oneLine } from '../errors';
import { run } from '../agent/containers/net';
import { Metadata } from './metadata';
import { addressOf, type GwConfig, publicNic, validate } from './model';
import { Proxy } from './proxy';
import { METADATA_IP, renderDnsmasq, renderNft, TABLE } from './render';

export const PROXY_PORT = 80;

const sameNics = (a: GwConfig, b: GwConfig): boolean => JSON.stringify(a.nics.map((n) => ({ ...n, dhcpserver: undefined }))) === JSON.stringify(b.nics.map((n) => ({ ...n, dhcpserver: undefined })));

function writeAtomic(file: string, text: string): void {
  fs.writeFileSync(`${file}.new`, text);
  fs.renameSync(`${file}.new`, file);
}

export class GatewayDaemon {
  private cfg?: GwConfig;
  private nft = '';
  private dnsmasq?: ChildProcess;
  private dnsConf = '';
  private readonly proxy = new Proxy();
  private readonly metadata = new Metadata();
  private proxyUp = false;
  private busy: Promise<unknown> = Promise.resolve();

  constructor(readonly dir: string, private readonly log: (l: string) => void = (l) => process.stderr.write(`${l}\n`)) {}

  private file(n: string): string {
    return path.join(this.dir, n);
  }

  get config(): GwConfig | undefined {
    return this.cfg;
  }

  /** One apply at a time, in order. */
  apply(raw: unknown): Promise<GwConfig> {
    const p = this.busy.then(() => this.applyNow(raw));
    this.busy = p.catch(() => undefined);
    return p;
  }

  private async applyNow(raw: unknown): Promise<GwConfig> {
    const next = validate(raw);
    if (this.cfg && !sameNics(this.cfg, next)) throw new G8osError('conflict', `gateway ${next.name}: nics change only while it is stopped`);
    const nft = renderNft(next);
    try {
      await run('nft', ['-c', '-f', '-'], nft);
    } catch (e) {
      throw new G8osError('invalid', `gateway ${next.name}: nftables refuses the ruleset: ${(e as Error).message.replace(/^nft -c -f -: /, '')}`);
    }
    const files = { hosts: this.file('dhcp-hosts'), names: this.file('dns-hosts'), leases: this.file('leases'), pid: this.file('dnsmasq.pid') };
    const dns = renderDnsmasq(next, files);
    if (!this.dnsmasq) {
      writeAtomic(this.file('dnsmasq.conf'), dns.conf);
      try {
        await run('dnsmasq', ['--test', `--conf-file=${this.file('dnsmasq.conf')}`]);
      } catch (e) {
        throw new G8osError('invalid', `gateway ${next.name}: dnsmasq refuses its configuration: ${(e as Error).message}`);
      }
    }
    // commit
    const before = { nft: this.nft, hosts: this.read(files.hosts), names: this.read(files.names) };
    await run('nft', ['-f', '-'], nft);
    try {
      writeAtomic(files.hosts, dns.hosts);
      writeAtomic(files.names, dns.names);
      if (!this.dnsmasq) await this.startDnsmasq(dns.conf);
      else this.dnsmasq.kill('SIGHUP');
      if (!this.proxyUp) {
        await this.metadata.listen(80, METADATA_IP);
        await this.proxy.listen(PROXY_PORT, addressOf(publicNic(next)));
        this.proxyUp = true;
      }
    } catch (e) {
      // put the previous state back; the new one never was
      await run('nft', ['-f', '-'], before.nft || `table inet ${TABLE}\ndelete table inet ${TABLE}\n`).catch(() => undefined);
      writeAtomic(files.hosts, before.hosts);
      writeAtomic(files.names, before.names);
      this.dnsmasq?.kill('SIGHUP');
      throw new G8osError(kindOf(e) === 'internal' ? 'unavailable' : kindOf(e), `gateway ${next.name}: ${oneLine(e)} (previous configuration kept)`);
    }
    this.proxy.swap(next.httpproxies);
    this.metadata.swap(next);
    this.nft = nft;
    this.cfg = next;
    return next;
  }

  private read(f: string): string {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch {
      return '';
    }
  }

  private startDnsmasq(conf: string): Promise<void> {
    this.dnsConf = conf;
    const child = spawn('dnsmasq', [`--conf-file=${this.file('dnsmasq.conf')}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.dnsmasq = child;
    return new Promise((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const early = (code: number | null): void => {
        clearTimeout(t);
        this.dnsmasq = undefined;
        reject(new G8osError('invalid', `dnsmasq: ${err.split('\n').map((l) => l.replace(/^dnsmasq:\s*/, '')).find(Boolean) ?? `exit ${code}`}`));
      };
      const t = setTimeout(() => {
        child.off('exit', early);
        child.once('exit', (code, sig) => {
          if (this.dnsmasq !== child) return;
          this.log(`dnsmasq exited (${sig ?? code}); restarting`);
          this.dnsmasq = undefined;
          setTimeout(() => void this.startDnsmasq(this.dnsConf).catch((e) => this.log(oneLine(e))), 1000).unref();
        });
        resolve();
      }, 300);
      child.once('exit', early);
    });
  }

  status(): Record<string, unknown> {
    return { name: this.cfg?.name, dnsmasq: this.dnsmasq?.pid ?? null, proxies: this.proxy.status() };
  }

  async stop(): Promise<void> {
    const d = this.dnsmasq;
    this.dnsmasq = undefined;
    if (d && d.exitCode === null) {
      const gone = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      await gone;
    }
    await this.proxy.close();
    await this.metadata.close();
    await run('nft', ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
  }
}

/** The control socket: PUT /config (a whole configuration), GET /config, GET /status. */
export function serveControl(d: GatewayDaemon, socket: string): Promise<http.Server> {
  fs.rmSync(socket, { force: true });
  const s = http.createServer((req, res) => {
    const reply = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      void (async () => {
        try {
          if (req.method === 'PUT' && req.url === '/config') return reply(200, await d.apply(JSON.parse(body)));
          if (req.method === 'GET' && req.url === '/config') return reply(200, d.config ?? null);
          if (req.method === 'GET' && req.url === '/status') return reply(200, d.status());
          reply(404, { kind: 'not_found', message: `no ${req.method} ${req.url}` });
        } catch (e) {
          const kind = e instanceof SyntaxError ? 'invalid' : kindOf(e);
          reply(e instanceof SyntaxError ? 400 : httpStatus(e), { kind, message: oneLine(e) });
        }
      })();
    });
  });
  return new Promise((resolve) => s.listen(socket, () => resolve(s)));
}

/** `node dist/gw/daemon.js <dir>`, run inside the gateway's network namespace. */
async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: daemon.js <dir>\n');
    process.exit(2);
  }
  fs.mkdirSync(dir, { recursive: true });
  // the metadata address lives on the gateway's loopback
  await run('ip', ['addr', 'replace', `${METADATA_IP}/32`, 'dev', 'lo']);
  const d = new GatewayDaemon(dir);
  const ctl = await serveControl(d, path.join(dir, 'control.sock'));
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    ctl.close();
    void d.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write('ready\n');
}

if (require.main === module) void main().catch((e) => {
  process.stderr.write(`gateway: ${oneLine(e)}\n`);
  process.exit(1);
});
