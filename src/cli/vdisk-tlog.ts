// `g8os vdisk rollback|snapshots|history|verify|compact|snapshot-export|snapshot-import` over a
// vdisk's transaction log (src/tlog, disks-vms.md §3.4).
import type { Command } from 'commander';
import { G8osError } from '../errors';
import { exportSnapshot, importSnapshot } from '../tlog/archive';
import { parseTarget, rollback } from '../tlog/rollback';
import { compact, snapshotNow } from '../tlog/state';
import { TlogStore } from '../tlog/store';
import { verifyLog } from '../tlog/verify';
import { hashReady } from '../vdisk/hash';
import { openCluster } from '../vdisk/cluster';
import { UsageError } from './util';

const DEFAULT_TLOG = 'redis://127.0.0.1:6380';
const tlogHelp = `log server redis://host:port[/db] (default $G8OS_TLOG_STORAGE or ${DEFAULT_TLOG})`;

interface Flags {
  storage?: string;
  tlog?: string;
}

async function withLog<T>(o: Flags, fn: (s: TlogStore) => Promise<T>): Promise<T> {
  await hashReady();
  const s = new TlogStore(o.tlog ?? process.env.G8OS_TLOG_STORAGE ?? DEFAULT_TLOG);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

const iso = (ns: string | bigint): string => {
  const n = BigInt(ns);
  return `${new Date(Number(n / 1_000_000n)).toISOString().slice(0, -1)}${String(n % 1_000_000n).padStart(6, '0')}Z`;
};

export function addTlogVerbs(v: Command, storageHelp: string, defaultStorage: string): void {
  const cluster = (o: Flags) => openCluster(o.storage ?? process.env.G8OS_VDISK_STORAGE ?? defaultStorage);
  v.command('rollback <id>')
    .description('restore a detached boot/db vdisk to a seq or a time (newest snapshot ≤ it + the log after)')
    .requiredOption('--to <seq|time>', 'a seq, an ISO time with a zone (2026-12-04T22:30:00.123Z), or ns:<UTC ns>')
    .option('--json', 'the result as JSON')
    .option('--storage <addr>', storageHelp)
    .option('--tlog <addr>', tlogHelp)
    .action(async (id: string, o: Flags & { to: string; json?: boolean }) => {
      const target = parseTarget(o.to);
      const c = cluster(o);
      try {
        const r = await withLog(o, (s) => rollback(c, s, id, target));
        process.stdout.write(o.json ? `${JSON.stringify(r)}\n`
          : `rolled back ${id} to seq ${r.seq} (${iso(r.tsNs)}): snapshot ${r.fromSnapshot} + ${r.replayedRecords} records, ${r.blocks} blocks, ${r.ms} ms\n`);
      } finally {
        await c.close();
      }
    });
  v.command('snapshots <id>')
    .description('snapshots in the log: seq, time, blocks, kind')
    .option('--json', 'JSON lines')
    .option('--tlog <addr>', tlogHelp)
    .action(async (id: string, o: Flags & { json?: boolean }) => {
      const all = await withLog(o, (s) => s.snapshots(id));
      if (!all.length) throw new G8osError('not_found', `vdisk ${id} has no snapshots in the log`);
      for (const x of all) process.stdout.write(o.json ? `${JSON.stringify(x)}\n` : `${x.seq}\t${iso(x.tsNs)}\t${x.blocks}\t${x.kind}\n`);
    });
  v.command('history <id>')
    .description('aggregations in the log: n, seq range, records, first/last time, hash')
    .option('--json', 'JSON lines')
    .option('--tlog <addr>', tlogHelp)
    .action(async (id: string, o: Flags & { json?: boolean }) => {
      const { head, hdrs } = await withLog(o, async (s) => ({ head: await s.head(id), hdrs: await s.headers(id) }));
      if (!hdrs.length && !head.head) throw new G8osError('not_found', `vdisk ${id} has no log`);
      for (const h of hdrs) {
        process.stdout.write(o.json ? `${JSON.stringify(h)}\n`
          : `${h.n}\t${h.firstSeq}-${h.lastSeq}\t${h.count}\t${iso(h.firstTs)}\t${iso(h.lastTs)}\t${h.hash.slice(0, 16)}${h.reset ? '\trollback' : ''}\n`);
      }
    });
  v.command('verify <id>')
    .description("check the log's hash chain; names the first corrupted aggregation (exit 1)")
    .option('--tlog <addr>', tlogHelp)
    .action(async (id: string, o: Flags) => {
      const r = await withLog(o, (s) => verifyLog(s, id));
      if (!r.ok) throw new G8osError('corrupt', `log of ${id}: aggregation ${r.firstBad} is corrupted: ${r.problem}`);
      process.stdout.write(`log of ${id}: ${r.aggregations} aggregations, ${r.records} records, chain intact\n`);
    });
  v.command('compact <id>')
    .description('take a snapshot at the head, keep the newest --retain snapshots, drop the log before the oldest kept')
    .option('--retain <n>', 'snapshots kept', '8')
    .option('--tlog <addr>', tlogHelp)
    .action(async (id: string, o: Flags & { retain: string }) => {
      const keep = Number(o.retain);
      if (!Number.isInteger(keep) || keep < 1) throw new UsageError(`--retain ${JSON.stringify(o.retain)}: a whole number ≥ 1`);
      const r = await withLog(o, async (s) => {
        const holder = await s.holder(id);
        if (holder) throw new G8osError('conflict', `vdisk ${id} is attached (${holder}); its server compacts it`);
        await snapshotNow(s, id);
        return compact(s, id, keep);
      });
      process.stdout.write(`dropped ${r.snapshots} snapshots, ${r.aggregations} aggregations, ${r.blocks} blocks\n`);
    });
  v.command('snapshot-export <id> <seq> <file>')
    .description('write a snapshot to a new file (gzip; --key: AES-256-GCM with a 32-byte key file)')
    .option('--key <file>', 'key file (32 bytes, or 64 hex digits)')
    .option('--storage <addr>', storageHelp)
    .option('--tlog <addr>', tlogHelp)
    .action(async (id: string, seq: string, file: string, o: Flags & { key?: string }) => {
      if (!/^\d+$/.test(seq)) throw new UsageError(`seq ${JSON.stringify(seq)}: a snapshot seq (see g8os vdisk snapshots)`);
      const c = cluster(o);
      try {
        const r = await withLog(o, (s) => exportSnapshot(c, s, id, Number(seq), file, o.key));
        process.stdout.write(`wrote ${file}: ${r.blocks} blocks, ${r.bytes} bytes\n`);
      } finally {
        await c.close();
      }
    });
  v.command('snapshot-import <file> <id>')
    .description('create vdisk <id> from a snapshot file (and start its log from it)')
    .option('--key <file>', 'key file the snapshot was encrypted with')
    .option('--storage <addr>', storageHelp)
    .option('--tlog <addr>', tlogHelp)
    .action(async (file: string, id: string, o: Flags & { key?: string }) => {
      const c = cluster(o);
      try {
        const m = await withLog(o, (s) => importSnapshot(c, s, file, id, o.key));
        process.stdout.write(`${m.id}\t${m.type}\t${m.size}\t${m.blockSize}\n`);
      } finally {
        await c.close();
      }
    });
}
