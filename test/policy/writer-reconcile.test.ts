// What a restarted kernel agent does with the pinned tables it finds (KernelAgentDatapath.reconcile):
// endpointIds() says which ids they hold; setPolicy/setEndpoints/setIpcache with the engine's snapshot leave
// exactly what a fresh datapath would hold, every entry of an endpoint that is gone removed.
import { expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { cnp, ep, tableContents as contents } from "./helpers.js";

const OPTIONS = { conntrack: { tcpEntries: 64, otherEntries: 64 }, fragments: { entries: 16 }, policy: { endpoints: 16, ipcache: 32, entries: 256 } };

test("setPolicy with the snapshot removes a vanished endpoint's entries and records; endpointIds sees them first", async () => {
  const engine = new PolicyEngine();
  const dp = await Datapath.create(OPTIONS);
  try {
    const writer = new PolicyDatapathWriter([dp.policyTables()]);
    writer.applyChange(engine.importPolicies([cnp("db", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }] }] })]));
    writer.applyChange(engine.upsertEndpoint(ep(1, { app: "web" }, { ipv6: "fd00::1" })));
    writer.applyChange(engine.upsertEndpoint(ep(2, { app: "db" })));
    const held = writer.endpointIds();
    expect([...held.records.keys()].sort()).toEqual([1, 2]);
    expect(held.records.get(1)).toContain("fd00::1");
    expect(held.policy.has(2)).toBe(true);

    // A new agent's engine knows only endpoint 1 (2 went away while no agent ran); its writer starts from the tables.
    const next = new PolicyEngine();
    next.importPolicies([cnp("db", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }] }] })]);
    next.upsertEndpoint(ep(1, { app: "web" }, { ipv6: "fd00::1" }));
    const restarted = new PolicyDatapathWriter([dp.policyTables()]);
    const snap = next.snapshot();
    restarted.setPolicy(snap.policy);
    restarted.setIpcache(snap.ipcache.upsert);
    restarted.setEndpoints(snap.endpoints.upsert);
    const after = restarted.endpointIds();
    expect([...after.records.keys()]).toEqual([1]);
    expect(after.policy.has(2)).toBe(false);

    const fresh = await Datapath.create(OPTIONS);
    try {
      new PolicyDatapathWriter([fresh.policyTables()]).applyChange(next.snapshot());
      expect(contents(dp)).toEqual(contents(fresh));
    } finally {
      fresh.close();
    }
  } finally {
    dp.close();
  }
});

test("setPolicy validates before writing: a bad entry leaves the table as it was", async () => {
  const engine = new PolicyEngine();
  const dp = await Datapath.create(OPTIONS);
  try {
    const writer = new PolicyDatapathWriter([dp.policyTables()]);
    writer.applyChange(engine.upsertEndpoint(ep(1, { app: "web" })));
    const before = contents(dp);
    expect(() => writer.setPolicy({ recomputed: [], changes: new Map([[1, { add: [{ identity: -5 } as never], remove: [] }]]) })).toThrow();
    expect(contents(dp)).toEqual(before);
  } finally {
    dp.close();
  }
});
