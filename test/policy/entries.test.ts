// What each endpoint's table holds for rules by identity, port, protocol and direction; and the verdicts it gives.
import { describe, expect, test } from "vitest";
import { PolicyEngine } from "../../host/policy/engine.js";
import { LOCAL_IDENTITY_SCOPE } from "../../host/identity/allocator.js";
import { cnp, ep, identityOf, knp, verdict } from "./helpers.js";

function setup() {
  const engine = new PolicyEngine();
  engine.upsertEndpoint(ep(1, { app: "web" }));
  engine.upsertEndpoint(ep(2, { app: "db" }));
  engine.upsertEndpoint(ep(3, { app: "bad" }));
  engine.upsertEndpoint(ep(4, { app: "web", "io.kubernetes.pod.namespace": "other" }));
  return { engine, web: identityOf(engine, 1), db: identityOf(engine, 2), bad: identityOf(engine, 3), webOther: identityOf(engine, 4) };
}
const TCP = 6, UDP = 17, ICMP = 1;

describe("allow rules", () => {
  test("an endpoint no rule selects enforces nothing and allows everything", () => {
    const { engine, db } = setup();
    expect(engine.endpoint(1)!.record).toMatchObject({ enforceIngress: false, enforceEgress: false });
    expect(engine.policyEntries(1)).toEqual([]);
    expect(verdict(engine, 1, "ingress", db, 9999, UDP)).toBe("allow");
  });

  test("ingress from an identity on one TCP port: only that identity, port, protocol and direction", () => {
    const { engine, web, db, bad } = setup();
    const change = engine.importPolicies([cnp("db", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }], toPorts: [{ ports: [{ port: "5432", protocol: "TCP" }] }] }] })]);
    expect(change.policy.recomputed).toEqual([2]);
    expect(engine.policyEntries(2)).toEqual([{ identity: web, port: 5432, proto: TCP, direction: "ingress", deny: false }]);
    expect(engine.endpoint(2)!.record).toMatchObject({ enforceIngress: true, enforceEgress: false });
    expect(change.endpoints.upsert.map((r) => r.id)).toEqual([2]);
    expect(verdict(engine, 2, "ingress", web, 5432, TCP)).toBe("allow");
    expect(verdict(engine, 2, "ingress", web, 5432, UDP)).toBe("deny");
    expect(verdict(engine, 2, "ingress", web, 5433, TCP)).toBe("deny");
    expect(verdict(engine, 2, "ingress", bad, 5432, TCP)).toBe("deny");
    expect(verdict(engine, 2, "egress", bad, 1, UDP)).toBe("allow");
    // the namespace scopes fromEndpoints: web in "other" is not web here
    expect(engine.policyEntries(2).some((e) => e.identity === identityOf(engine, 4))).toBe(false);
    expect(db).not.toBe(web);
  });

  test("protocol ANY is TCP and UDP; no toPorts is every port and protocol; L4-only is any identity", () => {
    const { engine, web } = setup();
    engine.importPolicies([cnp("p", {
      endpointSelector: { matchLabels: { app: "db" } },
      ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }], toPorts: [{ ports: [{ port: "53" }] }] }, { toPorts: [{ ports: [{ port: "8080", endPort: 8081, protocol: "TCP" }, { protocol: "ICMP" }] }] }],
      egress: [{ toEndpoints: [{ matchLabels: { app: "web" } }] }],
    })]);
    expect(engine.policyEntries(2)).toEqual([
      { identity: 0, port: 0, proto: ICMP, direction: "ingress", deny: false },
      { identity: 0, port: 8080, proto: TCP, direction: "ingress", deny: false },
      { identity: 0, port: 8081, proto: TCP, direction: "ingress", deny: false },
      { identity: web, port: 53, proto: TCP, direction: "ingress", deny: false },
      { identity: web, port: 53, proto: UDP, direction: "ingress", deny: false },
      { identity: web, port: 0, proto: 0, direction: "egress", deny: false },
    ]);
    expect(verdict(engine, 2, "ingress", 12345, 8081, TCP)).toBe("allow");
    expect(verdict(engine, 2, "ingress", 12345, 0, ICMP)).toBe("allow");
    expect(verdict(engine, 2, "egress", web, 22, TCP)).toBe("allow");
    expect(verdict(engine, 2, "egress", 2, 22, TCP)).toBe("deny");
  });

  test("`ingress: [{}]` is Cilium's default deny; NetworkPolicy `ingress: [{}]` allows everything", () => {
    const { engine } = setup();
    engine.importPolicies([cnp("deny", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{}] }), knp("open", { podSelector: { matchLabels: { app: "web" } }, ingress: [{}] })]);
    expect(engine.policyEntries(2)).toEqual([]);
    expect(engine.endpoint(2)!.record.enforceIngress).toBe(true);
    expect(verdict(engine, 2, "ingress", 2, 80, TCP)).toBe("deny");
    expect(engine.policyEntries(1)).toEqual([{ identity: 0, port: 0, proto: 0, direction: "ingress", deny: false }]);
    expect(engine.endpoint(1)!.record).toMatchObject({ enforceIngress: true, enforceEgress: false });
  });

  test("NetworkPolicy: policyTypes Egress with no rules denies all egress; namespaceSelector selects other namespaces' pods", () => {
    const { engine, webOther, web } = setup();
    engine.upsertEndpoint(ep(5, { app: "web", "io.kubernetes.pod.namespace": "prod", "io.cilium.k8s.namespace.labels.team": "a" }));
    const prodWeb = identityOf(engine, 5);
    engine.importPolicies([knp("p", {
      podSelector: { matchLabels: { app: "db" } },
      policyTypes: ["Ingress", "Egress"],
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "a" } }, podSelector: { matchLabels: { app: "web" } } }, { namespaceSelector: {} , podSelector: { matchLabels: { app: "nothing" } } }], ports: [{ port: 80 }] }],
    })]);
    expect(engine.policyEntries(2)).toEqual([{ identity: prodWeb, port: 80, proto: TCP, direction: "ingress", deny: false }]);
    expect(engine.endpoint(2)!.record).toMatchObject({ enforceIngress: true, enforceEgress: true });
    expect(verdict(engine, 2, "egress", web, 80, TCP)).toBe("deny");
    expect([web, webOther]).not.toContain(prodWeb);
  });
});

