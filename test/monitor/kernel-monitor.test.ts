// The kernel programs' monitor ring buffer: the same scenario as the Wasm
// ring gives the same events (drop with reason and endpoint, traces, policy
// verdicts), nothing while off, sampling and the rate cap as there.
import { describe, expect, it } from "vitest";
import { KernelDatapath } from "../../host/kernel/datapath.js";
import { decodeMonitorEvents } from "../../host/monitor/event.js";
import { checkMonitorSettings } from "../../host/monitor/settings.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { describeIf } from "../support/describe-if.js";
import { endpointOf, programScenario, udp } from "./scenario.js";

async function datapath(): Promise<KernelDatapath> {
  const dp = await KernelDatapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 }, policy: { endpoints: 16, ipcache: 64, entries: 256 } });
  programScenario(dp);
  return dp;
}

describeIf("the kernel monitor ring buffer", kernelUnavailable(), () => {
  it("delivers nothing while off, then drops, traces and policy verdicts as the program decided", async () => {
    const dp = await datapath();
    try {
      dp.decideAll([{ data: udp(7001, 40001) }], 100);
      expect(dp.monitor().drain()).toBeUndefined();
      dp.monitor().configure(checkMonitorSettings({ types: ["drop", "trace", "policy-verdict"] }));
      dp.decideAll([{ data: udp(7000, 40003) }, { data: udp(7000, 40003) }, { data: udp(7001, 40004) }], 100);
      const raw = dp.monitor().drain()!;
      const events = decodeMonitorEvents(raw, endpointOf);
      expect(events.map((e) => [e.type, e.verdict ?? e.reason, e.ctResult, e.dport, e.endpoint])).toEqual([
        ["policy-verdict", "allowed", "CT_NEW", 7000, 1],
        ["trace", "", "CT_NEW", 7000, 1],
        ["trace", "", "CT_ESTABLISHED", 7000, 1],
        ["policy-verdict", "denied", "CT_NEW", 7001, 1],
        ["drop", "DROP_POLICY", "CT_NEW", 7001, 1],
      ]);
      expect(events[4]).toMatchObject({ engine: "kernel", reasonText: "Policy denied", direction: "EGRESS", src: "10.91.0.1", dst: "10.92.0.2", sport: 40004 });
      dp.monitor().configure(undefined);
      dp.decideAll([{ data: udp(7001, 40005) }], 100);
      expect(dp.monitor().drain()).toBeUndefined();
    } finally {
      dp.close();
    }
  });

  it("samples traces one in N and caps the rate, counting the rest as lost", async () => {
    const dp = await datapath();
    try {
      dp.monitor().configure(checkMonitorSettings({ types: ["trace"], sample: 10, ratePerSecond: 1_000_000 }));
      dp.decideAll(Array.from({ length: 100 }, () => ({ data: udp(7000, 40006) })), 100);
      expect(dp.monitor().drain()!.count).toBe(10);
      dp.monitor().configure(checkMonitorSettings({ types: ["trace"], ratePerSecond: 10 }));
      dp.decideAll(Array.from({ length: 50 }, () => ({ data: udp(7000, 40007) })), 100);
      const capped = dp.monitor().drain()!;
      expect([capped.count, capped.lost]).toEqual([1, 49]);
    } finally {
      dp.close();
    }
  });
});
