// The generic built-ins (info.*, filesystem.*, process.*) called directly with a JobContext built
// here. A plain temp directory stands in for a container root in the filesystem tests (the agent's
// end-to-end tests with real containers are the lead's); the process and info tests use a real
// pid/net/uts namespace made with unshare, whose root is /proc/<its pid 1>/root.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesystemHandlers, GO_MODE } from '../src/agent/builtins/filesystem';
import { infoHandlers } from '../src/agent/builtins/info';
import { processHandlers } from '../src/agent/builtins/process';
import { secureJoin } from '../src/agent/builtins/securejoin';
import { procInfo, procStats, sumStats } from '../src/agent/proc';
import { CommandError, type Handler, type JobContext, type Place } from '../src/agent/types';

function place(root: string, container = 0): Place {
  return { container, root, env: {}, spawn: (f, a, o) => spawn(f, a, o) };
}

const host = place('/');

function ctx(p: Place, command: string, args: unknown): JobContext {
  return { cmd: { id: 'test', command, arguments: args }, place: p, signal: new AbortController().signal, emit: () => undefined };
}

function caller(handlers: Record<string, Handler>) {
  return (p: Place, command: string, args: unknown = {}): Promise<any> => {
    const h = handlers[command];
    if (!h) throw new Error(`no handler ${command}`);
    return Promise.resolve().then(() => h(args, ctx(p, command, args)));
  };
}

