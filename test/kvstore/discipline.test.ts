import { describe, expect, it } from "vitest";
import { Backoff, backoffDuration, clusterSizeDependantInterval } from "../../host/kvstore/backoff.js";
import { Liveness } from "../../host/kvstore/liveness.js";
import { jitteredInterval, PeriodicTimer } from "../../host/kvstore/periodic.js";
import { DEFAULT_RATE_LIMIT, limited, parseRateLimit, TokenBucket, UNLIMITED } from "../../host/kvstore/rate-limit.js";
import { retryInPlace, runSteps } from "../../host/kvstore/retry-in-place.js";
import { InvalidInputError } from "../../host/errors.js";
import { DisciplinedKvStore } from "../../host/kvstore/disciplined-store.js";
import { KvStoreError, type KvStore } from "../../host/kvstore/store.js";
import { ManualClock, settle } from "../support/manual-clock.js";
import { seededRandom } from "../support/seeded-random.js";

describe("rate limit options", () => {
  it("absent or empty options give the default 20 qps, burst 20", () => {
    expect(parseRateLimit({})).toEqual(DEFAULT_RATE_LIMIT);
    expect(parseRateLimit({ qps: "", burst: "  " })).toEqual({ kind: "limited", qps: 20, burst: 20 });
    expect(parseRateLimit({ qps: undefined })).toEqual(DEFAULT_RATE_LIMIT);
  });

  it("0, negative or garbage is refused, never read as unlimited", () => {
    for (const qps of [0, "0", -5, "-1", "abc", Number.NaN]) {
      expect(() => parseRateLimit({ qps }), String(qps)).toThrow(InvalidInputError);
    }
    expect(() => parseRateLimit({ qps: 10, burst: 0 })).toThrow(/burst/);
    expect(() => parseRateLimit({ qps: 10, burst: 1.5 })).toThrow(/burst/);
    expect(() => limited(0)).toThrow(/unlimited/);
  });

  it("only the explicit word removes the limit", () => {
    expect(parseRateLimit({ qps: "unlimited" })).toBe(UNLIMITED);
    expect(parseRateLimit({ qps: " Unlimited " })).toBe(UNLIMITED);
    expect(() => parseRateLimit({ qps: "unlimited", burst: 5 })).toThrow(/burst/);
    expect(parseRateLimit({ qps: "50", burst: "7" })).toEqual({ kind: "limited", qps: 50, burst: 7 });
  });
});

describe("token bucket", () => {
  it("lets a burst through, then spaces operations at 1/qps", () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(limited(20, 20), clock);
    const waits = Array.from({ length: 25 }, () => bucket.reserve());
    expect(waits.slice(0, 20).every((w) => w === 0)).toBe(true);
    // Reservations queue: the 21st waits one interval (50 ms), the 25th five.
    expect(waits.slice(20)).toEqual([50, 100, 150, 200, 250].map((w) => expect.closeTo(w, 6)));
  });

  it("refills at qps up to the burst and no further", async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(limited(10, 5), clock);
    for (let i = 0; i < 5; i++) expect(bucket.reserve()).toBe(0);
    expect(bucket.reserve()).toBeCloseTo(100, 6);
    await clock.advance(10_000); // long idle: refills only to the burst
    let free = 0;
    while (bucket.reserve() === 0) free++;
    expect(free).toBe(5);
  });

  it("holds the long-run rate: N operations over a simulated span take N/qps seconds", async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(limited(20, 20), clock);
    const done: number[] = [];
    const ops = Array.from({ length: 220 }, () => bucket.acquire().then(() => done.push(clock.now())));
    await clock.advance(20_000);
    await Promise.all(ops);
    // 20 free, then 200 more at 20/s = 10 s.
    expect(done.length).toBe(220);
    expect(Math.max(...done)).toBeCloseTo(10_000, 3);
    const lastSecond = done.filter((t) => t > 9000).length;
    expect(lastSecond).toBe(20);
  });

  it("an aborted wait gives its token back", async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(limited(1, 1), clock);
    expect(bucket.reserve()).toBe(0);
    const abort = new AbortController();
    const waiting = bucket.acquire(abort.signal);
    abort.abort(new Error("gone"));
    await expect(waiting).rejects.toThrow("gone");
    // Without the refund the next caller would wait 2 s.
    expect(bucket.reserve()).toBeCloseTo(1000, 6);
  });

  it("unlimited never waits", () => {
    const bucket = new TokenBucket(UNLIMITED, new ManualClock());
    for (let i = 0; i < 10_000; i++) expect(bucket.reserve()).toBe(0);
  });
});

