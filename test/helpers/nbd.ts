// A raw NBD client for tests: lets a test send exactly the bytes it wants (bad options,
// truncated requests, out-of-range commands) and see exactly what the server answers.
// nbdsh (python3-libnbd) is not installed on this machine; this plays its scripted role.
import net from 'node:net';

export const IHAVEOPT = 0x49484156454f5054n;

export class RawNbd {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d) => {
      this.chunks.push(d);
      this.have += d.length;
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static connect(addr: string | { host: string; port: number }): Promise<RawNbd> {
    return new Promise((resolve, reject) => {
      const s = typeof addr === 'string' ? net.connect(addr) : net.connect(addr.port, addr.host);
      s.once('error', reject);
      s.once('connect', () => resolve(new RawNbd(s)));
    });
  }

  /** exactly n bytes, or null when the server closed first */
  async read(n: number, timeoutMs = 10_000): Promise<Buffer | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.have < n) {
      if (this.closed) return null;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes (have ${this.have})`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.have -= n;
    return out;
  }

  /** resolves true when the server closes the connection within the time */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  /** reads the greeting and sends client flags */
  async handshake(clientFlags = 3): Promise<{ magic: string; opt: bigint; flags: number }> {
    const g = await this.read(18);
    if (!g) throw new Error('no greeting');
    const f = Buffer.alloc(4);
    f.writeUInt32BE(clientFlags);
    this.write(f);
    return { magic: g.subarray(0, 8).toString('latin1'), opt: g.readBigUInt64BE(8), flags: g.readUInt16BE(16) };
  }

  sendOpt(opt: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optReply(): Promise<{ opt: number; type: number; data: Buffer } | null> {
    const h = await this.read(20);
    if (!h) return null;
    if (h.readBigUInt64BE(0) !== 0x0003e889045565a9n) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    const data = (await this.read(len)) ?? Buffer.alloc(0);
    return { opt: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  static infoData(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
    return b;
  }

  /** GO: replies until ACK; the export's size and transmission flags */
  async go(name: string): Promise<{ size: bigint; flags: number; replies: { type: number; data: Buffer }[] }> {
    this.sendOpt(7, RawNbd.infoData(name, [3]));
    const replies: { type: number; data: Buffer }[] = [];
    for (;;) {
      const r = await this.optReply();
      if (!r) throw new Error('closed during GO');
      replies.push(r);
      if (r.type === 1) break;
      if (r.type >= 0x80000000) throw new Error(`GO refused: 0x${r.type.toString(16)} ${r.data}`);
    }
    const exp = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!;
    return { size: exp.data.readBigUInt64BE(2), flags: exp.data.readUInt16BE(10), replies };
  }

  request(type: number, cookie: number, offset: number, length: number, data?: Buffer, flags = 0): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(BigInt(cookie), 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.write(data ? Buffer.concat([h, data]) : h);
  }

  /** a simple reply; `readLen(cookie)` says how many data bytes follow a successful one */
  async reply(readLen: (cookie: number) => number = () => 0): Promise<{ error: number; cookie: number; data?: Buffer } | null> {
    const h = await this.read(16);
    if (!h) return null;
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`bad reply magic 0x${h.readUInt32BE(0).toString(16)}`);
    const error = h.readUInt32BE(4);
    const cookie = Number(h.readBigUInt64BE(8));
    const n = error ? 0 : readLen(cookie);
    const data = n ? ((await this.read(n)) ?? undefined) : undefined;
    return { error, cookie, data };
  }

  close(): void {
    this.sock.destroy();
  }
}
