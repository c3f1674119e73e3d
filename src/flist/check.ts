// Whether an flist's content is all in a store: one pass over the entries, then each distinct
// block either asked for (`exists`, cheap: the hub's upload-flist) or fetched and decoded
// (`verify`: `g8os flist check`). Missing and corrupt are told apart by what happened, not by
// an error's text: no bytes = missing, bytes that do not decode = corrupt.
import type { BlockStore } from '../store/types';
import { decodeBlock } from './codec';
import { decodeGen3Block, gen3Ready } from './gen3';
import { hashReady } from './hash';
import type { BlockRef, FlistReader } from './types';

export interface CheckResult {
  regular: number;
  symlink: number;
  directory: number;
  special: number;
  /** files with at least one block missing (or corrupt) */
  failure: number;
  fullsize: number;
  /** distinct blocks */
  blocks: number;
  ok: number;
  missing: number;
  /** blocks whose stored bytes do not decode to their key (verify mode only) */
  corrupt: number;
  /** the first problems, one line each */
  problems: string[];
}

export interface CheckOptions {
  /** fetch and decode every block (default: only ask the store whether it has them) */
  verify?: boolean;
  /** parallel fetches when verifying */
  concurrency?: number;
}

const EXISTS_BATCH = 1000;
const MAX_PROBLEMS = 100;

export async function checkFlist(r: FlistReader, store: BlockStore, o: CheckOptions = {}): Promise<CheckResult> {
  const s: CheckResult = { regular: 0, symlink: 0, directory: 0, special: 0, failure: 0, fullsize: 0, blocks: 0, ok: 0, missing: 0, corrupt: 0, problems: [] };
  const unique = new Map<string, { ref: BlockRef; path: string }>();
  for (const e of r.walk()) {
    if (e.kind === 'dir') s.directory++;
    else if (e.kind === 'link') s.symlink++;
    else if (e.kind === 'special') s.special++;
    else {
      s.regular++;
      s.fullsize += e.size;
      for (const b of e.blocks ?? []) if (!unique.has(b.id.toString('hex'))) unique.set(b.id.toString('hex'), { ref: b, path: e.path });
    }
  }
  s.directory--; // the root is not an entry
  s.blocks = unique.size;
  const bad = new Set<string>();
  const problem = (hex: string, line: string): void => {
    bad.add(hex);
    if (s.problems.length < MAX_PROBLEMS) s.problems.push(line);
  };
  const missingLine = (hex: string, p: string): string => `block ${hex} of /${p} is missing from ${store.url}`;
  const items = [...unique.entries()];

  if (!o.verify) {
    // a gen-2 store keys blocks by 16 bytes: any other id cannot be in it
    const askable = items.filter(([hex, { ref, path }]) => {
      if (r.format !== 'gen2' || ref.id.length === 16) return true;
      s.missing++;
      problem(hex, missingLine(hex, path));
      return false;
    });
    for (let i = 0; i < askable.length; i += EXISTS_BATCH) {
      const batch = askable.slice(i, i + EXISTS_BATCH);
      const have = await store.exists(batch.map(([, { ref }]) => ref.id));
      batch.forEach(([hex, { path }], j) => {
        if (have[j]) s.ok++;
        else {
          s.missing++;
          problem(hex, missingLine(hex, path));
        }
      });
    }
  } else {
    await (r.format === 'gen3' ? gen3Ready() : hashReady());
    const decode = r.format === 'gen3' ? decodeGen3Block : decodeBlock;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < items.length) {
        const [hex, { ref, path }] = items[next++];
        const cipher = await store.get(ref.id);
        if (!cipher) {
          s.missing++;
          problem(hex, missingLine(hex, path));
          continue;
        }
        try {
          decode(cipher, ref);
          s.ok++;
        } catch (e) {
          // the decoders throw only for bytes that do not match the ref
          s.corrupt++;
          problem(hex, `${(e as Error).message} (in /${path})`);
        }
      }
    };
    await Promise.all(Array.from({ length: o.concurrency ?? 8 }, worker));
  }

  if (bad.size) {
    for (const e of r.walk()) if (e.kind === 'file' && e.blocks?.some((b) => bad.has(b.id.toString('hex')))) s.failure++;
  }
  return s;
}