describe("deny rules", () => {
  test("a deny wins over an allow for the same traffic, however wide either is", () => {
    const { engine, web, db, bad } = setup();
    engine.importPolicies([cnp("p", {
      endpointSelector: { matchLabels: { app: "db" } },
      ingress: [{ fromEntities: ["cluster"] }, { fromEndpoints: [{ matchLabels: { app: "bad" } }], toPorts: [{ ports: [{ port: "80", protocol: "TCP" }] }] }],
      ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: "bad" } }] }, { toPorts: [{ ports: [{ port: "22", protocol: "TCP" }] }] }],
    })]);
    const entries = engine.policyEntries(2);
    expect(entries).toContainEqual({ identity: bad, port: 0, proto: 0, direction: "ingress", deny: true });
    expect(entries).toContainEqual({ identity: 0, port: 22, proto: TCP, direction: "ingress", deny: true });
    expect(entries).toContainEqual({ identity: bad, port: 80, proto: TCP, direction: "ingress", deny: false });
    expect(verdict(engine, 2, "ingress", bad, 80, TCP)).toBe("deny");
    expect(verdict(engine, 2, "ingress", web, 80, TCP)).toBe("allow");
    expect(verdict(engine, 2, "ingress", web, 22, TCP)).toBe("deny");
    expect(verdict(engine, 2, "ingress", 1, 443, TCP)).toBe("allow"); // host is in the cluster entity
    expect(verdict(engine, 2, "ingress", 2, 443, TCP)).toBe("deny"); // world is not
    expect(db).toBeGreaterThanOrEqual(256);
  });

  test("an allow and a deny with the same key leave only the deny; a deny-only rule enforces its direction", () => {
    const { engine, web } = setup();
    engine.importPolicies([
      cnp("allow", { endpointSelector: { matchLabels: { app: "db" } }, egress: [{ toEndpoints: [{ matchLabels: { app: "web" } }] }] }),
      cnp("deny", { endpointSelector: { matchLabels: { app: "db" } }, egressDeny: [{ toEndpoints: [{ matchLabels: { app: "web" } }] }] }),
    ]);
    expect(engine.policyEntries(2)).toEqual([{ identity: web, port: 0, proto: 0, direction: "egress", deny: true }]);
    engine.deletePolicies(["allow"]);
    expect(engine.endpoint(2)!.record.enforceEgress).toBe(true);
    expect(engine.policyEntries(2)).toEqual([{ identity: web, port: 0, proto: 0, direction: "egress", deny: true }]);
  });
});

