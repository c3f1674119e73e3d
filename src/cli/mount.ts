// `g8os mount` and `g8os umount`: the g8ufs command line (g8ufs.md §1).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { hubTarget } from './hub-client';
import { parseSize, UsageError } from './util';

interface MountFlags {
  layer?: string[];
  hub?: string;
  backend?: string;
  cache?: string;
  storageUrl?: string;
  ro?: boolean;
  reset?: boolean;
  cacheSize: string;
  prefetch?: boolean;
  lazyConnect?: boolean;
  daemon?: boolean;
  pid?: string;
  log?: string;
  debug?: boolean;
}

/** How long SIGTERM/SIGINT may take to unmount before the mount is detached and the process exits. */
const STOP_GRACE_MS = 10_000;

/** Set in the environment of the detached child that `-d` starts. */
const DAEMON_ENV = 'G8OS_MOUNT_DAEMON';

const HELP = `
Layout: <backend>/ro is the read-only FUSE view of the flist(s); without --ro a kernel overlay
mounts it at <target> with <backend>/rw (the writable layer, kept across remounts unless
--reset) and <backend>/wd on top (redirect_dir=on, so directories from the flist can be
renamed). With --ro the FUSE view is mounted at <target> directly.

Layers: <flist> is the bottom layer and each --layer goes on top of it in the order given (the
last one is the top): a file in a higher layer hides the same path below; directories merge.

Blocks come from --storage-url when given (for every layer), else from each flist's backend
metadata. Before mounting, each store gets one round trip; an unreachable store fails the
mount unless --lazy-connect.

<flist> is a local .flist file, an http(s):// URL, or user/name on the hub given by --hub or
$G8OS_HUB (<hub>/<user>/<name>.flist).

Defaults (root): --backend /var/cache/g8os/mounts/<sha1 of the target path>,
--cache /var/cache/g8os/cache (shared by every mount on the machine). Other users:
$XDG_CACHE_HOME/g8os/… (~/.cache/g8os/…). With -d the log goes to <backend>/mount.log.

Prints "mount starts" once the target is usable. SIGTERM or SIGINT unmounts (overlay, then
the FUSE layer) and exits 0; so does an external unmount of the target.`;

/** <flist> argument → a local path or an http(s) URL. */
export function flistSource(s: string, hub: string | undefined): string {
  if (/^https?:\/\//i.test(s) || fs.existsSync(s)) return s;
  const m = /^([^/\s.][^/\s]*)\/([^/\s]+)$/.exec(s);
  if (!m) return s; // a path that does not exist: openFlist says so
  if (!hub) throw new UsageError(`${s}: no such file (for the flist ${m[1]}/${m[2]} on a hub, pass --hub <url> or set G8OS_HUB)`);
  const name = m[2].endsWith('.flist') ? m[2] : `${m[2]}.flist`;
  return `${hubTarget(hub).text}/${encodeURIComponent(m[1])}/${encodeURIComponent(name)}`;
}

function appendLine(file: string | undefined, line: string): void {
  if (!file) return;
  try {
    fs.appendFileSync(file, `${new Date().toISOString()} ${line}\n`);
  } catch {
    // the log is best effort
  }
}

/** -d: start this same command detached, wait for its verdict, exit. */
async function daemonize(log: string): Promise<number> {
  fs.mkdirSync(path.dirname(log), { recursive: true });
  const fd = fs.openSync(log, 'a');
  const args = process.argv.slice(1);
  const child = spawn(process.execPath, [...process.execArgv, ...args], {
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...process.env, [DAEMON_ENV]: '1' },
  });
  fs.closeSync(fd);
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, line?: string): void => {
      if (done) return;
      done = true;
      if (line) process.stderr.write(`${line}\n`);
      if (code === 0) {
        process.stdout.write('mount starts\n');
        child.disconnect();
      }
      child.unref();
      resolve(code);
    };
    child.on('message', (msg: { type?: string; message?: string }) => {
      if (msg.type === 'ready') finish(0);
      else if (msg.type === 'error') finish(1, `g8os: ${msg.message}`);
    });
    child.on('error', (e) => finish(1, `g8os: cannot start the mount process: ${e.message}`));
    child.on('exit', (code, sig) =>
      finish(1, `g8os: the mount process exited (${sig ?? `code ${code}`}) before the mount was ready; see ${log}`),
    );
  });
}

