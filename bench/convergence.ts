/**
 * Convergence time per kind of change on the demo's two-node cluster
 * (host/demo/cluster/, root): real agents with TUN forwarders in node
 * namespaces, an operator, the shared kvstore (embedded in a temporary dir,
 * or `--kvstore etcd:...`). Each change is written with applyManifests (in
 * this process: no CLI start-up in the figure) and timed two ways:
 *
 *   packet  apply -> the first new flow decided under the new state, on every
 *           node where the change decides flows. Probe clients in pods
 *           (bench/convergence-probe.ts) open a NEW TCP connection every
 *           --every ms (a new source port: the datapath picks a backend and
 *           takes a policy verdict afresh) and report each attempt's send
 *           time and who answered. The figure is the send time of the first
 *           attempt whose outcome shows the new state, minus the apply time;
 *           its resolution is one probe interval.
 *   API     apply -> every agent's API shows the change (its tables, after the
 *           forwarder's command channel took it).
 *
 *   backend added    backend-c joins the service: the first connection to the VIP
 *                    answered by backend-c, from frontend (n1) and from backend-b (n2)
 *   backend removed  backend-c leaves: the first connection after the last one
 *                    backend-c answered, confirmed by 20 answered by others
 *   label: to allow  "other" (n1) relabelled app=frontend: the first connection from it
 *                    to backend-b (n2) accepted (n2's ingress policy decides it)
 *   label: to deny   relabelled back: the first connection after the last accepted one,
 *                    confirmed by 20 refused in a row
 *   pod created/deleted  n2's ipcache entry for a pod on n1 (API only: no pod
 *                    namespace sits behind the address, so no packet is timed)
 *
 * Selecting backend-c is random per flow (one in three), so "backend added"
 * includes a few probe intervals of chance; see docs/cluster-demo.md.
 *
 *   npm run bench:convergence [-- --rounds 20] [-- --every 5] [-- --kvstore etcd:127.0.0.1:2379]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../host/package-root.js";
import { sweep } from "../host/sys/netns/lab.js";
import type { NetnsProcess } from "../host/sys/netns/process.js";
import { openKvStore } from "../host/kvstore/open.js";
import { applyManifests, deleteManifests } from "../host/operator/apply.js";
import { parseManifestText } from "../host/operator/manifests/index.js";
import { demoUnavailable } from "../host/demo/requirements.js";
import { ClusterProcesses, cliMissing } from "../host/demo/cluster/processes.js";
import { KvstoreBridge } from "../host/demo/cluster/kvstore-bridge.js";
import { BACKEND_PORT, ClusterTopology, SERVICE_PORT, SERVICE_VIP, type ClusterNode, type PodName } from "../host/demo/cluster/topology.js";
import { afterLastOldOutcome, firstNewOutcome, isProbeAttempt, percentile, type ProbeAttempt } from "./convergence-outcomes.js";
import { num, printTable } from "./report.js";

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const ROUNDS = Number(arg("--rounds") ?? 20);
/** A new probe connection this often, per probe client: the packet figures' resolution. */
const EVERY_MS = Number(arg("--every") ?? 5);
/** Shorter than the first SYN retransmission (1 s), so a refused attempt never succeeds late. */
const PROBE_TIMEOUT_MS = 900;
/** Attempts with the new outcome that confirm an outcome the old state could give too. */
const CONFIRM = 20;
const WITHIN_MS = 30_000;
const PREFIX = "cpcb";

/** Wall-clock ms on the probes' clock (performance.timeOrigin + now: the same on every process here). */
const wallNow = () => performance.timeOrigin + performance.now();

/**
 * Lets backend-b (n2) reach the other backends on 8080, so a probe client on
 * n2 can open connections through the service (the demo's policy admits
 * frontends only, and n2 has none). Bench-only.
 */
const BACKEND_PEERS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: cp-backend-from-backend, namespace: demo }
spec:
  podSelector: { matchLabels: { app: backend } }
  policyTypes: [Ingress]
  ingress:
    - from: [{ podSelector: { matchLabels: { app: backend } } }]
      ports: [{ port: 8080, protocol: TCP }]
