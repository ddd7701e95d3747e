import { describe, expect, it } from "vitest";
import { InvalidInputError } from "../../host/errors.js";
import {
  MAGLEV_DEFAULT_M,
  MAGLEV_PRIMES,
  MAGLEV_VARIANTS,
  RENDEZVOUS_BUDGET,
  MAGLEV_DEFAULT_VARIANT,
  maglevSizeAdvice,
  maglevTable,
  type MaglevBackend,
  type MaglevVariant,
} from "../../host/lb/maglev.js";
import { murmur3String } from "../../host/lb/murmur3.js";
import { countPerBackend, maxOverMean, movedEntries } from "../../host/lb/table-stats.js";

function backends(n: number, idBase = 1): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({ id: idBase + i, key: `10.${(i >> 8) & 255}.${i & 255}.7:8080/tcp` }));
}

/** A deterministic shuffle (LCG-driven Fisher-Yates), so a failure reproduces. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * The paper's pseudocode, written independently of host/lb/maglev.ts: the
 * whole permutation table materialized, entry claimed per turn. Hashes and
 * seeds are the documented format (murmur3 of the key, seeds "magl"/"ev01").
 */
function paperMaglev(set: readonly MaglevBackend[], m: number): number[] {
  const sorted = [...set].sort((a, b) => (a.key < b.key ? -1 : 1));
  const permutation = sorted.map((b) => {
    const offset = murmur3String(b.key, 0x6d61676c) % m;
    const skip = (murmur3String(b.key, 0x65763031) % (m - 1)) + 1;
    return Array.from({ length: m }, (_, j) => (offset + j * skip) % m);
  });
  const next = sorted.map(() => 0);
  const entry: number[] = new Array<number>(m).fill(-1);
  let n = 0;
  for (;;) {
    for (let i = 0; i < sorted.length; i++) {
      let c = permutation[i]![next[i]!]!;
      while (entry[c]! >= 0) c = permutation[i]![++next[i]!]!;
      entry[c] = sorted[i]!.id;
      next[i]!++;
      if (++n === m) return entry;
    }
  }
}

describe("maglevTable", () => {
  it("plain is the paper's algorithm", () => {
    for (const [n, m] of [
      [1, 251],
      [5, 251],
      [37, 509],
      [100, 1021],
    ] as const) {
      expect(Array.from(maglevTable(backends(n), m, "plain")), `N=${n} M=${m}`).toEqual(paperMaglev(backends(n), m));
    }
  });

  for (const variant of MAGLEV_VARIANTS) {
    describe(variant, () => {
      it("is the same table whatever the input order", () => {
        const set = backends(60);
        const reference = maglevTable(set, 4093, variant);
        for (const seed of [1, 2, 3]) expect(maglevTable(shuffled(set, seed), 4093, variant)).toEqual(reference);
      });

      it("fills every entry with a given id, each backend floor(M/N) or ceil(M/N) times", () => {
        for (const [n, m] of [
          [1, 251],
          [2, 251],
          [7, 509],
          [100, 16381],
          [250, 251],
          [251, 251],
        ] as const) {
          const set = backends(n, 1000);
          const table = maglevTable(set, m, variant);
          expect(table.length).toBe(m);
          const counts = countPerBackend(table);
          expect([...counts.keys()].sort((a, b) => a - b), `N=${n} M=${m}`).toEqual(set.map((b) => b.id));
          for (const [id, c] of counts) expect([Math.floor(m / n), Math.ceil(m / n)], `N=${n} M=${m} id=${id}`).toContain(c);
        }
      });

      it("keeps max/mean within 1.01 at M=16381 for N=100 and N=163", () => {
        for (const n of [100, 163]) {
          const set = backends(n);
          const ratio = maxOverMean(countPerBackend(maglevTable(set, MAGLEV_DEFAULT_M, variant)), set.map((b) => b.id));
          expect(ratio, `N=${n}`).toBeLessThanOrEqual(1.01);
        }
      });

      it("never hands out a removed backend's id and keeps the others", () => {
        const set = backends(30);
        const without = set.filter((b) => b.id !== 17);
        const table = maglevTable(without, 2039, variant);
        expect(table).not.toContain(17);
        expect(countPerBackend(table).size).toBe(29);
      });
    });
  }

  it("the auction variants move no more entries than plain when one backend is removed", () => {
    const m = MAGLEV_DEFAULT_M;
    for (const n of [10, 100, 163]) {
      const set = backends(n);
      const moved = (variant: MaglevVariant) => {
        const before = maglevTable(set, m, variant);
        let total = 0;
        for (let r = 0; r < 5; r++) total += movedEntries(before, maglevTable(set.filter((_, i) => i !== (r * 7 + 3) % n), m, variant));
        return total;
      };
      const plain = moved("plain");
      for (const variant of ["perm-auction", "hrw-auction"] as const) {
        const auction = moved(variant);
        // At least the removed backends' own entries move (about m/n each).
        expect(auction, `${variant} N=${n}`).toBeGreaterThanOrEqual(5 * Math.floor(m / n));
        expect(auction, `${variant} N=${n}`).toBeLessThanOrEqual(plain);
      }
    }
  });

  it("uses perm-auction when no variant is given", () => {
    expect(MAGLEV_DEFAULT_VARIANT).toBe("perm-auction");
    const set = backends(50);
    expect(maglevTable(set, 8191)).toEqual(maglevTable(set, 8191, "perm-auction"));
    expect(maglevTable(set, 8191)).not.toEqual(maglevTable(set, 8191, "plain"));
  });

  it("depends on keys, not on ids: renumbering keeps every entry's backend", () => {
    const a = backends(40, 1);
    const b = backends(40, 501);
    const ta = maglevTable(a, 4093);
    const tb = maglevTable(b, 4093);
    for (let s = 0; s < ta.length; s++) expect(tb[s]).toBe(ta[s]! + 500);
  });
});