export function mountCommand(): Command {
  return new Command('mount')
    .description('mount flists: lazy read-only FUSE layer, kernel overlay copy-on-write on top')
    .argument('<flist>', 'local .flist, http(s):// URL, or user/name on the hub (the bottom layer)')
    .argument('<target>', 'an empty directory')
    .option('--layer <flist>', 'another flist on top (repeatable; the last one given is the top)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--hub <url>', 'hub for user/name flists (default: $G8OS_HUB)')
    .option('--backend <dir>', 'holds ro/, rw/ (the writable layer), wd/ (default: see below)')
    .option('--cache <dir>', 'block cache shared by all mounts (default: see below)')
    .option('--storage-url <url>', 'block store for every layer: zdb://, redis://, http(s)://, dir:// (default: the flist backend metadata)')
    .option('--ro', 'read-only: the FUSE view at <target>, no overlay')
    .option('--reset', 'discard the writable layer (rw/, wd/) first')
    .option('--cache-size <size>', 'block cache bound, LRU-evicted (e.g. 500M, 10G)', '10G')
    .option('--prefetch', 'warm the block cache with every file in the background after mounting')
    .option('--lazy-connect', 'do not check the stores before mounting')
    .option('-d, --daemon', 'detach once the mount is up')
    .option('--pid <file>', 'write the serving process id')
    .option('--log <file>', 'also append notes and errors here (with -d: all output; default <backend>/mount.log)')
    .option('--debug', 'FUSE debug output')
    .addHelpText('after', HELP)
    .action(async (flist: string, targetArg: string, o: MountFlags) => {
      const { Mount, defaultBackend, resolveTarget } = await import('../fs/mount');
      const cacheBytes = parseSize(o.cacheSize);
      if (cacheBytes <= 0) throw new UsageError('--cache-size must be positive');
      const hub = o.hub ?? process.env.G8OS_HUB;
      const flists = [flist, ...(o.layer ?? [])].map((f) => flistSource(f, hub));
      const isChild = process.env[DAEMON_ENV] === '1';
      const send = (m: object): void => {
        if (isChild && process.send && process.connected) process.send(m);
      };
      let log = o.log;
      if (o.daemon && !isChild) {
        log ??= path.join(path.resolve(o.backend ?? defaultBackend(resolveTarget(targetArg))), 'mount.log');
        process.exit(await daemonize(path.resolve(log)));
      }
      if (isChild) log = undefined; // stdout and stderr already go there
      // stderr, and --log without -d
      const logLine = (line: string): void => {
        process.stderr.write(`${line}\n`);
        appendLine(log, line);
      };
      const note = (line: string): void => logLine(`g8os: ${line}`);

      const ctl = new AbortController();
      let mount: import('../fs/mount').Mount | undefined;
      let forced: NodeJS.Timeout | undefined;
      // Exits promptly whatever hangs: a second signal, or STOP_GRACE_MS after the first,
      // detaches what is left lazily and exits.
      const force = (why: string): void => {
        note(`${why}: detaching the mount and exiting`);
        mount?.detachNow();
        process.exit(1);
      };
      const onSignal = (sig: NodeJS.Signals): void => {
        if (forced) return force(`${sig} again`);
        if (mount) {
          appendLine(log, `${sig}: unmounting`);
          forced = setTimeout(() => force(`still unmounting ${STOP_GRACE_MS / 1000} s after ${sig}`), STOP_GRACE_MS);
          void mount.stop();
        } else ctl.abort();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      // SIGHUP layering (g8ufs.md §4.2) is not implemented; do not die (and leave a stale mount) on it.
      process.on('SIGHUP', () => note('SIGHUP ignored: runtime layering is not supported'));
      process.on('uncaughtException', (e) => {
        note(`internal error: ${e.stack ?? e.message}`);
        void (mount ? mount.stop() : Promise.resolve()).finally(() => process.exit(1));
      });

      try {
        mount = await Mount.start({
          flists,
          target: targetArg,
          backend: o.backend,
          cache: o.cache,
          storageUrl: o.storageUrl,
          ro: o.ro,
          reset: o.reset,
          cacheBytes,
          prefetch: o.prefetch,
          lazyConnect: o.lazyConnect,
          debug: o.debug,
          pidFile: o.pid,
          signal: ctl.signal,
          note,
          log: logLine,
        });
      } catch (e) {
        const msg = (e as Error).message.replace(/\s*\n\s*/g, ' ');
        note(msg);
        send({ type: 'error', message: msg });
        // sockets of a probed store may linger; the verdict is final
        process.exit(1);
      }
      process.stdout.write('mount starts\n');
      appendLine(log, `mounted ${flists.join(' + ')} at ${mount.target} (backend ${mount.backend})`);
      send({ type: 'ready' });
      process.on('disconnect', () => undefined);
      if (isChild) process.channel?.unref();
      await mount.closed;
      appendLine(log, 'unmounted');
      process.exit(0);
    });
}

export function umountCommand(): Command {
  return new Command('umount')
    .description('unmount a g8os mount: stops its serving process, or detaches a stale mount')
    .argument('<target>', 'the mount target')
    .option('--timeout <seconds>', 'how long to wait for the serving process', '30')
    .action(async (targetArg: string, o: { timeout: string }) => {
      const { resolveTarget } = await import('../fs/mount');
      const { detach, isStale, mountAt, ourMount, processAlive, unmount } = await import('../fs/mount-table');
      const timeoutMs = Number(o.timeout) * 1000;
      if (!(timeoutMs > 0)) throw new UsageError(`--timeout ${o.timeout}: expected a number of seconds`);
      const target = resolveTarget(targetArg);
      const top = mountAt(target);
      if (!top) throw new Error(`${target} is not mounted`);
      const ours = ourMount(target);
      if (!ours) throw new Error(`${target} is not a g8os mount (${top.fstype} ${top.source})`);
      if (ours.pid !== undefined) {
        const pid = ours.pid;
        process.kill(pid, 'SIGTERM');
        const until = Date.now() + timeoutMs;
        while (processAlive(pid)) {
          if (Date.now() > until) throw new Error(`the mount process ${pid} did not stop within ${o.timeout} s`);
          await new Promise((r) => setTimeout(r, 50));
        }
        if (mountAt(target)?.id !== top.id) return;
        // it exited without unmounting: what is left is stale
      } else if (!(await isStale(ours))) {
        // served by a process we cannot name: unmount; it notices and exits
        const err = await unmount(target);
        if (err) throw new Error(err);
        return;
      }
      // stale: the server is gone; detach what is left
      process.stderr.write(`g8os: the mount at ${target} is stale (its server is gone): detaching it\n`);
      const err = (await unmount(target)) ?? (ours.fuse && ours.fuse !== top ? await detach(ours.fuse.mountPoint) : undefined);
      if (err) throw new Error(err);
    });
}
