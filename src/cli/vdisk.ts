// `g8os vdisk …` (zeroctl verbs over a storage cluster) and `g8os nbd serve` (disks-vms.md §2-3).
import { Command } from 'commander';
import { parseListen, serve } from '../nbd/serve';
import { copyVdisk, createVdisk, deleteVdisk, listVdisks, mustMeta, parseSize } from '../vdisk/catalog';
import { type Cluster, openCluster } from '../vdisk/cluster';
import { loadConfig, type ServeConfig } from '../vdisk/config';
import { lbaKey } from '../vdisk/dedup';
import { exportImage, importImage } from '../vdisk/image';
import { nondedupKey } from '../vdisk/nondedup';
import { VDISK_TYPES, type VdiskMeta, type VdiskType } from '../vdisk/types';
import { UsageError } from './util';
import { addTlogVerbs } from './vdisk-tlog';

const DEFAULT_STORAGE = 'redis://127.0.0.1:6379';
const storageHelp = `storage cluster: comma-separated redis://host:port[/db], redis+unix:///sock, dir:///path (default $G8OS_VDISK_STORAGE or ${DEFAULT_STORAGE})`;

interface StorageFlag {
  storage?: string;
}

async function withCluster<T>(o: StorageFlag, fn: (c: Cluster) => Promise<T>): Promise<T> {
  const c = openCluster(o.storage ?? process.env.G8OS_VDISK_STORAGE ?? DEFAULT_STORAGE);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

function vdiskType(s: string): VdiskType {
  if (!VDISK_TYPES.includes(s as VdiskType)) throw new UsageError(`--type ${JSON.stringify(s)}: expected ${VDISK_TYPES.join(', ')}`);
  return s as VdiskType;
}

function blockSize(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n)) throw new UsageError(`--block-size ${JSON.stringify(s)}: expected a number of bytes`);
  return n;
}

const line = (m: VdiskMeta): string =>
  `${m.id}\t${m.type}\t${m.size}\t${m.blockSize}\t${m.readOnly ? 'ro' : 'rw'}${m.template ? `\ttemplate=${m.template.vdisk}@${m.template.source}` : ''}`;

export function vdiskCommand(): Command {
  const v = new Command('vdisk').description('virtual disks in a storage cluster (served by `g8os nbd serve`)');
  v.command('create <id>')
    .description('create a vdisk (boot: deduplicated; db, cache: not; tmp: wiped at disconnect)')
    .requiredOption('--type <type>', VDISK_TYPES.join(' | '))
    .requiredOption('--size <size>', 'e.g. 10G')
    .option('--block-size <bytes>', 'power of two ≥ 512', '4096')
    .option('--read-only', 'refuse writes')
    .option('--template <vdisk>', 'template vdisk id (boot: its LBA is copied; db: blocks fetched per index)')
    .option('--template-source <storage>', 'cluster holding the template (default: the same storage)')
    .option('--storage <addr>', storageHelp)
    .action(async (id: string, o: StorageFlag & { type: string; size: string; blockSize: string; readOnly?: boolean; template?: string; templateSource?: string }) => {
      if (o.templateSource && !o.template) throw new UsageError('--template-source needs --template');
      const m = await withCluster(o, (c) => createVdisk(c, id, {
        type: vdiskType(o.type), size: parseSize(o.size), blockSize: blockSize(o.blockSize), readOnly: o.readOnly,
        template: o.template ? { source: o.templateSource ?? c.url, vdisk: o.template } : undefined,
      }));
      process.stdout.write(`${line(m)}\n`);
    });
  v.command('copy <src> <dst>')
    .description('copy a vdisk (deduplicated: the LBA only)')
    .option('--force', 'replace dst if it exists')
    .option('--storage <addr>', storageHelp)
    .action(async (src: string, dst: string, o: StorageFlag & { force?: boolean }) => {
      const m = await withCluster(o, (c) => copyVdisk(c, src, dst, o.force));
      process.stdout.write(`${line(m)}\n`);
    });
  v.command('delete <id...>')
    .description('delete vdisks (their deduplicated blocks are swept once unreferenced)')
    .option('--storage <addr>', storageHelp)
    .action(async (ids: string[], o: StorageFlag) => {
      await withCluster(o, async (c) => {
        for (const id of ids) await mustMeta(c, id); // all named ones must exist before any goes
        for (const id of ids) await deleteVdisk(c, id);
      });
    });
  v.command('list')
    .description('list vdisks from the cluster index: id, type, size, block size, ro/rw')
    .option('--name <regexp>', 'only ids matching')
    .option('--json', 'JSON lines')
    .option('--storage <addr>', storageHelp)
    .action(async (o: StorageFlag & { name?: string; json?: boolean }) => {
      let re: RegExp | undefined;
      try {
        re = o.name ? new RegExp(o.name) : undefined;
      } catch {
        throw new UsageError(`--name ${JSON.stringify(o.name)}: not a regular expression`);
      }
      const all = await withCluster(o, listVdisks);
      for (const m of all) if (!re || re.test(m.id)) process.stdout.write(o.json ? `${JSON.stringify(m)}\n` : `${line(m)}\n`);
    });
  v.command('describe <id>')
    .description('properties and stored blocks of a vdisk, as JSON')
    .option('--storage <addr>', storageHelp)
    .action(async (id: string, o: StorageFlag) => {
      const out = await withCluster(o, async (c) => {
        const m = await mustMeta(c, id);
        let blocks = 0;
        if (m.type === 'boot') {
          for (const s of (await c.meta.hgetall(lbaKey(id))).values()) {
            for (let at = 0; at < s.length; at += 32) if (s.subarray(at, at + 32).some((b) => b !== 0)) blocks++;
          }
        } else {
          for (const s of c.servers) for (const v of (await s.hgetall(nondedupKey(id))).values()) if (v.length) blocks++;
        }
        return { ...m, storage: c.url, blocks, bytesUsed: blocks * m.blockSize };
      });
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    });
  v.command('import <image> <id>')
    .description('create vdisk <id> from a raw or qcow2 image (qemu-img convert into NBD)')
    .option('--type <type>', VDISK_TYPES.join(' | '), 'boot')
    .option('--format <fmt>', 'image format (default: detected by qemu-img)')
    .option('--block-size <bytes>', 'power of two ≥ 512', '4096')
    .option('--read-only', 'mark the vdisk read-only once imported')
    .option('--storage <addr>', storageHelp)
    .action(async (image: string, id: string, o: StorageFlag & { type: string; format?: string; blockSize: string; readOnly?: boolean }) => {
      const m = await withCluster(o, (c) => importImage(c, image, id, { type: vdiskType(o.type), format: o.format, blockSize: blockSize(o.blockSize), readOnly: o.readOnly }));
      process.stdout.write(`${line(m)}\n`);
    });
  v.command('export <id> <file>')
    .description('write a vdisk to a new image file')
    .option('--format <fmt>', 'raw | qcow2', 'raw')
    .option('--storage <addr>', storageHelp)
    .action(async (id: string, file: string, o: StorageFlag & { format: string }) => {
      if (!['raw', 'qcow2'].includes(o.format)) throw new UsageError(`--format ${JSON.stringify(o.format)}: expected raw or qcow2`);
      await withCluster(o, (c) => exportImage(c, id, file, o.format));
    });
  v.command('sweep')
    .description('delete deduplicated blocks no vdisk references any more')
    .option('--storage <addr>', storageHelp)
    .action(async (o: StorageFlag) => {
      const n = await withCluster(o, (c) => c.sweep());
      process.stdout.write(`swept ${n} blocks\n`);
    });
  addTlogVerbs(v, storageHelp, DEFAULT_STORAGE);
  return v;
}

