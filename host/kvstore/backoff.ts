/**
 * Exponential backoff with jitter, scaled by the cluster's size (Cilium's
 * pkg/backoff with ClusterSizeDependantInterval).
 *
 *   t = min * factor^failures                  (min 1 s, factor 2)
 *   t = min + U[0,1) * (t - min)               (jitter: uniform in [min, t))
 *   t = min(t, max)
 *   t = min(t * ln(1 + nodes), max)            (when the node count is known)
 *
 * The jitter spreads the retries of thousands of agents that failed at the
 * same moment (an etcd restart); the ln(1 + nodes) factor makes a large
 * cluster back off longer (about 8.5x at 5,000 nodes) so the total retry
 * load on the kvstore grows slowly with the number of agents.
 */
import { InvalidInputError } from "../errors.js";
import { systemClock, type Clock, type Random } from "./clock.js";

export interface BackoffOptions {
  /** Milliseconds; default 1000. */
  minMs?: number;
  /** Milliseconds; default 60_000 (the cap also applies after the cluster-size scaling). */
  maxMs?: number;
  /** Default 2. */
  factor?: number;
  /** Default true. */
  jitter?: boolean;
  /** Number of nodes in the cluster, read at each wait (it changes); absent or 0: no scaling. */
  nodes?: () => number;
  random?: Random;
}

/** `base * ln(1 + nodes)`; the base itself when the node count is unknown (0). */
export function clusterSizeDependantInterval(baseMs: number, nodes: number): number {
  if (!(nodes > 0)) return baseMs;
  return baseMs * Math.log1p(nodes);
}

/** The wait after `failures` failed attempts (Cilium counts from 1: the first wait is in [min, 2*min)). */
export function backoffDuration(failures: number, options: BackoffOptions = {}): number {
  const { minMs, maxMs, factor, jitter, random } = resolved(options);
  let t = minMs * Math.pow(factor, Math.max(0, failures));
  if (jitter) t = minMs + random() * (t - minMs);
  if (t > maxMs) t = maxMs;
  const nodes = options.nodes?.() ?? 0;
  if (nodes > 0) t = Math.min(clusterSizeDependantInterval(t, nodes), maxMs);
  return t;
}

function resolved(options: BackoffOptions) {
  const minMs = options.minMs ?? 1000;
  const maxMs = options.maxMs ?? 60_000;
  const factor = options.factor ?? 2;
  if (!(minMs > 0)) throw new InvalidInputError(`backoff: min must be > 0 ms (got ${minMs})`);
  if (!(maxMs >= minMs)) throw new InvalidInputError(`backoff: max (${maxMs} ms) must be >= min (${minMs} ms)`);
  if (!(factor >= 1)) throw new InvalidInputError(`backoff: factor must be >= 1 (got ${factor})`);
  return { minMs, maxMs, factor, jitter: options.jitter ?? true, random: options.random ?? Math.random };
}

/** Counts failures and sleeps the matching duration; reset() after a success. */
export class Backoff {
  private failures = 0;

  constructor(private readonly options: BackoffOptions = {}, private readonly clock: Clock = systemClock) {
    resolved(options); // validate now, not at the first failure
  }

  get attempts(): number {
    return this.failures;
  }

  /** The next wait, counting one more failure. */
  next(): number {
    return backoffDuration(++this.failures, this.options);
  }

  async wait(signal?: AbortSignal): Promise<number> {
    const ms = this.next();
    await this.clock.sleep(ms, signal);
    return ms;
  }

  reset(): void {
    this.failures = 0;
  }
}
