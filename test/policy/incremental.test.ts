// Incremental regeneration against a full recompute over random rule and endpoint sets, and exactly which endpoints are recomputed.
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { PolicyEngine, type EngineChange } from "../../host/policy/engine.js";
import { parseDocuments, type PolicyDocument } from "../../host/policy/document.js";
import { cnp, ep } from "./helpers.js";

const APPS = ["a", "b", "c", "d"];
const selectorArb = fc.oneof(
  fc.constant({}),
  fc.record({ matchLabels: fc.record({ app: fc.constantFrom(...APPS) }) }),
  fc.record({ matchLabels: fc.record({ app: fc.constantFrom(...APPS), tier: fc.constantFrom("x", "y") }, { requiredKeys: ["app"] }) }),
  fc.record({ matchExpressions: fc.tuple(fc.record({ key: fc.constantFrom("app", "tier"), operator: fc.constantFrom("In", "NotIn"), values: fc.subarray(["a", "b", "x"], { minLength: 1 }) })) }),
  fc.record({ matchExpressions: fc.tuple(fc.record({ key: fc.constantFrom("tier", "k8s:io.kubernetes.pod.namespace"), operator: fc.constantFrom("Exists", "DoesNotExist") })) }),
);
const cidrArb = fc.constantFrom(
  { cidr: "10.0.0.0/8" }, { cidr: "10.1.0.0/16" }, { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] }, { cidr: "10.1.2.0/24" },
  { cidr: "0.0.0.0/0" }, { cidr: "fd00::/8", except: ["fd00:1::/32"] }, { cidr: "fd00:1::/32" },
);
const portsArb = fc.option(fc.array(fc.record({ ports: fc.array(fc.record({ port: fc.constantFrom("0", "53", "80", "443"), protocol: fc.constantFrom("TCP", "UDP", "ANY") }), { minLength: 1, maxLength: 2 }) }), { minLength: 1, maxLength: 2 }), { nil: undefined });
const sectionArb = (dir: "from" | "to") => fc.record({
  [`${dir}Endpoints`]: fc.option(fc.array(selectorArb, { maxLength: 2 }), { nil: undefined }),
  [`${dir}CIDRSet`]: fc.option(fc.array(cidrArb, { maxLength: 2 }), { nil: undefined }),
  [`${dir}Entities`]: fc.option(fc.subarray(["world", "cluster", "host", "all"], { minLength: 1 }), { nil: undefined }),
  toPorts: portsArb,
}, { requiredKeys: [] }).map((o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
const specArb = fc.record({
  endpointSelector: selectorArb,
  ingress: fc.option(fc.array(sectionArb("from"), { maxLength: 2 }), { nil: undefined }),
  egress: fc.option(fc.array(sectionArb("to"), { maxLength: 2 }), { nil: undefined }),
  ingressDeny: fc.option(fc.array(sectionArb("from"), { maxLength: 1 }), { nil: undefined }),
  egressDeny: fc.option(fc.array(sectionArb("to"), { maxLength: 1 }), { nil: undefined }),
}, { requiredKeys: ["endpointSelector"] }).map((o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
const labelsArb = fc.record({ app: fc.constantFrom(...APPS), tier: fc.constantFrom("x", "y"), "io.kubernetes.pod.namespace": fc.constantFrom("default", "other") }, { requiredKeys: ["app"] });

type Op =
  | { op: "import"; name: string; spec: object }
  | { op: "delete"; name: string }
  | { op: "endpoint"; id: number; labels: Record<string, string> }
  | { op: "remove"; id: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant("import" as const), name: fc.constantFrom("p1", "p2", "p3", "p4", "p5"), spec: specArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("delete" as const), name: fc.constantFrom("p1", "p2", "p3", "p4", "p5") }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("endpoint" as const), id: fc.integer({ min: 1, max: 12 }), labels: labelsArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("remove" as const), id: fc.integer({ min: 1, max: 12 }) }) },
);

function apply(engine: PolicyEngine, o: Op): EngineChange | undefined {
  switch (o.op) {
    case "import": return engine.importPolicies([cnp(o.name, o.spec)]);
    case "delete": return engine.listPolicies().some((p) => p.name === `default/${o.name}`) ? engine.deletePolicies([o.name]) : undefined;
    case "endpoint": return engine.upsertEndpoint(ep(o.id, o.labels));
    case "remove": return engine.endpoint(o.id) ? engine.removeEndpoint(o.id) : undefined;
  }
}

function tables(engine: PolicyEngine) {
  return engine.listEndpoints().map(({ record }) => ({ record, entries: engine.policyEntries(record.id) }));
}

