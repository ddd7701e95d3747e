/**
 * The agent API's cluster routes on a 0600 unix socket, and the CLI lists
 * that ask the running agent: node list, ipcache list, cluster status and
 * policy, and endpoint/identity/service list without --config.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../../host/api/server.js";
import { callAgent } from "../../host/api/client.js";
import { ClusterAgentCore } from "../../host/cluster/agent-core.js";
import { clusterApiRoutes } from "../../host/cluster/api-routes.js";
import { buildProgram } from "../../host/cli/main.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { put, RecordingSink } from "./support.js";
import { tempEmbeddedStore, type TempStore } from "../support/kvstores.js";

async function cli(...args: string[]): Promise<{ out: string[]; err: string[]; error?: Error }> {
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
  const program = buildProgram(io);
  try {
    await program.parseAsync(args, { from: "user" });
    return { out, err };
  } catch (e) {
    return { out, err, error: e as Error };
  }
}

describe("agent API: cluster routes and the CLI lists", () => {
  let temp: TempStore | undefined;
  let store: KvStore;
  let core: ClusterAgentCore;
  let api: ApiServer;
  let socket: string;

  beforeAll(async () => {
    temp = await tempEmbeddedStore("membrane-cluster-api-");
    store = temp.store;
    await put.node(store, "node-b", "10.0.0.2", "10.2.0.0/24");
    await put.pod(store, "shop", "web-1", "node-a", "10.1.0.5", { app: "web" });
    await put.remotePod(store, "shop", "front-1", 1000, "10.2.0.7", "10.0.0.2", { app: "front" });
    await put.service(store, "shop", "web", "10.96.0.10", 80, [["10.1.0.5", 8080]]);
    await put.policy(store, "shop", "web", "web", "front", 8080);
    core = new ClusterAgentCore({ store, node: "node-a", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }], ipv4AllocCidr: "10.1.0.0/24", sink: new RecordingSink() });
    await core.start();
    socket = join(temp!.dir, "agent.sock");
    api = await startApiServer(socket, clusterApiRoutes(core));
  });

  afterAll(async () => {
    await api?.close();
    await core?.stop();
    await temp?.close();
  });

  it("serves status and lists as JSON on a socket only its owner can open", async () => {
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const st = await callAgent<ReturnType<ClusterAgentCore["status"]>>(socket, "GET", "/v1/status");
    expect(st.status).toBe(200);
    expect(st.body.node).toBe("node-a");
    expect(st.body.counts).toMatchObject({ nodes: 2, endpoints: 1, services: 1, policies: 1, ipcache: 1, routes: 1 });
    expect(st.body.kvstore.backend).toBe("embedded");
    expect(typeof st.body.kvstore.lastEventAgeMs).toBe("number");
    const nodes = await callAgent<{ name: string; self: boolean }[]>(socket, "GET", "/v1/nodes");
    expect(nodes.body.map((n) => [n.name, n.self])).toEqual([["node-a", true], ["node-b", false]]);
    const bad = await callAgent<{ code: string; error: string }>(socket, "GET", "/v1/policy?endpoint=99");
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain("endpoint=99: no such local endpoint");
  });

  it("node list, ipcache list, cluster status and policy ask the agent", async () => {
    const nodes = await cli("node", "list", "--socket", socket);
    expect(nodes.error).toBeUndefined();
    expect(nodes.out.join("\n")).toMatch(/node-a \(this node\)\s+10\.0\.0\.1\s+10\.1\.0\.0\/24/);
    expect(nodes.out.join("\n")).toMatch(/node-b\s+10\.0\.0\.2\s+10\.2\.0\.0\/24/);
    const ipcache = await cli("ipcache", "list", "--socket", socket, "--json");
    const entries = ipcache.out.map((l) => JSON.parse(l));
    expect(entries).toContainEqual({ cidr: "10.2.0.7/32", identity: 1000, source: "remote" });
    expect(entries.find((e) => e.cidr === "10.1.0.5/32")?.source).toBe("local");
    const status = await cli("cluster", "status", "--socket", socket);
    expect(status.out.join("\n")).toMatch(/kvstore:\s+embedded .*: reachable|kvstore:\s+embedded .*: unknown/);
    expect(status.out.join("\n")).toContain("counts:        nodes 2, endpoints 1");
    const policy = await cli("cluster", "policy", "--socket", socket);
    expect(policy.out.join("\n")).toMatch(/shop\/web-1\s+ingress\s+1000\s+8080\s+6\s+allow/);
  });

  it("endpoint, identity and service list without --config ask the agent", async () => {
    const eps = await cli("endpoint", "list", "--socket", socket, "--json");
    expect(eps.error).toBeUndefined();
    expect(eps.out.map((l) => JSON.parse(l))).toMatchObject([{ pod: "shop/web-1", ipv4: "10.1.0.5", enforceIngress: true, entries: 1 }]);
    const ids = (await cli("identity", "list", "--socket", socket, "--json")).out.map((l) => JSON.parse(l));
    expect(ids.find((i) => i.id === 1000)).toMatchObject({ scope: "cluster", localReferences: 0, labels: ["k8s:app=front", "k8s:io.kubernetes.pod.namespace=shop"] });
    const services = await cli("service", "list", "--socket", socket);
    expect(services.out.join("\n")).toMatch(/10\.96\.0\.10:80\/tcp\s+10\.1\.0\.5:8080/);
  });

  it("says plainly when no agent runs", async () => {
    const r = await cli("node", "list", "--socket", join(temp!.dir, "none.sock"));
    expect(r.error?.message).toContain(`no agent is running (nothing answers on ${join(temp!.dir, "none.sock")})`);
  });
});
