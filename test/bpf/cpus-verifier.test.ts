// Small pure pieces of host/bpf: the possible-CPU count that sizes per-CPU
// values (cpus.ts), and how a verifier log becomes a one-line reason (object.ts).
import { describe, expect, it } from "vitest";
import { parseCpuList, possibleCpus } from "../../host/bpf/cpus.js";
import { verifierReason } from "../../host/bpf/object.js";

describe("parseCpuList", () => {
  it("counts CPUs in kernel CPU lists", () => {
    expect(parseCpuList("0\n")).toBe(1);
    expect(parseCpuList("0-1\n")).toBe(2);
    expect(parseCpuList("0-3,8-11,16")).toBe(9);
  });

  it("rejects malformed lists", () => {
    expect(() => parseCpuList("")).toThrow(/empty CPU list/);
    expect(() => parseCpuList("3-1")).toThrow(/bad CPU range/);
    expect(() => parseCpuList("a-b")).toThrow(/bad CPU list/);
  });

  it("reads this machine's possible CPUs", () => {
    expect(possibleCpus()).toBeGreaterThanOrEqual(1);
  });
});

describe("verifierReason", () => {
  it("quotes the verifier's last words, not its statistics", () => {
    const log = [
      "0: R1=ctx() R10=fp0",
      "1: (71) r0 = *(u8 *)(r1 +20)",
      "invalid access to packet, off=20 size=1, R1(id=0,off=20,r=0)",
      "R1 offset is outside of the packet",
      "processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0",
      "",
    ].join("\n");
    expect(verifierReason(log)).toBe("invalid access to packet, off=20 size=1, R1(id=0,off=20,r=0); R1 offset is outside of the packet");
  });

  it("falls back to pointing at the log", () => {
    expect(verifierReason("processed 0 insns\n")).toMatch(/see the log property/);
  });
});