describe("incremental regeneration", () => {
  test("every random sequence leaves the same tables, records, ipcache and diffs as a full recompute", () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
      const inc = new PolicyEngine();
      const full = new PolicyEngine({ mode: "full" });
      for (const o of ops) {
        const a = apply(inc, o);
        const b = apply(full, o);
        if (!a || !b) { expect(a).toBe(b); continue; }
        // the same entries written, the same records and prefixes
        expect(a.policy.changes).toEqual(b.policy.changes);
        expect(a.endpoints).toEqual(b.endpoints);
        expect(a.ipcache).toEqual(b.ipcache);
        // every endpoint whose table changed was recomputed
        for (const id of b.policy.changes.keys()) expect(a.policy.recomputed).toContain(id);
        // and the incremental state equals one computed from scratch
        const fresh = inc.computeFresh();
        for (const { record, entries } of tables(inc)) {
          const f = fresh.get(record.id)!;
          expect(entries).toEqual([...f.entries.values()].sort((x, y) => (x.direction === y.direction ? 0 : x.direction === "ingress" ? -1 : 1) || x.identity - y.identity || x.port - y.port || x.proto - y.proto));
          expect([record.enforceIngress, record.enforceEgress]).toEqual([f.enforce.ingress, f.enforce.egress]);
        }
      }
      expect(tables(inc)).toEqual(tables(full));
      expect(inc.ipcache()).toEqual(full.ipcache());
      // and a full recompute of the incremental engine finds nothing to write
      expect(inc.fullRecompute().policy.changes.size).toBe(0);
    }), { numRuns: 150, seed: 0x5eed });
  });
});

describe("exactly the selected endpoints are recomputed", () => {
  function node() {
    const engine = new PolicyEngine();
    for (let i = 1; i <= 40; i++) engine.upsertEndpoint(ep(i, { app: `a${i % 10}`, tier: i % 2 ? "x" : "y" }));
    engine.importPolicies([cnp("base", { endpointSelector: { matchLabels: { tier: "x" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "a2" } }] }] })]);
    return engine;
  }

  test("adding or deleting a rule recomputes the endpoints its selector selects, no others", () => {
    const engine = node();
    const add = engine.importPolicies([cnp("new", { endpointSelector: { matchLabels: { app: "a3" } }, egress: [{ toEndpoints: [{ matchLabels: { app: "a4" } }], toPorts: [{ ports: [{ port: "80", protocol: "TCP" }] }] }] })]);
    expect(add.policy.recomputed).toEqual([3, 13, 23, 33]);
    expect([...add.policy.changes.keys()]).toEqual([3, 13, 23, 33]);
    expect(add.policy.changes.get(3)!.add).toHaveLength(1);
    expect(add.endpoints.upsert.map((r) => r.id)).toEqual([3, 13, 23, 33]);
    const del = engine.deletePolicies(["new"]);
    expect(del.policy.recomputed).toEqual([3, 13, 23, 33]);
    // replacing a policy recomputes what the old and new rules select
    const repl = engine.importPolicies([cnp("base", { endpointSelector: { matchLabels: { app: "a1" } }, ingress: [{}] })]);
    expect(repl.policy.recomputed).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39]);
  });

  test("an endpoint with a known label set recomputes only itself; a new label set also the endpoints whose peers select it", () => {
    const engine = node();
    expect(engine.upsertEndpoint(ep(41, { app: "a5", tier: "y" })).policy.recomputed).toEqual([41]);
    // a new identity with app=a2 is a peer of "base": every tier=x endpoint must admit it
    const change = engine.upsertEndpoint(ep(42, { app: "a2", tier: "z" }));
    expect(change.policy.recomputed).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 42]);
    expect(change.policy.changes.get(1)!.add).toEqual([{ identity: engine.endpoint(42)!.record.identity, port: 0, proto: 0, direction: "ingress", deny: false }]);
    // removing it releases the identity: the same endpoints drop it
    expect(engine.removeEndpoint(42).policy.recomputed).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39]);
    // removing one of two endpoints of a label set recomputes nobody
    expect(engine.removeEndpoint(41).policy.recomputed).toEqual([]);
  });

  test("importing the same document object again changes nothing and it can still be deleted", () => {
    const engine = node();
    const doc = cnp("again", { endpointSelector: { matchLabels: { app: "a6" } }, ingress: [{}] });
    expect(engine.importPolicies([doc]).policy.recomputed).toEqual([6, 16, 26, 36]);
    expect(engine.importPolicies([doc]).policy.recomputed).toEqual([]);
    expect(engine.deletePolicies(["again"]).policy.changes.size).toBe(0);
    expect(engine.endpoint(6)!.record.enforceIngress).toBe(false);
  });

  test("parsing a List once and importing it is one change", () => {
    const engine = node();
    const docs: PolicyDocument[] = parseDocuments({ kind: "List", items: [
      { apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "l1" }, spec: { endpointSelector: { matchLabels: { app: "a7" } }, ingress: [{}] } },
      { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "l2" }, spec: { podSelector: { matchLabels: { app: "a8" } } } },
    ] });
    expect(engine.importPolicies(docs).policy.recomputed).toEqual([7, 8, 17, 18, 27, 28, 37, 38]);
  });
});