describe("backoff", () => {
  it("without jitter doubles from min and caps at max", () => {
    const d = (n: number) => backoffDuration(n, { minMs: 1000, maxMs: 10_000, jitter: false });
    expect([0, 1, 2, 3, 4, 5].map(d)).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000]);
  });

  it("with jitter is min + U[0,1) * (t - min): always in [min, t)", () => {
    expect(backoffDuration(3, { random: () => 0 })).toBe(1000);
    expect(backoffDuration(3, { random: () => 0.5 })).toBe(1000 + 0.5 * 7000);
    const random = seededRandom(7);
    for (let i = 0; i < 1000; i++) {
      const failures = 1 + (i % 6);
      const t = backoffDuration(failures, { random });
      expect(t).toBeGreaterThanOrEqual(1000);
      expect(t).toBeLessThan(1000 * 2 ** failures);
    }
  });

  it("scales by ln(1 + nodes) and caps again at max", () => {
    expect(clusterSizeDependantInterval(1000, 0)).toBe(1000);
    expect(clusterSizeDependantInterval(1000, 5000)).toBeCloseTo(1000 * Math.log(5001), 6);
    expect(clusterSizeDependantInterval(1000, 5000) / 1000).toBeCloseTo(8.517, 2); // "about 8.5x at 5,000 nodes"
    const scaled = backoffDuration(2, { jitter: false, nodes: () => 100, maxMs: 1e9 });
    expect(scaled).toBeCloseTo(4000 * Math.log(101), 6);
    expect(backoffDuration(2, { jitter: false, nodes: () => 100, maxMs: 5000 })).toBe(5000);
  });

  it("Backoff counts failures from 1 (first wait in [min, 2 min)) and resets", () => {
    const b = new Backoff({ jitter: false, maxMs: 100_000 });
    expect([b.next(), b.next(), b.next()]).toEqual([2000, 4000, 8000]);
    b.reset();
    expect(b.next()).toBe(2000);
  });

  it("refuses nonsense options when built", () => {
    expect(() => new Backoff({ minMs: 0 })).toThrow(/min/);
    expect(() => new Backoff({ minMs: 10, maxMs: 5 })).toThrow(/max/);
    expect(() => new Backoff({ factor: 0.5 })).toThrow(/factor/);
  });
});

describe("periodic timers", () => {
  it("draw every interval from [0.9, 1.1) x the period", () => {
    expect(jitteredInterval(1000, 0.1, () => 0)).toBe(900);
    expect(jitteredInterval(1000, 0.1, () => 0.999999)).toBeCloseTo(1100, 2);
    const random = seededRandom(3);
    const draws = Array.from({ length: 500 }, () => jitteredInterval(60_000, 0.1, random));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(54_000);
    expect(Math.max(...draws)).toBeLessThan(66_000);
    expect(new Set(draws.map((d) => Math.round(d))).size).toBeGreaterThan(400); // spread, not constant
  });

  it("runs the work after each jittered interval until stopped, surviving errors", async () => {
    const clock = new ManualClock();
    const errors: unknown[] = [];
    let runs = 0;
    const timer = new PeriodicTimer(
      () => {
        runs++;
        if (runs === 2) throw new Error("boom");
      },
      { periodMs: 1000, clock, random: seededRandom(1), onError: (e) => errors.push(e) },
    ).start();
    await clock.advance(10_000);
    expect(runs).toBeGreaterThanOrEqual(9);
    expect(runs).toBeLessThanOrEqual(11);
    expect(errors).toHaveLength(1);
    expect(new Set(clock.sleeps).size).toBe(clock.sleeps.length); // every interval drawn anew
    await timer.stop();
    const before = runs;
    await clock.advance(10_000);
    expect(runs).toBe(before);
  });
});

describe("liveness", () => {
  it("comes from the age of the last event", async () => {
    const clock = new ManualClock();
    const live = new Liveness(5000, clock);
    expect(live.state()).toBe("unknown");
    live.observe();
    await clock.advance(4000);
    expect(live.state()).toBe("alive");
    expect(live.age()).toBe(4000);
    await clock.advance(2000);
    expect(live.state()).toBe("stale");
    live.observe();
    expect(live.state()).toBe("alive");
  });
});