export function nbdCommand(): Command {
  const n = new Command('nbd').description('NBD server for vdisks');
  n.command('serve')
    .description('serve vdisks over NBD (fixed-newstyle) until SIGTERM/SIGINT')
    .option('--config <file>', 'vdisks.toml (see src/vdisk/config.ts)')
    .option('--listen <addr>', 'unix socket path or host:port')
    .option('--storage <addr>', storageHelp)
    .option('--vdisk <id...>', 'serve only these ids (default: every vdisk in the index)')
    .option('--tlog <addr>', 'log server for boot/db vdisks: redis://host:port[/db] (transaction log, rollback)')
    .option('--tlog-flush-size <n>', 'records per aggregation', '25')
    .option('--tlog-flush-time <s>', 'seconds before a partial aggregation is written', '25')
    .option('--snapshot-every <n>', 'a snapshot every n sequences', '10000')
    .option('--snapshot-interval <s>', 'or every s seconds with writes', '600')
    .option('--retain <n>', 'snapshots kept', '8')
    .action(async (o: StorageFlag & { config?: string; listen?: string; vdisk?: string[]; tlog?: string; tlogFlushSize: string; tlogFlushTime: string; snapshotEvery: string; snapshotInterval: string; retain: string }) => {
      let cfg: ServeConfig;
      if (o.config) {
        if (o.listen || o.storage || o.vdisk || o.tlog) throw new UsageError('--config excludes --listen, --storage, --vdisk and --tlog');
        cfg = loadConfig(o.config);
      } else {
        if (!o.listen) throw new UsageError('give --config or --listen');
        cfg = {
          listen: o.listen, storage: (o.storage ?? process.env.G8OS_VDISK_STORAGE ?? DEFAULT_STORAGE).split(','),
          templateTimeoutMs: 30_000, sweepIntervalMs: 60_000,
          vdisks: o.vdisk ? new Map(o.vdisk.map((id) => [id, {}])) : undefined,
        };
        if (o.tlog) {
          const pos = (v: string, flag: string): number => {
            const x = Number(v);
            if (!(x > 0)) throw new UsageError(`${flag} ${JSON.stringify(v)}: a positive number`);
            return x;
          };
          cfg.tlog = {
            storage: o.tlog, flushSize: Math.floor(pos(o.tlogFlushSize, '--tlog-flush-size')), flushTimeMs: pos(o.tlogFlushTime, '--tlog-flush-time') * 1000,
            snapshotEvery: Math.floor(pos(o.snapshotEvery, '--snapshot-every')), snapshotIntervalMs: pos(o.snapshotInterval, '--snapshot-interval') * 1000,
            retainSnapshots: Math.floor(pos(o.retain, '--retain')),
          };
        }
      }
      parseListen(cfg.listen);
      const log = (l: string): void => {
        process.stderr.write(`${l}\n`);
      };
      const running = await serve(cfg, log);
      process.stdout.write(`nbd serving on ${running.address}\n`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          running.stop().then(resolve, (e) => {
            log(`nbd: stop: ${(e as Error).message}`);
            resolve();
          });
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
  return n;
}