/** Expects a CommandError with this code (and message). */
async function fails(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected an error').toBeInstanceOf(CommandError);
  expect((err as CommandError).code).toBe(code);
  if (message) expect((err as CommandError).message).toMatch(message);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** base64 with a line break every 76 characters, as Python's base64.encodebytes. */
const mime = (b: Buffer) => b.toString('base64').replace(/.{76}/g, '$&\n') + '\n';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'g8os-builtins-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ---- securejoin --------------------------------------------------------------------------------

describe('secureJoin', () => {
  const root = path.join(tmp, 'sj-root');
  const outside = path.join(tmp, 'sj-outside');
  beforeAll(() => {
    mkdirSync(path.join(root, 'etc'), { recursive: true });
    mkdirSync(path.join(root, 'a/b'), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(outside, 'secret'), 'host');
    symlinkSync('/etc', path.join(root, 'abs')); // absolute target
    symlinkSync('../../../../../../../../etc', path.join(root, 'rel')); // climbs with ..
    symlinkSync('/', path.join(root, 'a/b/top')); // symlinked parent dir
    symlinkSync(outside, path.join(root, 'out')); // absolute host path of an outside dir
    symlinkSync('../../../../../../../..' + outside, path.join(root, 'a/up'));
    symlinkSync('loop2', path.join(root, 'loop1'));
    symlinkSync('loop1', path.join(root, 'loop2'));
    symlinkSync('b', path.join(root, 'a/c'));
  });

  it('joins plain paths and clamps .. at the root', async () => {
    expect(await secureJoin(root, '/etc/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await secureJoin(root, 'etc/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await secureJoin(root, '/../../../etc/../etc/./passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await secureJoin(root, '/')).toBe(root);
    expect(await secureJoin(root, '')).toBe(root);
    expect(await secureJoin('/', '/etc/../etc/hostname')).toBe('/etc/hostname');
  });

  it('keeps absolute and .. link targets inside the root', async () => {
    expect(await secureJoin(root, '/abs/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await secureJoin(root, '/rel/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await secureJoin(root, '/a/b/top/etc/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await secureJoin(root, '/a/b/top/../../../x')).toBe(path.join(root, 'x'));
    expect(await secureJoin(root, '/out/secret')).toBe(path.join(root, outside, 'secret'));
    expect(await secureJoin(root, '/a/up/secret')).toBe(path.join(root, outside, 'secret'));
    // .. after a symlink goes to the link target's parent, not lexically back
    expect(await secureJoin(root, '/a/c/..')).toBe(path.join(root, 'a'));
    expect(await secureJoin(root, '/abs/..')).toBe(root);
  });

  it('acts on the link itself when asked, and stops symlink loops', async () => {
    expect(await secureJoin(root, '/abs', { followLast: false })).toBe(path.join(root, 'abs'));
    expect(await secureJoin(root, '/a/b/top/abs', { followLast: false })).toBe(path.join(root, 'abs'));
    await fails(secureJoin(root, '/loop1/x'), 400, /symbolic links/);
  });
});

// ---- filesystem --------------------------------------------------------------------------------

describe('filesystem.*', () => {
  const fs = caller(filesystemHandlers({ idleMs: 500 }));
  const root = path.join(tmp, 'container-root');
  const box = place(root, 3); // a container-like place whose root is a plain directory
  const outside = path.join(tmp, 'outside');

  beforeAll(() => {
    mkdirSync(path.join(root, 'etc'), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(outside, 'secret'), 'host secret');
    writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nalice:x:1234:1235::/home/alice:/bin/sh\n');
    writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nstaff:x:4321:alice\n');
  });

  it('opens with Python mode letters only', async () => {
    for (const mode of ['rb', 'rw', 'wa', 'r++', '', '+', 'q', 'rt', 'w b'])
      await fails(fs(box, 'filesystem.open', { file: '/m', mode, perm: 0o644 }), 400, /mode/);
    for (const mode of ['w', 'w+', 'a', 'a+', 'r', 'r+', '+r']) {
      const fd = await fs(box, 'filesystem.open', { file: '/m', mode, perm: 0o644 });
      expect(fd).toMatch(/^[0-9a-f-]{36}$/);
      expect(await fs(box, 'filesystem.close', { fd })).toBeNull();
    }
    await fails(fs(box, 'filesystem.open', { file: '/m', mode: 'x', perm: 0o644 }), 409, /file exists: \/m/);
    const fd = await fs(box, 'filesystem.open', { file: '/new-x', mode: 'x', perm: 0o600 });
    await fs(box, 'filesystem.close', { fd });
    expect(statSync(path.join(root, 'new-x')).mode & 0o777).toBe(0o600);
    // perm defaults to 0644 (less the umask) when the client leaves it out
    await fs(box, 'filesystem.close', { fd: await fs(box, 'filesystem.open', { file: '/p', mode: 'w' }) });
    expect(statSync(path.join(root, 'p')).mode & 0o077 & ~0o044).toBe(0);
  });

  it('rejects wrong argument types with 400 naming the argument', async () => {
    await fails(fs(box, 'filesystem.open', { file: 1, mode: 'r' }), 400, /'file'/);
    await fails(fs(box, 'filesystem.open', { file: '/m', mode: 1 }), 400, /'mode'/);
    await fails(fs(box, 'filesystem.open', { file: '/m', mode: 'r', perm: '644' }), 400, /'perm'/);
    await fails(fs(box, 'filesystem.read', { fd: 5 }), 400, /'fd'/);
    await fails(fs(box, 'filesystem.write', { fd: 'x' }), 400, /'block'/);
    await fails(fs(box, 'filesystem.exists', {}), 400, /'path'/);
    await fails(fs(box, 'filesystem.list', 'x'), 400, /arguments/);
    await fails(fs(box, 'filesystem.move', { path: '/m' }), 400, /'destination'/);
    await fails(fs(box, 'filesystem.chmod', { path: '/m', mode: '755' }), 400, /'mode'/);
    await fails(fs(box, 'filesystem.chmod', { path: '/m', mode: 0o755, recursive: 'yes' }), 400, /'recursive'/);
    await fails(fs(box, 'filesystem.chown', { path: '/m', user: 0, group: 'x' }), 400, /'user'/);
  });

  it('answers 404 for missing paths', async () => {
    await fails(fs(box, 'filesystem.open', { file: '/nope', mode: 'r', perm: 0 }), 404, /^no such file or directory: \/nope$/);
    await fails(fs(box, 'filesystem.open', { file: '/no/dir/f', mode: 'w', perm: 0o644 }), 404, /no such file or directory/);
    await fails(fs(box, 'filesystem.list', { path: '/nope' }), 404, /\/nope/);
    await fails(fs(box, 'filesystem.move', { path: '/nope', destination: '/x' }), 404, /\/nope/);
    await fails(fs(box, 'filesystem.chmod', { path: '/nope', mode: 0o644 }), 404);
    await fails(fs(box, 'filesystem.chmod', { path: '/nope', mode: 0o644, recursive: true }), 404);
    await fails(fs(box, 'filesystem.chown', { path: '/nope', user: 'root', group: 'root' }), 404);
    await fails(fs(box, 'filesystem.list', { path: '/etc/passwd' }), 400, /not a directory/);
  });

  it('rejects unknown, closed, foreign and expired handles', async () => {
    await fails(fs(box, 'filesystem.read', { fd: 'no-such-handle' }), 404, /unknown file descriptor/);
    const fd = await fs(box, 'filesystem.open', { file: '/h', mode: 'w+', perm: 0o644 });
    // a handle opened in one place is not usable from another
    await fails(fs(host, 'filesystem.read', { fd }), 404, /unknown file descriptor/);
    await fails(fs(place(root, 4), 'filesystem.close', { fd }), 404);
    await fs(box, 'filesystem.close', { fd });
    await fails(fs(box, 'filesystem.read', { fd }), 404);
    await fails(fs(box, 'filesystem.write', { fd, block: 'AAAA' }), 404);
    await fails(fs(box, 'filesystem.close', { fd }), 404);

    // each use refreshes the idle timer (500 ms here): 6 uses 150 ms apart outlive it
    const live = await fs(box, 'filesystem.open', { file: '/h', mode: 'r', perm: 0 });
    for (let i = 0; i < 6; i++) {
      await sleep(150);
      expect(await fs(box, 'filesystem.read', { fd: live })).toBe('');
    }
    await sleep(1000);
    await fails(fs(box, 'filesystem.read', { fd: live }), 404, /unknown file descriptor/);
  });

  it('keeps read and write to the mode, truncates, appends', async () => {
    const w = await fs(box, 'filesystem.open', { file: '/rw', mode: 'w', perm: 0o644 });
    await fails(fs(box, 'filesystem.read', { fd: w }), 400, /not open for reading/);
    await fs(box, 'filesystem.write', { fd: w, block: Buffer.from('hello ').toString('base64') });
    await fs(box, 'filesystem.close', { fd: w });
    const a = await fs(box, 'filesystem.open', { file: '/rw', mode: 'a', perm: 0o644 });
    await fs(box, 'filesystem.write', { fd: a, block: Buffer.from('world').toString('base64') });
    await fs(box, 'filesystem.close', { fd: a });
    expect(readFileSync(path.join(root, 'rw'), 'utf8')).toBe('hello world');
    const r = await fs(box, 'filesystem.open', { file: '/rw', mode: 'r', perm: 0 });
    await fails(fs(box, 'filesystem.write', { fd: r, block: 'AAAA' }), 400, /not open for writing/);
    expect(Buffer.from(await fs(box, 'filesystem.read', { fd: r }), 'base64').toString()).toBe('hello world');
    expect(await fs(box, 'filesystem.read', { fd: r })).toBe('');
    await fs(box, 'filesystem.close', { fd: r });
    const t = await fs(box, 'filesystem.open', { file: '/rw', mode: 'w', perm: 0o644 });
    await fs(box, 'filesystem.close', { fd: t });
    expect(readFileSync(path.join(root, 'rw'), 'utf8')).toBe('');
  });

  it('rejects a bad or too big write block', async () => {
    const fs = caller(filesystemHandlers()); // the default idle time: building 16 MiB blocks here takes a while
    const fd = await fs(box, 'filesystem.open', { file: '/big', mode: 'w', perm: 0o644 });
    await fails(fs(box, 'filesystem.write', { fd, block: 'not base64!' }), 400, /base64/);
    await fails(fs(box, 'filesystem.write', { fd, block: 'AAA' }), 400, /base64/);
    await fails(fs(box, 'filesystem.write', { fd, block: Buffer.alloc(16 * 1024 * 1024 + 1).toString('base64') }), 400, /limit/);
    await fs(box, 'filesystem.write', { fd, block: mime(Buffer.alloc(16 * 1024 * 1024, 7)) }); // exactly the cap is fine
    await fs(box, 'filesystem.close', { fd });
    expect(statSync(path.join(root, 'big')).size).toBe(16 * 1024 * 1024);
    rmSync(path.join(root, 'big'));
  });

  it('uploads and downloads 3 MiB in 512 KiB blocks of line-wrapped base64', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 1234);
    const up = await fs(box, 'filesystem.open', { file: '/up.bin', mode: 'w', perm: 0o644 });
    for (let off = 0; off < data.length; off += 512 * 1024)
      expect(await fs(box, 'filesystem.write', { fd: up, block: mime(data.subarray(off, off + 512 * 1024)) })).toBeNull();
    await fs(box, 'filesystem.close', { fd: up });
    expect(readFileSync(path.join(root, 'up.bin')).equals(data)).toBe(true);

    const down = await fs(box, 'filesystem.open', { file: '/up.bin', mode: 'r', perm: 0 });
    const blocks: Buffer[] = [];
    for (;;) {
      const b64: string = await fs(box, 'filesystem.read', { fd: down });
      if (b64 === '') break;
      const b = Buffer.from(b64, 'base64');
      expect(b.length).toBeLessThanOrEqual(512 * 1024);
      blocks.push(b);
    }
    await fs(box, 'filesystem.close', { fd: down });
    expect(blocks.length).toBe(7);
    expect(Buffer.concat(blocks).equals(data)).toBe(true);
  });

  it('lists with Go FileMode bits', async () => {
    const d = path.join(root, 'modes');
    mkdirSync(d);
    mkdirSync(path.join(d, 'dir'), 0o755);
    writeFileSync(path.join(d, 'file'), 'abc', { mode: 0o644 });
    symlinkSync('file', path.join(d, 'link'));
    expect(spawnSync('mkfifo', ['-m', '0600', path.join(d, 'fifo')]).status).toBe(0);
    expect(spawnSync('mknod', ['-m', '0666', path.join(d, 'null'), 'c', '1', '3']).status).toBe(0);
    writeFileSync(path.join(d, 'suid'), '');
    spawnSync('chmod', ['4755', path.join(d, 'suid')]);
    writeFileSync(path.join(d, 'sgid'), '');
    spawnSync('chmod', ['2750', path.join(d, 'sgid')]);
    mkdirSync(path.join(d, 'sticky'));
    spawnSync('chmod', ['1777', path.join(d, 'sticky')]);

    const list: { name: string; size: number; mode: number; is_dir: boolean }[] = await fs(box, 'filesystem.list', { path: '/modes' });
    const by = Object.fromEntries(list.map((e) => [e.name, e]));
    expect(list.map((e) => e.name)).toEqual(['dir', 'fifo', 'file', 'link', 'null', 'sgid', 'sticky', 'suid']);
    expect(by.dir).toEqual({ name: 'dir', size: lstatSync(path.join(d, 'dir')).size, mode: 2147484141, is_dir: true });
    expect(by.file).toEqual({ name: 'file', size: 3, mode: 0o644, is_dir: false });
    expect(by.link).toMatchObject({ mode: 134218239, is_dir: false, size: 4 }); // ModeSymlink|0777
    expect(by.fifo.mode).toBe(GO_MODE.namedPipe + 0o600);
    expect(by.null.mode).toBe(69206454); // ModeDevice|ModeCharDevice|0666
    expect(by.suid.mode).toBe(8389101); // ModeSetuid|0755
    expect(by.sgid.mode).toBe(GO_MODE.setgid + 0o750);
    expect(by.sticky).toMatchObject({ mode: 2148532735, is_dir: true }); // ModeDir|ModeSticky|0777
    // a symlink to a directory is listed as a link, and listing through it shows the target
    symlinkSync('/modes', path.join(root, 'modes-link'));
    expect((await fs(box, 'filesystem.list', { path: '/modes-link' })).length).toBe(8);
  });

  it('exists, mkdir -p, remove, move', async () => {
    expect(await fs(box, 'filesystem.exists', { path: '/etc/passwd' })).toBe(true);
    expect(await fs(box, 'filesystem.exists', { path: '/etc/nope' })).toBe(false);
    expect(await fs(box, 'filesystem.exists', { path: '/etc/passwd/x' })).toBe(false);
    expect(await fs(box, 'filesystem.mkdir', { path: '/x/y/z' })).toBeNull();
    expect(await fs(box, 'filesystem.mkdir', { path: '/x/y/z' })).toBeNull(); // already there: fine
    expect(statSync(path.join(root, 'x/y/z')).isDirectory()).toBe(true);
    writeFileSync(path.join(root, 'x/y/z/f'), 'f');
    expect(await fs(box, 'filesystem.move', { path: '/x/y', destination: '/x/w' })).toBeNull();
    expect(readFileSync(path.join(root, 'x/w/z/f'), 'utf8')).toBe('f');
    expect(existsSync(path.join(root, 'x/y'))).toBe(false);
    expect(await fs(box, 'filesystem.remove', { path: '/x' })).toBeNull();
    expect(existsSync(path.join(root, 'x'))).toBe(false);
    expect(await fs(box, 'filesystem.remove', { path: '/x' })).toBeNull(); // missing: success, as os.RemoveAll
    await fails(fs(box, 'filesystem.remove', { path: '/' }), 400, /root/);
    await fails(fs(box, 'filesystem.remove', { path: '/etc/../..' }), 400, /root/);
    expect(existsSync(root)).toBe(true);
  });

  it('chmod and chown, recursive, by names from the place /etc', async () => {
    mkdirSync(path.join(root, 'own/sub'), { recursive: true });
    writeFileSync(path.join(root, 'own/sub/f'), '');
    symlinkSync(path.join(outside, 'secret'), path.join(root, 'own/sub/hostlink')); // must not be followed
    const before = statSync(path.join(outside, 'secret'));

    expect(await fs(box, 'filesystem.chmod', { path: '/own/sub/f', mode: 0o600 })).toBeNull();
    expect(statSync(path.join(root, 'own/sub/f')).mode & 0o7777).toBe(0o600);
    expect(await fs(box, 'filesystem.chmod', { path: '/own', mode: 0o700, recursive: true })).toBeNull();
    for (const p of ['own', 'own/sub', 'own/sub/f']) expect(statSync(path.join(root, p)).mode & 0o7777).toBe(0o700);
    await fs(box, 'filesystem.chmod', { path: '/own/sub/f', mode: 0o4755 });
    expect(statSync(path.join(root, 'own/sub/f')).mode & 0o7777).toBe(0o4755);
    await fs(box, 'filesystem.chmod', { path: '/own/sub/f', mode: GO_MODE.setgid + 0o711 }); // Go's own bit
    expect(statSync(path.join(root, 'own/sub/f')).mode & 0o7777).toBe(0o2711);
    await fails(fs(box, 'filesystem.chmod', { path: '/own', mode: -1 }), 400, /mode/);

    expect(await fs(box, 'filesystem.chown', { path: '/own/sub/f', user: 'alice', group: 'staff' })).toBeNull();
    expect(statSync(path.join(root, 'own/sub/f'))).toMatchObject({ uid: 1234, gid: 4321 });
    expect(await fs(box, 'filesystem.chown', { path: '/own', user: '77', group: '88', recursive: true })).toBeNull();
    for (const p of ['own', 'own/sub', 'own/sub/f', 'own/sub/hostlink']) expect(lstatSync(path.join(root, p))).toMatchObject({ uid: 77, gid: 88 });
    await fails(fs(box, 'filesystem.chown', { path: '/own', user: 'bob', group: 'staff' }), 404, /unknown user 'bob'/);
    await fails(fs(box, 'filesystem.chown', { path: '/own', user: 'alice', group: 'wheel' }), 404, /unknown group 'wheel'/);

    const after = statSync(path.join(outside, 'secret'));
    expect([after.mode, after.uid, after.gid]).toEqual([before.mode, before.uid, before.gid]);
  });

  it('never reaches outside the root through hostile symlinks', async () => {
    symlinkSync(outside, path.join(root, 'evil-abs'));
    symlinkSync('../../../../../../../../..' + outside, path.join(root, 'evil-rel'));
    mkdirSync(path.join(root, 'deep'));
    symlinkSync('/', path.join(root, 'deep/parent'));
    for (const p of ['/evil-abs/secret', '/evil-rel/secret', '/deep/parent' + outside + '/secret']) {
      expect(await fs(box, 'filesystem.exists', { path: p })).toBe(false);
      await fails(fs(box, 'filesystem.open', { file: p, mode: 'r', perm: 0 }), 404);
      await fails(fs(box, 'filesystem.open', { file: p, mode: 'w', perm: 0o644 }), 404); // its parent is missing inside the root
      await fails(fs(box, 'filesystem.list', { path: path.dirname(p) }), 404);
      await fails(fs(box, 'filesystem.chmod', { path: p, mode: 0o777 }), 404);
    }
    // mkdir through a hostile link creates inside the root
    await fs(box, 'filesystem.mkdir', { path: '/evil-abs/made' });
    expect(existsSync(path.join(root, outside, 'made'))).toBe(true);
    expect(existsSync(path.join(outside, 'made'))).toBe(false);
    // a symlinked parent ("/deep/parent" → "/") lands at the container's own /etc
    expect(await fs(box, 'filesystem.exists', { path: '/deep/parent/etc/group' })).toBe(true);
    const fd = await fs(box, 'filesystem.open', { file: '/deep/parent/etc/group', mode: 'r', perm: 0 });
    expect(Buffer.from(await fs(box, 'filesystem.read', { fd }), 'base64').toString()).toContain('staff');
    await fs(box, 'filesystem.close', { fd });
    // remove and move act on the link itself
    await fs(box, 'filesystem.remove', { path: '/evil-abs' });
    await fs(box, 'filesystem.move', { path: '/evil-rel', destination: '/deep/parent/moved' });
    expect(readlinkSync(path.join(root, 'moved'))).toContain(outside);
    await fs(box, 'filesystem.remove', { path: '/moved/' });
    expect(readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('host secret');
    expect(existsSync(path.join(root, 'moved'))).toBe(false);
  });

  it('works on the host place with host paths', async () => {
    const f = path.join(tmp, 'hostfile');
    const fd = await fs(host, 'filesystem.open', { file: f, mode: 'w', perm: 0o640 });
    await fs(host, 'filesystem.write', { fd, block: mime(Buffer.from('on the host')) });
    await fs(host, 'filesystem.close', { fd });
    expect(readFileSync(f, 'utf8')).toBe('on the host');
    expect(await fs(host, 'filesystem.exists', { path: f })).toBe(true);
    expect((await fs(host, 'filesystem.list', { path: tmp })).some((e: { name: string }) => e.name === 'hostfile')).toBe(true);
  });
});

// ---- proc.ts ---------------------------------------------------------------------------------

describe('proc readers', () => {
  it('reads one process and sums several', async () => {
    const me = await procInfo(process.pid);
    expect(me).toMatchObject({ pid: process.pid, ppid: process.ppid, name: expect.any(String) });
    expect(me!.cmdline).toContain('node');
    expect(me!.rss).toBeGreaterThan(1 << 20);
    expect(me!.vms).toBeGreaterThan(me!.rss);
    expect(Math.abs(me!.createtime - (Date.now() - process.uptime() * 1000))).toBeLessThan(5000);
    const one = (await procStats(process.pid))!;
    expect(one.cpu).toBeGreaterThan(0);
    expect(await procStats(2 ** 22 + 12345)).toBeNull();
    const sum = await sumStats([process.pid, 2 ** 22 + 12345, process.ppid]);
    expect(sum.rss).toBeGreaterThan(one.rss);
    expect(Object.keys(sum).sort()).toEqual(['cpu', 'rss', 'swap', 'vms']);
  });
});

// ---- process.* on the host -----------------------------------------------------------------------

const CPU_KEYS = ['guestnice', 'idle', 'iowait', 'irq', 'nice', 'softirq', 'steal', 'stolen', 'system', 'user'];
const PROC_KEYS = ['cmdline', 'cpu', 'createtime', 'name', 'pid', 'ppid', 'rss', 'swap', 'vms'];

describe('process.* on the host', () => {
  const ps = caller(processHandlers());
  const children: ChildProcess[] = [];
  afterAll(() => children.forEach((c) => c.kill('SIGKILL')));

  it('lists processes with the gopsutil shape', async () => {
    const all = await ps(host, 'process.list', {});
    expect(all.length).toBeGreaterThan(2);
    const me = all.find((p: { pid: number }) => p.pid === process.pid);
    expect(Object.keys(me).sort()).toEqual(PROC_KEYS);
    expect(Object.keys(me.cpu).sort()).toEqual(CPU_KEYS);
    expect(me.ppid).toBe(process.ppid);
    expect(Number.isInteger(me.createtime)).toBe(true);
    expect(me.rss).toBeGreaterThan(0);

    const one = await ps(host, 'process.list', { pid: process.pid });
    expect(one).toHaveLength(1);
    expect(one[0].pid).toBe(process.pid);
    expect((await ps(host, 'process.list', { pid: null })).length).toBeGreaterThan(2);
    await fails(ps(host, 'process.list', { pid: 2 ** 22 + 12345 }), 404, /no such process/);
    await fails(ps(host, 'process.list', { pid: '1' }), 400, /'pid'/);
  });

  it('kills, refusing pid <= 1 and unknown pids', async () => {
    await fails(ps(host, 'process.kill', { pid: 1, signal: 15 }), 400);
    await fails(ps(host, 'process.kill', { pid: 0, signal: 15 }), 400);
    await fails(ps(host, 'process.kill', { pid: -3, signal: 15 }), 400);
    await fails(ps(host, 'process.kill', { signal: 15 }), 400, /'pid'/);
    await fails(ps(host, 'process.kill', { pid: 2 ** 22 + 12345, signal: 15 }), 404);
    await fails(ps(host, 'process.kill', { pid: process.pid, signal: 'TERM' }), 400, /'signal'/);
    await fails(ps(host, 'process.kill', { pid: process.pid, signal: 99 }), 400, /signal/);

    const child = spawn('sleep', ['30']);
    children.push(child);
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, s) => r(s)));
    expect(await ps(host, 'process.kill', { pid: child.pid })).toBeNull(); // default SIGTERM
    expect(await exited).toBe('SIGTERM');

    const other = spawn('sleep', ['30']);
    children.push(other);
    const killed = new Promise<NodeJS.Signals | null>((r) => other.on('exit', (_c, s) => r(s)));
    expect(await ps(host, 'process.kill', { pid: other.pid, signal: 9 })).toBeNull();
    expect(await killed).toBe('SIGKILL');
  });
});

// ---- a real container: its own pid, net and uts namespaces --------------------------------------

/** Host pids whose parent is ppid. */
function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

describe('in a container (unshare --pid --net --uts)', () => {
  const ps = caller(processHandlers());
  const info = caller(infoHandlers());
  let unshare: ChildProcess;
  let init = 0;
  let box: Place;

  beforeAll(async () => {
    unshare = spawn(
      'unshare',
      ['--pid', '--fork', '--mount-proc', '--net', '--uts', '--kill-child', 'sh', '-c', 'hostname ctest; sleep 300 & exec sleep 301'],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 200 && !init; i++) {
      await sleep(25);
      const [pid] = childrenOf(unshare.pid!);
      if (pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\u0000301') && childrenOf(pid).length === 1) init = pid;
    }
    expect(init, 'the container init started').toBeGreaterThan(0);
    box = place(`/proc/${init}/root`, 7);
  });
  afterAll(() => {
    if (init) spawnSync('kill', ['-9', String(init)]);
    unshare?.kill('SIGKILL');
  });

  it('process.list shows only the container processes, with its own pids', async () => {
    const list = await ps(box, 'process.list', {});
    // pid 2 was `hostname`, so the background sleep is 3 in the container
    expect(list.map((p: { pid: number; ppid: number; cmdline: string }) => [p.pid, p.ppid, p.cmdline])).toEqual([
      [1, 0, 'sleep 301'],
      [3, 1, 'sleep 300'],
    ]);
    expect(Object.keys(list[0]).sort()).toEqual(PROC_KEYS);
    expect((await ps(box, 'process.list', { pid: 3 }))[0].cmdline).toBe('sleep 300');
    await fails(ps(box, 'process.list', { pid: 2 }), 404);
    await fails(ps(box, 'process.list', { pid: process.pid }), 404); // a host pid is not the container's
  });

  it('process.kill maps the container pid and refuses others', async () => {
    await fails(ps(box, 'process.kill', { pid: 1, signal: 9 }), 400);
    await fails(ps(box, 'process.kill', { pid: process.pid, signal: 0 }), 404);
    await fails(ps(box, 'process.kill', { pid: 99 }), 404);
    const [hostPid] = childrenOf(init);
    expect(await ps(box, 'process.kill', { pid: 3, signal: 9 })).toBeNull();
    await sleep(100);
    // its parent (sleep) does not reap: a zombie or gone
    const state = (() => {
      try {
        const s = readFileSync(`/proc/${hostPid}/stat`, 'utf8');
        return s.slice(s.lastIndexOf(')') + 2)[0];
      } catch {
        return 'gone';
      }
    })();
    expect(['Z', 'gone']).toContain(state);
  });

  it('info.nic, info.os and info.disk see the container', async () => {
    const nics = await info(box, 'info.nic');
    expect(nics.map((n: { name: string }) => n.name)).toEqual(['lo']);
    expect(nics[0]).toMatchObject({ name: 'lo', hardwareaddr: '', speed: 0, mtu: 65536 });
    expect(nics[0].flags).toContain('loopback');
    expect(nics[0].flags).not.toContain('up');
    const o = await info(box, 'info.os');
    expect(o.hostname).toBe('ctest');
    expect(o.procs).toBeGreaterThanOrEqual(1);
    expect(o.procs).toBeLessThanOrEqual(2);
    const disks = await info(box, 'info.disk');
    expect(Array.isArray(disks)).toBe(true);
  });
});

// ---- info.* on the host ------------------------------------------------------------------------

describe('info.* on the host', () => {
  const info = caller(infoHandlers());

  it('info.cpu', async () => {
    const cpus = await info(host, 'info.cpu');
    expect(cpus).toHaveLength(os.cpus().length);
    expect(Object.keys(cpus[0]).sort()).toEqual(
      ['cacheSize', 'coreId', 'cores', 'cpu', 'family', 'flags', 'mhz', 'microcode', 'model', 'modelName', 'physicalId', 'stepping', 'vendorId'].sort(),
    );
    expect(cpus.map((c: { cpu: number }) => c.cpu)).toEqual(cpus.map((_: unknown, i: number) => i));
    expect(typeof cpus[0].mhz).toBe('number');
    expect(typeof cpus[0].family).toBe('string');
    expect(Array.isArray(cpus[0].flags)).toBe(true);
  });

  it('info.mem', async () => {
    const m = await info(host, 'info.mem');
    expect(Object.keys(m).sort()).toEqual(
      ['active', 'available', 'buffers', 'cached', 'dirty', 'free', 'inactive', 'pagetables', 'shared', 'slab', 'swapcached', 'total', 'used', 'usedPercent', 'wired', 'writeback', 'writebacktmp'].sort(),
    );
    expect(m.total).toBe(os.totalmem());
    for (const v of Object.values(m)) expect(typeof v).toBe('number');
    expect(m.usedPercent).toBeGreaterThan(0);
    expect(m.usedPercent).toBeLessThan(100);
  });

  it('info.disk', async () => {
    const disks = await info(host, 'info.disk');
    for (const d of disks) expect(Object.keys(d).sort()).toEqual(['device', 'fstype', 'mountpoint', 'opts']);
  });

  it('info.nic', async () => {
    const nics = await info(host, 'info.nic');
    const lo = nics.find((n: { name: string }) => n.name === 'lo');
    expect(Object.keys(lo).sort()).toEqual(['addrs', 'flags', 'hardwareaddr', 'mtu', 'name', 'speed']);
    expect(lo).toMatchObject({ hardwareaddr: '', speed: 0 });
    expect(lo.flags).toEqual(['up', 'loopback']);
    expect(lo.addrs).toContainEqual({ addr: '127.0.0.1/8' });
    expect(nics.map((n: { name: string }) => n.name).sort()).toEqual(Object.keys(os.networkInterfaces()).concat(
      nics.filter((n: { addrs: unknown[] }) => n.addrs.length === 0).map((n: { name: string }) => n.name),
    ).sort());
  });

  it('info.os', async () => {
    const o = await info(host, 'info.os');
    expect(Object.keys(o).sort()).toEqual(
      ['bootTime', 'hostid', 'hostname', 'kernelVersion', 'os', 'platform', 'platformFamily', 'platformVersion', 'procs', 'uptime', 'virtualizationRole', 'virtualizationSystem'].sort(),
    );
    expect(o).toMatchObject({ hostname: os.hostname(), os: 'linux', kernelVersion: os.release() });
    expect(o.uptime).toBeGreaterThan(0);
    expect(Math.abs(o.bootTime + o.uptime - Date.now() / 1000)).toBeLessThan(5);
    expect(o.procs).toBeGreaterThan(2);
    expect(o.hostid).not.toBe('');
    const rel = readFileSync('/etc/os-release', 'utf8');
    expect(rel).toContain(`ID=${o.platform}`);
  });
});
