import { describe, expect, it } from "vitest";
import { InvalidInputError } from "../../host/errors.js";
import { LegacySlots, maglevIndex, randomSlot } from "../../host/lb/slot-models.js";
import { countPerBackend, maxOverMean, minOverMean, movedEntries } from "../../host/lb/table-stats.js";

describe("randomSlot (services v2)", () => {
  it("maps consecutive hashes onto every dense slot 1..N equally", () => {
    const n = 7;
    const counts = new Map<number, number>();
    for (let h = 0xfffff000; h < 0xfffff000 + 7 * n; h++) {
      const slot = randomSlot(h, n);
      counts.set(slot, (counts.get(slot) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(counts.values())).toEqual(new Set([7]));
  });

  it("treats hashes as unsigned and refuses an empty service", () => {
    expect(randomSlot(-1, 10)).toBe((0xffffffff % 10) + 1);
    expect(() => randomSlot(5, 0)).toThrow(RangeError);
    expect(maglevIndex(-1, 251)).toBe(0xffffffff % 251);
  });
});

describe("LegacySlots (pre-v2)", () => {
  it("fills a removed backend's slots with duplicates of the remaining ones, keeping the slot count", () => {
    const legacy = new LegacySlots([1, 2, 3, 4]);
    legacy.remove(2);
    expect(legacy.slots).toHaveLength(4);
    expect(legacy.slots).not.toContain(2);
    expect(legacy.backends()).toEqual([1, 3, 4]);
    // A freed slot takes a survivor by its index (host/lb/slots.ts): slot index 1 -> [1, 3, 4][1 % 3].
    expect(legacy.slots).toEqual([1, 3, 3, 4]);
  });

  it("appends added backends, so churn leaves duplicates and skew", () => {
    const ids = Array.from({ length: 10 }, (_, i) => i + 1);
    const legacy = new LegacySlots(ids);
    const churned = ids.filter((_, i) => i % 2 === 0);
    for (const id of churned) legacy.remove(id);
    for (const id of churned) legacy.add(id);
    expect(legacy.slots).toHaveLength(15);
    expect(new Set(legacy.slots)).toEqual(new Set(ids));
    const counts = countPerBackend(legacy.slots);
    for (const id of churned) expect(counts.get(id)).toBe(1);
    expect(maxOverMean(counts, ids)).toBeGreaterThan(1.3);
  });

  it("selects by hash % slots and has nothing to select once empty", () => {
    const legacy = new LegacySlots([5, 6]);
    expect(legacy.select(0)).toBe(5);
    expect(legacy.select(3)).toBe(6);
    legacy.remove(5);
    expect(legacy.slots).toEqual([6, 6]);
    legacy.remove(6);
    expect(legacy.slots).toEqual([]);
    expect(legacy.select(3)).toBeUndefined();
  });

  it("refuses unknown removals, repeated additions and repeated ids", () => {
    const legacy = new LegacySlots([1, 2]);
    expect(() => legacy.remove(3)).toThrow(InvalidInputError);
    expect(() => legacy.add(2)).toThrow(InvalidInputError);
    expect(() => new LegacySlots([1, 1])).toThrow(InvalidInputError);
    expect(legacy.slots).toEqual([1, 2]);
  });
});

describe("table stats", () => {
  it("counts shares and their spread, with missing backends as zero", () => {
    const counts = countPerBackend([1, 1, 2, 1]);
    expect(counts).toEqual(new Map([[1, 3], [2, 1]]));
    expect(maxOverMean(counts, [1, 2])).toBe(1.5);
    expect(minOverMean(counts, [1, 2])).toBe(0.5);
    expect(maxOverMean(counts, [1, 2, 3])).toBeCloseTo(3 / (4 / 3));
    expect(minOverMean(counts, [1, 2, 3])).toBe(0);
  });

  it("counts moved entries and refuses tables of different lengths", () => {
    expect(movedEntries([1, 2, 3], [1, 3, 3])).toBe(1);
    expect(() => movedEntries([1], [1, 2])).toThrow(RangeError);
  });
});
