// `g8os vdisk …` and `g8os nbd serve` through the real binary, and the agent's nbd.* commands
// on a real agent, with qemu-img / qemu-io / nbdinfo as the clients.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from './helpers/agent';
import { BIN, g8os } from './helpers/cli';
import { startRedis, type RedisServer } from './helpers/redis';

const run = promisify(execFile);
const MiB = 1024 * 1024;
let dir: string;
let redis: RedisServer;
let env: NodeJS.ProcessEnv;
const sha = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-vdisk-cli-'));
  redis = await startRedis();
  env = { G8OS_VDISK_STORAGE: redis.url };
});
afterAll(async () => {
  await redis?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const vd = (args: string[]) => g8os(['vdisk', ...args], { env });

describe('g8os vdisk', () => {
  it('create, list (from the index), describe; bad input is one line and a non-zero exit', async () => {
    expect((await vd(['create', 'b1', '--type', 'boot', '--size', '64M'])).code).toBe(0);
    expect((await vd(['create', 'd1', '--type', 'db', '--size', '16M', '--block-size', '512', '--read-only'])).code).toBe(0);
    const l = await vd(['list']);
    expect(l.stdout).toBe(`b1\tboot\t${64 * MiB}\t4096\trw\nd1\tdb\t${16 * MiB}\t512\tro\n`);
    expect((await vd(['list', '--name', '^d', '--json'])).stdout.trim().split('\n').map((x) => JSON.parse(x).id)).toEqual(['d1']);
    const d = JSON.parse((await vd(['describe', 'b1'])).stdout);
    expect(d).toMatchObject({ id: 'b1', type: 'boot', size: 64 * MiB, blockSize: 4096, readOnly: false, blocks: 0 });
    for (const [args, code, msg] of [
      [['create', 'x', '--type', 'huge', '--size', '1G'], 2, /--type "huge"/],
      [['create', 'b1', '--type', 'boot', '--size', '1G'], 1, /exists already/],
      [['create', 'x', '--type', 'boot', '--size', 'lots'], 1, /size "lots"/],
      [['create', 'x', '--type', 'boot', '--size', '1M', '--block-size', '1000'], 1, /power of two/],
      [['create', 'x', '--type', 'cache', '--size', '1M', '--template', 'b1'], 1, /cannot have a template/],
      [['create', 'bad/id', '--type', 'boot', '--size', '1M'], 1, /vdisk id/],
      [['describe', 'nope'], 1, /no vdisk "nope"/],
      [['list', '--name', '('], 2, /regular expression/],
      [['list', '--storage', 'ftp://x'], 1, /expected redis/],
    ] as [string[], number, RegExp][]) {
      const r = await vd(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
    }
    expect((await vd(['list'])).stdout.split('\n').filter(Boolean)).toHaveLength(2); // nothing half-made
  });

  it('import a qcow2, export raw and qcow2, copy (LBA only), delete and sweep', async () => {
    const raw = path.join(dir, 'disk.raw');
    fs.writeFileSync(raw, Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(4 * MiB), randomBytes(MiB), randomBytes(MiB).subarray(0, 12345)]));
    const qcow = path.join(dir, 'disk.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow]);
    const imp = await vd(['import', qcow, 'img']);
    expect(imp.code, imp.stderr).toBe(0);
    const d = JSON.parse((await vd(['describe', 'img'])).stdout);
    expect(d.size).toBe(Math.ceil(fs.statSync(raw).size / 4096) * 4096);
    expect(d.blocks).toBe(4 * 256 + 4); // the zero run stored nothing
    const out = path.join(dir, 'out.raw');
    expect((await vd(['export', 'img', out])).code).toBe(0);
    // the image is padded to the block size
    expect(sha(out)).toBe(createHash('sha256').update(Buffer.concat([fs.readFileSync(raw), Buffer.alloc(d.size - fs.statSync(raw).size)])).digest('hex'));
    const again = await vd(['export', 'img', out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists already/);
    const q2 = path.join(dir, 'out.qcow2');
    expect((await vd(['export', 'img', q2, '--format', 'qcow2'])).code).toBe(0);
    expect(JSON.parse((await run('qemu-img', ['info', '--output=json', q2])).stdout).format).toBe('qcow2');
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', out, q2]);

    const r = new Redis(redis.port);
    try {
      const keys = await r.dbsize();
      expect((await vd(['copy', 'img', 'img2'])).code).toBe(0);
      expect(await r.dbsize()).toBe(keys + 1); // lba:img2, no blocks
      expect((await vd(['copy', 'img', 'img2'])).code).toBe(1);
      expect((await vd(['copy', 'img', 'img2', '--force'])).code).toBe(0);
      const out2 = path.join(dir, 'out2.raw');
      await vd(['export', 'img2', out2]);
      expect(sha(out2)).toBe(sha(out));
      const partial = await vd(['delete', 'img', 'nope']);
      expect(partial.code).toBe(1);
      expect((await vd(['list'])).stdout).toMatch(/^img\t/m); // nothing deleted
      expect((await vd(['delete', 'img'])).code).toBe(0);
      expect((await vd(['sweep'])).stdout).toBe('swept 0 blocks\n');
      expect((await vd(['delete', 'img2'])).code).toBe(0);
      expect((await vd(['sweep'])).stdout).toBe(`swept ${4 * 256 + 4} blocks\n`);
      expect((await r.keysBuffer('*')).filter((k) => k.length === 32)).toEqual([]);
    } finally {
      r.disconnect();
    }
  });

  it('a failed import leaves no vdisk behind', async () => {
    const bad = path.join(dir, 'bad.qcow2');
    fs.writeFileSync(bad, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), randomBytes(4096)]));
    const r = await vd(['import', bad, 'broken']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/qemu-img/);
    const missing = await vd(['import', path.join(dir, 'none.raw'), 'broken']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not exist/);
    expect((await vd(['list'])).stdout).not.toMatch(/broken/);
  });
});

