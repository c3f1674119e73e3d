// NBD protocol conformance of our server (disks-vms.md §2.2) with real clients (qemu-img,
// qemu-io, nbdinfo, nbdcopy, fio's nbd engine) and a raw client for the bad input; nbdkit's
// memory plugin answers the same scripted session as the reference. The server runs in this
// process over the in-memory store (the store itself is tested in vdisk-store.test.ts).
// nbdsh (python3-libnbd) is not installed here, so test/helpers/nbd.ts plays the scripted
// client; the kernel nbd-client cannot run (this kernel has no nbd module).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdServer } from '../src/nbd/server';
import { createVdisk } from '../src/vdisk/catalog';
import { Cluster } from '../src/vdisk/cluster';
import { ClusterExports } from '../src/vdisk/exports';
import { MemKv } from '../src/vdisk/kv-mem';
import type { ExportProvider, Vdisk } from '../src/vdisk/types';
import { RawNbd } from './helpers/nbd';

const run = promisify(execFile);
const MiB = 1024 * 1024;
let dir: string;
let sock: string;
let kitSock: string;
let kitRoSock: string;
let server: NbdServer;
let exports: ClusterExports;
const kits: ChildProcess[] = [];

/** Wraps an export provider so tests can slow or fail chosen offsets of a real vdisk. */
class Hooked implements ExportProvider {
  slowRead = -1;
  failRead = -1;
  failOpen = false;
  constructor(private readonly inner: ClusterExports) {}
  list() {
    return this.inner.list(); // 'broken' is not listed (nbdinfo --list would fail on it)
  }
  async open(name: string): Promise<Vdisk | null> {
    if (name === 'broken') throw new Error('this vdisk cannot open');
    const d = await this.inner.open(name);
    if (!d) return null;
    const self = this;
    return new Proxy(d, {
      get(t, p) {
        if (p === 'read') {
          return async (off: number, len: number) => {
            if (off === self.slowRead) await new Promise((r) => setTimeout(r, 400));
            if (off === self.failRead) throw new Error('simulated backend bug');
            return t.read(off, len);
          };
        }
        const v = Reflect.get(t, p);
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
  }
  release(d: Vdisk) {
    return this.inner.release(d);
  }
}
let hooks: Hooked;

async function waitFor(p: string): Promise<void> {
  for (let i = 0; i < 100 && !fs.existsSync(p); i++) await new Promise((r) => setTimeout(r, 50));
  if (!fs.existsSync(p)) throw new Error(`${p} did not appear`);
}

// nbdkit serves one export under any name unless told to be strict, as we are
const strict = (name: string): string[] => ['exportname-list=explicit', 'exportname-strict=true', `exportname=${name}`];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-nbd-proto-'));
  sock = path.join(dir, 'nbd.sock');
  const cluster = new Cluster([new MemKv()]);
  await createVdisk(cluster, 'db1', { type: 'db', size: 64 * MiB });
  await createVdisk(cluster, 'boot1', { type: 'boot', size: 64 * MiB });
  await createVdisk(cluster, 'ro1', { type: 'cache', size: 16 * MiB, readOnly: true });
  await createVdisk(cluster, 'conf', { type: 'db', size: 16 * MiB });
  exports = new ClusterExports(cluster);
  await exports.refresh();
  hooks = new Hooked(exports);
  server = new NbdServer({ exports: hooks, defaultExport: 'db1' });
  await server.listen(sock);
  kitSock = path.join(dir, 'kit.sock');
  kitRoSock = path.join(dir, 'kit-ro.sock');
  kits.push(spawn('nbdkit', ['-f', '--unix', kitSock, '--filter=exportname', 'memory', '16M', ...strict('conf')], { stdio: 'ignore' }));
  kits.push(spawn('nbdkit', ['-f', '-r', '--unix', kitRoSock, '--filter=exportname', 'memory', '16M', ...strict('ro1')], { stdio: 'ignore' }));
  await waitFor(kitSock);
  await waitFor(kitRoSock);
});

afterAll(async () => {
  for (const k of kits) k.kill('SIGTERM');
  await server?.close();
  await exports?.closeAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

const uri = (name: string, s = sock): string => `nbd+unix:///${name}?socket=${s}`;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The scripted session run against both servers; returns what a client observes. */
async function script(s: string, name: string, roSock: string, roName: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const c = await RawNbd.connect(s);
  const g = await c.handshake(3);
  out.greeting = [g.magic, g.opt.toString(16), g.flags & 3];
  c.sendOpt(3); // LIST
  const names: string[] = [];
  for (;;) {
    const r = await c.optReply();
    if (!r || r.type !== 2) {
      out.listEnd = r?.type;
      break;
    }
    names.push(r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
  }
  out.listHasExport = names.includes(name);
  c.sendOpt(6, RawNbd.infoData('no-such-export'));
  out.unknownInfo = (await c.optReply())?.type;
  c.sendOpt(0x1234, Buffer.from('junk'));
  out.unknownOption = (await c.optReply())?.type;
  c.sendOpt(6, Buffer.from([0, 0, 0, 9, 0x61])); // name length past the data
  out.badInfoLength = (await c.optReply())?.type;
  const go = await c.go(name).catch((e) => {
    throw new Error(`${s}: ${(e as Error).message} after ${JSON.stringify(out)}`);
  });
  out.size = Number(go.size);
  out.flags = go.flags & (1 | 2 | 4 | 8 | 32 | 64);
  const pat = Buffer.alloc(65536, 0xab);
  c.request(1, 1, 4096, pat.length, pat);
  out.write = (await c.reply())?.error;
  c.request(1, 2, 5000, 100, Buffer.alloc(100, 0x11), 1); // FUA
  out.writeFua = (await c.reply())?.error;
  c.request(0, 3, 4096, 8192);
  const r3 = await c.reply(() => 8192);
  const want = Buffer.alloc(8192, 0xab);
  want.fill(0x11, 904, 1004);
  out.readBack = r3?.error === 0 && r3.data?.equals(want);
  c.request(3, 4, 0, 0);
  out.flush = (await c.reply())?.error;
  c.request(6, 5, 4096, 8192); // WRITE_ZEROES
  out.zero = (await c.reply())?.error;
  c.request(4, 6, 65536, 4096); // TRIM
  out.trim = (await c.reply())?.error;
  c.request(0, 7, 4096, 12288);
  const r7 = await c.reply(() => 12288);
  out.zeroRead = r7?.data?.subarray(0, 8192).equals(Buffer.alloc(8192)) && r7.data.subarray(8192).equals(Buffer.alloc(4096, 0xab));
  c.request(0, 8, out.size as number - 512, 1024);
  out.readPastEnd = (await c.reply(() => 1024))?.error;
  c.request(0, 9, 0, 512, undefined, 0x8000); // unknown flag
  out.badFlags = (await c.reply(() => 512))?.error;
  c.request(2, 10, 0, 0); // DISC
  out.discCloses = await c.closedWithin(3000);
  // read-only export: writes are EPERM
  const ro = await RawNbd.connect(roSock);
  await ro.handshake(3);
  const rgo = await ro.go(roName);
  out.roFlag = (rgo.flags & 2) !== 0;
  ro.request(1, 1, 0, 4096, Buffer.alloc(4096, 1));
  out.roWrite = (await ro.reply())?.error;
  ro.request(6, 2, 0, 4096);
  out.roZero = (await ro.reply())?.error;
  ro.close();
  return out;
}

describe('conformance against nbdkit (memory plugin)', () => {
  it('the same scripted session gives the same answers from both servers', async () => {
    const ours = await script(sock, 'conf', sock, 'ro1');
    const kit = await script(kitSock, 'conf', kitRoSock, 'ro1');
    expect(ours).toEqual(kit);
    // and the answers are the ones the spec requires
    expect(ours).toMatchObject({
      greeting: ['NBDMAGIC', '49484156454f5054', 3], listEnd: 1, listHasExport: true,
      unknownInfo: 0x80000006, unknownOption: 0x80000001, badInfoLength: 0x80000003,
      size: 16 * MiB, flags: 1 | 4 | 8 | 32 | 64, write: 0, writeFua: 0, readBack: true, flush: 0,
      zero: 0, trim: 0, zeroRead: true, readPastEnd: 22, badFlags: 22, discCloses: true,
      roFlag: true, roWrite: 1, roZero: 1,
    });
  });
});

describe('real clients', () => {
  it('nbdinfo --list names every export with its size and block sizes', async () => {
    const { stdout } = await run('nbdinfo', ['--list', '--json', uri('')]);
    const j = JSON.parse(stdout) as { exports: { 'export-name': string; 'export-size'?: number; block_size_preferred?: number; block_size_maximum?: number }[] };
    const db1 = j.exports.find((e) => e['export-name'] === 'db1')!;
    expect(db1['export-size']).toBe(64 * MiB);
    expect(db1.block_size_preferred).toBe(4096);
    expect(db1.block_size_maximum).toBe(32 * MiB);
    expect(j.exports.map((e) => e['export-name'])).toEqual(expect.arrayContaining(['db1', 'boot1', 'ro1']));
  });

  it('qemu-img info reports the size; "" is the default export', async () => {
    const { stdout } = await run('qemu-img', ['info', '--output=json', `nbd:unix:${sock}`]);
    expect(JSON.parse(stdout)['virtual-size']).toBe(64 * MiB);
  });

  it('qemu-io write/read patterns, aligned and not, on boot (dedup) and db', async () => {
    for (const name of ['boot1', 'db1']) {
      const { stdout } = await run('qemu-io', ['-f', 'raw',
        '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M',
        '-c', 'write -P 0x5c 1000 9000', '-c', 'read -P 0x5c 1000 9000', '-c', 'read -P 0xab 0 1000', '-c', 'read -P 0xab 10000 100000',
        '-c', 'write -z 2M 1M', '-c', 'read -P 0 2M 1M', '-c', 'flush', uri(name)]);
      expect(stdout).not.toMatch(/Pattern verification failed|error/i);
      expect(stdout.match(/^read /gm)?.length).toBe(5);
    }
  });

  it('nbdcopy both ways keeps every byte (sha256), zeros included', async () => {
    const img = path.join(dir, 'in.raw');
    const back = path.join(dir, 'back.raw');
    fs.writeFileSync(img, Buffer.concat([randomBytes(20 * MiB), Buffer.alloc(12 * MiB), randomBytes(32 * MiB - 1234), Buffer.alloc(1234, 7)]));
    for (const name of ['boot1', 'db1']) {
      await run('nbdcopy', [img, uri(name)]);
      await run('nbdcopy', [uri(name), back]);
      expect(sha(fs.readFileSync(back))).toBe(sha(fs.readFileSync(img)));
      fs.rmSync(back);
    }
  });

  it('fio (nbd engine) random writes with verify, 8 jobs in flight', async () => {
    const { stdout } = await run('fio', ['--name=v', '--ioengine=nbd', `--uri=${uri('db1')}`, '--rw=randwrite', '--bs=4k',
      '--size=8M', '--iodepth=8', '--verify=crc32c', '--do_verify=1', '--output-format=json'], { cwd: dir }); // fio leaves a verify state file in its cwd
    const j = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] };
    expect(j.jobs[0].error).toBe(0);
    expect(j.jobs[0].write.io_bytes).toBe(8 * MiB);
    expect(j.jobs[0].read.io_bytes).toBe(8 * MiB); // the verify pass read everything back
  });
});

describe('bad input', () => {
  async function usable(name = 'db1'): Promise<void> {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go(name);
    c.request(0, 1, 0, 512);
    expect((await c.reply(() => 512))?.error).toBe(0);
    c.close();
  }

  it('a client without fixed-newstyle (oldstyle/newstyle) is disconnected', async () => {
    for (const flags of [0, 2, 0x10 | 3]) {
      const c = await RawNbd.connect(sock);
      await c.handshake(flags);
      expect(await c.closedWithin(3000)).toBe(true);
    }
    await usable();
  });

  it('unknown export: EXPORT_NAME closes, GO answers ERR_UNKNOWN, a failing open ERR_SHUTDOWN', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    c.sendOpt(1, Buffer.from('nope'));
    expect(await c.read(1)).toBeNull();
    const d = await RawNbd.connect(sock);
    await d.handshake();
    d.sendOpt(7, RawNbd.infoData('nope'));
    expect((await d.optReply())?.type).toBe(0x80000006);
    d.sendOpt(7, RawNbd.infoData('broken'));
    const r = await d.optReply();
    expect(r?.type).toBe(0x80000007);
    expect(r?.data.toString()).toMatch(/cannot open/);
    // still negotiating: a good export works on the same connection
    await d.go('db1');
    d.close();
  });

  it('EXPORT_NAME without NO_ZEROES sends size, flags and 124 zero bytes', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake(1);
    c.sendOpt(1, Buffer.from('ro1'));
    const b = await c.read(134);
    expect(b!.readBigUInt64BE(0)).toBe(BigInt(16 * MiB));
    expect(b!.readUInt16BE(8) & 2).toBe(2);
    expect(b!.subarray(10).equals(Buffer.alloc(124))).toBe(true);
    c.close();
  });

  it('STARTTLS unconfigured: ERR_POLICY; STRUCTURED_REPLY, META_CONTEXT, EXTENDED_HEADERS: ERR_UNSUP; ABORT: ACK and close', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    c.sendOpt(5);
    expect((await c.optReply())?.type).toBe(0x80000002);
    for (const o of [8, 9, 10, 11]) {
      c.sendOpt(o);
      expect((await c.optReply())?.type).toBe(0x80000001);
    }
    c.sendOpt(2);
    expect((await c.optReply())?.type).toBe(1);
    expect(await c.closedWithin(3000)).toBe(true);
  });

