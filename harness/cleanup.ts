// Cleanup that must happen even on SIGINT/SIGTERM/SIGHUP or an uncaught error. Cleanups are
// synchronous because the 'exit' event allows nothing else; they run newest first.

const cleanups = new Set<() => void>();
let hooked = false;
let label = 'harness';

/** The prefix of this process's harness messages ("bench", "stress"). */
export function setLabel(name: string): void {
  label = name;
}

export function log(msg: string): void {
  process.stderr.write(`${label}: ${msg}\n`);
}

/** Sync sleep, for cleanup paths that cannot await. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The last non-empty lines of a process's output, for error messages. */
export const tail = (s: string, n = 3): string => s.trim().split('\n').filter(Boolean).slice(-n).join(' / ');

export function runCleanups(): void {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      fn();
    } catch (e) {
      process.stderr.write(`${label}: cleanup failed: ${(e as Error).message}\n`);
    }
  }
}

function hookSignals(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', runCleanups);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Only where nobody else handles the signal (a test runner may): we clean up, then die of
    // it as we would have without the handler.
    if (process.listenerCount(sig) > 0) continue;
    const onSignal = (): void => {
      if (cleanups.size) process.stderr.write(`\n${label}: ${sig}, cleaning up\n`);
      runCleanups();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** Registers a synchronous cleanup; returns its unregister function. */
export function onCleanup(fn: () => void): () => void {
  hookSignals();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}