`;

function probe(topo: ClusterTopology, pod: PodName, args: Array<string | number>): NetnsProcess {
  return topo.lab.spawn(topo.pods[pod].ns, [process.execPath, join(packageRoot(), "dist/bench/convergence-probe.js"), ...args.map(String)], { label: `${pod}: convergence-probe ${args.join(" ")}` });
}

/**
 * A probe client's attempts, read incrementally from its output lines; those
 * sent more than PROBE_TIMEOUT_MS before the change being timed are dropped,
 * so each poll looks at a few hundred, not the whole run.
 */
class ProbeLog {
  #read = 0;
  #kept: ProbeAttempt[] = [];
  total = 0;
  first = Infinity;
  last = -Infinity;

  constructor(readonly process: NetnsProcess) {}

  since(t0: number): ProbeAttempt[] {
    const lines = this.process.lines;
    for (; this.#read < lines.length; this.#read++) {
      const l = lines[this.#read];
      if (isProbeAttempt(l)) {
        this.#kept.push(l);
        this.total++;
        this.first = Math.min(this.first, l.t);
        this.last = Math.max(this.last, l.t);
      }
    }
    lines.length = 0;
    this.#read = 0;
    if (!this.process.running) throw new Error(`${this.process.label} exited: ${this.process.stderr.trim()}`);
    this.#kept = this.#kept.filter((a) => a.t >= t0 - PROBE_TIMEOUT_MS);
    return this.#kept;
  }
}

/** Polls `measure` until it gives a figure; throws after WITHIN_MS. */
async function until(what: string, measure: () => Promise<number | undefined> | number | undefined): Promise<number> {
  const deadline = Date.now() + WITHIN_MS;
  for (;;) {
    const v = await measure();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${WITHIN_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
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
    await applyManifests(store, [...read("pods.yaml"), ...read("service.yaml"), ...read("policy.yaml"), ...parseManifestText(BACKEND_PEERS, "bench")]);

    const every = async (nodes: ClusterNode[], ok: (node: ClusterNode) => Promise<boolean>, t0: number): Promise<number> => {
      const deadline = Date.now() + WITHIN_MS;
      for (;;) {
        const all = await Promise.all(nodes.map((n) => ok(n).catch(() => false)));
        if (all.every(Boolean)) return wallNow() - t0;
        if (Date.now() > deadline) throw new Error("a change was not applied by every agent within 30 s");
        await new Promise((r) => setImmediate(r));
      }
    };
    const services = (n: ClusterNode) => procs.api<Array<{ backends: Array<{ addr: string }> }>>(n, "/v1/services");
    const hasBackend = async (n: ClusterNode, ip: string) => (await services(n)).some((s) => s.backends.some((b) => b.addr === ip));
    const endpoints = (n: ClusterNode) => procs.api<Array<{ pod: string; id: number; identity: number }>>(n, "/v1/endpoints");
    const ipcache = (n: ClusterNode) => procs.api<Array<{ cidr: string; identity: number }>>(n, "/v1/ipcache");
    // The dual-stack service: one frontend per family.
    await every([n1, n2], async (n) => (await services(n)).length === 2 && (await endpoints(n)).length === (n === n1 ? 3 : 1), wallNow());

    const sliceWith = read("changes/backend-added.yaml").filter((m) => m.kind !== "Pod");
    const sliceWithout = read("service.yaml").filter((m) => m.kind !== "Service");
    const podC = read("changes/backend-added.yaml").filter((m) => m.kind === "Pod");
    await applyManifests(store, podC);
    await every([n2], async (n) => (await endpoints(n)).length === 2, wallNow());

    // Servers that say who they are, and the probe clients: frontend (n1) and
    // backend-b (n2) to the VIP, other (n1) straight to backend-b.
    const servers = (["bea", "beb", "bec"] as const).map((p) => probe(topo, p, ["serve", BACKEND_PORT, p]));
    await Promise.all(servers.map((s) => s.ready()));
    const viaN1p = probe(topo, "fe", ["connect", SERVICE_VIP, SERVICE_PORT, EVERY_MS, PROBE_TIMEOUT_MS]);
    const viaN2p = probe(topo, "beb", ["connect", SERVICE_VIP, SERVICE_PORT, EVERY_MS, PROBE_TIMEOUT_MS]);
    const toBebp = probe(topo, "other", ["connect", topo.pods.beb.ip, BACKEND_PORT, EVERY_MS, PROBE_TIMEOUT_MS]);
    await Promise.all([viaN1p, viaN2p, toBebp].map((p) => p.ready()));
    const [viaN1, viaN2, toBeb] = [viaN1p, viaN2p, toBebp].map((p) => new ProbeLog(p)) as [ProbeLog, ProbeLog, ProbeLog];
    // The service answers on both nodes before anything is timed.
    const t = wallNow();
    await until("the service answering on both nodes", () =>
      [viaN1, viaN2].every((p) => firstNewOutcome(p.since(t), t, (a) => a.ok) !== undefined) ? 0 : undefined).catch((err: Error) => {
      throw new Error(`${err.message}; last attempts: ${JSON.stringify([viaN1, viaN2].map((p) => p.since(t).slice(-3)))}`);
    });

    const samples: Record<string, { packet: number[]; api: number[] }> = {};
    const record = (kind: string, packet: number | undefined, api: number) => {
      const s = (samples[kind] ??= { packet: [], api: [] });
      if (packet !== undefined) s.packet.push(packet);
      s.api.push(api);
    };
    /** The slower node decides "every node". */
    const slowest = (xs: number[]) => Math.max(...xs);
    const byC = (a: ProbeAttempt) => a.reply === "bec";
    const byOthers = (a: ProbeAttempt) => a.ok && a.reply !== "bec";
    const otherAs = (app: string) => read("changes/label-flip.yaml").map((m) => ({ ...m, labels: { app } }));
    const otherIdentity = async () => (await endpoints(n1)).find((e) => e.pod.endsWith("/other"))?.identity;
    /** n2 maps other's address to `identity` and backend-b's ingress policy admits it (or, with `admit` false, not). */
    const decidedOnN2 = async (identity: number | undefined, admit: boolean) => {
      const remote = (await ipcache(n2)).find((e) => e.cidr === `${topo.pods.other.ip}/32`);
      return remote?.identity === identity && (await admitted(identity)) === admit;
    };
    const admitted = async (identity: number | undefined) => {
      const beb = (await endpoints(n2)).find((e) => e.pod.endsWith("/backend-b"));
      if (!beb || identity === undefined) return false;
      const pol = await procs.api<Array<{ entries: Array<{ identity: number; direction: string }> }>>(n2, `/v1/policy?endpoint=${beb.id}`);
      return pol[0]!.entries.some((e) => e.identity === identity && e.direction === "ingress");
    };

    for (let i = 0; i < ROUNDS; i++) {
      let t0 = wallNow();
      await applyManifests(store, sliceWith);
      let [api, ...packets] = await Promise.all([
        every([n1, n2], (n) => hasBackend(n, "10.211.2.3"), t0),
        ...[viaN1, viaN2].map((p) => until("backend-c answering", () => firstNewOutcome(p.since(t0), t0, byC))),
      ]);
      record("backend added", slowest(packets), api!);

      t0 = wallNow();
      await applyManifests(store, sliceWithout);
      [api, ...packets] = await Promise.all([
        every([n1, n2], async (n) => !(await hasBackend(n, "10.211.2.3")), t0),
        ...[viaN1, viaN2].map((p) => until("backend-c no longer answering", () => afterLastOldOutcome(p.since(t0), t0, byC, byOthers, CONFIRM))),
      ]);
      record("backend removed", slowest(packets), api!);

      const before = await otherIdentity();
      t0 = wallNow();
      await applyManifests(store, otherAs("frontend"));
      [api, ...packets] = await Promise.all([
        every([n1, n2], async () => { const id = await otherIdentity(); return id !== before && decidedOnN2(id, true); }, t0),
        until("other admitted by backend-b", () => firstNewOutcome(toBeb.since(t0), t0, (a) => a.ok)),
      ]);
      record("label: verdict to allow", packets[0], api!);
      const allowedId = await otherIdentity();
      t0 = wallNow();
      await applyManifests(store, otherAs("other"));
      [api, ...packets] = await Promise.all([
        every([n1, n2], async () => { const id = await otherIdentity(); return id !== allowedId && decidedOnN2(id, false); }, t0),
        until("other refused by backend-b", () => afterLastOldOutcome(toBeb.since(t0), t0, (a) => a.ok, (a) => !a.ok, CONFIRM)),
      ]);
      record("label: verdict to deny", packets[0], api!);

      const ip = `10.211.1.${100 + i}`;
      const pod = parseManifestText(`apiVersion: v1\nkind: Pod\nmetadata: { name: extra-${i}, namespace: demo, labels: { app: extra } }\nspec: { nodeName: n1 }\nstatus: { podIP: ${ip} }\n`, "extra.yaml");
      t0 = wallNow();
      await applyManifests(store, pod);
      record("pod created (n2 ipcache)", undefined, await every([n2], async (n) => (await ipcache(n)).some((e) => e.cidr === `${ip}/32`), t0));
      t0 = wallNow();
      await deleteManifests(store, pod);
      record("pod deleted (n2 ipcache)", undefined, await every([n2], async (n) => !(await ipcache(n)).some((e) => e.cidr === `${ip}/32`), t0));
    }
    const logs = [viaN1, viaN2, toBeb];
    const attempts = logs.reduce((n, p) => n + p.total, 0);
    // setInterval on a loaded machine fires late: the interval achieved is the real resolution.
    const achieved = Math.max(...logs.map((p) => (p.last - p.first) / Math.max(1, p.total - 1)));
    const ms = (xs: number[], p: number) => (xs.length ? num(percentile([...xs].sort((a, b) => a - b), p), 1) : "-");
    const rows = Object.entries(samples).map(([kind, s]) => ({
      change: kind,
      rounds: String(s.api.length),
      "packet p50 ms": ms(s.packet, 50), "packet p99 ms": ms(s.packet, 99), "packet max ms": ms(s.packet, 100),
      "API p50 ms": ms(s.api, 50), "API p99 ms": ms(s.api, 99),
    }));
    printTable(`convergence: apply -> first new flow decided under the new state on every node (packet) / every agent's API shows it (API); ${spec.split(":")[0]} kvstore, ${ROUNDS} rounds`, rows, [
      `probes: a new TCP connection every ${EVERY_MS} ms asked, ${num(achieved, 1)} ms achieved (the slowest client's mean), from each of 3 pods (${attempts} in all): the packet figures' resolution`,
      "pod created/deleted: API only (no pod behind the address sends a packet)",
      `load average ${loadavg().map((l) => l.toFixed(2)).join(" ")} (a shared machine: figures are noisy)`,
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
