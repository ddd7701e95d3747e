// Rule documents: every malformed field is refused with its path, and nothing is applied.
import { describe, expect, test } from "vitest";
import { parseDocuments, parsePolicyText } from "../../host/policy/document.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { cnp, ep } from "./helpers.js";

const CNP = (spec: unknown, extra: object = {}) => ({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "p", namespace: "default" }, spec, ...extra });
const KNP = (spec: unknown) => ({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "p" }, spec });
const ports = (...p: unknown[]) => ({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: "80" }] }, { ports: p }] }] });

describe("CiliumNetworkPolicy validation", () => {
  test.each<[unknown, string]>([
    [CNP(ports({ port: "70000" })), "CiliumNetworkPolicy default/p: spec.ingress[0].toPorts[1].ports[0].port: must be 0..65535 (0: every port), got \"70000\""],
    [CNP(ports({ port: -1 })), "spec.ingress[0].toPorts[1].ports[0].port: must be 0..65535"],
    [CNP(ports({ port: "http" })), "spec.ingress[0].toPorts[1].ports[0].port: named ports (\"http\") are not supported"],
    [CNP(ports({ port: "80", protocol: "tcp" })), "spec.ingress[0].toPorts[1].ports[0].protocol: expected one of TCP, UDP, ANY, ICMP, ICMPv6, got \"tcp\""],
    [CNP(ports({ port: "80", protocol: "SCTP" })), "spec.ingress[0].toPorts[1].ports[0].protocol: SCTP is not supported"],
    [CNP(ports({ port: "8", protocol: "ICMP" })), "spec.ingress[0].toPorts[1].ports[0].port: ICMP has no ports"],
    [CNP(ports({ port: "80", endPort: 79 })), "spec.ingress[0].toPorts[1].ports[0].endPort: must not be below port (80), got 79"],
    [CNP(ports({ port: "1", endPort: 5000 })), "spec.ingress[0].toPorts[1].ports[0].endPort: a range may span at most 1024 ports"],
    [CNP(ports({ prot: "TCP" })), "spec.ingress[0].toPorts[1].ports[0].prot: unknown field"],
    [CNP({ ingress: [] }), "spec.endpointSelector: required"],
    [CNP({ endpointSelector: {}, ingress: [{ fromEndpoint: [{}] }] }), "spec.ingress[0].fromEndpoint: unknown field"],
    [CNP({ endpointSelector: {}, egress: [{ fromEndpoints: [{}] }] }), "spec.egress[0].fromEndpoints: unknown field"],
    [CNP({ endpointSelector: {}, egress: [{ toCIDR: ["10.0.0.1/8"] }] }), "spec.egress[0].toCIDR[0]: 10.0.0.1/8 has bits set beyond the prefix length (did you mean 10.0.0.0/8?)"],
    [CNP({ endpointSelector: {}, egress: [{ toCIDR: ["10.0.0.0/33"] }] }), "spec.egress[0].toCIDR[0]: prefix length 33 is too long for IPv4"],
    [CNP({ endpointSelector: {}, egress: [{ toCIDRSet: [{ cidr: "10.0.0.0/8", except: ["11.0.0.0/16"] }] }] }), "spec.egress[0].toCIDRSet[0].except[0]: 11.0.0.0/16 is not a sub-range of 10.0.0.0/8"],
    [CNP({ endpointSelector: {}, egress: [{ toCIDRSet: [{ cidr: "fd00::/8", except: ["fd00::/8"] }] }] }), "spec.egress[0].toCIDRSet[0].except[0]: fd00::/8 is not a sub-range of fd00::/8"],
    [CNP({ endpointSelector: {}, egress: [{ toEntities: ["everything"] }] }), "spec.egress[0].toEntities[0]: expected one of all, world, cluster, host, health, init, unmanaged"],
    [CNP({ endpointSelector: {}, egress: [{ toFQDNs: [{ matchName: "x.com" }] }] }), "spec.egress[0].toFQDNs: DNS-based rules (toFQDNs) are not supported"],
    [CNP({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: "80" }], rules: { http: [{}] } }] }] }), "spec.ingress[0].toPorts[0].rules: L7 / proxy rules are not supported"],
    [CNP({ endpointSelector: {}, ingressDeny: [{ fromEndpoints: [{ matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] }] }] }), "spec.ingressDeny[0].fromEndpoints[0].matchExpressions[0].values: must be empty for operator Exists"],
    [CNP({ endpointSelector: {}, ingress: {} }), "spec.ingress: expected a list"],
    [{ ...CNP({ endpointSelector: {} }), apiVersion: "cilium.io/v1" }, "apiVersion: expected \"cilium.io/v2\""],
    [{ ...CNP(undefined), specs: [{ endpointSelector: {} }, { endpointSelector: { matchLabels: { a: 1 } } }] }, "specs[1].endpointSelector.matchLabels.a: expected a string"],
    [{ ...CNP({ endpointSelector: {} }), metadata: { name: "Bad_Name" } }, "metadata.name: \"Bad_Name\" is not a valid name"],
    [{ kind: "Pod", apiVersion: "v1" }, "kind: expected NetworkPolicy, CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy"],
  ])("%#: %s", (doc, message) => {
    expect(() => parseDocuments(doc)).toThrow(message);
  });
});

