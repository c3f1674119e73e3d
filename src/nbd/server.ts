// NBD server: fixed-newstyle negotiation, then transmission with several requests in flight
// per connection and replies in completion order. A failing vdisk only fails its request.
import net from 'node:net';
import { errnoName, G8osError, oneLine } from '../errors';
import type { ExportProvider, Vdisk } from '../vdisk/types';
import {
  CMD, CMD_FLAG, ERR, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO, MAX_REQUEST, NBDMAGIC,
  OPT, REP, REPLY_MAGIC, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, TFLAG,
} from './proto';
import { SocketReader } from './reader';

export interface NbdServerOptions {
  exports: ExportProvider;
  /** export used when a client asks for "" */
  defaultExport?: string;
  /** requests handled concurrently per connection (spec default 8) */
  workers?: number;
  log?: (line: string) => void;
}

const MAX_OPTION = 64 * 1024;

class Disconnect extends Error {}

export class NbdServer {
  readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly sessions = new Set<Promise<void>>();

  constructor(private readonly opts: NbdServerOptions) {
    this.server = net.createServer((sock) => this.accept(sock));
  }

  /** Listens on a unix socket path, or on host:port (TCP). Resolves the address. */
  listen(address: string | { host: string; port: number }): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      const done = (): void => {
        this.server.off('error', reject);
        const a = this.server.address();
        resolve(typeof a === 'string' ? a : `${a?.address}:${a?.port}`);
      };
      if (typeof address === 'string') this.server.listen(address, done);
      else this.server.listen(address.port, address.host, done);
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => {
      this.server.close(() => r());
      for (const s of this.sockets) s.destroy();
    });
    await Promise.allSettled([...this.sessions]);
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.setNoDelay?.(true);
    sock.on('error', () => undefined);
    const session = new Session(sock, this.opts, (l) => this.log(l)).run()
      .catch((e) => this.log(`nbd: connection ended: ${oneLine(e)}`))
      .finally(() => {
        sock.destroy();
        this.sockets.delete(sock);
        this.sessions.delete(session);
      });
    this.sessions.add(session);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
}

/** NBD error code for a vdisk failure (disks-vms.md §2.2 error list). */
export function nbdErrno(e: unknown): number {
  switch (errnoName(e)) {
    case 'EPERM':
    case 'EROFS':
    case 'EACCES':
      return ERR.EPERM;
    case 'EINVAL':
      return ERR.EINVAL;
    case 'ENOSPC':
    case 'EDQUOT':
      return ERR.ENOSPC;
    case 'ENOMEM':
      return ERR.ENOMEM;
    case 'EOVERFLOW':
      return ERR.EOVERFLOW;
    case 'ENOTSUP':
      return ERR.ENOTSUP;
    default:
      return ERR.EIO;
  }
}

class Session {
  private readonly r: SocketReader;
  private noZeroes = false;

  constructor(
    private readonly sock: net.Socket,
    private readonly opts: NbdServerOptions,
    private readonly log: (l: string) => void,
  ) {
    this.r = new SocketReader(sock);
  }

