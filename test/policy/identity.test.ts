// Identity numbering and reference counting.
import { describe, expect, test } from "vitest";
import { LocalIdentityAllocator, LOCAL_IDENTITY_SCOPE } from "../../host/identity/allocator.js";
import { parsePrefix } from "../../host/packet/cidr.js";
import { LabelSet } from "../../host/identity/labels.js";
import { ReservedIdentity } from "../../host/policy/types.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { cnp, ep } from "./helpers.js";

const L = (s: string) => LabelSet.parse(s);

describe("LocalIdentityAllocator", () => {
  test("reserved identities 1..5 exist from the start with reserved: labels", () => {
    const a = new LocalIdentityAllocator();
    expect(a.list().map((i) => [i.id, i.labels.id])).toEqual([
      [ReservedIdentity.host, "reserved:host"], [ReservedIdentity.world, "reserved:world"], [ReservedIdentity.unmanaged, "reserved:unmanaged"],
      [ReservedIdentity.health, "reserved:health"], [ReservedIdentity.init, "reserved:init"],
    ]);
    expect(a.release(1)).toBeUndefined();
    expect(a.get(1)).toBeDefined();
  });

  test("label sets get 256 and up, shared and counted; freed numbers are reused lowest first", () => {
    const a = new LocalIdentityAllocator();
    const web = a.allocate(L("app=web"));
    expect(web).toMatchObject({ created: true, identity: { id: 256, kind: "endpoint" } });
    expect(a.allocate(L("k8s:app=web"))).toMatchObject({ created: false, identity: { id: 256 } });
    expect(a.allocate(L("app=db")).identity.id).toBe(257);
    expect(a.allocate(L("app=x")).identity.id).toBe(258);
    expect(a.references(256)).toBe(2);
    expect(a.release(256)).toBeUndefined();
    expect(a.release(256)?.labels.id).toBe("k8s:app=web");
    expect(a.get(256)).toBeUndefined();
    expect(a.release(257)?.id).toBe(257);
    expect(a.allocate(L("app=y")).identity.id).toBe(256);
    expect(a.allocate(L("app=z")).identity.id).toBe(257);
    expect(a.allocate(L("app=w")).identity.id).toBe(259);
  });

  test("a preferred number is honoured when free (stable numbers across restarts)", () => {
    const a = new LocalIdentityAllocator();
    expect(a.allocate(L("app=a"), 300).identity.id).toBe(300);
    expect(a.allocate(L("app=b"), 300).identity.id).toBe(256);
    expect(a.allocate(L("app=c")).identity.id).toBe(257);
  });

  test("CIDR identities live in the local scope (bit 24) with labels of every enclosing prefix and reserved:world", () => {
    const a = new LocalIdentityAllocator();
    const c = a.allocateCidr(parsePrefix("10.1.0.0/16", "cidr"));
    expect(c.identity.id).toBe(LOCAL_IDENTITY_SCOPE);
    expect(c.identity.labels.has("cidr", "10.0.0.0/8")).toBe(true);
    expect(c.identity.labels.has("cidr", "0.0.0.0/0")).toBe(true);
    expect(c.identity.labels.has("cidr", "10.2.0.0/16")).toBe(false);
    expect(c.identity.labels.has("reserved", "world")).toBe(true);
    expect(a.allocateCidr(parsePrefix("fd00::/8", "cidr")).identity.id).toBe(LOCAL_IDENTITY_SCOPE + 1);
  });
});

