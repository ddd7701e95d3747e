/**
 * The agent's cluster loop (host/cluster/agent-core.ts) on the embedded
 * store with a recording datapath: records in -> the right services,
 * endpoints, policy entries, ipcache entries and routes out; a change
 * regenerates only the endpoints it selects; a changed service is the only
 * one re-programmed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClusterAgentCore } from "../../host/cluster/agent-core.js";
import { keys } from "../../host/kvstore/keys.js";
import type { KvStore, ListOptions } from "../../host/kvstore/store.js";
import { podIdentityLabels } from "../../host/operator/pod-identity.js";
import { put, RecordingSink } from "./support.js";
import { tempEmbeddedStore, type TempStore } from "../support/kvstores.js";
import { waitFor } from "../support/wait-for.js";

const FRONT = 1000;

describe("agent core on the embedded store", () => {
  let temp: TempStore | undefined;
  let store: KvStore;
  let core: ClusterAgentCore;
  const sink = new RecordingSink();
  const lines: string[] = [];
  /** Every prefix the agent lists, in order. */
  const listed: string[] = [];

  /** Waits until the core has applied the store's revision after `write`. */
  async function sync(write: Promise<unknown>): Promise<void> {
    await write;
    const rev = await store.revision();
    await waitFor("the agent to catch up", async () => (core.status().kvstore.revision >= rev ? true : undefined));
    await core.settled();
  }
  const idOf = (pod: string) => core.localEndpoints().find((e) => e.pod === pod)!.id;

  beforeAll(async () => {
    temp = await tempEmbeddedStore("membrane-agent-core-");
    store = temp.store;
    await put.node(store, "node-b", "10.0.0.2", "10.2.0.0/24");
    await put.pod(store, "shop", "web-1", "node-a", "10.1.0.5", { app: "web" });
    await put.pod(store, "shop", "db-1", "node-a", "10.1.0.8", { app: "db" });
    await put.pod(store, "shop", "web-2", "node-b", "10.2.0.6", { app: "web" }); // not ours: no endpoint here
    await put.remotePod(store, "shop", "front-1", FRONT, "10.2.0.7", "10.0.0.2", { app: "front" });
    // a pod of node-b outside node-b's pod CIDR: needs a host route of its own
    await put.remotePod(store, "shop", "odd-1", FRONT, "10.9.0.1", "10.0.0.2", { app: "front" });
    await put.service(store, "shop", "web", "10.96.0.10", 80, [["10.1.0.5", 8080], ["10.2.0.6", 8080]]);
    await put.service(store, "shop", "db", "10.96.0.11", 5432, [["10.1.0.8", 5432]]);
    await put.policy(store, "shop", "web", "web", "front", 8080);
    const recording = new Proxy(store, {
      get: (target, prop) =>
        prop === "list"
          ? (prefix: string, options?: ListOptions) => (listed.push(prefix), target.list(prefix, options))
          : typeof Reflect.get(target, prop) === "function" ? Reflect.get(target, prop).bind(target) : Reflect.get(target, prop),
    });
    core = new ClusterAgentCore({
      store: recording, node: "node-a", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }], ipv4AllocCidr: "10.1.0.0/24",
      sink, log: (l) => lines.push(l), backoff: { minMs: 50, maxMs: 500 },
    });
    await core.start();
  });

  afterAll(async () => {
    await core?.stop();
    await temp?.close();
  });

  it("registers its node under a lease", async () => {
    const kv = await store.get(keys.node("default", "node-a"));
    expect(kv?.lease).toBeDefined();
    expect(JSON.parse(kv!.value)).toEqual({ name: "node-a", cluster: "default", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }], ipv4AllocCidr: "10.1.0.0/24", encryptionKey: 0 });
  });

  it("gives its local pods cluster identities and endpoints, and nobody else's", async () => {
    const eps = core.localEndpoints();
    expect(eps.map((e) => e.pod).sort()).toEqual(["shop/db-1", "shop/web-1"]);
    for (const [pod, app] of [["shop/web-1", "web"], ["shop/db-1", "db"]] as const) {
      const labels = podIdentityLabels({ namespace: "shop", labels: { app } });
      const value = await store.get(keys.identityValue(labels.id, "node-a"));
      expect(value, `identity key of ${pod}`).toBeDefined();
      const ep = eps.find((e) => e.pod === pod)!;
      expect(JSON.parse(value!.value).id).toBe(ep.identity);
      expect(sink.endpoints.get(ep.id)).toMatchObject({ id: ep.id, identity: ep.identity, ipv4: ep.ipv4 });
    }
    expect(sink.endpoints.size).toBe(2);
    // it follows its own node's pods only: node-b's pod never reached it, not even as a record it skips
    expect(listed).toContain(keys.nodePods("default", "node-a"));
    expect(listed.some((p) => keys.pod("default", "node-b", "shop", "web-2").startsWith(p))).toBe(false);
    expect([...core.pods.records.keys()].sort()).toEqual([keys.pod("default", "node-a", "shop", "db-1"), keys.pod("default", "node-a", "shop", "web-1")]);
  });

  it("turns records into services, ipcache entries, routes and policy entries", () => {
    expect([...sink.services.values()].sort((a, b) => (a.vip < b.vip ? -1 : 1))).toEqual([
      { vip: "10.96.0.10", port: 80, proto: "tcp", backends: [{ addr: "10.1.0.5", port: 8080 }, { addr: "10.2.0.6", port: 8080 }] },
      { vip: "10.96.0.11", port: 5432, proto: "tcp", backends: [{ addr: "10.1.0.8", port: 5432 }] },
    ]);
    const web = core.localEndpoints().find((e) => e.pod === "shop/web-1")!;
    const db = core.localEndpoints().find((e) => e.pod === "shop/db-1")!;
    expect(Object.fromEntries(sink.ipcache)).toEqual({ "10.1.0.5/32": web.identity, "10.1.0.8/32": db.identity, "10.2.0.7/32": FRONT, "10.9.0.1/32": FRONT });
    expect(Object.fromEntries(sink.routes)).toEqual({ "10.2.0.0/24": "10.0.0.2", "10.9.0.1/32": "10.0.0.2" });
    // web accepts front (a pod of ANOTHER node, known only through the kvstore) on TCP 8080; db enforces nothing.
    expect([...sink.policy.get(web.id)!.values()]).toEqual([{ identity: FRONT, port: 8080, proto: 6, direction: "ingress", deny: false }]);
    expect(sink.endpoints.get(web.id)!.enforceIngress).toBe(true);
    expect(sink.endpoints.get(db.id)!.enforceIngress).toBe(false);
  });

  it("a policy change regenerates only the endpoints it selects", async () => {
    const before = sink.policyChanges.length;
    await sync(put.policy(store, "shop", "db", "db", "web", 5432));
    const changes = sink.policyChanges.slice(before);
    expect(changes.flatMap((c) => c.policy.recomputed)).toEqual([idOf("shop/db-1")]);
    const web = core.localEndpoints().find((e) => e.pod === "shop/web-1")!;
    expect([...sink.policy.get(idOf("shop/db-1"))!.values()]).toEqual([{ identity: web.identity, port: 5432, proto: 6, direction: "ingress", deny: false }]);
  });

  it("a new identity elsewhere regenerates only the endpoints whose rules select it", async () => {
    const before = sink.policyChanges.length;
    await sync(put.remotePod(store, "shop", "front-2", 1001, "10.2.0.9", "10.0.0.2", { app: "front", tier: "canary" }));
    const recomputed = sink.policyChanges.slice(before).flatMap((c) => c.policy.recomputed);
    expect(recomputed).toEqual([idOf("shop/web-1")]);
    expect([...sink.policy.get(idOf("shop/web-1"))!.values()].map((e) => e.identity).sort()).toEqual([FRONT, 1001]);
    expect(sink.ipcache.get("10.2.0.9/32")).toBe(1001);
  });

  it("re-programs only the service that changed", async () => {
    const before = sink.serviceChanges.length;
    await sync(put.service(store, "shop", "web", "10.96.0.10", 80, [["10.2.0.6", 8080]]));
    expect(sink.serviceChanges.slice(before)).toEqual([
      { upsert: [{ vip: "10.96.0.10", port: 80, proto: "tcp", backends: [{ addr: "10.2.0.6", port: 8080 }] }], remove: [] },
    ]);
    await sync(store.delete(keys.service("default", "shop", "db")));
    expect(sink.serviceChanges.at(-1)).toEqual({ upsert: [], remove: [{ vip: "10.96.0.11", port: 5432, proto: "tcp" }] });
  });

  it("a label change moves a local pod to another identity and flips the verdict it gets", async () => {
    const lists = listed.length;
    await sync(put.pod(store, "shop", "db-1", "node-a", "10.1.0.8", { app: "cache" }));
    // the new identity's ID was picked from the watched masters, not from a list of every master
    expect(listed.slice(lists)).toEqual([keys.identityValues(podIdentityLabels({ namespace: "shop", labels: { app: "cache" } }).id)]);
    const ep = core.localEndpoints().find((e) => e.pod === "shop/db-1")!;
    expect(ep.labels).toContain("k8s:app=cache");
    expect(sink.endpoints.get(ep.id)!.enforceIngress).toBe(false); // the db policy no longer selects it
    expect(sink.policy.get(ep.id)?.size ?? 0).toBe(0);
    expect(sink.ipcache.get("10.1.0.8/32")).toBe(ep.identity);
  });

  it("a removed pod loses its endpoint; a removed remote pod its ipcache entry and host route", async () => {
    const id = idOf("shop/db-1");
    await sync(put.deletePod(store, "shop", "db-1", "node-a"));
    expect(sink.endpoints.has(id)).toBe(false);
    expect(sink.ipcache.has("10.1.0.8/32")).toBe(false);
    await sync(store.delete(keys.ipcache("10.9.0.1/32")));
    expect(sink.ipcache.has("10.9.0.1/32")).toBe(false);
    expect(sink.routes.has("10.9.0.1/32")).toBe(false);
    expect(sink.routes.get("10.2.0.0/24")).toBe("10.0.0.2");
  });

  it("a node record put again unchanged (a re-registration, a resync) is an event but no round; a changed one moves its route", async () => {
    const before = { ...core.counters };
    const routeChanges = sink.routeChanges.length;
    await sync(put.node(store, "node-b", "10.0.0.2", "10.2.0.0/24"));
    expect(core.counters.events).toBe(before.events + 1);
    expect(core.counters.rounds).toBe(before.rounds);
    expect(sink.routeChanges.length).toBe(routeChanges);
    await sync(put.node(store, "node-b", "10.0.0.3", "10.2.0.0/24"));
    expect(core.counters.rounds).toBeGreaterThan(before.rounds);
    expect(sink.routes.get("10.2.0.0/24")).toBe("10.0.0.3");
    await sync(put.node(store, "node-b", "10.0.0.2", "10.2.0.0/24"));
    expect(sink.routes.get("10.2.0.0/24")).toBe("10.0.0.2");
  });

  it("a record that does not decode is skipped with its key named, the rest keeps flowing", async () => {
    await sync(store.put(keys.service("default", "shop", "broken"), JSON.stringify({ cluster: "default", namespace: "shop", name: "broken", frontends: [{ ip: "nope", port: 1 }] })));
    expect(lines.some((l) => l.includes("shop/broken") && l.includes("frontends[0].ip"))).toBe(true);
    expect([...sink.services.keys()]).toEqual(["10.96.0.10|80|tcp"]);
    // a pod record under this node's prefix that names another node is refused, naming key and field
    const misplaced = keys.pod("default", "node-a", "shop", "elsewhere");
    await sync(store.put(misplaced, JSON.stringify({ namespace: "shop", name: "elsewhere", node: "node-b", labels: { app: "web" }, ips: ["10.1.0.66"] })));
    expect(lines.some((l) => l.includes(misplaced) && l.includes("node: the pod runs on node-b, not on node-a"))).toBe(true);
    expect(core.localEndpoints().map((e) => e.pod)).not.toContain("shop/elsewhere");
    await sync(store.delete(misplaced));
  });

  it("status counts what the agent holds", () => {
    const s = core.status();
    expect(s.counts).toMatchObject({ nodes: 2, endpoints: 1, services: 1, policies: 2, routes: 1 });
    expect(s.kvstore.state).not.toBe("unreachable");
    expect(s.regenerations).toBeGreaterThan(0);
  });
});