  async run(): Promise<void> {
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBDMAGIC, 0);
    hello.writeBigUInt64BE(IHAVEOPT, 8);
    hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    this.sock.write(hello);
    const cflags = (await this.r.read(4)).readUInt32BE(0);
    // Oldstyle or plain-newstyle clients, and unknown flag bits: refused (no option haggling).
    if (!(cflags & FLAG_FIXED_NEWSTYLE) || cflags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) {
      throw new Disconnect(`client flags 0x${cflags.toString(16)}: fixed-newstyle required`);
    }
    this.noZeroes = (cflags & FLAG_NO_ZEROES) !== 0;
    const disk = await this.negotiate();
    if (!disk) return;
    try {
      await this.transmit(disk);
    } finally {
      await this.opts.exports.release(disk).catch((e) => this.log(`nbd: release ${disk.id}: ${oneLine(e)}`));
    }
  }

  private reply(opt: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.allocUnsafe(20);
    h.writeBigUInt64BE(REPLY_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(data.length, 16);
    this.sock.write(Buffer.concat([h, data]));
  }

  private errReply(opt: number, type: number, message: string): void {
    this.reply(opt, type, Buffer.from(message, 'utf8'));
  }

  private resolveName(name: string): string {
    return name === '' && this.opts.defaultExport ? this.opts.defaultExport : name;
  }

  private flagsOf(disk: Vdisk): number {
    let f = TFLAG.HAS_FLAGS | TFLAG.SEND_FLUSH | TFLAG.SEND_FUA | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES;
    if (disk.readOnly) f |= TFLAG.READ_ONLY;
    return f;
  }

  private async openExport(name: string): Promise<Vdisk | G8osError> {
    try {
      const d = await this.opts.exports.open(this.resolveName(name));
      return d ?? new G8osError('not_found', `no export ${JSON.stringify(name)}`);
    } catch (e) {
      return e instanceof G8osError ? e : new G8osError('unavailable', oneLine(e), { cause: e });
    }
  }

  /** Option haggling; resolves the opened vdisk, or null when the client aborted. */
  private async negotiate(): Promise<Vdisk | null> {
    for (;;) {
      const head = await this.r.read(16);
      if (head.readBigUInt64BE(0) !== IHAVEOPT) throw new Disconnect('option without IHAVEOPT magic');
      const opt = head.readUInt32BE(8);
      const len = head.readUInt32BE(12);
      if (len > MAX_OPTION) {
        await this.r.skip(len);
        this.errReply(opt, REP.ERR_TOO_BIG, `option data of ${len} bytes is too large`);
        continue;
      }
      const data = await this.r.read(len);
      switch (opt) {
        case OPT.EXPORT_NAME: {
          const d = await this.openExport(data.toString('utf8'));
          // No option reply is possible here: an unknown export closes the connection.
          if (d instanceof G8osError) throw new Disconnect(d.message);
          const out = Buffer.alloc(this.noZeroes ? 10 : 134);
          out.writeBigUInt64BE(BigInt(d.size), 0);
          out.writeUInt16BE(this.flagsOf(d), 8);
          this.sock.write(out);
          return d;
        }
        case OPT.ABORT:
          this.reply(opt, REP.ACK);
          await new Promise<void>((r) => this.sock.end(r));
          return null;
        case OPT.LIST:
          if (len !== 0) {
            this.errReply(opt, REP.ERR_INVALID, 'LIST takes no data');
            break;
          }
          for (const e of this.opts.exports.list()) {
            const name = Buffer.from(e.name, 'utf8');
            const desc = Buffer.from(e.description ?? '', 'utf8');
            this.reply(opt, REP.SERVER, Buffer.concat([u32(name.length), name, desc]));
          }
          this.reply(opt, REP.ACK);
          break;
        case OPT.STARTTLS:
          this.errReply(opt, REP.ERR_POLICY, 'TLS is not configured on this server');
          break;
        case OPT.INFO:
        case OPT.GO: {
          const d = await this.infoOrGo(opt, data);
          if (d) return d;
          break;
        }
        default:
          this.errReply(opt, REP.ERR_UNSUP, `option ${opt} is not supported`);
      }
    }
  }

  private async infoOrGo(opt: number, data: Buffer): Promise<Vdisk | null> {
    if (data.length < 6) {
      this.errReply(opt, REP.ERR_INVALID, 'INFO/GO data too short');
      return null;
    }
    const nlen = data.readUInt32BE(0);
    if (nlen > data.length - 6) {
      this.errReply(opt, REP.ERR_INVALID, 'INFO/GO name length exceeds the data');
      return null;
    }
    const name = data.subarray(4, 4 + nlen).toString('utf8');
    const count = data.readUInt16BE(4 + nlen);
    if (data.length !== 6 + nlen + 2 * count) {
      this.errReply(opt, REP.ERR_INVALID, 'INFO/GO request count does not match its length');
      return null;
    }
    const wanted = new Set<number>();
    for (let i = 0; i < count; i++) wanted.add(data.readUInt16BE(6 + nlen + 2 * i));
    const d = await this.openExport(name);
    if (d instanceof G8osError) {
      this.errReply(opt, d.kind === 'not_found' ? REP.ERR_UNKNOWN : REP.ERR_SHUTDOWN, d.message);
      return null;
    }
    const exp = Buffer.alloc(12);
    exp.writeUInt16BE(INFO.EXPORT, 0);
    exp.writeBigUInt64BE(BigInt(d.size), 2);
    exp.writeUInt16BE(this.flagsOf(d), 10);
    this.reply(opt, REP.INFO, exp);
    if (wanted.has(INFO.NAME)) {
      this.reply(opt, REP.INFO, Buffer.concat([Buffer.from([0, INFO.NAME]), Buffer.from(d.id, 'utf8')]));
    }
    if (wanted.has(INFO.DESCRIPTION)) {
      const desc = this.opts.exports.list().find((e) => e.name === d.id)?.description ?? '';
      this.reply(opt, REP.INFO, Buffer.concat([Buffer.from([0, INFO.DESCRIPTION]), Buffer.from(desc, 'utf8')]));
    }
    const bs = Buffer.alloc(14);
    bs.writeUInt16BE(INFO.BLOCK_SIZE, 0);
    bs.writeUInt32BE(1, 2);
    bs.writeUInt32BE(d.blockSize, 6);
    bs.writeUInt32BE(MAX_REQUEST, 10);
    this.reply(opt, REP.INFO, bs);
    this.reply(opt, REP.ACK);
    if (opt === OPT.GO) return d;
    await this.opts.exports.release(d);
    return null;
  }

  private simpleReply(cookie: Buffer, error: number, data?: Buffer): void {
    const h = Buffer.allocUnsafe(16);
    h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    cookie.copy(h, 8);
    if (this.sock.destroyed) return;
    if (data) {
      this.sock.cork();
      this.sock.write(h);
      this.sock.write(data);
      this.sock.uncork();
    } else this.sock.write(h);
  }

  private async transmit(disk: Vdisk): Promise<void> {
    const workers = this.opts.workers ?? 8;
    const inflight = new Set<Promise<void>>();
    let disc = false;
    try {
      while (!disc) {
        while (inflight.size >= workers) await Promise.race(inflight);
        const h = await this.r.read(28);
        if (h.readUInt32BE(0) !== REQUEST_MAGIC) throw new Disconnect('request without magic');
        const flags = h.readUInt16BE(4);
        const type = h.readUInt16BE(6);
        const cookie = Buffer.from(h.subarray(8, 16));
        const offset = Number(h.readBigUInt64BE(16));
        const length = h.readUInt32BE(24);
        let payload: Buffer | undefined;
        if (type === CMD.WRITE) {
          if (length > MAX_REQUEST) {
            await this.r.skip(length);
            this.simpleReply(cookie, ERR.EINVAL);
            continue;
          }
          payload = await this.r.read(length);
        }
        if (type === CMD.DISC) {
          disc = true;
          break;
        }
        const p = this.handle(disk, type, flags, offset, length, payload).then(
          (data) => this.simpleReply(cookie, 0, data),
          (e) => {
            const code = nbdErrno(e);
            if (code === ERR.EIO) this.log(`nbd: ${disk.id}: command ${type} at ${offset}+${length}: ${oneLine(e)}`);
            this.simpleReply(cookie, code);
          },
        );
        const tracked = p.finally(() => inflight.delete(tracked));
        inflight.add(tracked);
      }
    } finally {
      // DISC or a vanished client: finish what was accepted, then make it durable.
      await Promise.allSettled([...inflight]);
      await disk.flush().catch((e) => this.log(`nbd: ${disk.id}: flush at disconnect: ${oneLine(e)}`));
      if (disc) this.sock.end();
    }
  }

  private async handle(disk: Vdisk, type: number, flags: number, offset: number, length: number, payload?: Buffer): Promise<Buffer | undefined> {
    const einval = (m: string): G8osError => new G8osError('invalid', m, { errno: 'EINVAL' });
    if (flags & ~(CMD_FLAG.FUA | CMD_FLAG.NO_HOLE)) throw einval(`unsupported command flags 0x${flags.toString(16)}`);
    if (flags & CMD_FLAG.NO_HOLE && type !== CMD.WRITE_ZEROES) throw einval('NO_HOLE only applies to WRITE_ZEROES');
    if (type !== CMD.FLUSH) {
      if (length > MAX_REQUEST) throw einval(`request of ${length} bytes exceeds ${MAX_REQUEST}`);
      if (offset + length > disk.size) throw einval(`${offset}+${length} is past the end (${disk.size})`);
    }
    const fua = (flags & CMD_FLAG.FUA) !== 0;
    const ro = (): G8osError => new G8osError('unauthorized', `vdisk ${disk.id} is read-only`, { errno: 'EPERM' });
    switch (type) {
      case CMD.READ:
        return disk.read(offset, length);
      case CMD.WRITE:
        if (disk.readOnly) throw ro();
        await disk.write(offset, payload!, fua);
        return undefined;
      case CMD.FLUSH:
        await disk.flush();
        return undefined;
      case CMD.TRIM:
        if (disk.readOnly) throw ro();
        await disk.trim(offset, length, fua);
        return undefined;
      case CMD.WRITE_ZEROES:
        if (disk.readOnly) throw ro();
        await disk.writeZeroes(offset, length, fua);
        return undefined;
      default:
        throw einval(`unknown command ${type}`);
    }
  }
}
