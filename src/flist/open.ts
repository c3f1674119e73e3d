// One entry point for both generations: gen-3 `.fl` files are bare SQLite with an `inode`
// table; everything else is tried as generation 2.
import { isGen3File, openGen3 } from './gen3';
import { openGen2 } from './reader';
import type { FlistReader } from './types';

export async function openFlist(file: string): Promise<FlistReader> {
  if (isGen3File(file)) return openGen3(file);
  return openGen2(file);
}