describe("maglevTable input errors", () => {
  const fails = (fn: () => unknown, message: RegExp) => {
    let caught: unknown;
    try {
      fn();
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(InvalidInputError);
    expect((caught as InvalidInputError).code).toBe("INVALID_INPUT");
    expect((caught as Error).message).toMatch(message);
  };

  it("rejects sizes that are not Cilium's primes", () => {
    for (const m of [0, 16380, 16383, 65537, 1.5, Number.NaN, 262139]) fails(() => maglevTable(backends(3), m), /size .* not supported; use one of the primes 251/);
    for (const m of MAGLEV_PRIMES.filter((p) => p <= 16381)) expect(maglevTable(backends(3), m).length).toBe(m);
  });

  it("rejects an empty set, saying the datapath drops", () => {
    fails(() => maglevTable([], 16381), /no backends/);
  });

  it("rejects duplicate keys and duplicate ids", () => {
    fails(() => maglevTable([{ id: 1, key: "10.0.0.1:80/tcp" }, { id: 2, key: "10.0.0.1:80/tcp" }], 251), /10\.0\.0\.1:80\/tcp is listed twice/);
    fails(() => maglevTable([{ id: 7, key: "10.0.0.1:80/tcp" }, { id: 7, key: "10.0.0.2:80/tcp" }], 251), /id 7 is used by two backends/);
  });

  it("rejects bad ids and empty keys", () => {
    for (const id of [-1, 1.5, 2 ** 32, Number.NaN]) fails(() => maglevTable([{ id, key: "10.0.0.1:80/tcp" }], 251), /not an unsigned 32-bit integer/);
    fails(() => maglevTable([{ id: 1, key: "" }], 251), /empty key/);
  });

  it("rejects more backends than entries, unknown variants and rendezvous beyond its budget", () => {
    fails(() => maglevTable(backends(252), 251), /252 backends do not fit in 251 entries/);
    fails(() => maglevTable(backends(3), 251, "ring" as MaglevVariant), /unknown variant "ring"/);
    const n = Math.floor(RENDEZVOUS_BUDGET / 131071) + 1;
    fails(() => maglevTable(backends(n), 131071, "hrw-auction"), /exceeds .* use plain/);
    expect(maglevTable(backends(n), 131071).length).toBe(131071); // the default has no such limit
  });
});

describe("maglevSizeAdvice", () => {
  it("warns when M is not above 100 x N", () => {
    expect(maglevSizeAdvice(163, 16381)).toBeUndefined();
    expect(maglevSizeAdvice(164, 16381)).toMatch(/16381 is not above 100 x 164 backends/);
  });
});
