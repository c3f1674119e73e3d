// blake2b-256 content keys of deduplicated blocks (disks-vms.md §3.2).
import { createBLAKE2b, type IHasher } from 'hash-wasm';

let h256: IHasher | undefined;
let pending: Promise<void> | undefined;

export function hashReady(): Promise<void> {
  pending ??= createBLAKE2b(256).then((h) => {
    h256 = h;
  });
  return pending;
}

export function blake2b256(data: Uint8Array): Buffer {
  if (!h256) throw new Error('internal: vdisk hashReady() was not awaited');
  h256.init();
  h256.update(data);
  return Buffer.from(h256.digest('binary'));
}

export const ZERO_HASH = Buffer.alloc(32);
