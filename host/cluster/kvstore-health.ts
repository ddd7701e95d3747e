/**
 * Is the kvstore reachable, and what to do when it comes back. While events
 * arrive (watch events, list replies) the store is alive and nothing is
 * sent; after `idleMs` without any, one cheap request (the store's revision)
 * checks. A failed check starts the reconnect loop: checks spaced by
 * exponential backoff with jitter (scaled by ln(1 + nodes), so thousands of
 * agents that lost etcd together come back spread out), each wait logged.
 * When a check succeeds again, `onRecovered` runs (the agent re-lists every
 * prefix and converges to the store's content).
 *
 * The agent's tables are never touched from here: while the store is away
 * the datapath keeps forwarding with what it has.
 */
import { Backoff, type BackoffOptions } from "../kvstore/backoff.js";
import { systemClock, type Clock } from "../kvstore/clock.js";
import type { KvStore } from "../kvstore/store.js";

export type KvstoreHealthState = "unknown" | "reachable" | "unreachable";

export interface KvstoreHealthOptions {
  /** Check when nothing arrived for this long (default 5 s). */
  idleMs?: number;
  backoff?: BackoffOptions;
  clock?: Clock;
  /** Milliseconds since the last event the agent received (Infinity: never). */
  lastEventAge: () => number;
  onRecovered: (downMs: number, attempts: number) => void;
  log: (line: string) => void;
}

export interface ReconnectAttempt {
  attempt: number;
  waitMs: number;
  error: string;
}

export class KvstoreHealth {
  private state: KvstoreHealthState = "unknown";
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  private readonly idleMs: number;
  private stopped = false;
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  private downSince = 0;
  private lastError = "";
  /** The waits of the current (or last) outage, for status and tests. */
  readonly attempts: ReconnectAttempt[] = [];

  constructor(private readonly store: KvStore, private readonly options: KvstoreHealthOptions) {
    this.clock = options.clock ?? systemClock;
    this.idleMs = options.idleMs ?? 5000;
    this.backoff = new Backoff(options.backoff ?? { minMs: 1000, maxMs: 30_000 }, this.clock);
  }

  start(): void {
    this.loop = this.run().catch(() => {});
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop;
  }

  status(): { state: KvstoreHealthState; failures: number; lastError?: string; downForMs?: number } {
    return {
      state: this.state,
      failures: this.backoff.attempts,
      ...(this.state === "unreachable" ? { lastError: this.lastError, downForMs: Math.round(this.clock.now() - this.downSince) } : {}),
    };
  }

  /** Someone saw the store fail (a write, a lease refresh): check now instead of at the next idle period. */
  reportFailure(error: unknown): void {
    if (this.state !== "unreachable") this.markDown(error);
  }

  private markDown(error: unknown): void {
    this.state = "unreachable";
    this.downSince = this.clock.now();
    this.attempts.length = 0;
    this.lastError = (error as Error)?.message ?? String(error);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.state !== "unreachable") {
        const age = this.options.lastEventAge();
        if (age >= this.idleMs) await this.check();
        else this.state = "reachable";
        if ((this.state as KvstoreHealthState) !== "unreachable") await this.clock.sleep(Math.max(50, this.idleMs - Math.min(age, this.idleMs)), this.abort.signal);
        continue;
      }
      const waitMs = this.backoff.next();
      const attempt = this.backoff.attempts;
      this.attempts.push({ attempt, waitMs, error: this.lastError });
      this.options.log(`kvstore ${this.store.location} unreachable (${this.lastError}); reconnect attempt ${attempt} in ${(waitMs / 1000).toFixed(2)} s`);
      await this.clock.sleep(waitMs, this.abort.signal);
      await this.check();
    }
  }

  private async check(): Promise<void> {
    try {
      await this.store.revision();
    } catch (err) {
      if (this.stopped) return;
      if (this.state !== "unreachable") this.markDown(err);
      else this.lastError = (err as Error)?.message ?? String(err);
      return;
    }
    if (this.state === "unreachable") {
      const downMs = this.clock.now() - this.downSince;
      const attempts = this.backoff.attempts;
      this.options.log(`kvstore ${this.store.location} reachable again after ${(downMs / 1000).toFixed(1)} s and ${attempts} attempts: resyncing`);
      this.backoff.reset();
      this.state = "reachable";
      this.options.onRecovered(downMs, attempts);
    } else {
      this.state = "reachable";
    }
  }
}
