/**
 * The token bucket every kvstore operation passes first (Cilium's `etcd.qps`:
 * 20 operations per second, burst 20, per agent).
 *
 * "Unlimited" is a value of its own. A later Cilium let an empty option turn
 * into 0 and 0 into "no limit", so a typo removed the protection that keeps
 * 5,000 agents from flooding etcd. Here an absent or empty option is the
 * default, 0 or a negative number is refused, and only the word "unlimited"
 * (or the UNLIMITED constant) removes the limit.
 */
import { InvalidInputError } from "../errors.js";
import { systemClock, type Clock } from "./clock.js";

export type RateLimit =
  | { readonly kind: "limited"; readonly qps: number; readonly burst: number }
  | { readonly kind: "unlimited" };

export const UNLIMITED: RateLimit = Object.freeze({ kind: "unlimited" });
export const DEFAULT_QPS = 20;
export const DEFAULT_BURST = 20;
export const DEFAULT_RATE_LIMIT: RateLimit = Object.freeze({ kind: "limited", qps: DEFAULT_QPS, burst: DEFAULT_BURST });

/** A limit of `qps` operations per second with bursts of `burst`; both must be positive. */
export function limited(qps: number, burst: number = DEFAULT_BURST, path = "rate limit"): RateLimit {
  if (!Number.isFinite(qps) || qps <= 0) {
    throw new InvalidInputError(`${path}: qps must be a positive number (got ${qps}); write "unlimited" to remove the limit`);
  }
  if (!Number.isInteger(burst) || burst < 1) {
    throw new InvalidInputError(`${path}: burst must be a whole number >= 1 (got ${burst})`);
  }
  return Object.freeze({ kind: "limited", qps, burst });
}

/**
 * The limit from user options (CLI flags, config file). `qps`: absent or
 * empty -> 20; "unlimited" -> no limit; otherwise a positive number. `burst`:
 * absent or empty -> 20; otherwise a whole number >= 1.
 */
export function parseRateLimit(options: { qps?: string | number; burst?: string | number }, path = "kvstore"): RateLimit {
  const qps = options.qps;
  if (typeof qps === "string" && qps.trim().toLowerCase() === "unlimited") {
    if (options.burst !== undefined && String(options.burst).trim() !== "") {
      throw new InvalidInputError(`${path}.burst: a burst makes no sense with qps "unlimited"`);
    }
    return UNLIMITED;
  }
  const qpsNumber = toNumber(qps, DEFAULT_QPS, `${path}.qps`);
  const burstNumber = toNumber(options.burst, DEFAULT_BURST, `${path}.burst`);
  return limited(qpsNumber, burstNumber, path);
}

function toNumber(value: string | number | undefined, fallback: number, path: string): number {
  if (value === undefined) return fallback;
  if (typeof value === "number") return value;
  const text = value.trim();
  if (text === "") return fallback;
  const n = Number(text);
  if (!Number.isFinite(n)) throw new InvalidInputError(`${path}: not a number: ${JSON.stringify(value)}`);
  return n;
}

export function describeRateLimit(limit: RateLimit): string {
  return limit.kind === "unlimited" ? "unlimited" : `${limit.qps} qps, burst ${limit.burst}`;
}

/**
 * Token bucket with reservations, as Go's x/time/rate: a caller takes a token
 * now and is told how long to wait for it, so concurrent callers queue in
 * order and the long-run rate is exact. Tokens may go negative (owed).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(readonly limit: RateLimit, private readonly clock: Clock = systemClock) {
    this.tokens = limit.kind === "limited" ? limit.burst : 0;
    this.last = clock.now();
  }

  /** Takes one token; returns the milliseconds to wait before using it (0: go now). */
  reserve(): number {
    if (this.limit.kind === "unlimited") return 0;
    const { qps, burst } = this.limit;
    const now = this.clock.now();
    this.tokens = Math.min(burst, this.tokens + ((now - this.last) / 1000) * qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / qps) * 1000;
  }

  /** Gives back a token reserved but not used (its wait was aborted). */
  cancel(): void {
    if (this.limit.kind === "unlimited") return;
    this.tokens = Math.min(this.limit.burst, this.tokens + 1);
  }

  /** Waits for a token. */
  async acquire(signal?: AbortSignal): Promise<void> {
    const wait = this.reserve();
    if (wait <= 0) return;
    try {
      await this.clock.sleep(wait, signal);
    } catch (err) {
      this.cancel();
      throw err;
    }
  }
}
