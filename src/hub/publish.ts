// The one way a built tree becomes a published flist: written to a temp file on the registry's
// filesystem, then published in one rename + transaction; the temp file never outlives the call.
import fs from 'node:fs';
import type { Tree } from '../flist/tree';
import { writeFlist } from '../flist/writer';
import type { Registry, RegistryEntry } from './registry';

export interface PublishOptions {
  /** called between writing and publishing; throwing stops the publish (a client that left) */
  beforePublish?: () => void;
}

export async function publishTree(
  registry: Registry, user: string, name: string, tree: Tree, metadata: Record<string, string>, o: PublishOptions = {},
): Promise<RegistryEntry> {
  const tmp = registry.tempPath('publish');
  try {
    await writeFlist(tree, tmp, metadata, { tmpDir: registry.tmpDir });
    o.beforePublish?.();
    return await registry.publish(user, name, tmp);
  } finally {
    await fs.promises.rm(tmp, { force: true });
  }
}
