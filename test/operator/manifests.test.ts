// Manifests: Kubernetes objects reduced to what membrane uses; a bad document
// refuses the whole file (or directory), naming file, document, object and field.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseManifestText, readManifests } from "../../host/operator/manifests/index.js";
import { testTempDir } from "../support/temp-dir.js";

const CLUSTER = `
apiVersion: v1
kind: Node
metadata: { name: node-a, labels: { zone: a }, annotations: { note: ignored } }
spec: { podCIDRs: ["10.1.0.0/24", "fd00:1::/64"] }
status:
  addresses:
    - { type: Hostname, address: node-a }
    - { type: ExternalIP, address: 192.0.2.10 }
    - { type: InternalIP, address: 10.0.0.1 }
    - { type: InternalIP, address: "fd00::0001" }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: node-a }
status: { podIP: 10.1.0.5, podIPs: [{ ip: 10.1.0.5 }, { ip: "fd00:1::5" }] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  clusterIPs: [10.96.0.10, "fd00:96::a"]
  ports: [{ name: http, port: 80 }, { name: dns, port: 53, protocol: UDP }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-abc, namespace: shop, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
endpoints:
  - { addresses: [10.1.0.5], nodeName: node-a }
  - { addresses: [10.2.0.7], nodeName: node-b, conditions: { ready: false } }
ports: [{ name: http, port: 8080 }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web, namespace: shop }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress: [{ from: [{ podSelector: { matchLabels: { app: front } } }], ports: [{ port: 8080 }] }]
`;