describe("retry in place", () => {
  it("retries only the failed step, with backoff, never redoing earlier steps", async () => {
    const clock = new ManualClock();
    const calls: string[] = [];
    let registerFailures = 2;
    const retries: number[] = [];
    const done = runSteps(
      [
        { name: "connect", run: () => void calls.push("connect") },
        {
          name: "register node",
          run: () => {
            calls.push("register");
            if (registerFailures-- > 0) throw new Error("etcd unavailable");
            return "node-1";
          },
        },
        { name: "allocate identities", run: () => void calls.push("identities") },
      ],
      { clock, backoff: { random: () => 0.5 }, onRetry: (r) => retries.push(r.waitMs) },
    );
    await settle();
    expect(calls).toEqual(["connect", "register"]);
    await clock.advance(60_000);
    const results = await done;
    expect(calls).toEqual(["connect", "register", "register", "register", "identities"]);
    expect(results.get("register node")).toBe("node-1");
    expect(retries).toEqual([1500, 2500]); // 1 + 0.5*(2-1) s, 1 + 0.5*(4-1) s
  });

  it("gives up after maxAttempts or on an error not worth retrying, naming the step", async () => {
    const clock = new ManualClock();
    const failing = retryInPlace({ name: "register node", run: () => Promise.reject(new Error("no")) }, { clock, maxAttempts: 3 });
    const caught = failing.catch((e: Error) => e);
    await clock.advance(60_000);
    expect(((await caught) as Error).message).toBe("register node (attempt 3): no");
    const fatal = await retryInPlace(
      { name: "parse config", run: () => Promise.reject(new InvalidInputError("bad")) },
      { clock, retryable: (e) => !(e instanceof InvalidInputError) },
    ).catch((e: Error) => e);
    expect((fatal as Error).message).toBe("parse config (attempt 1): bad");
  });
});

describe("DisciplinedKvStore", () => {
  // A backend stub: only the calls a test makes exist; the rest would throw.
  function stubStore(get: () => Promise<unknown>): KvStore {
    return { backend: "embedded", location: "stub", get, put: async () => 7 } as unknown as KvStore;
  }

  it("retries an unavailable store with backoff, taking a token per attempt", async () => {
    const clock = new ManualClock();
    let calls = 0;
    const store = new DisciplinedKvStore(
      stubStore(async () => {
        if (++calls <= 2) throw new KvStoreError("KVSTORE_UNAVAILABLE", "connection refused");
        return { key: "k", value: "v" };
      }),
      { clock, rateLimit: limited(1, 1), backoff: { random: () => 0 } },
    );
    const got = store.get("k");
    await clock.advance(60_000);
    expect(await got).toEqual({ key: "k", value: "v" });
    expect(calls).toBe(3);
    // Waits: backoff 1 s, then the token (1 qps: already refilled), backoff 1 s again.
    expect(clock.sleeps.filter((s) => s === 1000).length).toBeGreaterThanOrEqual(2);
    expect(store.liveness.state()).toBe("alive");
  });

  it("passes other errors through at once and gives up after maxAttempts", async () => {
    const clock = new ManualClock();
    let calls = 0;
    const fatal = new DisciplinedKvStore(stubStore(async () => (calls++, Promise.reject(new KvStoreError("KVSTORE_INTERNAL", "corrupt")))), { clock });
    await expect(fatal.get("k")).rejects.toThrow("corrupt");
    expect(calls).toBe(1);
    const down = new DisciplinedKvStore(stubStore(async () => Promise.reject(new KvStoreError("KVSTORE_UNAVAILABLE", "down"))), { clock, maxAttempts: 3 });
    const result = down.get("k").catch((e: Error) => e);
    await clock.advance(600_000);
    expect(((await result) as Error).message).toBe("kvstore get k (after 3 attempts): down");
  });

  it("rate limits by default: the 21st operation waits", async () => {
    const clock = new ManualClock();
    const store = new DisciplinedKvStore(stubStore(async () => undefined), { clock });
    let done = 0;
    const ops = Array.from({ length: 21 }, () => store.put("k", "v").then(() => done++));
    await settle();
    expect(done).toBe(20);
    await clock.advance(50);
    await Promise.all(ops);
    expect(done).toBe(21);
  });
});
