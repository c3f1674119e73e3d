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

  constructor(private readonly max: number) {}

  acquire(t: T): Promise<() => void> {
    return new Promise((resolve) => {
      t.grant = resolve;
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