describe("NetworkPolicy validation", () => {
  test.each<[unknown, string]>([
    [KNP({ podSelector: {}, ingress: [{ ports: [{ port: 0 }] }] }), "NetworkPolicy default/p: spec.ingress[0].ports[0].port: must be 1..65535, got 0"],
    [KNP({ podSelector: {}, ingress: [{ ports: [{ port: 80, protocol: "ICMP" }] }] }), "spec.ingress[0].ports[0].protocol: expected one of TCP, UDP"],
    [KNP({ podSelector: {}, ingress: [{ from: [{}] }] }), "spec.ingress[0].from[0]: needs podSelector, namespaceSelector or ipBlock"],
    [KNP({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }] }), "spec.ingress[0].from[0]: ipBlock cannot be combined"],
    [KNP({ podSelector: {}, ingress: [{ from: [{ ipBlock: {} }] }] }), "spec.ingress[0].from[0].ipBlock.cidr: required"],
    [KNP({ podSelector: {}, policyTypes: ["Ingress"], egress: [{}] }), "spec.egress: given, but policyTypes does not include Egress"],
    [KNP({ podSelector: {}, policyTypes: ["ingress"] }), "spec.policyTypes[0]: expected \"Ingress\" or \"Egress\""],
    [KNP({ ingress: [] }), "spec.podSelector: required"],
    [KNP({ podSelector: {}, egress: [{ to: [{ namespaceSelector: { matchLabels: { team: "" } }, podSelector: { matchExpressions: [{ key: "x", operator: "Bad" }] } }] }] }), "spec.egress[0].to[0].podSelector.matchExpressions[0].operator"],
  ])("%#: %s", (doc, message) => {
    expect(() => parseDocuments(doc)).toThrow(message);
  });
});

describe("imports are all or nothing", () => {
  test("a list with one bad document is refused as a whole, naming the item", () => {
    const good = CNP({ endpointSelector: {}, ingress: [{}] });
    const bad = { ...CNP({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: "99999" }] }] }] }), metadata: { name: "bad" } };
    expect(() => parseDocuments({ kind: "List", items: [good, bad] })).toThrow("CiliumNetworkPolicy default/bad: items[1].spec.ingress[0].toPorts[0].ports[0].port: must be 0..65535");
    expect(() => parseDocuments([good, good])).toThrow("policy default/p appears twice");
  });

  test("the engine is untouched by a refused delete", () => {
    const engine = new PolicyEngine();
    engine.upsertEndpoint(ep(1, { app: "web" }));
    engine.importPolicies([cnp("a", { endpointSelector: {}, ingress: [{}] })]);
    expect(() => engine.deletePolicies(["default/a", "default/missing"])).toThrow("policy default/missing: not found");
    expect(engine.listPolicies().map((p) => p.name)).toEqual(["default/a"]);
    expect(engine.endpoint(1)!.record.enforceIngress).toBe(true);
  });
});

describe("policy files nested past any policy's depth", () => {
  const deepJson = (levels: number) => JSON.stringify(CNP({ endpointSelector: {}, ingress: [{}] })).replace('"ingress":[{}]', `"ingress":[${'{"a":'.repeat(levels)}1${"}".repeat(levels)}]`);
  test.each([
    ["JSON, 20,000 levels", deepJson(20_000), "deep.json", /^parse deep\.json: spec\.ingress\[0\]\.a\.a(\.a)+ is nested more than 64 levels deep$/],
    ["JSON arrays, 100,000 levels", "[".repeat(100_000) + "]".repeat(100_000), "deep.json", /^parse deep\.json: (\[0\])+ is nested more than 64 levels deep$/],
    ["YAML flow lists, 100,000 levels", "[".repeat(100_000) + "]".repeat(100_000), "deep.yaml", /^parse deep\.yaml: (\[0\])+ is nested more than 64 levels deep$/],
  ])("%s: refused naming the file and the path, no stack overflow", (_name, text, file, message) => {
    expect(() => parsePolicyText(text, file)).toThrow(message);
  });

  test("a policy as deep as real ones still parses", () => {
    expect(parsePolicyText(JSON.stringify(CNP({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: "80" }] }] }] })), "ok.json")).toHaveLength(1);
  });
});
