// probeBpf on this machine: every feature the datapath needs is reported,
// missing ones become NotSupportedError, and the clsact probe (done in a
// scratch network namespace) leaves the process where it was.
import { readlinkSync } from "node:fs";
import { expect, it } from "vitest";
import { BPF_FEATURES, probeBpf } from "../../host/bpf/features.js";
import { describeIf, missingLibbpf } from "./kernel-env.js";

const missing = process.getuid?.() !== 0 ? "not running as root (probing BPF needs root)" : missingLibbpf();

describeIf("probeBpf", missing, () => {
  it("finds the bpf syscall, BTF, LRU maps, test_run and clsact here", () => {
    const features = probeBpf();
    expect(Object.keys(features).sort()).toEqual([...BPF_FEATURES].sort());
    for (const f of BPF_FEATURES) expect([f, features[f]]).toEqual([f, { ok: true }]);
  });

  it("reports without throwing when nothing is required", () => {
    const features = probeBpf([]);
    expect(features.bpfSyscall.ok).toBe(true);
  });

  it("probes clsact without leaving this thread in another network namespace or touching lo", () => {
    const before = readlinkSync("/proc/thread-self/ns/net");
    const lo = readlinkSync("/proc/self/ns/net");
    probeBpf(["clsact"]);
    expect(readlinkSync("/proc/thread-self/ns/net")).toBe(before);
    expect(readlinkSync("/proc/self/ns/net")).toBe(lo);
  });
});
