// Engine changes applied one by one through the writer leave the tables exactly as a fresh datapath programmed
// from the engine's snapshot; a bad change writes nothing.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { PolicyEngine, type EngineChange } from "../../host/policy/engine.js";
import { cnp, ep, tableContents as contents } from "./helpers.js";

const OPTIONS = { conntrack: { tcpEntries: 64, otherEntries: 64 }, fragments: { entries: 16 }, policy: { endpoints: 16, ipcache: 32, entries: 256 } };

async function fresh(engine: PolicyEngine): Promise<Record<string, string[]>> {
  const dp = await Datapath.create(OPTIONS);
  try {
    new PolicyDatapathWriter([dp.policyTables()]).applyChange(engine.snapshot());
    return contents(dp);
  } finally {
    dp.close();
  }
}

describe("PolicyDatapathWriter.applyChange", () => {
  test("each engine change brings the tables to the snapshot's contents", async () => {
    const engine = new PolicyEngine();
    const dp = await Datapath.create(OPTIONS);
    const writer = new PolicyDatapathWriter([dp.policyTables()]);
    const steps: Array<[string, () => EngineChange]> = [
      ["endpoint 1", () => engine.upsertEndpoint(ep(1, { app: "web" }, { ipv6: "fd00::1" }))],
      ["endpoint 2", () => engine.upsertEndpoint(ep(2, { app: "db" }))],
      ["policy with CIDRs", () => engine.importPolicies([cnp("db", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }] }, { fromCIDR: ["192.0.2.0/24", "2001:db8::/32"] }], ingressDeny: [{ fromCIDR: ["192.0.2.128/25"] }] })])],
      ["endpoint 3 shares web's labels", () => engine.upsertEndpoint(ep(3, { app: "web" }))],
      ["endpoint 1 relabelled and moved", () => engine.upsertEndpoint(ep(1, { app: "other" }, { ipv4: "10.0.9.1", ipv6: "fd00::1" }))],
      ["egress policy", () => engine.importPolicies([cnp("web", { endpointSelector: { matchLabels: { app: "web" } }, egress: [{ toEndpoints: [{ matchLabels: { app: "db" } }], toPorts: [{ ports: [{ port: "5432", protocol: "TCP" }] }] }] })])],
      ["endpoint 2 removed", () => engine.removeEndpoint(2)],
      ["db policy deleted", () => engine.deletePolicies(["default/db"])],
      ["endpoint 2 back", () => engine.upsertEndpoint(ep(2, { app: "db" }))],
    ];
    for (const [what, step] of steps) {
      writer.applyChange(step());
      expect(contents(dp), what).toEqual(await fresh(engine));
    }
    // the last state is not trivial: endpoints, their addresses and entries are all there
    const c = contents(dp);
    expect([c.endpoints4.length, c.endpoints6.length, c.ipcache4.length, c.ipcache6.length]).toEqual([3, 1, 3, 1]);
    expect(c.policy.length).toBeGreaterThan(0);
    dp.close();
  });

  test("a change that cannot be written entirely writes nothing", async () => {
    const engine = new PolicyEngine();
    const dp = await Datapath.create(OPTIONS);
    const writer = new PolicyDatapathWriter([dp.policyTables()]);
    writer.applyChange(engine.upsertEndpoint(ep(1, { app: "web" })));
    const before = contents(dp);
    const good = engine.upsertEndpoint(ep(2, { app: "db" }));
    const bad: EngineChange[] = [
      { ...good, ipcache: { upsert: [...good.ipcache.upsert, { cidr: "10.0.0.1/8", identity: 5 }], remove: [] } },
      { ...good, endpoints: { upsert: [{ ...good.endpoints.upsert[0]!, mac: "nope" }], remove: [] } },
      { ...good, endpoints: { upsert: [{ ...good.endpoints.upsert[0]!, ipv4: "10.0.0.1" }], remove: [] } }, // endpoint 1's address
      { ...good, policy: { recomputed: [2], changes: new Map([[2, { add: [{ identity: 0, port: 80, proto: 1, direction: "ingress", deny: false }], remove: [] }]]) } },
      { ...good, policy: { recomputed: [2], changes: new Map([[2, { add: Array.from({ length: 300 }, (_, i) => ({ identity: 1000 + i, port: 0, proto: 0, direction: "ingress" as const, deny: false })), remove: [] }]]) } },
      { ...good, endpoints: { upsert: good.endpoints.upsert, remove: [0] } },
    ];
    const messages = bad.map((c) => { try { writer.applyChange(c); return "written"; } catch (err) { return (err as Error).message; } });
    expect(messages).toEqual([
      expect.stringContaining("ipcache.upsert[1] (\"10.0.0.1/8\"): cidr: \"10.0.0.1/8\" has bits set past its /8 prefix"),
      expect.stringContaining("endpoints.upsert[0] (id 2): mac:"),
      "endpoints4: an address of endpoint 2 belongs to endpoint 1 too",
      expect.stringContaining("policy diff for endpoint 2: add[0]: port 80 with protocol 1"),
      expect.stringMatching(/^policy entries: 300 do not fit the wasm datapath's policy table \(256 entries/),
      expect.stringContaining("endpoints.remove[0]: expected an endpoint id 1..65535, got 0"),
    ]);
    expect(contents(dp)).toEqual(before);
    dp.close();
  });
});
