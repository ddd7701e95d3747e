// Small pure pieces of host/bpf: errno names (errno.ts), the possible-CPU
// count that sizes per-CPU values (cpus.ts), and how a verifier log becomes a
// one-line reason (object.ts).
import { describe, expect, it } from "vitest";
import { errnoName, errnoNumber } from "../../host/sys/errno.js";
import { parseCpuList, possibleCpus } from "../../host/bpf/cpus.js";
import { verifierReason } from "../../host/bpf/object.js";

describe("errnoName", () => {
  it("names libc, kernel-internal and libbpf codes, either sign", () => {
    expect(errnoName(-2)).toBe("ENOENT");
    expect(errnoName(1)).toBe("EPERM");
    expect(errnoName(-95)).toBe("EOPNOTSUPP");
    expect(errnoName(11)).toBe("EAGAIN");
    expect(errnoName(-524)).toBe("ENOTSUPP");
    expect(errnoName(-4007)).toBe("LIBBPF_ERRNO__VERIFY");
    expect(errnoName(99999)).toBe("errno 99999");
    expect(errnoNumber("E2BIG")).toBe(7);
  });
});

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
