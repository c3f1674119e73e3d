// The hub's block API (hub-api.md §10.3), served under /api/blocks/... and /api/block/...
// Mount at the app root: app.use(blockRouter(store, {...})).
import { Router, type Request, type Response } from 'express';
import { blake2b128, hashReady } from '../flist/hash';
import { invalid, notFound, tooLarge, unauthorized, unavailable } from '../errors';
import { type BlockStore, StoreError } from '../store/types';
import { errorAnswer, sendJson } from './http';

export interface BlockRouterOptions {
  /** Decides whether a PUT may write; without it every write is refused (401). */
  authorize?: (req: Request) => boolean | Promise<boolean>;
  /** Refuse all writes (400 "readonly mode", as the reference hub does). */
  readonly?: boolean;
}

export const MAX_BLOCK_BYTES = 2 * 1024 * 1024;
export const MAX_EXISTS_IDS = 10_000;
// 10000 quoted 32-char ids plus separators and whitespace.
const MAX_EXISTS_BYTES = 1024 * 1024;
const HEX_ID = /^[0-9a-f]{32}$/;
const PREFIXES = ['/api/blocks', '/api/block'];


/** Wraps an async handler so every failure becomes a JSON error envelope. */
function handler(fn: (req: Request, res: Response) => Promise<void>) {
  return (req: Request, res: Response): Promise<void> =>
    fn(req, res).catch((e: unknown) => {
      const err = e instanceof StoreError ? unavailable(e.message, { cause: e }) : e;
      const { status, message, bug } = errorAnswer(err);
      if (bug) console.error('block api:', err);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (status === 413) res.setHeader('Connection', 'close');
      sendJson(res, status, { status: 'error', message });
    });
}

function pathId(req: Request): Buffer {
  const hex = String(req.params.id);
  if (!HEX_ID.test(hex)) throw invalid('invalid block id: expected 32 lowercase hex characters');
  return Buffer.from(hex, 'hex');
}

/** Reads the request body, refusing more than `max` bytes with 413. */
export async function readBody(req: Request, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > max) throw tooLarge(`body larger than ${max} bytes`);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw tooLarge(`body larger than ${max} bytes`);
    parts.push(chunk);
  }
  return Buffer.concat(parts, size);
}

/** True when an If-None-Match / If-Range list names this ETag (weak comparison). */
export function matchesEtag(header: string, etag: string): boolean {
  return header.split(',').some((t) => {
    const v = t.trim();
    return v === '*' || v === etag || v === `W/${etag}`;
  });
}

/** A single "bytes=a-b" range within size; null = serve the whole body; 'unsatisfiable' = 416. */
function parseRange(header: string, size: number): [number, number] | null | 'unsatisfiable' {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // malformed or multi-range: ignore (RFC 9110)
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return [start, end];
}

function cacheHeaders(res: Response, etag: string): void {
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
  res.setHeader('Accept-Ranges', 'bytes');
}

/** Block reads served since start: lets tests and operators see what a mount fetched. */
interface BlockCounters {
  get: number;
  head: number;
  /** body bytes of GET answers */
  bytes: number;
  /** GET/HEAD answered 404 */
  missing: number;
}

