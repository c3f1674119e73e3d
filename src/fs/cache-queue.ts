// Store fetch slots of the block cache, by priority.
export const READ = 0;
export const AHEAD = 1;
export const WARM = 2;
/** demand read, read-ahead, bulk warming */
export type Priority = typeof READ | typeof AHEAD | typeof WARM;

export interface Queued {
  prio: Priority;
  /** set while waiting for a slot */
  grant?: (release: () => void) => void;
  deny?: (e: Error) => void;
}

export interface Plain {
  buf: Buffer;
  key: Buffer;
}

/** Store fetch slots: demand reads first; background work never takes the last slot. */
export class FetchQueue<T extends Queued> {
  private active = 0;
  private background = 0;
  private readonly waiting: T[][] = [[], [], []];
  private closedWith?: (t: T) => Error;

  constructor(private readonly max: number) {}

  acquire(t: T): Promise<() => void> {
    return new Promise((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith(t));
      t.grant = resolve;
      t.deny = reject;
      this.waiting[t.prio].push(t);
      this.pump();
    });
  }

  /** A waiting background task became a demand read. */
  raise(t: T, prio: Priority): void {
    const q = this.waiting[t.prio];
    const i = q.indexOf(t);
    t.prio = prio;
    if (i < 0) return;
    q.splice(i, 1);
    this.waiting[prio].push(t);
    this.pump();
  }

  /** No more slots: every waiting task fails at once with why(task) (running ones finish). */
  close(why: (t: T) => Error): void {
    this.closedWith = why;
    for (const q of this.waiting) for (const t of q.splice(0)) t.deny?.(why(t));
  }

  get queued(): number {
    return this.waiting[0].length + this.waiting[1].length + this.waiting[2].length;
  }

  private pump(): void {
    while (this.active < this.max) {
      let t = this.waiting[READ].shift();
      if (!t && this.background < Math.max(1, this.max - 1)) t = this.waiting[AHEAD].shift() ?? this.waiting[WARM].shift();
      if (!t) return;
      const bg = t.prio !== READ;
      this.active++;
      if (bg) this.background++;
      let done = false;
      const grant = t.grant!;
      t.grant = undefined;
      t.deny = undefined;
      grant(() => {
        if (done) return;
        done = true;
        this.active--;
        if (bg) this.background--;
        this.pump();
      });
    }
  }
}
