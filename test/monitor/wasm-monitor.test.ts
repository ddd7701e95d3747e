// The Wasm datapath's monitor ring: drop, trace and policy-verdict events as
// the datapath decided them, drained once per batch; sampling and the rate
// cap bound what is delivered and count the rest as lost; off delivers nothing.
import { describe, expect, it } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { decodeMonitorEvents } from "../../host/monitor/event.js";
import { buildMonitorFilter } from "../../host/monitor/filter.js";
import { formatMonitorEvent } from "../../host/monitor/format.js";
import type { RawMonitorEvents } from "../../host/monitor/raw-events.js";
import { checkMonitorSettings } from "../../host/monitor/settings.js";
import { endpointOf, programScenario, udp } from "./scenario.js";

async function datapath(): Promise<{ dp: Datapath; drained: RawMonitorEvents[] }> {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 }, policy: { endpoints: 16, ipcache: 64, entries: 256 } });
  programScenario(dp);
  const drained: RawMonitorEvents[] = [];
  dp.monitor().listener = (e) => drained.push(e);
  return { dp, drained };
}

const decoded = (drained: RawMonitorEvents[]) => drained.flatMap((r) => decodeMonitorEvents(r, endpointOf));

describe("the Wasm monitor ring", () => {
  it("delivers nothing while off", async () => {
    const { dp, drained } = await datapath();
    dp.decideAll([{ data: udp(7001) }, { data: udp(7000) }], 100);
    expect(drained).toEqual([]);
  });

  it("shows a policy drop with its reason, direction and endpoint, and nothing for allowed traffic in drop-only mode", async () => {
    const { dp, drained } = await datapath();
    dp.monitor().configure(checkMonitorSettings({ types: ["drop"] }));
    dp.decideAll([{ data: udp(7001, 40001) }, { data: udp(7000, 40002) }, { data: udp(7000, 40002) }], 100);
    const events = decoded(drained);
    expect(events).toEqual([
      expect.objectContaining({ type: "drop", reason: "DROP_POLICY", reasonText: "Policy denied", direction: "EGRESS", endpoint: 1, src: "10.91.0.1", dst: "10.92.0.2", sport: 40001, dport: 7001, proto: "UDP", length: 39 }),
    ]);
    expect(formatMonitorEvent(events[0]!)).toBe("xx drop (Policy denied) EGRESS ep 1 10.91.0.1:40001 -> 10.92.0.2:7001 UDP len 39");
  });

  it("traces forwarded packets and gives new flows' policy verdicts with the remote identity", async () => {
    const { dp, drained } = await datapath();
    dp.monitor().configure(checkMonitorSettings({ types: ["trace", "policy-verdict", "drop"] }));
    dp.decideAll([{ data: udp(7000, 40003) }, { data: udp(7000, 40003) }, { data: udp(7001, 40004) }], 100);
    const events = decoded(drained).map((e) => [e.type, e.verdict ?? e.reason, e.ctResult, e.dport]);
    expect(events).toEqual([
      ["policy-verdict", "allowed", "CT_NEW", 7000],
      ["trace", "", "CT_NEW", 7000],
      ["trace", "", "CT_ESTABLISHED", 7000],
      ["policy-verdict", "denied", "CT_NEW", 7001],
      ["drop", "DROP_POLICY", "CT_NEW", 7001],
    ]);
    const verdict = decoded(drained).find((e) => e.type === "policy-verdict")!;
    expect(verdict.identity).toBeGreaterThan(0);
    expect(formatMonitorEvent(verdict)).toMatch(/^Policy verdict allowed EGRESS ep 1 identity \d+ 10\.91\.0\.1:40003 -> 10\.92\.0\.2:7000 UDP$/);
  });

  it("samples trace events one in N", async () => {
    const { dp, drained } = await datapath();
    dp.monitor().configure(checkMonitorSettings({ types: ["trace"], sample: 10, ratePerSecond: 1_000_000 }));
    dp.decideAll(Array.from({ length: 100 }, () => ({ data: udp(7000, 40005) })), 100);
    expect(decoded(drained).length).toBe(10);
  });

  it("caps the rate: events past the budget are counted as lost, not delivered", async () => {
    const { dp, drained } = await datapath();
    // 10 events/s: a budget of one event until time refills it.
    dp.monitor().configure(checkMonitorSettings({ types: ["trace"], ratePerSecond: 10 }));
    dp.decideAll(Array.from({ length: 50 }, () => ({ data: udp(7000, 40006) })), 100);
    const delivered = drained.reduce((n, r) => n + r.count, 0);
    const lost = drained.reduce((n, r) => n + r.lost, 0);
    expect(delivered).toBe(1);
    expect(lost).toBe(49);
  });

  it("filters by type, endpoint, reason, address and port; refuses a bad filter", async () => {
    const { dp, drained } = await datapath();
    dp.monitor().configure(checkMonitorSettings({ types: ["trace", "policy-verdict", "drop"] }));
    dp.decideAll([{ data: udp(7000, 40007) }, { data: udp(7001, 40008) }], 100);
    const events = decoded(drained);
    const count = (spec: Parameters<typeof buildMonitorFilter>[0]) => events.filter(buildMonitorFilter(spec)).length;
    expect(count({ types: ["drop"] })).toBe(1);
    expect(count({ types: ["drop", "trace", "policy-verdict"], endpoint: 1 })).toBe(4);
    expect(count({ types: ["drop", "trace", "policy-verdict"], endpoint: 2 })).toBe(0);
    expect(count({ types: ["drop"], reason: "policy denied" })).toBe(1);
    expect(count({ types: ["drop"], reason: "DROP_CT_INVALID_HDR" })).toBe(0);
    expect(count({ types: ["trace"], address: "10.92.0.0/24" })).toBe(1);
    expect(count({ types: ["trace"], address: "10.93.0.2" })).toBe(0);
    expect(count({ types: ["drop", "trace", "policy-verdict"], port: 7001 })).toBe(2);
    expect(() => buildMonitorFilter({ types: ["drops"] })).toThrow(/type "drops" is not one of drop, trace, policy-verdict/);
    expect(() => buildMonitorFilter({ reason: "nope" })).toThrow(/drop reason "nope" is unknown/);
    expect(() => buildMonitorFilter({ address: "10.0.0.1/8" })).toThrow(/bits set beyond/);
  });
});
