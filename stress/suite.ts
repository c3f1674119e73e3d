// What every reliability suite shares: the run's context and level, and the per-suite tally of
// operations, checked bytes and problems.
import { log } from '../harness/cleanup';

export const BLOCK = 512 * 1024;

export type Level = 'ci' | 'quick' | 'full';

/** What run.ts hands each suite. */
export interface Context {
  level: Level;
  seed: number;
  /** a real rootfs tarball for the content pass (full runs), when one is available */
  image?: string;
  /** scratch directory (on disk) for this run */
  work: string;
}

/** Picks the value for the run's level. */
export const by = <T>(ctx: Context, ci: T, quick: T, full: T): T => (ctx.level === 'ci' ? ci : ctx.level === 'quick' ? quick : full);

export interface SuiteResult {
  name: string;
  /** one line: what the suite did */
  what: string;
  ops: number;
  /** bytes read back and checked */
  bytesChecked: number;
  /** errors the suite provoked on purpose (reads during a hub outage, aborted uploads) */
  expectedErrors: number;
  /** everything else that failed */
  errors: number;
  /** bytes that differed from what was written / published (must be 0) */
  wrongBytes: number;
  seconds: number;
  /** the first problems, one line each */
  problems: string[];
  /** small machine-readable details */
  data: Record<string, unknown>;
}

export class Tally {
  ops = 0;
  bytesChecked = 0;
  expectedErrors = 0;
  errors = 0;
  wrongBytes = 0;
  problems: string[] = [];
  data: Record<string, unknown> = {};

  constructor(readonly name: string) {}

  private note(msg: string): void {
    if (this.problems.length < 40) this.problems.push(msg);
    if (this.problems.length <= 10) log(`${this.name}: ${msg}`);
  }

  /** An unexpected error. */
  error(msg: string): void {
    this.errors++;
    this.note(`error: ${msg}`);
  }

  /** Bytes that came back wrong (n > 0). */
  wrong(n: number, msg: string): void {
    this.wrongBytes += n;
    this.note(`${n} wrong bytes: ${msg}`);
  }

  result(what: string, seconds: number): SuiteResult {
    return {
      name: this.name, what, ops: this.ops, bytesChecked: this.bytesChecked, expectedErrors: this.expectedErrors,
      errors: this.errors, wrongBytes: this.wrongBytes, seconds: Number(seconds.toFixed(1)), problems: this.problems, data: this.data,
    };
  }
}

/** Number of differing bytes of a and b over their common length, plus the length difference. */
export function diffBytes(want: Buffer, got: Buffer): number {
  const n = Math.min(want.length, got.length);
  let d = Math.abs(want.length - got.length);
  if (n === want.length && n === got.length && want.equals(got)) return 0;
  if (want.subarray(0, n).equals(got.subarray(0, n))) return d;
  for (let i = 0; i < n; i++) if (want[i] !== got[i]) d++;
  return d;
}

/** Offset of the first differing byte, or -1. */
export function firstDiff(want: Buffer, got: Buffer): number {
  const n = Math.min(want.length, got.length);
  for (let i = 0; i < n; i++) if (want[i] !== got[i]) return i;
  return want.length === got.length ? -1 : n;
}
