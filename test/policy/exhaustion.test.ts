// An identity space running out in the middle of a change refuses the whole change: engine, allocator and
// ipcache stay as they were, and the numbers taken before the failure are free again.
import { describe, expect, test } from "vitest";
import { LocalIdentityAllocator } from "../../host/identity/allocator.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { policyState } from "../../host/state/policy.js";
import { cnp, ep } from "./helpers.js";

const egressTo = (name: string, cidrs: string[]) => cnp(name, { endpointSelector: { matchLabels: { app: "web" } }, egress: [{ toCIDR: cidrs }] });

/** Everything the engine shows, identities with their reference counts. */
function snapshot(engine: PolicyEngine) {
  return { state: policyState(engine), refs: engine.allocator.list().map((i) => [i.id, engine.allocator.references(i.id)]), change: engine.snapshot() };
}

describe("identity exhaustion", () => {
  test("CIDR identities: a rule set needing more than are left is refused whole", () => {
    const engine = new PolicyEngine({ allocator: new LocalIdentityAllocator(new Map(), { cidr: 4 }) });
    engine.upsertEndpoint(ep(1, { app: "web" }));
    engine.importPolicies([egressTo("a", ["10.0.0.0/8", "10.1.0.0/16"])]);
    const before = snapshot(engine);
    // 3 new prefixes (10.0.0.0/8 is shared), 2 numbers left: the third fails after two were taken
    expect(() => engine.importPolicies([egressTo("b", ["10.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"])]))
      .toThrow("CIDR identities exhausted");
    expect(snapshot(engine)).toEqual(before);
    // replacing a policy that frees prefixes is refused the same way when its new prefixes do not fit
    expect(() => engine.importPolicies([egressTo("a", ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"])])).toThrow("CIDR identities exhausted");
    expect(snapshot(engine)).toEqual(before);
    // nothing leaked: the two free numbers are still there
    const ok = engine.importPolicies([egressTo("b", ["192.0.2.0/24", "198.51.100.0/24"])]);
    expect(ok.ipcache.upsert.map((r) => [r.cidr, r.identity])).toEqual([["192.0.2.0/24", (1 << 24) + 2], ["198.51.100.0/24", (1 << 24) + 3]]);
  });

  test("endpoint identities: an endpoint with a new label set when none is left changes nothing", () => {
    const engine = new PolicyEngine({ allocator: new LocalIdentityAllocator(new Map(), { endpoint: 2 }) });
    engine.upsertEndpoint(ep(1, { app: "web" }));
    engine.upsertEndpoint(ep(2, { app: "db" }));
    engine.importPolicies([cnp("db", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }] }] })]);
    const before = snapshot(engine);
    expect(() => engine.upsertEndpoint(ep(3, { app: "cache" }))).toThrow("endpoint identities exhausted (256..257 in use)");
    expect(() => engine.upsertEndpoint(ep(1, { app: "other" }))).toThrow("endpoint identities exhausted");
    expect(snapshot(engine)).toEqual(before);
    // a label set already in use needs no new number
    expect(engine.upsertEndpoint(ep(3, { app: "web" })).endpoints.upsert.map((r) => r.identity)).toEqual([256]);
  });
});
