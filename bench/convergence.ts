/**
 * Convergence time per kind of change on the demo's two-node cluster
 * (host/demo/cluster/, root): real agents with TUN forwarders in node
 * namespaces, an operator, the shared kvstore (embedded in a temporary dir,
 * or `--kvstore etcd:...`). Each change is written with applyManifests (in
 * this process: no CLI start-up in the figure) and timed until EVERY node's
 * agent API shows the new state:
 *
 *   backend   a backend added to / removed from the service (LB tables of both nodes)
 *   label     a pod's label flipped so the backends' ingress policy on n2 admits / refuses it
 *             (n1: the pod's new identity; n2: that identity in backend-b's policy entries)
 *   pod       a pod created / deleted on n1 (n2's ipcache entry for it)
 *
 * What this measures is "applied by every agent": the agent API answers from
 * the agent's tables after each change went through the forwarder's command
 * channel. It is NOT "the first packet decided under the new state" (no packet
 * is sent per sample); see docs/cluster-demo.md.
 *
 *   npm run bench:convergence [-- --rounds 20] [-- --kvstore etcd:127.0.0.1:2379]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../host/package-root.js";
import { sweep } from "../host/sys/netns/lab.js";
import { openKvStore } from "../host/kvstore/open.js";
import { applyManifests, deleteManifests } from "../host/operator/apply.js";
import { parseManifestText } from "../host/operator/manifests/index.js";
import { demoUnavailable } from "../host/demo/requirements.js";
import { ClusterProcesses, cliMissing } from "../host/demo/cluster/processes.js";
import { KvstoreBridge } from "../host/demo/cluster/kvstore-bridge.js";
import { ClusterTopology, type ClusterNode } from "../host/demo/cluster/topology.js";
import { num, printTable } from "./report.js";

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const ROUNDS = Number(arg("--rounds") ?? 20);
const PREFIX = "mbcb";

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  const why = demoUnavailable() ?? cliMissing();
  if (why) {
    console.log(`bench:convergence: cannot run: ${why}`);
    process.exitCode = 1;
    return;
  }
  await sweep(PREFIX);
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}-`));
  const spec = arg("--kvstore") ?? `embedded:${join(dir, "kvstore")}`;
  const topo = await ClusterTopology.create(PREFIX);
  const bridge = await KvstoreBridge.open(spec, dir);
  const procs = new ClusterProcesses(topo, bridge.spec, dir);
  const store = await openKvStore(spec);
  try {
    for (const ns of [topo.control, topo.nodes.n1.ns, topo.nodes.n2.ns]) await bridge.attach(topo.lab, ns);
    procs.startOperator();
    const { n1, n2 } = topo.nodes;
    await Promise.all([procs.startAgent(n1), procs.startAgent(n2)]);
    const examples = join(packageRoot(), "examples/cluster");
    const read = (f: string) => parseManifestText(readFileSync(join(examples, f), "utf8"), f);
    await applyManifests(store, [...read("pods.yaml"), ...read("service.yaml"), ...read("policy.yaml")]);

    const every = async (nodes: ClusterNode[], ok: (node: ClusterNode) => Promise<boolean>, t0: number): Promise<number> => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const all = await Promise.all(nodes.map((n) => ok(n).catch(() => false)));
        if (all.every(Boolean)) return performance.now() - t0;
        if (Date.now() > deadline) throw new Error("a change was not applied by every agent within 30 s");
        await new Promise((r) => setImmediate(r));
      }
    };
    const services = (n: ClusterNode) => procs.api<Array<{ backends: Array<{ addr: string }> }>>(n, "/v1/services");
    const hasBackend = async (n: ClusterNode, ip: string) => (await services(n)).some((s) => s.backends.some((b) => b.addr === ip));
    const endpoints = (n: ClusterNode) => procs.api<Array<{ pod: string; id: number; identity: number }>>(n, "/v1/endpoints");
    const ipcache = (n: ClusterNode) => procs.api<Array<{ cidr: string }>>(n, "/v1/ipcache");
    // The dual-stack service: one frontend per family.
    await every([n1, n2], async (n) => (await services(n)).length === 2 && (await endpoints(n)).length === (n === n1 ? 3 : 1), performance.now());

    const samples: Record<string, number[]> = { "backend added": [], "backend removed": [], "label: verdict to allow": [], "label: verdict to deny": [], "pod created": [], "pod deleted": [] };
    const sliceWith = read("changes/backend-added.yaml").filter((m) => m.kind !== "Pod");
    const sliceWithout = read("service.yaml").filter((m) => m.kind !== "Service");
    const podC = read("changes/backend-added.yaml").filter((m) => m.kind === "Pod");
    await applyManifests(store, podC);
    const otherAs = (app: string) => read("changes/label-flip.yaml").map((m) => ({ ...m, labels: { app } }));
    const otherIdentity = async () => (await endpoints(n1)).find((e) => e.pod.endsWith("/other"))?.identity;
    const admitted = async (identity: number | undefined) => {
      const beb = (await endpoints(n2)).find((e) => e.pod.endsWith("/backend-b"));
      if (!beb || identity === undefined) return false;
      const pol = await procs.api<Array<{ entries: Array<{ identity: number; direction: string }> }>>(n2, `/v1/policy?endpoint=${beb.id}`);
      return pol[0]!.entries.some((e) => e.identity === identity && e.direction === "ingress");
    };

    for (let i = 0; i < ROUNDS; i++) {
      let t0 = performance.now();
      await applyManifests(store, sliceWith);
      samples["backend added"]!.push(await every([n1, n2], (n) => hasBackend(n, "10.211.2.3"), t0));
      t0 = performance.now();
      await applyManifests(store, sliceWithout);
      samples["backend removed"]!.push(await every([n1, n2], async (n) => !(await hasBackend(n, "10.211.2.3")), t0));

      const before = await otherIdentity();
      t0 = performance.now();
      await applyManifests(store, otherAs("frontend"));
      samples["label: verdict to allow"]!.push(await every([n1, n2], async () => { const id = await otherIdentity(); return id !== before && admitted(id); }, t0));
      const allowedId = await otherIdentity();
      t0 = performance.now();
      await applyManifests(store, otherAs("other"));
      samples["label: verdict to deny"]!.push(await every([n1, n2], async () => { const id = await otherIdentity(); return id !== allowedId && !(await admitted(id)); }, t0));

      const ip = `10.211.1.${100 + i}`;
      const pod = parseManifestText(`apiVersion: v1\nkind: Pod\nmetadata: { name: extra-${i}, namespace: demo, labels: { app: extra } }\nspec: { nodeName: n1 }\nstatus: { podIP: ${ip} }\n`, "extra.yaml");
      t0 = performance.now();
      await applyManifests(store, pod);
      samples["pod created"]!.push(await every([n2], async (n) => (await ipcache(n)).some((e) => e.cidr === `${ip}/32`), t0));
      t0 = performance.now();
      await deleteManifests(store, pod);
      samples["pod deleted"]!.push(await every([n2], async (n) => !(await ipcache(n)).some((e) => e.cidr === `${ip}/32`), t0));
    }
    const rows = Object.entries(samples).map(([kind, xs]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { change: kind, samples: String(s.length), "p50 ms": num(percentile(s, 50), 1), "p99 ms": num(percentile(s, 99), 1), "max ms": num(s.at(-1)!, 1) };
    });
    printTable(`convergence: apply -> every agent's API shows the change (${spec.split(":")[0]} kvstore, ${ROUNDS} rounds)`, rows, [
      `load average ${loadavg().map((l) => l.toFixed(2)).join(" ")} (a shared machine: figures are noisy)`,
      "NOT MET as specified: measured to the agents' tables (API), not to the first packet decided under the new state",
    ]);
  } finally {
    await store.close();
    await procs.stop();
    await topo.teardown();
    bridge.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
