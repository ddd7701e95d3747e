/**
 * The datapaths' "run GC sooner" signal: each new flow that found no port (or
 * no room) bumps nat_stats.gc_requests. Whoever runs conntrack GC asks `due`
 * between runs; it answers true once per change, at most every `minSeconds`,
 * so a burst of refused flows costs one early GC, not one per packet (Cilium
 * later does the same with its SNAT fill-up signal).
 */
import { GC_MIN_SECONDS } from "../conntrack/gc-schedule.js";

export class NatGcSignal {
  private seen: number;
  private lastEarly = -Infinity;

  constructor(private readonly requests: () => number, private readonly minSeconds = GC_MIN_SECONDS) {
    this.seen = requests();
  }

  /** Whether GC should run now (the datapath clock, seconds), ahead of its schedule. */
  due(now: number): boolean {
    const current = this.requests();
    if (current === this.seen || now - this.lastEarly < this.minSeconds) return false;
    this.seen = current;
    this.lastEarly = now;
    return true;
  }
}