describe("entities and CIDRs", () => {
  test("entities: all is identity 0, host 1, world 2 and every CIDR identity", () => {
    const { engine } = setup();
    engine.importPolicies([cnp("p", { endpointSelector: { matchLabels: { app: "db" } }, egress: [{ toEntities: ["host"] }, { toEntities: ["world"], toPorts: [{ ports: [{ port: "443", protocol: "TCP" }] }] }, { toCIDR: ["192.0.2.0/24"], toPorts: [{ ports: [{ port: "1", protocol: "UDP" }] }] }], ingress: [{ fromEntities: ["all"] }] })]);
    const cidrId = engine.ipcache().find((r) => r.cidr === "192.0.2.0/24")!.identity;
    expect(cidrId).toBeGreaterThanOrEqual(LOCAL_IDENTITY_SCOPE);
    expect(engine.policyEntries(2)).toEqual([
      { identity: 0, port: 0, proto: 0, direction: "ingress", deny: false },
      { identity: 1, port: 0, proto: 0, direction: "egress", deny: false },
      { identity: 2, port: 443, proto: TCP, direction: "egress", deny: false },
      { identity: cidrId, port: 1, proto: UDP, direction: "egress", deny: false },
      { identity: cidrId, port: 443, proto: TCP, direction: "egress", deny: false },
    ]);
  });

  test("fromEndpoints naming a reserved label selects that reserved identity, namespace or not", () => {
    const { engine, web } = setup();
    engine.importPolicies([cnp("p", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [{ fromEndpoints: [{ matchLabels: { "reserved:host": "" } }, { matchLabels: { app: "web" } }] }] })]);
    expect(engine.policyEntries(2).map((e) => e.identity)).toEqual([1, web]);
  });

  test("a CIDR with an exception: both prefixes in the ipcache, addresses in the hole denied (IPv4 and IPv6)", () => {
    const { engine } = setup();
    const change = engine.importPolicies([cnp("p", { endpointSelector: { matchLabels: { app: "db" } }, egress: [{ toCIDRSet: [{ cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] }, { cidr: "fd00::/8", except: ["fd00:1::/32"] }] }] })]);
    expect(change.ipcache.upsert.map((r) => r.cidr)).toEqual(["10.0.0.0/8", "10.1.0.0/16", "fd00:1::/32", "fd00::/8"]);
    const check = (addr: string) => verdict(engine, 2, "egress", engine.resolveAddress(addr).identity, 80, TCP);
    expect(check("10.200.0.1")).toBe("allow");
    expect(check("10.1.2.3")).toBe("deny");
    expect(check("11.0.0.1")).toBe("deny");
    expect(check("fd00:2::1")).toBe("allow");
    expect(check("fd00:1::1")).toBe("deny");
    expect(check("fe80::1")).toBe("deny");
    // endpoint addresses resolve to their endpoint identity, not to a CIDR (as Cilium: CIDR rules are for outside the cluster)
    expect(engine.resolveAddress("10.0.0.1")).toMatchObject({ identity: identityOf(engine, 1), endpoint: 1 });
  });

  test("a narrower prefix named by another rule stays admitted by the wider rule", () => {
    const { engine } = setup();
    engine.importPolicies([cnp("wide", { endpointSelector: { matchLabels: { app: "db" } }, egress: [{ toCIDR: ["10.0.0.0/8"] }] })]);
    const change = engine.importPolicies([cnp("narrow", { endpointSelector: { matchLabels: { app: "bad" } }, egress: [{ toCIDR: ["10.1.0.0/16"] }] })]);
    // db's table gains the new identity: without it, 10.1.x.x (now resolving to it) would be refused to db
    expect(change.policy.recomputed).toEqual([2, 3]);
    const narrow = engine.ipcache().find((r) => r.cidr === "10.1.0.0/16")!.identity;
    expect(change.policy.changes.get(2)).toEqual({ add: [{ identity: narrow, port: 0, proto: 0, direction: "egress", deny: false }], remove: [] });
    expect(verdict(engine, 2, "egress", engine.resolveAddress("10.1.0.9").identity, 80, TCP)).toBe("allow");
    expect(verdict(engine, 3, "egress", engine.resolveAddress("10.2.0.9").identity, 80, TCP)).toBe("deny");
    const del = engine.deletePolicies(["narrow"]);
    expect(del.ipcache.remove).toEqual(["10.1.0.0/16"]);
    expect(del.policy.changes.get(2)!.remove).toEqual([{ identity: narrow, port: 0, proto: 0, direction: "egress", deny: false }]);
  });
});
