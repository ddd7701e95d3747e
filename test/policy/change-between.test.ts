// changeBetween: applied to tables holding one snapshot, the change leaves exactly the next snapshot's
// contents (what the kernel agent does when its state file is edited), and names only what differs.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { changeBetween } from "../../host/policy/change-between.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { PolicyEngine, type EngineChange } from "../../host/policy/engine.js";
import { cnp, ep, tableContents as contents } from "./helpers.js";

const OPTIONS = { conntrack: { tcpEntries: 64, otherEntries: 64 }, fragments: { entries: 16 }, policy: { endpoints: 16, ipcache: 32, entries: 256 } };

async function tablesOf(...changes: EngineChange[]): Promise<Record<string, string[]>> {
  const dp = await Datapath.create(OPTIONS);
  try {
    const writer = new PolicyDatapathWriter([dp.policyTables()]);
    for (const c of changes) writer.applyChange(c);
    return contents(dp);
  } finally {
    dp.close();
  }
}

const web = (port: string) => cnp("web", { endpointSelector: { matchLabels: { app: "web" } }, egress: [{ toEndpoints: [{ matchLabels: { app: "db" } }], toPorts: [{ ports: [{ port, protocol: "TCP" }] }] }, { toCIDR: ["192.0.2.0/24"] }] });

/** Two independent engines (two loads of a state file), the second edited. */
function world(edit: boolean): EngineChange {
  const e = new PolicyEngine();
  e.upsertEndpoint(ep(1, edit ? { app: "web", tier: "front" } : { app: "web" }, edit ? { ipv4: "10.0.9.1", ipv6: "fd00::1" } : { ipv6: "fd00::1" }));
  e.upsertEndpoint(ep(2, { app: "db" }));
  if (!edit) e.upsertEndpoint(ep(3, { app: "cache" }));
  e.importPolicies([web(edit ? "5433" : "5432")]);
  return e.snapshot();
}

describe("changeBetween", () => {
  test("takes the tables from the first snapshot to exactly the second", async () => {
    const before = world(false), after = world(true);
    const change = changeBetween(before, after);
    expect(await tablesOf(before, change)).toEqual(await tablesOf(after));
    // Only what differs: endpoint 1 relabelled and moved, 3 removed, 2 untouched; web's port swapped.
    expect(change.endpoints.upsert.map((e) => e.id)).toEqual([1]);
    expect(change.endpoints.remove).toEqual([3]);
    expect([...change.policy.changes.keys()]).toEqual([1]);
    expect(change.policy.changes.get(1)!.add.map((e) => e.port)).toContain(5433);
    expect(change.policy.changes.get(1)!.remove.map((e) => e.port)).toContain(5432);
  });

  test("between equal snapshots is empty", () => {
    const c = changeBetween(world(false), world(false));
    expect([c.endpoints.upsert, c.endpoints.remove, c.ipcache.upsert, c.ipcache.remove, [...c.policy.changes]]).toEqual([[], [], [], [], []]);
  });
});
