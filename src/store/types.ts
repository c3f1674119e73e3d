// A content-addressed block store: keys are raw 16-byte (gen-2) storage ids,
// values the stored ciphertext. Chosen by URL scheme (see openStore in ./index.ts).
import { type ErrorKind, G8osError } from '../errors';

export interface BlockStore {
  /** The store URL with any password removed (safe to print). */
  readonly url: string;
  /** Whether put() is possible (the http store is read-only without a token). */
  readonly writable: boolean;
  /** The stored bytes, or null when the store does not have the id. */
  get(id: Buffer): Promise<Buffer | null>;
  /** Store bytes under id; storing an id that exists is a no-op. */
  put(id: Buffer, data: Buffer): Promise<void>;
  /** For each id, whether the store has it (batched on the wire). */
  exists(ids: Buffer[]): Promise<boolean[]>;
  close(): Promise<void>;
}

/** A store failure; 'unavailable' (→ EIO, 503) unless the caller's input was at fault. */
export class StoreError extends G8osError {
  constructor(message: string, kind: ErrorKind = 'unavailable') {
    super(kind, message);
    this.name = 'StoreError'; // subclasses (connect, server errors) too, as before
  }
}
