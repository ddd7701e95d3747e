/**
 * Manifests -> slim records, the pure part: frontends per cluster IP and
 * port, backends from ready addresses with EndpointSlice port names resolved
 * against the service's ports, dual-stack pods, node records, policy
 * documents without metadata noise, and the stored-manifest round trip.
 */
import { describe, expect, it } from "vitest";
import { encodeRecord } from "../../host/kvstore/records/codec.js";
import { keys } from "../../host/kvstore/keys.js";
import { nodeRecord, podRecords, policyRecord, serviceRecord } from "../../host/operator/convert.js";
import { decodeManifest, encodeManifest, manifestKey } from "../../host/operator/manifest-store.js";
import { parseManifestText } from "../../host/operator/manifests/index.js";
import type { EndpointsManifest, NodeManifest, PodManifest, PolicyManifest, ServiceManifest } from "../../host/operator/manifests/kinds.js";
import { podIdentityLabels } from "../../host/operator/pod-identity.js";

const parse = <T>(text: string) => parseManifestText(text, "t.yaml") as T[];

describe("convert", () => {
  it("a service: one frontend per cluster IP and port; backends per port name, ready addresses only, from every slice", () => {
    const [svc, a, b] = parse<ServiceManifest | EndpointsManifest>(`
apiVersion: v1
kind: Service
metadata: { name: api, namespace: ns }
spec: { clusterIPs: [10.96.0.5, "fd00:96::5"], ports: [{ name: http, port: 80 }, { name: dns, port: 53, protocol: UDP }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: api-1, namespace: ns, labels: { kubernetes.io/service-name: api } }
addressType: IPv4
endpoints:
  - { addresses: [10.1.0.2] }
  - { addresses: [10.1.0.3], conditions: { ready: false } }
ports: [{ name: http, port: 8080 }, { name: dns, port: 5353, protocol: UDP }, { name: metrics, port: 9090 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: api-2, namespace: ns, labels: { kubernetes.io/service-name: api } }
addressType: IPv6
endpoints: [{ addresses: ["fd00:1::2"] }]
ports: [{ name: http, port: 8081 }]
`);
    const out = serviceRecord(svc as ServiceManifest, [a as EndpointsManifest, b as EndpointsManifest])!;
    expect(out.key).toBe(keys.service("default", "ns", "api"));
    expect(out.record.frontends).toEqual([
      { ip: "10.96.0.5", port: 53, protocol: "UDP", name: "dns" },
      { ip: "10.96.0.5", port: 80, protocol: "TCP", name: "http" },
      { ip: "fd00:96::5", port: 53, protocol: "UDP", name: "dns" },
      { ip: "fd00:96::5", port: 80, protocol: "TCP", name: "http" },
    ]);
    // metrics is no service port: not a backend; 10.1.0.3 is not ready; the IPv6 slice only serves http.
    expect(out.record.backends).toEqual([
      { ip: "10.1.0.2", port: 5353, protocol: "UDP", name: "dns" },
      { ip: "10.1.0.2", port: 8080, protocol: "TCP", name: "http" },
      { ip: "fd00:1::2", port: 8081, protocol: "TCP", name: "http" },
    ]);
    expect(() => encodeRecord("service", out.record)).not.toThrow();
  });

  it("an unnamed single port matches the slice's unnamed port; Endpoints work as a slice; a headless service has no record", () => {
    const [svc, eps, headless] = parse<ServiceManifest | EndpointsManifest>(`
apiVersion: v1
kind: Service
metadata: { name: one }
spec: { clusterIP: 10.96.0.6, ports: [{ port: 80 }] }
---
apiVersion: v1
kind: Endpoints
metadata: { name: one }
subsets: [{ addresses: [{ ip: 10.1.0.9 }], notReadyAddresses: [{ ip: 10.1.0.10 }], ports: [{ port: 8080 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: hl }
spec: { clusterIP: None, ports: [{ port: 80 }] }
`);
    expect(serviceRecord(svc as ServiceManifest, [eps as EndpointsManifest])!.record.backends).toEqual([{ ip: "10.1.0.9", port: 8080, protocol: "TCP" }]);
    expect(serviceRecord(headless as ServiceManifest, [])).toBeUndefined();
  });

  it("a dual-stack pod: one endpoint record with both addresses, one ipcache record per address toward the node's address of that family", () => {
    const [node, pod] = parse<NodeManifest | PodManifest>(`
apiVersion: v1
kind: Node
metadata: { name: n1 }
spec: { podCIDRs: [10.1.0.0/24, "fd00:1::/64"] }
status: { addresses: [{ type: InternalIP, address: 10.0.0.1 }, { type: InternalIP, address: "fd00::1" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: p, namespace: ns, labels: { app: x } }
spec: { nodeName: n1 }
status: { podIPs: [{ ip: 10.1.0.4 }, { ip: "fd00:1::4" }] }
`);
    const n = nodeRecord(node as NodeManifest);
    expect(n.record).toEqual({ name: "n1", cluster: "default", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }, { type: "InternalIP", ip: "fd00::1" }], ipv4AllocCidr: "10.1.0.0/24", ipv6AllocCidr: "fd00:1::/64", encryptionKey: 0 });
    const recs = podRecords(pod as PodManifest, 4242, n.record);
    expect(recs.get(keys.endpoint("default", "ns", "p"))).toEqual({ cluster: "default", namespace: "ns", name: "p", node: "n1", ipv4: "10.1.0.4", ipv6: "fd00:1::4", identity: 4242 });
    expect(recs.get(keys.ipcache("10.1.0.4/32"))).toMatchObject({ identity: 4242, hostIp: "10.0.0.1" });
    expect(recs.get(keys.ipcache("fd00:1::4/128"))).toMatchObject({ identity: 4242, hostIp: "fd00::1" });
    for (const [key, input] of recs) expect(() => encodeRecord(key.includes("/ipcache/") ? "ipcache" : "endpoint", input), key).not.toThrow();
    // No address yet: nothing to route to.
    expect(podRecords({ ...(pod as PodManifest), ips: [] }, 4242, n.record).size).toBe(0);
  });

  it("a pod's identity labels: its labels under k8s: plus its namespace, whatever namespace label it claims", () => {
    expect(podIdentityLabels({ namespace: "shop", labels: { app: "web", "io.kubernetes.pod.namespace": "other" } }).id).toBe("k8s:app=web,k8s:io.kubernetes.pod.namespace=shop");
  });

  it("policies and stored manifests: annotations are not carried, a stored manifest reads back as it was applied, a value that does not fit its key is refused", () => {
    const [policy, pod] = parse<PolicyManifest | PodManifest>(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: allow, namespace: ns, annotations: { a: b }, labels: { team: x } }
spec: { endpointSelector: { matchLabels: { app: x } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: y } }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: p, namespace: ns, labels: { app: x }, annotations: { z: "1" } }
spec: { nodeName: n1 }
status: { podIP: 10.1.0.4 }
`);
    const rec = policyRecord(policy as PolicyManifest);
    expect(rec.key).toBe(keys.policy("ns", "allow"));
    expect(rec.record.document).toEqual({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "allow", namespace: "ns" }, spec: (policy as PolicyManifest).policy.source && ((policy as PolicyManifest).policy.source as { spec: unknown }).spec });
    expect(() => encodeRecord("policy", rec.record)).not.toThrow();
    for (const m of [policy!, pod!]) {
      const back = decodeManifest(manifestKey(m), encodeManifest(m));
      expect(encodeManifest(back)).toBe(encodeManifest(m));
    }
    expect(manifestKey(pod!)).toBe("membrane/manifests/v1/pods/ns/p");
    expect(() => decodeManifest("membrane/manifests/v1/pods/ns/q", encodeManifest(pod!))).toThrow(/the object inside is membrane\/manifests\/v1\/pods\/ns\/p/);
    expect(() => decodeManifest("membrane/manifests/v1/nodes/_cluster/p", encodeManifest(pod!))).toThrow(/kind: expected Node, got "Pod"/);
    expect(() => decodeManifest("membrane/manifests/v1/pods/ns/p", "{")).toThrow(/not JSON/);
  });
});
