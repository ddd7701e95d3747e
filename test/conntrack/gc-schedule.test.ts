import { describe, expect, test } from "vitest";
import { GcSchedule, GC_FIXED_HASH_SECONDS, GC_FIXED_LRU_SECONDS, GC_MAX_SECONDS, GC_MIN_SECONDS } from "../../host/conntrack/gc-schedule.js";

describe("conntrack GC schedule", () => {
  test("fixed: 12 h for LRU tables, 15 min for hash tables, whatever GC finds", () => {
    const lru = new GcSchedule({ mode: "fixed", lru: true });
    const hash = new GcSchedule({ mode: "fixed", lru: false });
    expect(lru.interval).toBe(GC_FIXED_LRU_SECONDS);
    expect(hash.interval).toBe(GC_FIXED_HASH_SECONDS);
    expect(lru.next(0.9)).toBe(43200);
    expect(hash.next(0)).toBe(900);
  });

  test("adaptive: starts at 5 min, shortens above 25% deleted, lengthens 1.5x below 5%", () => {
    const s = new GcSchedule({ mode: "adaptive", lru: true });
    expect(s.interval).toBe(300);
    expect(s.next(0.5)).toBe(150);       // 300 * (1 - 0.5)
    expect(s.next(0.1)).toBe(150);       // between 5% and 25%: unchanged
    expect(s.next(0.01)).toBe(225);      // x1.5
    expect(s.next(NaN)).toBe(225);       // nothing scanned: unchanged
    expect(s.next(1)).toBe(22);          // capped at 90%: 225 * (1 - 0.9) = 22.4999... -> 22
  });

  test("adaptive stays within 10 s .. 12 h", () => {
    const s = new GcSchedule({ mode: "adaptive", lru: false });
    for (let i = 0; i < 20; i++) s.next(0.95);
    expect(s.interval).toBe(GC_MIN_SECONDS);
    for (let i = 0; i < 40; i++) s.next(0);
    expect(s.interval).toBe(GC_MAX_SECONDS);
  });
});
