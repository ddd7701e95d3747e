/**
 * etcd killed under a running agent core: the tables stay exactly as they
 * were (the datapath keeps forwarding with them), the agent reconnects with
 * exponentially growing, jittered waits (logged), and after etcd is back
 * and the cluster changed, the agent's tables equal what the store says.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { ClusterAgentCore } from "../../host/cluster/agent-core.js";
import { keys } from "../../host/kvstore/keys.js";
import { decodeRecord } from "../../host/kvstore/records/codec.js";
import type { IpcacheRecord } from "../../host/kvstore/records/ipcache.js";
import type { NodeRecord } from "../../host/kvstore/records/node.js";
import type { ServiceRecord } from "../../host/kvstore/records/service.js";
import type { PolicyRecord } from "../../host/kvstore/records/policy.js";
import type { PodRecord } from "../../host/kvstore/records/pod.js";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { describeIf } from "../support/describe-if.js";
import { TestEtcd, etcdMissing } from "../support/etcd.js";
import { put, RecordingSink } from "./support.js";
import { waitFor } from "../support/wait-for.js";

const MIN = 100;
const MAX = 3200;

async function records<T>(store: KvStore, prefix: string): Promise<T[]> {
  return (await store.list(prefix)).kvs.map((kv) => decodeRecord(kv.key, kv.value).record as T);
}

/** What the store says node-a's datapath must hold, computed from the records here, not by the agent's code. */
async function expectedTables(store: KvStore, core: ClusterAgentCore) {
  const services: Record<string, string> = {};
  for (const s of await records<ServiceRecord>(store, keys.services())) {
    for (const f of s.frontends) {
      services[`${f.ip}|${f.port}|${f.protocol.toLowerCase()}`] = s.backends.map((b) => `${b.ip}:${b.port}`).sort().join(",");
    }
  }
  const localPods = await records<PodRecord>(store, keys.nodePods("default", "node-a"));
  const ipcache: Record<string, number> = {};
  for (const r of await records<IpcacheRecord>(store, keys.ipcacheAll())) ipcache[r.prefix] = r.identity;
  for (const e of core.localEndpoints()) ipcache[`${e.ipv4}/32`] = e.identity;
  const routes: Record<string, string> = {};
  for (const n of await records<NodeRecord>(store, keys.nodes())) if (n.name !== "node-a") routes[n.ipv4AllocCidr!] = n.addresses[0]!.ip;
  // the documents, not just their names: a policy changed under the same name must count as a difference
  const policies = (await records<PolicyRecord>(store, keys.policies())).map((p) => canon(p.document)).sort();
  const pods = localPods.map((p) => `${p.namespace}/${p.name}`).sort();
  return { services, ipcache, routes, policies, pods };
}

/** JSON with object keys sorted: equal tables give equal text whatever the insertion order. */
function canon(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x));
}

function actualTables(sink: RecordingSink, core: ClusterAgentCore) {
  return {
    services: Object.fromEntries([...sink.services].map(([k, s]) => [k, s.backends.map((b) => `${b.addr}:${b.port}`).sort().join(",")])),
    ipcache: Object.fromEntries(sink.ipcache),
    routes: Object.fromEntries(sink.routes),
    policies: core.engine.listPolicies().map((p) => canon(p.source)).sort(),
    pods: core.localEndpoints().filter((e) => sink.endpoints.has(e.id)).map((e) => e.pod).sort(),
  };
}