describe("manifests", () => {
  it("reduce each kind to the fields membrane uses", () => {
    const [node, pod, svc, slice, policy] = parseManifestText(CLUSTER, "cluster.yaml");
    expect(node).toEqual({ kind: "Node", name: "node-a", labels: { zone: "a" }, addresses: { ipv4: "10.0.0.1", ipv6: "fd00::1" }, podCidrs: ["10.1.0.0/24", "fd00:1::/64"] });
    expect(pod).toEqual({ kind: "Pod", namespace: "shop", name: "web-1", labels: { app: "web" }, nodeName: "node-a", ips: ["10.1.0.5", "fd00:1::5"] });
    expect(svc).toEqual({
      kind: "Service", namespace: "shop", name: "web", clusterIps: ["10.96.0.10", "fd00:96::a"],
      ports: [{ name: "http", port: 80, protocol: "TCP" }, { name: "dns", port: 53, protocol: "UDP" }],
    });
    expect(slice).toEqual({
      kind: "EndpointSlice", namespace: "shop", name: "web-abc", serviceName: "web",
      endpoints: [{ ip: "10.1.0.5", ready: true, nodeName: "node-a" }, { ip: "10.2.0.7", ready: false, nodeName: "node-b" }],
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    });
    expect(policy?.kind).toBe("NetworkPolicy");
    expect(policy && "policy" in policy ? policy.policy.rules.length : 0).toBe(1);
  });

  it("an annotation or status-only field does not change what is read", () => {
    const a = parseManifestText(CLUSTER, "a.yaml");
    const b = parseManifestText(CLUSTER.replace("note: ignored", "note: changed").replace("{ type: Hostname, address: node-a }", "{ type: Hostname, address: renamed }"), "b.yaml");
    expect(b).toEqual(a);
  });

  it("Endpoints (v1) read like one slice", () => {
    const [ep] = parseManifestText(
      `{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"db"},"subsets":[{"addresses":[{"ip":"10.1.0.9","nodeName":"n1"}],"notReadyAddresses":[{"ip":"10.1.0.10"}],"ports":[{"port":5432}]}]}`,
      "ep.json",
    );
    expect(ep).toEqual({
      kind: "Endpoints", namespace: "default", name: "db", serviceName: "db",
      endpoints: [{ ip: "10.1.0.9", ready: true, nodeName: "n1" }, { ip: "10.1.0.10", ready: false }],
      ports: [{ name: "", port: 5432, protocol: "TCP" }],
    });
  });

  it("a List's items are read", () => {
    const list = { apiVersion: "v1", kind: "PodList", items: [{ apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: { nodeName: "n" } }] };
    expect(parseManifestText(JSON.stringify(list), "l.json")).toEqual([{ kind: "Pod", namespace: "default", name: "p", labels: {}, nodeName: "n", ips: [] }]);
  });

  const bad: [string, string, RegExp][] = [
    ["a bad pod address", CLUSTER.replace("{ ip: 10.1.0.5 }", "{ ip: 10.1.0.300 }"), /^x\.yaml: document 2 \(Pod shop\/web-1\): status\.podIPs\[0\]\.ip: "10\.1\.0\.300" is not an IP address/],
    ["two addresses of one family", CLUSTER.replace('{ ip: "fd00:1::5" }', "{ ip: 10.1.0.6 }"), /document 2 \(Pod shop\/web-1\): status\.podIPs\[1\]: a second IPv4 address/],
    ["a pod without a node", CLUSTER.replace("spec: { nodeName: node-a }", "spec: {}"), /document 2 \(Pod shop\/web-1\): spec\.nodeName: required/],
    ["a CIDR with host bits", CLUSTER.replace("10.1.0.0/24", "10.1.0.1/24"), /document 1 \(Node node-a\): spec\.podCIDRs\[0\]: .*bits set beyond the prefix/],
    ["a port out of range", CLUSTER.replace("port: 8080 }]\n---", "port: 80800 }]\n---"), /document 4 \(EndpointSlice shop\/web-abc\): ports\[0\]\.port: expected a port 1\.\.65535/],
    ["SCTP", CLUSTER.replace("protocol: UDP", "protocol: SCTP"), /document 3 \(Service shop\/web\): spec\.ports\[1\]\.protocol: SCTP is not supported/],
    ["an address of the wrong type", CLUSTER.replace("addresses: [10.2.0.7]", 'addresses: ["fd00::7"]'), /endpoints\[1\]\.addresses\[0\]: fd00::7 is not an IPv4 address/],
    ["an unknown kind", CLUSTER + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\n", /document 6: kind: expected one of Node, Pod/],
    ["a wrong apiVersion", CLUSTER.replace("apiVersion: discovery.k8s.io/v1", "apiVersion: discovery.k8s.io/v1beta1"), /document 4 \(EndpointSlice shop\/web-abc\): apiVersion: expected "discovery\.k8s\.io\/v1"/],
    ["a bad label value", CLUSTER.replace("labels: { app: web }", "labels: { app: 'web app' }"), /document 2 \(Pod shop\/web-1\): metadata\.labels\.app: invalid label value/],
    ["a bad policy", CLUSTER.replace("ports: [{ port: 8080 }]", "ports: [{ port: 0 }]"), /document 5: NetworkPolicy shop\/web: spec\.ingress\[0\]\.ports\[0\]\.port/],
    ["broken YAML", CLUSTER + "---\nkind: [\n", /^x\.yaml: document 6: /],
  ];
  for (const [what, text, message] of bad) {
    it(`refuses the whole file for ${what}, naming file, document, object and field`, () => {
      expect(() => parseManifestText(text, "x.yaml")).toThrow(message);
    });
  }

  it("a directory is read in name order, and an object defined twice is refused", () => {
    const dir = testTempDir("mbr-manifests-");
    writeFileSync(join(dir, "b.yaml"), "apiVersion: v1\nkind: Pod\nmetadata: { name: p2 }\nspec: { nodeName: n }\n");
    writeFileSync(join(dir, "a.json"), JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "p1" }, spec: { nodeName: "n" } }));
    writeFileSync(join(dir, "notes.txt"), "not a manifest");
    expect(readManifests(dir).map((m) => ("namespace" in m ? m.name : ""))).toEqual(["p1", "p2"]);
    writeFileSync(join(dir, "c.yml"), "apiVersion: v1\nkind: Pod\nmetadata: { name: p1 }\nspec: { nodeName: other }\n");
    expect(() => readManifests(dir)).toThrow(/c\.yml: Pod default\/p1 is also in .*a\.json/);
    expect(() => readManifests(join(dir, "missing"))).toThrow(/read manifests .*missing: ENOENT/);
  });
});
