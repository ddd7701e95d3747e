/**
 * A restarted agent core given the ids its predecessor used, by address
 * (previousEndpointIds: from the kernel's pinned endpoint records): each pod
 * gets its id back whatever order the pods are listed in, a new pod is
 * numbered around the kept ids, and endpointDevice's ifindex and MAC go into
 * the endpoint record.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { ClusterAgentCore } from "../../host/cluster/agent-core.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { put, RecordingSink } from "./support.js";
import { tempEmbeddedStore, type TempStore } from "../support/kvstores.js";

let temp: TempStore | undefined;
let store: KvStore;
let core: ClusterAgentCore;

beforeAll(async () => {
  temp = await tempEmbeddedStore("membrane-agent-core-ids-");
  store = temp.store;
  await put.pod(store, "shop", "a-first", "node-a", "10.1.0.5", { app: "web" }); // listed first, its old id 2
  await put.pod(store, "shop", "b-second", "node-a", "10.1.0.8", { app: "db" }); // its old id 1
  await put.pod(store, "shop", "c-new", "node-a", "10.1.0.9", { app: "db" }); // never numbered: not 1 or 2
  core = new ClusterAgentCore({
    store, node: "node-a", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }], ipv4AllocCidr: "10.1.0.0/24", sink: new RecordingSink(),
    backoff: { minMs: 50, maxMs: 500 },
    previousEndpointIds: new Map([["10.1.0.5", 2], ["10.1.0.8", 1]]),
    endpointDevice: (pod) => (pod === "shop/a-first" ? { ifindex: 42, mac: "02:00:00:00:00:2a" } : undefined),
  });
  await core.start();
});

afterAll(async () => {
  await core?.stop();
  await temp?.close();
});

it("gives each pod its previous id and numbers a new pod around them", () => {
  const ids = Object.fromEntries(core.localEndpoints().map((e) => [e.pod, e.id]));
  expect(ids).toEqual({ "shop/a-first": 2, "shop/b-second": 1, "shop/c-new": 3 });
});

it("puts the pod's device (ifindex, MAC) in its endpoint record", () => {
  expect(core.engine.endpoint(2)!.record).toMatchObject({ ifindex: 42, mac: "02:00:00:00:00:2a" });
  expect(core.engine.endpoint(1)!.record).toMatchObject({ ifindex: 0, mac: "00:00:00:00:00:00" });
});