describe('g8os nbd serve', () => {
  it('serves the vdisks of a config (creating absent ones), read-only as configured, until SIGTERM', async () => {
    const sock = path.join(dir, 'serve.sock');
    const cfg = path.join(dir, 'vdisks.toml');
    fs.writeFileSync(cfg, `listen = "${sock}"\nstorage = ["${redis.url}"]\ndefault = "swap"\n\n[vdisks.swap]\ntype = "tmp"\nsize = "32M"\n\n[vdisks.b1]\nreadOnly = true\n`);
    const child = spawn(process.execPath, [BIN, 'nbd', 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      for (let i = 0; i < 100 && !/nbd serving on/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
      expect(out).toMatch(/created tmp vdisk swap/);
      const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${sock}`]);
      const ex = JSON.parse(stdout).exports as { 'export-name': string; is_read_only: boolean }[];
      expect(ex.map((e) => [e['export-name'], e.is_read_only])).toEqual([['swap', false], ['b1', true]]);
      const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'read -P 0x5a 0 1M', `nbd:unix:${sock}`]);
      expect(io.stdout).not.toMatch(/failed/);
      const ro = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', `nbd+unix:///b1?socket=${sock}`]).then((r) => r.stdout + r.stderr, (e) => String(e.stdout) + String(e.stderr));
      expect(ro).toMatch(/Operation not permitted|read-only|Permission denied/i);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('a bad config is refused with one line naming the problem', async () => {
    const cfg = path.join(dir, 'bad.toml');
    fs.writeFileSync(cfg, `listen = "/tmp/x.sock"\nstorage = "${redis.url}"\n[vdisks.a]\ntype = "boot"\nsize = "1G"\ncolour = "red"\n`);
    const r = await g8os(['nbd', 'serve', '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/vdisks\.a: unknown key "colour"/);
    const u = await g8os(['nbd', 'serve']);
    expect(u.code).toBe(2);
  });
});

describe('agent nbd.start / nbd.list / nbd.stop', () => {
  it('starts a server over the node redis, serves a client, stops and removes its socket', async () => {
    const agent = await startAgent();
    try {
      const c = await agent.client();
      const sock = path.join(dir, 'agent-nbd.sock');
      const config = `listen = "${sock}"\nstorage = "redis+unix://${agent.socket}?db=1"\n[vdisks.vm1-boot]\ntype = "boot"\nsize = "16M"\n`;
      const started = await c.json<{ id: string; address: string }>('nbd.start', { id: 'vm1', config });
      expect(started).toEqual({ id: 'vm1', address: sock });
      await expect(c.json('nbd.start', { id: 'vm1', config })).rejects.toThrow(/running already/);
      await expect(c.json('nbd.start', { id: 'vm2' })).rejects.toThrow(/'listen' is missing/);
      await expect(c.json('nbd.start', { id: 'vm2', listen: 5 })).rejects.toThrow(/listen/);
      const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 0 2M', '-c', 'read -P 0x21 0 2M', `nbd+unix:///vm1-boot?socket=${sock}`]);
      expect(io.stdout).not.toMatch(/failed/);
      expect(await c.json('nbd.list', {})).toEqual([{ id: 'vm1', address: sock, storage: [`redis+unix://${agent.socket}?db=1`], vdisks: ['vm1-boot'] }]);
      // a second server over the node's own default storage (the vdisk exists there now)
      const sock2 = path.join(dir, 'agent-nbd2.sock');
      await c.json('nbd.start', { id: 'vm1b', listen: sock2, vdisks: ['vm1-boot'] });
      await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x21 0 2M', `nbd+unix:///vm1-boot?socket=${sock2}`]);
      expect(await c.json('nbd.stop', { id: 'vm1' })).toBeNull();
      expect(await c.json('nbd.stop', { id: 'vm1b' })).toBeNull();
      expect(fs.existsSync(sock)).toBe(false);
      await expect(c.json('nbd.stop', { id: 'vm1' })).rejects.toThrow(/no nbd server vm1/);
    } finally {
      await agent.stop();
    }
  });
});