export function blockRouter(store: BlockStore, opts: BlockRouterOptions = {}): Router {
  const router = Router();
  const paths = (suffix: string): string[] => PREFIXES.map((p) => p + suffix);
  const counts: BlockCounters = { get: 0, head: 0, bytes: 0, missing: 0 };
  const started = Date.now();

  // Counted when the answer is sent, so every outcome (200, 206, 304, 404, errors) is seen.
  const count = (kind: 'get' | 'head') => (_req: Request, res: Response, next: () => void): void => {
    counts[kind]++;
    res.once('finish', () => {
      if (res.statusCode === 404) counts.missing++;
      else if (kind === 'get' && (res.statusCode === 200 || res.statusCode === 206)) counts.bytes += Number(res.getHeader('Content-Length') ?? 0);
    });
    next();
  };

  router.get('/api/stats', (_req, res) => {
    sendJson(res, 200, { blocks: { ...counts }, uptime: Math.round((Date.now() - started) / 1000) });
  });

  router.post(
    paths('/exists'),
    handler(async (req, res) => {
      const raw = await readBody(req, MAX_EXISTS_BYTES);
      let ids: unknown;
      try {
        ids = JSON.parse(raw.toString('utf8'));
      } catch {
        throw invalid('body must be a JSON array of hex block ids');
      }
      if (!Array.isArray(ids)) throw invalid('body must be a JSON array of hex block ids');
      if (ids.length > MAX_EXISTS_IDS) throw invalid(`at most ${MAX_EXISTS_IDS} ids per request`);
      const bad = ids.find((x) => typeof x !== 'string' || !HEX_ID.test(x));
      if (bad !== undefined) throw invalid(`invalid block id ${JSON.stringify(bad)}: expected 32 lowercase hex characters`);
      const hexes = ids as string[];
      const have = await store.exists(hexes.map((h) => Buffer.from(h, 'hex')));
      sendJson(res, 200, hexes.filter((_, i) => !have[i]));
    }),
  );

  // Registered before GET so HEAD does not fetch the block.
  router.head(
    paths('/:id'),
    count('head'),
    handler(async (req, res) => {
      const id = pathId(req);
      const [have] = await store.exists([id]);
      if (!have) {
        res.status(404).end();
        return;
      }
      cacheHeaders(res, `"${id.toString('hex')}"`);
      res.setHeader('Content-Type', 'application/octet-stream');
      res.status(200).end();
    }),
  );

  router.get(
    paths('/:id'),
    count('get'),
    handler(async (req, res) => {
      const id = pathId(req);
      const etag = `"${id.toString('hex')}"`;
      const inm = req.headers['if-none-match'];
      if (inm && matchesEtag(inm, etag)) {
        // Blocks are immutable: a matching tag only needs the block to still exist.
        const [have] = await store.exists([id]);
        if (!have) throw notFound('block not found');
        cacheHeaders(res, etag);
        res.status(304).end();
        return;
      }
      const data = await store.get(id);
      if (!data) throw notFound('block not found');
      cacheHeaders(res, etag);
      res.setHeader('Content-Type', 'application/octet-stream');
      const rangeHeader = req.headers.range;
      const ifRange = req.get('if-range');
      const range = rangeHeader && (!ifRange || ifRange.trim() === etag) ? parseRange(rangeHeader, data.length) : null;
      if (range === 'unsatisfiable') {
        // a range answer, not a failure: told here (the error kinds have no 416)
        res.setHeader('Content-Range', `bytes */${data.length}`);
        sendJson(res, 416, { status: 'error', message: 'range not satisfiable' });
        return;
      }
      if (range) {
        const [start, end] = range;
        res.setHeader('Content-Range', `bytes ${start}-${end}/${data.length}`);
        res.setHeader('Content-Length', end - start + 1);
        res.status(206).end(data.subarray(start, end + 1));
        return;
      }
      res.setHeader('Content-Length', data.length);
      res.status(200).end(data);
    }),
  );

  router.put(
    paths('/:id'),
    handler(async (req, res) => {
      const id = pathId(req);
      if (opts.readonly || !store.writable) throw invalid('readonly mode');
      const allowed = opts.authorize ? await opts.authorize(req) : false;
      if (!allowed) {
        res.setHeader('WWW-Authenticate', 'Bearer');
        throw unauthorized(req.headers.authorization ? 'not authorized to write blocks' : 'no authorization provided');
      }
      const body = await readBody(req, MAX_BLOCK_BYTES);
      if (body.length === 0) throw invalid('empty body');
      await hashReady();
      if (!blake2b128(body).equals(id)) throw invalid('block id does not match blake2b-128 of body');
      const [have] = await store.exists([id]);
      if (!have) await store.put(id, body);
      sendJson(res, have ? 200 : 201, { status: 'success' });
    }),
  );

  return router;
}
