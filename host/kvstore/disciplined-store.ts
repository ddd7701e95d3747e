/**
 * membrane's kvstore client: any backend behind Cilium's client discipline.
 * - every operation first takes a token from the rate limiter (20 qps, burst
 *   20 by default; UNLIMITED only when asked for by name);
 * - an operation failing with a retryable error (the store unreachable) is
 *   retried with exponential backoff and jitter, scaled by ln(1 + nodes),
 *   each retry taking a token again;
 * - every reply and every watch event feeds the liveness tracker, so
 *   "is the kvstore alive" needs no extra pings.
 *
 * Retrying conditional writes is safe by construction: create, CAS and txn
 * carry their condition, so a retry of a write that did commit before the
 * connection dropped fails its condition instead of writing twice (the caller
 * sees `succeeded: false` with the current value, as for any lost race).
 */
import { wrap } from "../errors.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { systemClock, type Clock } from "./clock.js";
import { Liveness } from "./liveness.js";
import { DEFAULT_RATE_LIMIT, TokenBucket, type RateLimit } from "./rate-limit.js";
import { isRetryableKvStoreError, type KvStore, type LockOptions, type Watch, type WatchEvent, type WatchOptions } from "./store.js";

/** The operations that go through the discipline (watch and close have their own), each with how a retry or an error names it. */
type Operation = Exclude<keyof KvStore, "backend" | "location" | "watch" | "close">;
const OPERATIONS: { readonly [K in Operation]: (...args: Parameters<KvStore[K]>) => string } = {
  get: (key) => `get ${key}`,
  list: (prefix) => `list ${prefix}`,
  revision: () => "revision",
  put: (key) => `put ${key}`,
  create: (key) => `create ${key}`,
  compareAndSwap: (key) => `compare-and-swap ${key}`,
  delete: (key) => `delete ${key}`,
  deletePrefix: (prefix) => `delete prefix ${prefix}`,
  txn: () => "txn",
  compact: (revision) => `compact ${revision}`,
  compactedRevision: () => "compacted revision",
  grantLease: (ttlSeconds) => `grant lease ${ttlSeconds}s`,
  lock: (name) => `lock ${name}`,
};

export interface DisciplineOptions {
  /** Default 20 qps, burst 20. Pass UNLIMITED (rate-limit.ts) to turn the limit off. */
  rateLimit?: RateLimit;
  /** Backoff between retries (default min 1 s, factor 2, max 60 s, jitter; `nodes` scales it). */
  backoff?: BackoffOptions;
  /** Attempts per operation before the error is returned (default 5). */
  maxAttempts?: number;
  /** Without any event for this long the connection counts as stale (default 60 s). */
  staleAfterMs?: number;
  clock?: Clock;
  /** Told before each retry wait. */
  onRetry?: (info: { operation: string; attempt: number; waitMs: number; error: unknown }) => void;
}

// The operations are defined on the prototype from OPERATIONS (the static block below).
export interface DisciplinedKvStore extends Pick<KvStore, Operation> {}

export class DisciplinedKvStore implements KvStore {
  readonly backend: KvStore["backend"];
  readonly location: string;
  readonly limiter: TokenBucket;
  readonly liveness: Liveness;
  private readonly clock: Clock;
  private readonly maxAttempts: number;

  constructor(readonly inner: KvStore, private readonly options: DisciplineOptions = {}) {
    this.backend = inner.backend;
    this.location = inner.location;
    this.clock = options.clock ?? systemClock;
    this.limiter = new TokenBucket(options.rateLimit ?? DEFAULT_RATE_LIMIT, this.clock);
    this.liveness = new Liveness(options.staleAfterMs ?? 60_000, this.clock);
    this.maxAttempts = options.maxAttempts ?? 5;
    new Backoff(options.backoff, this.clock); // validate the options now
  }

  /** Every operation: the same call on the backend, through call() (a lock waits abortably, on its options' signal). */
  static {
    for (const op of Object.keys(OPERATIONS) as Operation[]) {
      const name = OPERATIONS[op] as (...args: unknown[]) => string;
      Object.defineProperty(DisciplinedKvStore.prototype, op, {
        configurable: true,
        writable: true,
        value: function (this: DisciplinedKvStore, ...args: unknown[]): Promise<unknown> {
          const backend = this.inner[op] as (...args: unknown[]) => Promise<unknown>;
          const signal = op === "lock" ? (args[2] as LockOptions | undefined)?.signal : undefined;
          return this.call(name(...args), () => backend.apply(this.inner, args), signal);
        },
      });
    }
  }

  /** Rate limit, call, retry retryable failures with backoff. */
  private async call<T>(operation: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let backoff: Backoff | undefined;
    for (let attempt = 1; ; attempt++) {
      await this.limiter.acquire(signal);
      try {
        const result = await fn();
        this.liveness.observe();
        return result;
      } catch (err) {
        if (!isRetryableKvStoreError(err) || attempt >= this.maxAttempts) {
          if (attempt > 1) throw wrap(`kvstore ${operation} (after ${attempt} attempts)`, err);
          throw err;
        }
        backoff ??= new Backoff(this.options.backoff, this.clock);
        const waitMs = backoff.next();
        this.options.onRetry?.({ operation, attempt, waitMs, error: err });
        await this.clock.sleep(waitMs, signal);
      }
    }
  }

  /**
   * Watches through the backend (which resumes across reconnects by itself);
   * starting the watch takes a token, and every event feeds liveness.
   */
  watch(prefix: string, options?: WatchOptions): Watch {
    const reserved = this.limiter.reserve();
    const start = reserved > 0 ? this.clock.sleep(reserved) : Promise.resolve();
    let inner: Watch | undefined;
    let closed = false;
    const opened = start.then(() => {
      if (closed) return undefined;
      inner = this.inner.watch(prefix, options);
      return inner;
    });
    const liveness = this.liveness;
    return {
      prefix,
      get lastRevision() {
        return inner?.lastRevision ?? (options?.fromRevision ?? 1) - 1;
      },
      ready: opened.then((w) => w?.ready),
      async close() {
        closed = true;
        const w = await opened;
        await w?.close();
      },
      async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
        const w = await opened;
        if (!w) return;
        for await (const event of w) {
          liveness.observe();
          yield event;
        }
      },
    };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