describe("identities through the engine", () => {
  test("endpoints with one label set share an identity; it goes with the last of them", () => {
    const engine = new PolicyEngine();
    engine.upsertEndpoint(ep(1, { app: "web" }));
    engine.upsertEndpoint(ep(2, { app: "web" }));
    const id = engine.endpoint(1)!.record.identity;
    expect(engine.endpoint(2)!.record.identity).toBe(id);
    engine.removeEndpoint(1);
    expect(engine.allocator.get(id)).toBeDefined();
    engine.removeEndpoint(2);
    expect(engine.allocator.get(id)).toBeUndefined();
  });

  test("a CIDR identity is held by every rule naming the prefix and released with the last", () => {
    const engine = new PolicyEngine();
    engine.upsertEndpoint(ep(1, { app: "web" }));
    const spec = { endpointSelector: {}, egress: [{ toCIDR: ["192.0.2.0/24"] }] };
    engine.importPolicies([cnp("a", spec), cnp("b", spec)]);
    expect(engine.ipcache().map((r) => r.cidr)).toContain("192.0.2.0/24");
    expect(engine.deletePolicies(["a"]).ipcache.remove).toEqual([]);
    // replacing a policy with itself never drops the prefix in between
    expect(engine.importPolicies([cnp("b", spec)]).ipcache).toEqual({ upsert: [], remove: [] });
    expect(engine.deletePolicies(["b"]).ipcache.remove).toEqual(["192.0.2.0/24"]);
    expect(engine.allocator.list().filter((i) => i.kind === "cidr")).toEqual([]);
  });

  test("endpoint addresses enter and leave the ipcache with the endpoint's identity", () => {
    const engine = new PolicyEngine();
    const add = engine.upsertEndpoint(ep(1, { app: "web" }, { ipv4: "10.9.0.1", ipv6: "fd00::1" }));
    expect(add.ipcache.upsert).toEqual([{ cidr: "10.9.0.1/32", identity: 256 }, { cidr: "fd00::1/128", identity: 256 }]);
    const relabel = engine.upsertEndpoint(ep(1, { app: "api" }, { ipv4: "10.9.0.1", ipv6: "fd00::1" }));
    expect(relabel.ipcache.upsert).toEqual([{ cidr: "10.9.0.1/32", identity: 257 }, { cidr: "fd00::1/128", identity: 257 }]);
    expect(relabel.endpoints.upsert.map((r) => [r.id, r.identity])).toEqual([[1, 257]]);
    expect(engine.removeEndpoint(1).ipcache.remove).toEqual(["10.9.0.1/32", "fd00::1/128"]);
    expect(() => engine.removeEndpoint(1)).toThrow("endpoint 1: not found");
  });

  test("two endpoints cannot claim one address", () => {
    const engine = new PolicyEngine();
    engine.upsertEndpoint(ep(1, { app: "web" }, { ipv4: "10.9.0.1" }));
    expect(() => engine.upsertEndpoint(ep(2, { app: "web" }, { ipv4: "10.9.0.1" }))).toThrow("ipv4 10.9.0.1 is already endpoint 1's");
    expect(engine.listEndpoints().map((e) => e.input.id)).toEqual([1]);
  });
});

describe("identities in the state file", () => {
  test("numbers survive a reload even where lowest-free allocation would pick others", async () => {
    const { engineFromState, policyState } = await import("../../host/state/policy.js");
    const engine = new PolicyEngine();
    engine.upsertEndpoint(ep(1, { app: "a" }));
    engine.upsertEndpoint(ep(2, { app: "b" }));
    engine.importPolicies([cnp("p", { endpointSelector: {}, egress: [{ toCIDR: ["192.0.2.0/24", "198.51.100.0/24"] }] })]);
    engine.removeEndpoint(1);
    engine.importPolicies([cnp("p", { endpointSelector: {}, egress: [{ toCIDR: ["198.51.100.0/24"] }] })]);
    const saved = JSON.parse(JSON.stringify(policyState(engine)));
    expect(saved.identities.map((i: { id: number }) => i.id)).toEqual([257, LOCAL_IDENTITY_SCOPE + 1]);
    const reloaded = engineFromState(saved);
    expect(policyState(reloaded)).toEqual(saved);
  });

  test("an import naming one policy twice is refused before anything changes", () => {
    const engine = new PolicyEngine();
    expect(() => engine.importPolicies([cnp("p", { endpointSelector: {} }), cnp("p", { endpointSelector: {}, ingress: [] })])).toThrow("policy default/p appears twice");
    expect(engine.listPolicies()).toEqual([]);
  });
});
