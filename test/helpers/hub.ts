// A real hub process (bin/g8os hub) on a free loopback port, for tests: harness/hub.ts, plus a
// temporary data dir and a stop after the test file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { type Hub, startHub as start } from '../../harness/hub';

export type HubProcess = Hub;

/** Data dirs this helper made: removed after the test file (restart tests reuse them meanwhile). */
const made = new Set<string>();
const running = new Set<Hub>();
afterAll(async () => {
  for (const h of running) await h.stop();
  running.clear();
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  made.clear();
});

/** With `netns`, the hub runs inside that network namespace (reach it from there too). */
export async function startHub(opts: { data?: string; args?: string[]; port?: number; netns?: string } = {}): Promise<HubProcess> {
  let data = opts.data;
  if (!data) {
    data = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-hub-'));
    made.add(data);
  }
  const hub = await start({ ...opts, data, timeoutMs: 15_000 });
  running.add(hub);
  return hub;
}
