// membrane policy / identity / endpoint on a state file: import, get, delete, trace, list; failures change nothing.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";
import { loadStateFile } from "../../host/state/file.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-policy-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const policyFile = (name: string, doc: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(doc));
  return p;
};

const DB_POLICY = {
  apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "db" },
  spec: {
    endpointSelector: { matchLabels: { app: "db" } },
    ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }], toPorts: [{ ports: [{ port: "5432", protocol: "TCP" }] }] }],
    ingressDeny: [{ fromCIDRSet: [{ cidr: "192.0.2.0/24" }] }],
    egress: [{ toCIDR: ["198.51.100.0/24"] }],
  },
};

describe("membrane policy on a state file", () => {
  const state = join(dir, "state.json");

  test("endpoints, import, get, identities, endpoint list", async () => {
    writeFileSync(state, JSON.stringify({ conntrack: { tcpEntries: 1024 } }));
    expect((await cli("endpoint", "add", "1", "--labels", "app=web", "--ipv4", "10.0.0.1", "--config", state)).code).toBe(0);
    expect((await cli("endpoint", "add", "2", "--labels", "app=db,tier=data", "--ipv4", "10.0.0.2", "--ipv6", "fd00::2", "--config", state)).code).toBe(0);
    const imp = await cli("policy", "import", policyFile("db.json", DB_POLICY), "--config", state);
    expect(imp.err).toBe("");
    expect(imp.out).toContain("imported CiliumNetworkPolicy default/db");
    expect(imp.out).toContain("endpoints recomputed: 1 [2]; policy entries +3 -0; ipcache +2 -0");

    const saved = JSON.parse(readFileSync(state, "utf8"));
    expect(saved.conntrack).toEqual({ tcpEntries: 1024 });
    expect(saved.endpoints.map((e: { id: number; identity: number; enforceIngress: boolean }) => [e.id, e.identity, e.enforceIngress])).toEqual([[1, 256, false], [2, 257, true]]);
    expect(saved.ipcache.map((r: { cidr: string }) => r.cidr)).toEqual(["10.0.0.1/32", "10.0.0.2/32", "192.0.2.0/24", "198.51.100.0/24", "fd00::2/128"]);
    expect(saved.policyEntries["2"]).toContainEqual({ identity: 256, port: 5432, proto: 6, direction: "ingress", deny: false });
    // the replay still reads its configuration from the same file
    expect(loadStateFile(state).conntrack.tcpEntries).toBe(1024);

    const get = await cli("policy", "get", "--config", state);
    expect(get.out).toMatch(/default\/db\s+CiliumNetworkPolicy\s+spec\s+.*app In \(db\).*\s2\s+ingress,egress\s+3/);
    expect(JSON.parse((await cli("policy", "get", "--json", "--config", state)).out)).toEqual([DB_POLICY]);

    const ids = JSON.parse((await cli("identity", "list", "--json", "--config", state)).out);
    expect(ids.map((i: { id: number }) => i.id)).toEqual([1, 2, 3, 4, 5, 256, 257, 16777216, 16777217]);
    expect((await cli("endpoint", "list", "--config", state)).out).toMatch(/2\s+257\s+10\.0\.0\.2\s+fd00::2\s+enforced\s+enforced\s+3/);
  });

  test("trace names the verdict and the rule that decided it, and checks the table", async () => {
    const allow = await cli("policy", "trace", "--src", "app=web", "--dst", "10.0.0.2", "--dport", "5432/tcp", "--config", state);
    expect(allow.out).toContain("ingress of dst: ALLOW: allowed");
    expect(allow.out).toContain("allowed by: default/db spec.ingress[0] (endpoints any:app In (web); k8s:io.kubernetes.pod.namespace In (default); 5432/TCP)");
    expect(allow.out).toContain("endpoint table: allow\n");
    expect(allow.out).toContain("egress of src: ALLOW: no rule selects it for egress");
    expect(allow.out).toMatch(/verdict: ALLOWED$/);

    const wrongPort = await cli("policy", "trace", "--src", "10.0.0.1", "--dst", "app=db,tier=data", "--dport", "5433/tcp", "--config", state);
    expect(wrongPort.out).toContain("ingress of dst: DENY: no rule allows it: denied (default deny)");
    expect(wrongPort.out).toContain("enforced by: default/db");
    expect(wrongPort.out).toMatch(/verdict: DENIED$/);

    const denied = JSON.parse((await cli("policy", "trace", "--src", "192.0.2.7", "--dst", "10.0.0.2", "--dport", "5432/udp", "--json", "--config", state)).out);
    expect(denied.verdict).toBe("deny");
    expect(denied.egress).toBeUndefined();
    expect(denied.ingress.decidedBy).toEqual(["default/db spec.ingressDeny[0] (cidr 192.0.2.0/24; any port)"]);
    expect(denied.ingress.table).toBe("deny");

    const world = await cli("policy", "trace", "--src", "fd00::2", "--dst", "203.0.113.1", "--dport", "0/icmp", "--config", state);
    expect(world.out).toContain("dst 203.0.113.1: identity 2 (reserved:world), not a local endpoint");
    expect(world.out).toContain("egress of src: DENY: no rule allows it");
    const egress4 = await cli("policy", "trace", "--src", "10.0.0.2", "--dst", "198.51.100.9", "--dport", "0/icmp", "--config", state);
    expect(egress4.out).toContain("allowed by: default/db spec.egress[0] (cidr 198.51.100.0/24; any port)");
    expect(egress4.out).toContain("ingress of dst: not a local endpoint");
    expect(egress4.out).toContain("dst 198.51.100.9: identity 16777217, not a local endpoint; prefix 198.51.100.0/24");
  });

  test("a bad import, delete or argument changes nothing and says why", async () => {
    const before = readFileSync(state, "utf8");
    const bad = { ...DB_POLICY, metadata: { name: "bad" }, spec: { ...DB_POLICY.spec, ingress: [{ toPorts: [{ ports: [{ port: "0" }, { port: "65536" }] }] }] } };
    const r = await cli("policy", "import", policyFile("bad.json", bad), "--config", state);
    expect(r.code).toBe(2);
    expect(r.err).toContain("CiliumNetworkPolicy default/bad: spec.ingress[0].toPorts[0].ports[1].port: must be 0..65535");
    expect((await cli("policy", "delete", "nope", "--config", state)).err).toContain("policy nope: not found");
    expect((await cli("policy", "delete", "--config", state)).err).toContain("give policy names or --all");
    expect((await cli("policy", "trace", "--src", "app=web", "--dst", "app=db", "--dport", "80/sctp", "--config", state)).err).toContain("--dport: expected PORT/PROTO");
    expect((await cli("policy", "get")).err).toContain("--config <state file> is required");
    expect((await cli("endpoint", "add", "3", "--labels", "app=x", "--ipv4", "10.0.0.1", "--config", state)).err).toContain("ipv4 10.0.0.1 is already endpoint 1's");
    expect(readFileSync(state, "utf8")).toBe(before);
  });

  test("delete: the policy, its CIDR identities and its enforcement go", async () => {
    const r = await cli("policy", "delete", "db", "--config", state);
    expect(r.out).toContain("endpoints recomputed: 1 [2]; policy entries +0 -3; ipcache +0 -2");
    const saved = JSON.parse(readFileSync(state, "utf8"));
    expect(saved.policies).toEqual([]);
    expect(saved.endpoints[1].enforceIngress).toBe(false);
    expect((await cli("policy", "import", policyFile("db.json", DB_POLICY), "--config", state)).code).toBe(0);
    expect((await cli("policy", "delete", "--all", "--config", state)).out).toContain("-3");
  });

  test("state keys: policy holds the table sizes, policyEntries the engine's entries; the older form is dropped", async () => {
    const old = join(dir, "old.json");
    writeFileSync(old, JSON.stringify({ endpoints: [{ id: 1, labels: ["app=web"], ipv4: "10.0.0.1" }], policy: { "1": [] } }));
    expect(loadStateFile(old).policy).toEqual({ endpoints: 1024, ipcache: 16384, entries: 16384 });
    expect((await cli("endpoint", "add", "2", "--labels", "app=db", "--ipv4", "10.0.0.2", "--config", old)).code).toBe(0);
    const saved = JSON.parse(readFileSync(old, "utf8"));
    expect(saved.policy).toBeUndefined();
    expect(saved.policyEntries).toEqual({ "1": [], "2": [] });
    const sized = join(dir, "sized.json");
    writeFileSync(sized, JSON.stringify({ policy: { entries: 99 } }));
    expect((await cli("endpoint", "add", "1", "--labels", "app=web", "--ipv4", "10.0.0.1", "--config", sized)).code).toBe(0);
    expect(JSON.parse(readFileSync(sized, "utf8")).policy).toEqual({ entries: 99 });
    expect(loadStateFile(sized).policy.entries).toBe(99);
  });
});
