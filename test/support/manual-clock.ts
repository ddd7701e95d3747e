/**
 * A clock that moves only when the test says so (host/kvstore/clock.ts's
 * Clock), so rate limits, backoff and timers are tested without waiting and
 * without timed assertions (their random source: seeded-random.ts).
 */
import type { Clock } from "../../host/kvstore/clock.js";

interface Timer {
  at: number;
  resolve: () => void;
}

export class ManualClock implements Clock {
  private time = 0;
  private timers: Timer[] = [];
  /** Every sleep requested, in order (ms). */
  readonly sleeps: number[] = [];

  now(): number {
    return this.time;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer: Timer = { at: this.time + Math.max(0, ms), resolve };
      this.timers.push(timer);
      signal?.addEventListener(
        "abort",
        () => {
          this.timers = this.timers.filter((t) => t !== timer);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  pending(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, firing due timers in order and letting their continuations run. */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    await settle();
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > target) break;
      this.timers.shift();
      this.time = next.at;
      next.resolve();
      await settle();
    }
    this.time = target;
    await settle();
  }
}

/** Lets pending promise continuations (and their follow-ups) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

