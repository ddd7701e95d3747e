/**
 * The monitor's rate cap as a token bucket the datapath spends: after each
 * drain the source asks how many events the datapath may write until the
 * next one. Refilled by elapsed time at `ratePerSecond`, holding at most one
 * tenth of a second's worth (and at least one event), so a burst after a
 * quiet spell stays short.
 */
export class RateCap {
  private tokens: number;
  private last: number;
  private readonly burst: number;

  constructor(private readonly ratePerSecond: number, nowMs: number) {
    this.burst = Math.max(1, Math.ceil(ratePerSecond / 10));
    this.tokens = this.burst;
    this.last = nowMs;
  }

  /** `spent` events were written since the last call; returns the budget until the next call. */
  budget(spent: number, nowMs: number): number {
    const elapsed = Math.max(0, nowMs - this.last);
    this.last = nowMs;
    this.tokens = Math.min(this.burst, Math.max(0, this.tokens - spent) + (elapsed * this.ratePerSecond) / 1000);
    return Math.floor(this.tokens);
  }
}
