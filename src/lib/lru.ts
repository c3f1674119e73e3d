// The one least-recently-used map of the project (Map keeps insertion order: a hit moves the
// key to the end, the first key is the oldest). Bounded by entry count, or by a weight such as
// bytes when `weigh` is given.

export class LRU<K, V> {
  private readonly map = new Map<K, V>();
  private total = 0;

  /** `max` entries, or `max` units of weight when `weigh` is given (a heavier value is not kept). */
  constructor(
    private readonly max: number,
    private readonly weigh: (v: V) => number = () => 1,
  ) {}

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  /** Without counting as a use. */
  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    const w = this.weigh(value);
    if (w > this.max) return;
    this.delete(key);
    this.map.set(key, value);
    this.total += w;
    for (const [old, o] of this.map) {
      if (this.total <= this.max) break;
      this.map.delete(old);
      this.total -= this.weigh(o);
    }
  }

  delete(key: K): void {
    const v = this.map.get(key);
    if (v === undefined) return;
    this.map.delete(key);
    this.total -= this.weigh(v);
  }

  get size(): number {
    return this.map.size;
  }

  /** Sum of the weights (the entry count without `weigh`). */
  get weight(): number {
    return this.total;
  }
}
