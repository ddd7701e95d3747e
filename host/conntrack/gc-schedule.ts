/**
 * When conntrack GC runs next. Cilium 1.5 used fixed intervals (12 h for LRU
 * maps, which evict by themselves, 15 min for hash maps, which only GC frees);
 * later Cilium adapts the interval to how much each run deleted. Both are here.
 */
export interface GcScheduleOptions {
  mode: "fixed" | "adaptive";
  /** The conntrack tables evict when full (LRU) rather than drop. */
  lru: boolean;
}

export const GC_FIXED_LRU_SECONDS = 12 * 3600;
export const GC_FIXED_HASH_SECONDS = 15 * 60;
export const GC_ADAPTIVE_START_SECONDS = 5 * 60;
export const GC_MIN_SECONDS = 10;
export const GC_MAX_SECONDS = 12 * 3600;

export class GcSchedule {
  private current: number;

  constructor(private readonly options: GcScheduleOptions) {
    this.current = this.initial();
  }

  private initial(): number {
    if (this.options.mode === "adaptive") return GC_ADAPTIVE_START_SECONDS;
    return this.options.lru ? GC_FIXED_LRU_SECONDS : GC_FIXED_HASH_SECONDS;
  }

  /** Seconds until the next run. */
  get interval(): number {
    return this.current;
  }

  /**
   * Feeds the outcome of a run (the largest deleted/scanned ratio over the
   * tables) and returns the next interval: more than 25% deleted shortens it in
   * proportion (at most 10x), less than 5% lengthens it 1.5x, within 10 s..12 h.
   * A run that had nothing to scan (ratio NaN) leaves the interval as it is.
   */
  next(maxDeleteRatio: number): number {
    if (this.options.mode === "fixed" || Number.isNaN(maxDeleteRatio)) return this.current;
    if (maxDeleteRatio > 0.25) {
      const r = Math.min(maxDeleteRatio, 0.9);
      this.current = Math.max(GC_MIN_SECONDS, Math.round(this.current * (1 - r)));
    } else if (maxDeleteRatio < 0.05) {
      this.current = Math.min(GC_MAX_SECONDS, Math.round(this.current * 1.5));
    }
    return this.current;
  }
}
