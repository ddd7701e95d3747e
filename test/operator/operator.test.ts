/**
 * apply -> operator -> slim records, on both backends: the records each
 * manifest becomes; a label change writes and an annotation or status-only
 * change writes nothing (counted in revisions); a file with a bad document
 * writes nothing; delete removes what was derived; a node whose lease ended
 * loses its pods' records; identities no node uses are collected; a
 * restarted operator rewrites nothing unchanged and deletes orphans.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { DisciplinedKvStore } from "../../host/kvstore/disciplined-store.js";
import { listClusterIdentities } from "../../host/kvstore/identity-gc.js";
import { keys } from "../../host/kvstore/keys.js";
import { UNLIMITED } from "../../host/kvstore/rate-limit.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { runOperator } from "../../host/operator/operator.js";
import { describeIf } from "../support/describe-if.js";
import { backends, cli, FakeAgent, manifestDir, NODES, operatorCluster, pods, POLICY, records, service, type OperatorCluster } from "./support.js";
import { waitFor } from "../support/wait-for.js";

for (const backend of backends()) {
  describeIf(`operator on ${backend.name}`, backend.missing, () => {
    let cluster: OperatorCluster | undefined;
    let spec: string;
    let store: KvStore;
    let files: ReturnType<typeof manifestDir>;
    let stop: AbortController;
    let running: Promise<void>;
    const log: string[] = [];
    let agentA: FakeAgent;
    let agentB: FakeAgent;
    let idWeb = 0;
    let idFront = 0;

    const startOperator = () => {
      stop = new AbortController();
      running = runOperator(new DisciplinedKvStore(store, { rateLimit: UNLIMITED }), {
        leaseTtlSeconds: 5,
        identityGcIntervalMs: 200,
        signal: stop.signal,
        log: (l) => log.push(l),
      });
    };
    const stopOperator = async () => {
      stop.abort();
      await running;
    };
    const get = async (key: string) => {
      const kv = await store.get(key);
      return kv === undefined ? undefined : (JSON.parse(kv.value) as Record<string, unknown>);
    };

    beforeAll(async () => {
      cluster = await operatorCluster(backend);
      ({ spec, store, files, agentA, agentB } = cluster);
      startOperator();
    }, 60_000);

    afterAll(async () => {
      await stopOperator().catch(() => undefined);
      await cluster?.close();
    });

    it("apply and delete have --help with an example", async () => {
      for (const cmd of ["apply", "delete"]) {
        const { help } = await cli([cmd, "--help"]);
        expect(help).toMatch(new RegExp(`Usage: membrane ${cmd}`));
        expect(help).toMatch(/-f, --filename <path>/);
        expect(help).toMatch(/--kvstore <spec>/);
        expect(help).toMatch(new RegExp(`\\$ membrane ${cmd} -f`));
      }
    });

    it("apply -> operator: node, pod, endpoint, ipcache, service and policy records", async () => {
      const applied = await cli(["apply", "-f", files.dir, "--kvstore", spec]);
      expect(applied.error).toBeUndefined();
      expect(applied.out.sort()).toEqual([
        "EndpointSlice shop/web-abc created", "NetworkPolicy shop/web created", "Node node-a created", "Node node-b created",
        "Pod shop/front-1 created", "Pod shop/web-1 created", "Pod shop/web-2 created", "Service shop/web created",
      ]);
      idWeb = await agentA.allocate("shop", { app: "web" });
      expect(await agentB.allocate("shop", { app: "web" })).toBe(idWeb);
      idFront = await agentA.allocate("shop", { app: "front" });
      expect(idFront).not.toBe(idWeb);

      await waitFor("all records", async () => ((await records(store)).size === 13 ? true : undefined));
      // each pod under its node: all of the cluster's pods that node's agent follows
      expect(await get(keys.pod("default", "node-a", "shop", "web-1"))).toEqual({ namespace: "shop", name: "web-1", node: "node-a", labels: { app: "web" }, ips: ["10.1.0.5"] });
      expect(await get(keys.pod("default", "node-b", "shop", "web-2"))).toMatchObject({ node: "node-b", ips: ["10.2.0.6"] });
      expect((await store.list(keys.nodePods("default", "node-a"))).kvs.map((kv) => kv.key).sort()).toEqual([keys.pod("default", "node-a", "shop", "front-1"), keys.pod("default", "node-a", "shop", "web-1")]);
      expect(await get(keys.node("default", "node-a"))).toEqual({
        name: "node-a", cluster: "default", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }], ipv4AllocCidr: "10.1.0.0/24", encryptionKey: 0,
      });
      // node-b is its agent's key: left as the agent wrote it, with its lease.
      expect((await store.get(keys.node("default", "node-b")))?.lease).toBe(agentB.lease.id);
      expect(await get(keys.endpoint("default", "shop", "web-1"))).toEqual({ cluster: "default", namespace: "shop", name: "web-1", node: "node-a", ipv4: "10.1.0.5", identity: idWeb });
      expect(await get(keys.endpoint("default", "shop", "front-1"))).toMatchObject({ node: "node-a", ipv4: "10.1.0.7", identity: idFront });
      expect(await get(keys.ipcache("10.2.0.6/32"))).toEqual({ prefix: "10.2.0.6/32", identity: idWeb, hostIp: "10.0.0.2", encryptionKey: 0, namespace: "shop", podName: "web-2" });
      expect(await get(keys.ipcache("10.1.0.7/32"))).toMatchObject({ identity: idFront, hostIp: "10.0.0.1" });
      expect(await get(keys.service("default", "shop", "web"))).toEqual({
        cluster: "default", namespace: "shop", name: "web",
        frontends: [{ ip: "10.96.0.10", port: 80, protocol: "TCP", name: "http" }],
        backends: [{ ip: "10.1.0.5", port: 8080, protocol: "TCP", name: "http" }, { ip: "10.2.0.6", port: 8080, protocol: "TCP", name: "http" }],
      });
      const policy = await get(keys.policy("shop", "web"));
      expect(policy?.name).toBe("shop/web");
      expect((policy?.document as { metadata: unknown }).metadata).toEqual({ name: "web", namespace: "shop" }); // annotations are not carried
    });

    it("an annotation-only change writes nothing; a label change writes the pod's records and only those", async () => {
      const podKey = keys.pod("default", "node-a", "shop", "web-1");
      const rev0 = await store.revision();
      const same = await cli(["apply", "-f", files.write("pods.yaml", pods("web", "v2")), "--kvstore", spec]);
      expect(same.out.sort()).toEqual(["Pod shop/front-1 unchanged", "Pod shop/web-1 unchanged", "Pod shop/web-2 unchanged"]);
      expect(await store.revision()).toBe(rev0);

      const before = await records(store);
      const changed = await cli(["apply", "-f", files.write("pods.yaml", pods("web-v2")), "--kvstore", spec]);
      expect(changed.out).toContain("Pod shop/web-1 configured");
      const idV2 = await agentA.allocate("shop", { app: "web-v2" });
      await waitFor("web-1 under its new identity", async () => ((await get(keys.ipcache("10.1.0.5/32")))?.identity === idV2 ? true : undefined));
      await waitFor("web-1's endpoint record", async () => ((await get(keys.endpoint("default", "shop", "web-1")))?.identity === idV2 ? true : undefined));
      const after = await records(store);
      const rewritten = [...after].filter(([k, v]) => before.get(k)?.modRevision !== v.modRevision).map(([k]) => k).sort();
      expect(rewritten).toEqual([keys.endpoint("default", "shop", "web-1"), keys.ipcache("10.1.0.5/32"), podKey].sort());
      expect((await get(podKey))?.labels).toEqual({ app: "web-v2" });
    });

    it("status-only changes (a not-ready endpoint, a node label) store the manifest but write no record", async () => {
      const before = await records(store);
      const rev0 = await store.revision();
      const slice = await cli(["apply", "-f", files.write("service.yaml", service(true)), "--kvstore", spec]);
      expect(slice.out).toEqual(["Service shop/web unchanged", "EndpointSlice shop/web-abc configured"]);
      const nodes = await cli(["apply", "-f", files.write("nodes.yaml", NODES.replace("zone: a", "zone: a2")), "--kvstore", spec]);
      expect(nodes.out).toEqual(["Node node-a configured", "Node node-b unchanged"]);
      expect(await store.revision()).toBe(rev0 + 2); // the two manifests, nothing else yet
      // A change that does write, behind the two on the same watch: once it landed, they were handled.
      await cli(["apply", "-f", files.write("pods.yaml", pods("web")), "--kvstore", spec]);
      await waitFor("web-1 back on its first identity", async () => ((await get(keys.ipcache("10.1.0.5/32")))?.identity === idWeb ? true : undefined));
      await waitFor("web-1's endpoint record back", async () => ((await get(keys.endpoint("default", "shop", "web-1")))?.identity === idWeb ? true : undefined));
      const after = await records(store);
      const rewritten = [...after].filter(([k, v]) => before.get(k)?.modRevision !== v.modRevision).map(([k]) => k).sort();
      // the pods file's label change back is the only thing written: web-1's pod record with its records
      expect(rewritten).toEqual([keys.endpoint("default", "shop", "web-1"), keys.ipcache("10.1.0.5/32"), keys.pod("default", "node-a", "shop", "web-1")].sort());
    });

    it("a file with one invalid document is refused whole: the store's revision does not move", async () => {
      const bad = files.write("zz-bad.yaml", `${pods("web-v3")}---
apiVersion: v1
kind: Pod
metadata: { name: broken, namespace: shop }
spec: { nodeName: node-a }
status: { podIP: 10.1.0.300 }
`);
      const rev0 = await store.revision();
      const result = await cli(["apply", "-f", bad, "--kvstore", spec]);
      expect(result.error?.message).toMatch(/zz-bad\.yaml: document 4 \(Pod shop\/broken\): status\.podIP: .*10\.1\.0\.300/);
      expect((result.error as { code?: string }).code).toBe("INVALID_INPUT");
      // The directory holds the bad file too: refused whole as well, and delete reads the same way.
      expect((await cli(["apply", "-f", files.dir, "--kvstore", spec])).error?.message).toMatch(/zz-bad\.yaml: document 4/);
      expect((await cli(["delete", "-f", bad, "--kvstore", spec])).error?.message).toMatch(/zz-bad\.yaml: document 4/);
      expect(await store.revision()).toBe(rev0);
      expect((await get(keys.ipcache("10.1.0.5/32")))?.identity).toBe(idWeb);
    });

    it("delete -f removes the manifests and the operator the records derived from them", async () => {
      const deleted = await cli(["delete", "-f", files.write("service.yaml", service()), "-f", files.write("policy.yaml", POLICY), "--kvstore", spec]);
      expect(deleted.out).toEqual(["Service shop/web deleted", "EndpointSlice shop/web-abc deleted", "NetworkPolicy shop/web deleted"]);
      await waitFor("service and policy records gone", async () =>
        (await store.get(keys.service("default", "shop", "web"))) === undefined && (await store.get(keys.policy("shop", "web"))) === undefined ? true : undefined,
      );
      expect((await cli(["delete", "-f", files.write("policy.yaml", POLICY), "--kvstore", spec])).out).toEqual(["NetworkPolicy shop/web not found"]);
    });

    it("a node whose lease ended loses its pods' records; other nodes keep theirs", async () => {
      await agentB.lease.revoke();
      await waitFor("web-2's records collected", async () =>
        (await store.get(keys.endpoint("default", "shop", "web-2"))) === undefined && (await store.get(keys.ipcache("10.2.0.6/32"))) === undefined ? true : undefined,
      );
      expect(await get(keys.endpoint("default", "shop", "web-1"))).toMatchObject({ identity: idWeb });
      // the pod still exists: its record under node-b stays for that node's next agent
      expect(await get(keys.pod("default", "node-b", "shop", "web-2"))).toMatchObject({ name: "web-2" });
      expect(log.some((l) => /node node-b: its lease ended/.test(l))).toBe(true);
    });

    it("identities no node uses are collected; those in use stay", async () => {
      const del = await cli(["delete", "-f", files.write("pods.yaml", pods()), "--kvstore", spec]);
      expect(del.out).toHaveLength(3);
      await waitFor("pod records gone", async () => ((await store.list(keys.endpoints())).kvs.length === 0 && (await store.list(keys.pods())).kvs.length === 0 ? true : undefined));
      await agentA.release("shop", { app: "front" });
      await agentA.release("shop", { app: "web-v2" });
      await waitFor("front's identity collected", async () => ((await listClusterIdentities(store)).has(idFront) ? undefined : true));
      const left = await listClusterIdentities(store);
      expect(left.get(idWeb)).toBe("k8s:app=web,k8s:io.kubernetes.pod.namespace=shop"); // node-a still holds it
      // The collector logs after its whole pass returns, so the key can be gone a moment before the line is written.
      await waitFor("the collection logged", () => log.some((l) => l.includes(`identity gc: deleted identity ${idFront}`)));
    });

    it("a restarted operator rewrites nothing unchanged and deletes records derived from nothing", async () => {
      await cli(["apply", "-f", files.write("pods.yaml", pods()), "--kvstore", spec]);
      await waitFor("web-1 back", async () => ((await get(keys.endpoint("default", "shop", "web-1")))?.identity === idWeb ? true : undefined));
      // and every pod's record under its node: the operator may write them in more than one step
      await waitFor("the three pod records back", async () => ((await store.list(keys.pods())).kvs.length === 3 ? true : undefined));
      await stopOperator();
      const before = await records(store);
      const orphan = keys.endpoint("default", "shop", "gone");
      await store.put(orphan, JSON.stringify({ cluster: "default", namespace: "shop", name: "gone", node: "node-a", ipv4: "10.1.0.99", identity: idWeb }));
      startOperator();
      await waitFor("orphan deleted", async () => ((await store.get(orphan)) === undefined ? true : undefined));
      const after = await records(store);
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      for (const [k, v] of after) expect(v.modRevision, k).toBe(before.get(k)!.modRevision);
    });
  });
}