  it('requests over 32 MiB: EINVAL (a write payload is skipped), the connection goes on', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go('db1');
    c.request(0, 1, 0, 32 * MiB); // exactly the maximum is fine
    const before = await c.reply(() => 32 * MiB);
    expect(before?.error).toBe(0);
    c.request(0, 2, 0, 32 * MiB + 1);
    expect((await c.reply(() => 32 * MiB + 1))?.error).toBe(22);
    c.request(1, 3, 0, 33 * MiB, Buffer.alloc(33 * MiB, 9));
    expect((await c.reply())?.error).toBe(22);
    c.request(0, 4, 0, 32 * MiB);
    const after = await c.reply(() => 32 * MiB);
    expect(after?.data?.equals(before!.data!)).toBe(true); // the refused payload was not written
    c.close();
  });

  it('read and write past the end: EINVAL', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    const { size } = await c.go('db1');
    c.request(0, 1, Number(size), 1);
    expect((await c.reply(() => 1))?.error).toBe(22);
    c.request(1, 2, Number(size) - 1, 2, Buffer.alloc(2, 1));
    expect((await c.reply())?.error).toBe(22);
    c.request(0, 3, 2 ** 62, 512);
    expect((await c.reply(() => 512))?.error).toBe(22);
    c.close();
  });

  it('a truncated request header ends that connection only', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go('db1');
    c.write(Buffer.from([0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0, 1]));
    c.sock.end();
    expect(await c.closedWithin(3000)).toBe(true);
    await usable();
  });

  it('a client vanishing mid-write leaves the old bytes and the server serving', async () => {
    const a = await RawNbd.connect(sock);
    await a.handshake();
    await a.go('boot1');
    a.request(1, 1, 0, MiB, Buffer.alloc(MiB, 0x42), 1);
    expect((await a.reply())?.error).toBe(0);
    a.close();
    const c = await RawNbd.connect(sock);
    await c.handshake();
    await c.go('boot1');
    c.request(1, 1, 0, MiB, Buffer.alloc(64 * 1024, 0x77)); // a 1 MiB write, 64 KiB sent
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    const d = await RawNbd.connect(sock);
    await d.handshake();
    await d.go('boot1');
    d.request(0, 1, 0, MiB);
    const r = await d.reply(() => MiB);
    expect(r?.data?.equals(Buffer.alloc(MiB, 0x42))).toBe(true);
    d.close();
  });

  it('replies go out in completion order with several requests in flight', async () => {
    hooks.slowRead = 0;
    try {
      const c = await RawNbd.connect(sock);
      await c.handshake();
      await c.go('db1');
      c.request(0, 1, 0, 4096);
      c.request(0, 2, 4096, 4096);
      c.request(0, 3, 8192, 4096);
      const order = [];
      for (let i = 0; i < 3; i++) order.push((await c.reply(() => 4096))!.cookie);
      expect(order[2]).toBe(1);
      expect(order.slice(0, 2).sort()).toEqual([2, 3]);
      c.close();
    } finally {
      hooks.slowRead = -1;
    }
  });

  it('a vdisk that throws gives EIO for that request, never a crash', async () => {
    hooks.failRead = 12288;
    try {
      const c = await RawNbd.connect(sock);
      await c.handshake();
      await c.go('db1');
      c.request(0, 1, 12288, 4096);
      expect((await c.reply(() => 4096))?.error).toBe(5);
      c.request(0, 2, 0, 4096);
      expect((await c.reply(() => 4096))?.error).toBe(0);
      c.close();
    } finally {
      hooks.failRead = -1;
    }
  });

  it('garbage instead of an option or a request closes the connection', async () => {
    const c = await RawNbd.connect(sock);
    await c.handshake();
    c.write(Buffer.alloc(16, 0xee));
    expect(await c.closedWithin(3000)).toBe(true);
    const d = await RawNbd.connect(sock);
    await d.handshake();
    await d.go('db1');
    d.write(Buffer.alloc(28, 0xee));
    expect(await d.closedWithin(3000)).toBe(true);
    await usable();
  });
});
