// The one timeout helper: a promise bounded in time. The work itself is not cancelled (callers
// that can abort pass their own signal); only the wait ends.

/** Settles like `p`, or rejects with `late()` after `ms`; the timer never outlives the race. */
export function withDeadline<T>(p: Promise<T>, ms: number, late: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(late()), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