describeIf("agent core while etcd is down", etcdMissing(), () => {
  let etcd: TestEtcd;
  let store: KvStore;
  let writer: KvStore;
  let core: ClusterAgentCore;
  const sink = new RecordingSink();
  const lines: string[] = [];

  beforeAll(async () => {
    etcd = await TestEtcd.start();
    store = await openKvStore(etcd.spec);
    writer = await openKvStore(etcd.spec);
    await put.node(writer, "node-b", "10.0.0.2", "10.2.0.0/24");
    await put.pod(writer, "shop", "web-1", "node-a", "10.1.0.5", { app: "web" });
    await put.remotePod(writer, "shop", "front-1", 1000, "10.2.0.7", "10.0.0.2", { app: "front" });
    await put.remotePod(writer, "shop", "web-2", 1001, "10.2.0.6", "10.0.0.2", { app: "web" });
    await put.service(writer, "shop", "web", "10.96.0.10", 80, [["10.1.0.5", 8080], ["10.2.0.6", 8080]]);
    await put.policy(writer, "shop", "web", "web", "front", 8080);
    core = new ClusterAgentCore({
      store, node: "node-a", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }], ipv4AllocCidr: "10.1.0.0/24", sink,
      // no cluster-size scaling here, so every wait must lie in [MIN, MIN * 2^attempt)
      backoff: { minMs: MIN, maxMs: MAX, nodes: () => 0 }, healthIdleMs: 200, leaseTtlSeconds: 30,
      log: (l) => lines.push(l),
    });
    await core.start();
  }, 60_000);

  afterAll(async () => {
    await core?.stop();
    await store?.close();
    await writer?.close();
    await etcd?.stop();
  });

  it("keeps its tables, reconnects with growing jittered waits, then converges to the store", async () => {
    expect(actualTables(sink, core)).toEqual(await expectedTables(writer, core));
    const calls = sink.calls;
    const tablesBefore = canon(actualTables(sink, core));

    await etcd.kill9();
    await waitFor("five reconnect attempts", async () => (core.reconnectAttempts.length >= 5 ? true : undefined), { timeoutMs: 60_000 });
    // Nothing was taken out of (or put into) the datapath while the store was away.
    expect(sink.calls).toBe(calls);
    expect(canon(actualTables(sink, core))).toBe(tablesBefore);
    expect(core.status().kvstore.state).toBe("unreachable");

    const waits = core.reconnectAttempts.map((a) => a.waitMs);
    console.log(`reconnect waits (ms): ${waits.map((w) => w.toFixed(0)).join(", ")}`);
    for (const l of lines.filter((x) => x.includes("reconnect attempt"))) console.log(l);
    core.reconnectAttempts.forEach((a, i) => {
      expect(a.attempt).toBe(i + 1);
      expect(a.waitMs).toBeGreaterThanOrEqual(MIN);
      expect(a.waitMs).toBeLessThan(Math.min(MIN * 2 ** a.attempt, MAX) + 1e-9);
    });
    expect(new Set(waits).size).toBe(waits.length); // jittered: no two agents (or attempts) in lock step
    expect(lines.filter((l) => l.includes("reconnect attempt")).length).toBeGreaterThanOrEqual(5);

    await etcd.restart();
    // The cluster moves on: a new service, a remote pod gone, a local pod added, a policy changed.
    await put.service(writer, "shop", "api", "10.96.0.20", 443, [["10.2.0.6", 8443]]);
    await writer.delete(keys.ipcache("10.2.0.7/32"));
    await put.pod(writer, "shop", "web-3", "node-a", "10.1.0.9", { app: "web" });
    await put.policy(writer, "shop", "web", "web", "web", 8080);
    await put.node(writer, "node-c", "10.0.0.3", "10.3.0.0/24");

    await waitFor("the agent to reconnect", async () => (core.status().kvstore.state === "reachable" ? true : undefined), { timeoutMs: 60_000 });
    expect(lines.some((l) => l.includes("reachable again") && l.includes("resyncing"))).toBe(true);
    let last = "";
    const want = await waitFor(
      "the agent's tables to equal the store",
      async () => {
        await core.settled();
        const exp = await expectedTables(writer, core);
        last = `expected ${JSON.stringify(exp)}\nactual   ${JSON.stringify(actualTables(sink, core))}\nlog:\n${lines.slice(-15).join("\n")}`;
        return canon(actualTables(sink, core)) === canon(exp) ? exp : undefined;
      },
      { detail: () => last },
    );
    expect(actualTables(sink, core)).toEqual(want);
    expect(want.pods).toEqual(["shop/web-1", "shop/web-3"]);
    expect(want.routes).toEqual({ "10.2.0.0/24": "10.0.0.2", "10.3.0.0/24": "10.0.0.3" });
    // web now admits web (its own identity and the remote web-2's 1001), no longer front (1000)
    const web1 = core.localEndpoints().find((e) => e.pod === "shop/web-1")!;
    expect([...sink.policy.get(web1.id)!.values()].map((e) => e.identity)).not.toContain(1000);
    expect([...sink.policy.get(web1.id)!.values()].map((e) => e.identity)).toContain(1001);
  }, 120_000);
});
