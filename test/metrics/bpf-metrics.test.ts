// bpf_syscall_duration_seconds and bpf_map_ops_total: a kernel datapath's
// calls are observed while recordBpfSyscalls is on, and not after.
import { describe, expect, it } from "vitest";
import { KernelDatapath } from "../../host/kernel/datapath.js";
import { createMetrics } from "../../host/metrics/index.js";
import { recordBpfSyscalls } from "../../host/metrics/process-metrics.js";
import { packet4 } from "../../host/packet/index.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { describeIf } from "../support/describe-if.js";
import { sum } from "./support.js";

describeIf("bpf(2) metrics", kernelUnavailable(), () => {
  it("counts the kernel datapath's system calls and map operations, by operation and outcome", async () => {
    const metrics = createMetrics();
    const stop = recordBpfSyscalls(metrics);
    let dp: KernelDatapath | undefined;
    try {
      dp = await KernelDatapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
      const p = packet4({ src: "10.0.1.10", dst: "10.0.2.20" }).udp({ sport: 1000, dport: 53, payload: new Uint8Array(8) });
      for (let i = 0; i < 3; i++) dp.decide(p, { now: 100, link: "ip" });
      dp.counters();
      const text = await metrics.registry.metrics();
      expect(sum(text, "membrane_bpf_syscall_duration_seconds_count", { operation: "progTestRun", outcome: "success" })).toBeGreaterThanOrEqual(3);
      expect(sum(text, "membrane_bpf_syscall_duration_seconds_count", { operation: "objectLoad", outcome: "success" })).toBe(1);
      expect(sum(text, "membrane_bpf_map_ops_total", { operation: "lookup", outcome: "success" })).toBeGreaterThan(0);
    } finally {
      stop();
      dp?.close();
    }
    const before = await metrics.registry.metrics();
    const again = await KernelDatapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
    again.close();
    expect(await metrics.registry.metrics()).toBe(before);
  });
});
