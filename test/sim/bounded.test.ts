/**
 * The pieces the simulation's bounded waits are made of: a wait that never
 * ends runs out at its bound and names who is behind; a percentile over
 * samples some of which never arrived is "beyond" the bound, not a number.
 */
import { expect, it } from "vitest";
import { bounded, boundedEach, BoundExceededError, Deadline, until } from "../../host/sim/bounded.js";
import { censoredPercentile } from "../../host/sim/convergence.js";

it("bounded: a promise that never settles runs out at its bound, naming who is behind then", async () => {
  let asked = 0;
  const t0 = performance.now();
  const err = await bounded("never", 50, new Promise(() => {}), () => (asked++, [{ agent: "a", kind: "k", lacks: "x" }])).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BoundExceededError);
  expect(err).toMatchObject({ what: "never", boundMs: 50, behind: [{ agent: "a" }], message: "sim: never did not happen within 50 ms (1 agent(s) behind)" });
  expect(asked).toBe(1);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
  // one that settles in time is its value, and nobody is asked who is behind
  await expect(bounded("soon", 1000, Promise.resolve(7), () => (asked++, []))).resolves.toBe(7);
  expect(asked).toBe(1);
});

it("boundedEach names exactly the items that had not finished", async () => {
  const err = (await boundedEach("all up", 80, [1, 2, 3], (i) => (i === 2 ? new Promise(() => {}) : Promise.resolve()), (i) => ({ agent: `agent-${i}`, kind: "k", lacks: "down" })).catch((e: unknown) => e)) as BoundExceededError;
  expect(err).toBeInstanceOf(BoundExceededError);
  expect(err.behind.map((b) => b.agent)).toEqual(["agent-2"]);
});

it("until polls to the bound; a Deadline shares one bound across waits", async () => {
  await expect(until("never true", 60, () => false)).rejects.toBeInstanceOf(BoundExceededError);
  let n = 0;
  await expect(until("third poll", 1000, () => ++n >= 3)).resolves.toBeGreaterThanOrEqual(0);
  const d = new Deadline("both waits", 100);
  await new Promise((r) => setTimeout(r, 60));
  const err = (await d.race(new Promise(() => {})).catch((e: unknown) => e)) as BoundExceededError;
  expect(err).toMatchObject({ what: "both waits", boundMs: 100 });
  expect(() => d.check()).toThrow(BoundExceededError);
});

it("censoredPercentile counts missing samples as slower than the bound", () => {
  const ms = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
  // nothing missing: the plain percentile
  expect(censoredPercentile(ms, 0, 0.5, 1000)).toBe(50);
  expect(censoredPercentile(ms, 0, 0.99, 1000)).toBe(100);
  // 10 missing of 20: p50 is the last measured one, p99 lies among the missing
  expect(censoredPercentile(ms, 10, 0.5, 1000)).toBe(100);
  expect(censoredPercentile(ms, 10, 0.99, 1000)).toBe("beyond");
  // a measured value past the bound, with samples missing, is only known to be beyond it
  expect(censoredPercentile([10, 2000], 1, 0.6, 1000)).toBe("beyond");
  expect(censoredPercentile([10, 2000], 0, 0.6, 1000)).toBe(2000);
  // all missing; none at all
  expect(censoredPercentile([], 5, 0.5, 1000)).toBe("beyond");
  expect(censoredPercentile([], 0, 0.5, 1000)).toBe("none");
});
