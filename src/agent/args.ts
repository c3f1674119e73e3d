// Argument checking for commands, in the spirit of the original client's typchk: each command
// declares the shape it accepts; a mismatch is a 400 ERROR naming the argument.
import { CommandError } from './types';

export type Check = (v: unknown, at: string) => unknown;

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  return typeof v === 'object' ? 'object' : typeof v;
}

function bad(at: string, want: string, v: unknown): never {
  if (v === undefined) throw new CommandError('invalid', `argument '${at}' is missing (${want})`);
  throw new CommandError('invalid', `argument '${at}': expected ${want}, got ${kind(v)}`);
}

export const str: Check = (v, at) => (typeof v === 'string' ? v : bad(at, 'string', v));
export const int: Check = (v, at) => (typeof v === 'number' && Number.isInteger(v) ? v : bad(at, 'int', v));
export const num: Check = (v, at) => (typeof v === 'number' && Number.isFinite(v) ? v : bad(at, 'number', v));
export const bool: Check = (v, at) => (typeof v === 'boolean' ? v : bad(at, 'bool', v));
export const any: Check = (v) => v;

/** null or absent passes (as the original client's None does). */
export const opt = (c: Check): Check => (v, at) => (v === null || v === undefined ? v : c(v, at));

export const list = (c: Check): Check => (v, at) =>
  Array.isArray(v) ? v.map((x, i) => c(x, `${at}[${i}]`)) : bad(at, 'list', v);

export const map = (c: Check): Check => (v, at) => {
  if (kind(v) !== 'object') bad(at, 'object', v);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as object)) out[k] = c(x, `${at}.${k}`);
  return out;
};

type Shape = Record<string, Check>;
type Out<S extends Shape> = { [K in keyof S]: any };

/** Checks an arguments object: every declared key through its check; unknown keys are ignored. */
export function args<S extends Shape>(shape: S): (v: unknown) => Out<S> {
  return (v) => {
    if (v === null || v === undefined) v = {};
    if (kind(v) !== 'object') throw new CommandError('invalid', `arguments: expected an object, got ${kind(v)}`);
    const o = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, c] of Object.entries(shape)) out[k] = c(o[k], k);
    return out as Out<S>;
  };
}

