import { describe, expect, it } from "vitest";
import { keys, kindPrefix, parseStateKey, RECORD_KINDS, UnsupportedVersionError } from "../../host/kvstore/keys.js";
import { decodeRecord, encodeRecord } from "../../host/kvstore/records/codec.js";
import { ChangeFilter } from "../../host/kvstore/records/change-filter.js";
import { InvalidInputError } from "../../host/errors.js";

const node = {
  name: "node-1",
  cluster: "default",
  addresses: [{ type: "InternalIP", ip: "192.168.0.10" }],
  ipv4AllocCidr: "10.1.0.0/24",
  ipv4HealthIp: "10.1.0.2",
  encryptionKey: 3,
};

const policyDoc = {
  apiVersion: "cilium.io/v2",
  kind: "CiliumNetworkPolicy",
  metadata: { name: "web", namespace: "prod" },
  spec: { endpointSelector: { matchLabels: { app: "web" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "client" } }] }] },
};

describe("key layout", () => {
  it("puts every kind under membrane/state/<kind>/v1/", () => {
    for (const kind of RECORD_KINDS) expect(kindPrefix(kind)).toBe(`membrane/state/${kind}/v1/`);
    expect(keys.node("default", "node-1")).toBe("membrane/state/nodes/v1/default/node-1");
    expect(keys.identityMaster(300)).toBe("membrane/state/identities/v1/id/300");
    expect(keys.ipcache("10.1.0.5/32")).toBe("membrane/state/ipcache/v1/default/10.1.0.5/32");
    expect(keys.policy(undefined, "deny-all")).toBe("membrane/state/policies/v1/_cluster/deny-all");
    expect(keys.pod("default", "node-1", "prod", "web-0")).toBe("membrane/state/pods/v1/default/node-1/prod/web-0");
    // one node's pods: node "node-1" must not cover node "node-10"'s keys
    expect(keys.pod("default", "node-10", "prod", "web-0").startsWith(keys.nodePods("default", "node-1"))).toBe(false);
    expect(keys.pod("default", "node-1", "prod", "web-0").startsWith(keys.nodePods("default", "node-1"))).toBe(true);
  });

  it("encodes label sets so one set's prefix never covers another's keys", () => {
    const a = keys.identityValues("k8s:app=a");
    const b = keys.identityValue("k8s:app=a/x", "node-1"); // a label key may hold "/"
    expect(b.startsWith(a)).toBe(false);
    expect(keys.identityValue("k8s:app=a", "node-1").startsWith(a)).toBe(true);
    expect(parseStateKey(b).path).toEqual(["value", "k8s:app=a/x", "node-1"]);
  });

  it("refuses an unknown version with a clear error, and keys outside the layout", () => {
    const err = (() => {
      try {
        parseStateKey("membrane/state/nodes/v2/default/node-1");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UnsupportedVersionError);
    expect((err as Error).message).toMatch(/nodes records of version "v2" are not supported \(this membrane reads v1/);
    expect(() => decodeRecord("membrane/state/services/v9/default/ns/web", "{}")).toThrow(UnsupportedVersionError);
    expect(() => parseStateKey("membrane/state/widgets/v1/x")).toThrow(/unknown record kind "widgets"/);
    expect(() => parseStateKey("cilium/state/nodes/v1/default/n")).toThrow(InvalidInputError);
  });
});

describe("records", () => {
  it("round-trip each kind through encode and decode", () => {
    const cases: [string, Parameters<typeof encodeRecord>[0], unknown][] = [
      [keys.node("default", "node-1"), "node", node],
      [keys.identityMaster(300), "identity-master", { labels: ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=prod"] }],
      [keys.identityValue("k8s:app=web", "node-1"), "identity-value", { id: 300 }],
      [keys.ipcache("10.1.0.5/32"), "ipcache", { prefix: "10.1.0.5/32", identity: 300, hostIp: "192.168.0.10", encryptionKey: 3, namespace: "prod", podName: "web-0" }],
      [keys.service("default", "prod", "web"), "service", {
        cluster: "default", namespace: "prod", name: "web",
        frontends: [{ ip: "10.96.0.10", port: 80, protocol: "TCP" }],
        backends: [{ ip: "10.1.0.5", port: 8080, protocol: "TCP", name: "http" }],
      }],
      [keys.endpoint("default", "prod", "web-0"), "endpoint", { cluster: "default", namespace: "prod", name: "web-0", node: "node-1", ipv4: "10.1.0.5", identity: 300 }],
      [keys.policy("prod", "web"), "policy", { name: "prod/web", document: policyDoc }],
      [keys.pod("default", "node-1", "prod", "web-0"), "pod", { namespace: "prod", name: "web-0", node: "node-1", labels: { app: "web", canary: "" }, ips: ["10.1.0.5", "fd00::5"] }],
      [keys.pod("default", "node-1", "prod", "pending"), "pod", { namespace: "prod", name: "pending", node: "node-1", labels: {}, ips: [] }],
    ];
    for (const [key, type, input] of cases) {
      const value = encodeRecord(type, input, key);
      const decoded = decodeRecord(key, value);
      expect(decoded.type, key).toBe(type);
      expect(decoded.record, key).toEqual(input);
    }
  });

  it("slim encoding keeps only the fields agents need", () => {
    const full = { ...node, labels: { zone: "a" }, annotations: { big: "x".repeat(1000) }, status: { conditions: [] } };
    const value = encodeRecord("node", full);
    expect(JSON.parse(value)).toEqual(node);
    expect(value.length).toBeLessThan(300);
  });

  it("decoding refuses a stray field, bad JSON and bad values, naming the key and field", () => {
    const key = keys.node("default", "node-1");
    expect(() => decodeRecord(key, JSON.stringify({ ...node, extra: 1 }))).toThrow(`${key}.extra: unknown field`);
    expect(() => decodeRecord(key, "{not json")).toThrow(`kvstore key ${key}: value is not JSON`);
    expect(() => decodeRecord(key, JSON.stringify({ ...node, encryptionKey: 16 }))).toThrow(`${key}.encryptionKey: expected a whole number in 0..15`);
    expect(() => decodeRecord(key, JSON.stringify({ ...node, addresses: [{ type: "InternalIP", ip: "300.1.1.1" }] }))).toThrow(`${key}.addresses[0].ip`);
    expect(() => decodeRecord(key, JSON.stringify({ ...node, ipv4AllocCidr: "10.1.0.1/24" }))).toThrow(/bits set beyond the prefix length/);
    const ipKey = keys.ipcache("10.1.0.5/32");
    expect(() => decodeRecord(ipKey, JSON.stringify({ prefix: "10.1.0.5/32", identity: 0 }))).toThrow(`${ipKey}.identity`);
    expect(() => decodeRecord(keys.identityValue("k8s:a=b", "n"), JSON.stringify({ id: 12 }))).toThrow(/256\.\.65535/);
    expect(() => decodeRecord(keys.identityMaster(300), JSON.stringify({ labels: [] }))).toThrow(/at least one label/);
    expect(() => decodeRecord(keys.identityLock("k8s:a=b"), "{}")).toThrow(/holds no identity record/);
    const badPolicy = { name: "prod/web", document: { ...policyDoc, spec: { endpointSelector: { matchLabels: { app: "web" } }, ingress: [{ toPorts: [{ ports: [{ port: "99999" }] }] }] } } };
    expect(() => decodeRecord(keys.policy("prod", "web"), JSON.stringify(badPolicy))).toThrow(/ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port/);
    expect(() => decodeRecord(keys.policy("prod", "web"), JSON.stringify({ name: "prod/other", document: policyDoc }))).toThrow(/but the document is prod\/web/);
    const podKey = keys.pod("default", "node-1", "prod", "web-0");
    const pod = { namespace: "prod", name: "web-0", node: "node-1", labels: { app: "web" }, ips: ["10.1.0.5"] };
    expect(() => decodeRecord(podKey, JSON.stringify({ ...pod, ips: ["10.1.0.5", "10.1.0.6"] }))).toThrow(`${podKey}.ips: at most one address per family`);
    expect(() => decodeRecord(podKey, JSON.stringify({ ...pod, ips: ["10.1.0.300"] }))).toThrow(`${podKey}.ips[0]`);
    expect(() => decodeRecord(podKey, JSON.stringify({ ...pod, labels: { app: 7 } }))).toThrow(`${podKey}.labels.app: expected a string`);
    expect(() => decodeRecord(podKey, JSON.stringify({ ...pod, node: "" }))).toThrow(`${podKey}.node: expected a non-empty string`);
    expect(() => decodeRecord(podKey, JSON.stringify({ ...pod, spec: {} }))).toThrow(`${podKey}.spec: unknown field`);
  });
});

describe("write only on change", () => {
  it("skips writes whose slim form is unchanged, whatever else changed", () => {
    const filter = new ChangeFilter();
    const key = keys.node("default", "node-1");
    expect(filter.encode(key, node)).toBe(JSON.stringify(node));
    expect(filter.encode(key, { ...node, status: { heartbeat: Date.now() } })).toBeUndefined();
    expect(filter.encode(key, { ...node, annotations: { a: "b" } })).toBeUndefined();
    const moved = filter.encode(key, { ...node, encryptionKey: 4 });
    expect(moved && JSON.parse(moved).encryptionKey).toBe(4);
    filter.forget(key);
    expect(filter.encode(key, { ...node, encryptionKey: 4 })).toBeDefined();
  });

  it("after a restart, a record already in the store is not written again", () => {
    const filter = new ChangeFilter();
    const key = keys.node("default", "node-1");
    filter.seed(key, JSON.stringify(node));
    expect(filter.encode(key, { ...node, labels: { zone: "b" } })).toBeUndefined();
    expect(filter.encode(key, { ...node, ipv4HealthIp: "10.1.0.3" })).toBeDefined();
  });

  it("refuses bad input before remembering it", () => {
    const filter = new ChangeFilter();
    const key = keys.node("default", "node-1");
    expect(() => filter.encode(key, { ...node, name: "" })).toThrow(InvalidInputError);
    expect(filter.encode(key, node)).toBeDefined();
  });
});
