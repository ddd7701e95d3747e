/**
 * Periodic work with jitter on every interval (lease keep-alives, re-syncs of
 * an agent's own keys, identity GC). Without jitter, agents started together
 * by a rollout stay in lock-step and hit the kvstore at the same instant
 * every period.
 */
import { InvalidInputError } from "../errors.js";
import { systemClock, type Clock, type Random } from "./clock.js";

/** Default spread: each interval is drawn uniformly from [0.9, 1.1) x the period. */
export const DEFAULT_JITTER_FRACTION = 0.1;

/** One interval: uniform in [period * (1 - fraction), period * (1 + fraction)). */
export function jitteredInterval(periodMs: number, fraction = DEFAULT_JITTER_FRACTION, random: Random = Math.random): number {
  if (!(periodMs > 0)) throw new InvalidInputError(`periodic timer: period must be > 0 ms (got ${periodMs})`);
  if (!(fraction >= 0 && fraction < 1)) throw new InvalidInputError(`periodic timer: jitter fraction must be in [0, 1) (got ${fraction})`);
  return periodMs * (1 - fraction + 2 * fraction * random());
}

export interface PeriodicOptions {
  periodMs: number;
  jitterFraction?: number;
  random?: Random;
  clock?: Clock;
  /** Told about a failed run; the timer keeps going (the next run is the retry). */
  onError?: (err: unknown) => void;
}

/**
 * Runs `work` after each jittered interval until stop(). A run is never
 * overlapped by the next: the interval starts when the previous run ends.
 */
export class PeriodicTimer {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  runs = 0;

  constructor(private readonly work: () => Promise<void> | void, private readonly options: PeriodicOptions) {
    jitteredInterval(options.periodMs, options.jitterFraction ?? DEFAULT_JITTER_FRACTION, () => 0); // validate now
  }

  start(): this {
    if (this.loop) return this;
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    const clock = this.options.clock ?? systemClock;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const wait = jitteredInterval(this.options.periodMs, this.options.jitterFraction ?? DEFAULT_JITTER_FRACTION, this.options.random);
      try {
        await clock.sleep(wait, signal);
      } catch {
        return; // stopped
      }
      try {
        this.runs++;
        await this.work();
      } catch (err) {
        this.options.onError?.(err);
      }
    }
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error("periodic timer stopped"));
    await this.loop;
  }
}
