import { describe, expect, it } from "vitest";
import { afterLastOldOutcome, firstNewOutcome, isProbeAttempt, percentile, type ProbeAttempt } from "../../bench/convergence-outcomes.js";

const at = (t: number, reply: string): ProbeAttempt => ({ t, ok: reply !== "", reply });

describe("bench:convergence probe outcomes", () => {
  it("the first new outcome counts from the apply and ignores attempts sent before it", () => {
    const attempts = [at(1005, "bec"), at(990, "bec"), at(1000, "bea"), at(1010, "bec")];
    // printed in completion order: the 990 one is before the apply (t0 = 995)
    expect(firstNewOutcome(attempts, 995, (a) => a.reply === "bec")).toBe(10);
    expect(firstNewOutcome(attempts, 1011, (a) => a.reply === "bec")).toBeUndefined();
  });

  it("after the last old outcome: waits for the confirmation, passes over attempts that are neither", () => {
    const attempts = [at(100, "bec"), at(105, "bea"), at(110, "bec"), at(115, ""), at(120, "bea"), at(125, "beb")];
    const isOld = (a: ProbeAttempt) => a.reply === "bec";
    const isNew = (a: ProbeAttempt) => a.ok && a.reply !== "bec";
    expect(afterLastOldOutcome(attempts, 100, isOld, isNew, 3)).toBeUndefined();
    expect(afterLastOldOutcome(attempts, 100, isOld, isNew, 2)).toBe(15);
    // no old outcome after the apply: the first attempt sent after it
    expect(afterLastOldOutcome(attempts, 112, isOld, isNew, 2)).toBe(3);
  });

  it("recognises probe lines and takes nearest-rank percentiles", () => {
    expect(isProbeAttempt({ t: 1, ok: false, reply: "" })).toBe(true);
    expect(isProbeAttempt({ ready: true })).toBe(false);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4], 99)).toBe(4);
  });
});
