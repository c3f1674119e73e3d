// The block cache's options and counters (see cache.ts).
import type { BlockStore } from '../store/types';

export interface BlockCacheOptions {
  /** The --cache directory, shared by all mounts on the machine. */
  dir: string;
  store: BlockStore;
  /** --cache-size; default 10 GiB. */
  maxBytes?: number;
  /** Parallel store fetches; default 8. */
  concurrency?: number;
  /** Tries per block within the deadline; default 3. */
  attempts?: number;
  /** Pause before the 2nd, 3rd, … try (the last value repeats); default 100, 400, 1600 ms. */
  backoffMs?: readonly number[];
  /** Deadline for fetching one block, all tries included; default 10 s (FUSE waits longer). */
  timeoutMs?: number;
  /** Recently used plaintext kept in memory; default 64 MiB. */
  memoryBytes?: number;
  /** How long a failed block fails without a new fetch; default 1000 ms (0: never). */
  negativeMs?: number;
  /** 'once' (default): hash a cached file on first use and when it changed; 'always': every disk read. */
  verify?: 'once' | 'always';
  /** Worker threads for decoding and verifying; 0 = on the calling thread. Default min(4, cores). */
  workers?: number;
  /** One line per failed block, corrupt file or write problem; default stderr. */
  log?: (line: string) => void;
}

export interface CacheStats {
  /** block() calls answered from memory / from a cached file */
  memoryHits: number;
  diskHits: number;
  /** block loads that had to go to the store, and calls that joined a load already running */
  misses: number;
  coalesced: number;
  /** store GETs answered with data, and their (stored, encoded) bytes */
  fetched: number;
  fetchedBytes: number;
  /** blocks written to the cache directory, plaintext bytes */
  stored: number;
  storedBytes: number;
  evictions: number;
  evictedBytes: number;
  /** blocks that could not be had (after retries) */
  errors: number;
  /** store copies that failed verification (each refetched up to `attempts` times) */
  badFetches: number;
  /** cached files that failed verification (deleted, refetched) */
  corrupt: number;
  /** cached files hashed against their key */
  verified: number;
  /** cached file reads not hashed: this process or another on the node verified the file as it is */
  trusted: number;
  /** blocks that could not be written to the cache directory (served from memory) */
  writeErrors: number;
  prefetched: number;
  prefetchErrors: number;
  /** times a fetch waited for another process's lock */
  lockWaits: number;
  /** cache directory as this process knows it */
  blocks: number;
  bytes: number;
  pinned: number;
  inflight: number;
  queued: number;
  memoryBytes: number;
}
