/**
 * `membrane demo`: a two-node cluster on this machine (topology.ts). Each
 * node runs a real `membrane agent --kvstore --node` with its TUN forwarder;
 * one `membrane operator`; the kvstore (embedded in a temporary dir, or
 * `--kvstore etcd:...`) shared by all. The manifests of examples/cluster are
 * applied with `membrane apply`, then:
 *
 *   1. traffic: cross-node pod to pod (allowed by the NetworkPolicy, and
 *      denied), pod to the service VIP answered from the other node, pods
 *      (on both nodes) to the external host, masqueraded to their node's
 *      address (the summary lists the peers ext saw: the nodes' addresses);
 *   2. while a TCP stream per family runs from frontend (n1) to backend-b
 *      (n2): a backend added, one removed, a label change flipping a
 *      verdict, and n2's agent SIGKILLed and started again, both streams
 *      surviving; every change is checked over IPv4 and IPv6;
 *      With --encrypt, what crosses between the nodes is userspace ESP
 *      (AES-GCM-128 in UDP 4500, host/forwarder/esp-path.ts) and the key is
 *      rotated under the streams too (3 -> 4): zero ESP drops on either node;
 *   3. a live view once a second, a summary of what each change did and how
 *      long it took to take effect, and cleanup of everything (also on
 *      SIGINT/SIGTERM and on errors).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Output } from "../../format/output.js";
import { renderTable } from "../../format/table.js";

/** A table of plain string rows, headers in order. */
const table = (headers: string[], rows: string[][]) => renderTable(headers.map((header, i) => ({ header, value: (r: string[]) => r[i] ?? "", right: false })), rows);
import { packageRoot } from "../../package-root.js";
import { sweep } from "../../sys/netns/lab.js";
import type { NetnsProcess } from "../../sys/netns/process.js";
import { demoUnavailable } from "../requirements.js";
import { ClusterProcesses, cliMissing } from "./processes.js";
import { KvstoreBridge } from "./kvstore-bridge.js";
import { AGENT_METRICS_PORT, MetricsBridge, nodeMetricsAddresses, showAddress } from "./metrics-bridge.js";
import type { ListenAddress } from "../../metrics/server.js";
import { ESP_STATUS_FILE } from "../../forwarder/esp-state-file.js";
import type { EncryptionStatus } from "../../forwarder/esp-path.js";
import { BACKEND_PORT, ClusterTopology, EXT_PORT, SERVICE_PORT, SERVICE_VIP, SERVICE_VIP6, type ClusterNode, type NodeName, type PodName } from "./topology.js";

export const CLUSTER_DEMO_PREFIX = "mbc";

export interface ClusterDemoOptions {
  /** --kvstore spec; default an embedded store in a temporary dir. */
  kvstore?: string;
  /** Namespace/link prefix; default "mbc". */
  prefix?: string;
  json?: boolean;
  /** --metrics: node i's agent metrics on the host at this address's port + i (metrics-bridge.ts). */
  metrics?: ListenAddress;
  /** --encrypt: the agents seal node-to-node traffic in userspace ESP, and the demo rotates the key. */
  encrypt?: boolean;
}

export interface Outcome {
  what: string;
  expected: "allowed" | "denied";
  result: "ok" | "failed";
  detail: string;
}

export interface ChangeOutcome {
  change: string;
  effect: string;
  /** From the apply (or the kill) to the moment the new state was seen; undefined when it never was. */
  ms?: number;
  how: string;
}

export interface ClusterDemoSummary {
  kvstore: string;
  /** Whether the node-to-node traffic was ESP (--encrypt): one change more, the key rotation. */
  encrypted: boolean;
  interrupted: boolean;
  traffic: Outcome[];
  changes: ChangeOutcome[];
  /** The stream frontend -> backend-b of each family across every change: echoes received, and whether it ended cleanly. */
  streams: StreamOutcome[];
  /** The nodes' masquerade addresses, and every distinct peer address ext's server saw (masqueraded: only those). */
  masquerade: { addresses: string[]; seenByExt: string[] };
  cleanup: string[];
}

export interface StreamOutcome {
  family: Family;
  echoes: number;
  ok: boolean;
  detail: string;
}

export type ClusterDemoResult = { ran: true; summary: ClusterDemoSummary } | { ran: false; reason: string };

const STREAM_LINES = 400;
const STREAM_EVERY_MS = 50;
const DENIED_WAIT_MS = 1_500;

class Interrupted extends Error {}

interface AgentStatus {
  counts: { nodes: number; endpoints: number; ipcache: number; identities: number; services: number; policies: number; routes: number };
  events: number;
  regenerations: number;
  kvstore: { state: string };
}

export async function runClusterDemo(io: Output, opts: ClusterDemoOptions = {}): Promise<ClusterDemoResult> {
  const why = demoUnavailable() ?? cliMissing();
  if (why) return { ran: false, reason: why };
  const prefix = opts.prefix ?? CLUSTER_DEMO_PREFIX;
  const say = (text: string, json?: object) => (opts.json ? io.out(JSON.stringify(json ?? { say: text })) : io.out(text));
  const stale = await sweep(prefix);
  if (stale.length) say(`removed leftovers of an earlier run: ${stale.join(", ")}`);

  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const kvstore = opts.kvstore ?? `embedded:${join(dir, "kvstore")}`;
  const summary: ClusterDemoSummary = { kvstore, encrypted: opts.encrypt === true, interrupted: false, traffic: [], changes: [], streams: [], masquerade: { addresses: [], seenByExt: [] }, cleanup: [] };
  let topo: ClusterTopology | undefined;
  let procs: ClusterProcesses | undefined;
  let bridge: KvstoreBridge | undefined;
  const metricsBridge = opts.metrics && new MetricsBridge();
  let interrupt: () => void = () => {};
  const interrupted = new Promise<never>((_, reject) => (interrupt = () => reject(new Interrupted())));
  interrupted.catch(() => {});
  const onSignal = () => {
    summary.interrupted = true;
    interrupt();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const race = <T>(p: Promise<T>) => Promise.race([p, interrupted]);
  let live: NodeJS.Timeout | undefined;
  try {
    topo = await race(ClusterTopology.create(prefix));
    bridge = await race(KvstoreBridge.open(kvstore, dir));
    for (const ns of [topo.control, topo.nodes.n1.ns, topo.nodes.n2.ns]) await race(bridge.attach(topo.lab, ns));
    procs = new ClusterProcesses(topo, bridge.spec, dir, opts.metrics && AGENT_METRICS_PORT, opts.encrypt);
    if (opts.encrypt) procs.writeKeys(FIRST_KEY);
    const { n1, n2 } = topo.nodes;
    if (metricsBridge) {
      const at = nodeMetricsAddresses(opts.metrics!, [n1.name, n2.name]);
      await race(metricsBridge.expose(topo.lab, dir, at.map((a) => ({ ...a, ns: topo!.nodes[a.node as NodeName].ns }))));
      say(`metrics: ${at.map((a) => `${a.node}'s agent on http://${showAddress(a.address)}/metrics`).join(", ")}`);
    }
    say(`cluster: nodes n1 (${n1.ip}, pods ${n1.podCidr}) and n2 (${n2.ip}, pods ${n2.podCidr}) joined by ${n1.link}; kvstore ${kvstore}${opts.encrypt ? `; node-to-node traffic in ESP, key ${FIRST_KEY}` : ""}`);
    procs.startOperator();
    await race(Promise.all([procs.startAgent(n1), procs.startAgent(n2)]));
    say("agents forwarding on both nodes; operator started; applying examples/cluster");
    await race(procs.apply(join(packageRoot(), "examples/cluster")));
    await race(topo.resolveNeighbours());
    // One echo server per pod and family (each on its own address: what it reports is unambiguous).
    const listen = (p: PodName, port: number) => FAMILIES.map((f) => topo!.traffic(p, ["tcp-echo", addressOf(topo!, p, f), port], 3_600_000));
    const servers: Servers = { bea: listen("bea", BACKEND_PORT), beb: listen("beb", BACKEND_PORT), bec: listen("bec", BACKEND_PORT) };
    const extServers = listen("ext", EXT_PORT);
    await race(Promise.all([...Object.values(servers).flat(), ...extServers].map((s) => s.ready(8_000))));
    const converged = performance.now();
    await race(waitForState(procs, [n1, n2], (s, node) => s.counts.services === 2 && s.counts.policies === 1 && s.counts.endpoints === (node.name === "n1" ? 3 : 1) && s.counts.ipcache >= 8 && s.counts.routes >= 2, 30_000));
    if (opts.encrypt) {
      // The routes into the TUN are in; the ESP path learns its peers from the peers file the agent writes once a
      // second and reads it once a second. Until then a packet routed to the other node's pods has no peer to be
      // sealed for, goes back into the TUN and loops until its TTL runs out (a connect then fails EHOSTUNREACH).
      const peers = await race(encryptionSeen(procs, [n1, n2], (s) => s.peers.length > 0, 10_000));
      if (!peers.ok) throw new Error(`the ESP paths did not learn their peer within 10 s (peers: ${peers.statuses.map((s) => s?.peers.length ?? "no status").join(", ")})`);
    }
    say(`control plane converged in ${((performance.now() - converged) / 1000).toFixed(2)} s after the servers were up`);

    const probe = (from: PodName, to: string, port: number, ms = 3_000) => tcpOnce(topo!, from, to, port, ms);
    const check = async (what: string, expected: "allowed" | "denied", from: PodName, to: string, port: number) => {
      const r = await race(probe(from, to, port, expected === "denied" ? DENIED_WAIT_MS : 4_000));
      const ok = (r.ok && expected === "allowed") || (!r.ok && expected === "denied");
      const outcome: Outcome = { what, expected, result: ok ? "ok" : "failed", detail: r.ok ? "connected, echoed" : r.why };
      summary.traffic.push(outcome);
      say(`${ok ? "ok    " : "FAILED"} ${what}: ${expected}, ${outcome.detail}`, { traffic: outcome });
    };
    for (const f of FAMILIES) {
      const at = (p: PodName) => addressOf(topo!, p, f);
      await check(`IPv${f} frontend (n1) -> backend-b (n2) TCP 8080`, "allowed", "fe", at("beb"), BACKEND_PORT);
      await check(`IPv${f} other (n1) -> backend-b (n2) TCP 8080`, "denied", "other", at("beb"), BACKEND_PORT);
      await check(`IPv${f} frontend (n1) -> backend-b (n2) TCP 9000 (no port in the policy)`, "denied", "fe", at("beb"), 9000);
      await check(`IPv${f} frontend (n1) -> external host`, "allowed", "fe", at("ext"), EXT_PORT);
      await check(`IPv${f} backend-b (n2) -> external host (through n1)`, "allowed", "beb", at("ext"), EXT_PORT);
    }
    // ext routes only the nodes' link: it saw (and answered) the nodes' addresses, never a pod's.
    summary.masquerade = { addresses: [n1.ip, n2.ip, n1.ip6, n2.ip6], seenByExt: extServers.flatMap(peerAddresses) };
    const masqueraded = summary.masquerade.seenByExt.join() === summary.masquerade.addresses.join();
    const masqOutcome: Outcome = {
      what: "external host saw the nodes' addresses (masqueraded)", expected: "allowed", result: masqueraded ? "ok" : "failed",
      detail: `peers ${summary.masquerade.seenByExt.join(", ") || "none"}; node addresses ${summary.masquerade.addresses.join(", ")}`,
    };
    summary.traffic.push(masqOutcome);
    say(`${masqueraded ? "ok    " : "FAILED"} ${masqOutcome.what}: ${masqOutcome.detail}`, { traffic: masqOutcome });
    // The VIP of each family: connections until one is answered from n2 (backend-b), each on a new source port.
    for (const f of FAMILIES) {
      const vip = await race(answeredBy(topo, servers, "fe", ["beb"], 16, f));
      const vipOutcome: Outcome = {
        what: `IPv${f} frontend (n1) -> service ${f === 4 ? SERVICE_VIP : `[${SERVICE_VIP6}]`}:${SERVICE_PORT} answered from n2`, expected: "allowed",
        result: vip.hit ? "ok" : "failed", detail: `${vip.tries} connection(s); answered by ${Object.entries(vip.by).map(([k, v]) => `${k} ${v}`).join(", ") || "nobody"}`,
      };
      summary.traffic.push(vipOutcome);
      say(`${vip.hit ? "ok    " : "FAILED"} ${vipOutcome.what}: ${vipOutcome.detail}`, { traffic: vipOutcome });
    }

    if (opts.encrypt) {
      // Everything above between n1's and n2's pods crossed the link sealed: both nodes opened what the other sealed, under key 3.
      const sealed = await race(encryptionSeen(procs, [n1, n2], (s) => s.counters.sealed > 0 && s.counters.opened > 0 && s.peers.every((p) => p.sendKey === FIRST_KEY), 5_000));
      const outcome: Outcome = {
        what: `pod traffic between the nodes in ESP with key ${FIRST_KEY}`, expected: "allowed", result: sealed.ok ? "ok" : "failed",
        detail: sealed.statuses.map((s, i) => `${[n1, n2][i]!.name} ${s ? `sealed ${s.counters.sealed}, opened ${s.counters.opened}, sends with key ${s.peers.map((p) => p.sendKey).join("/")}` : "no encryption status"}`).join("; "),
      };
      summary.traffic.push(outcome);
      say(`${sealed.ok ? "ok    " : "FAILED"} ${outcome.what}: ${outcome.detail}`, { traffic: outcome });
    }

    // The streams that must survive every change, n2's agent's SIGKILL included: one per family.
    const streams = FAMILIES.map((f) => ({ family: f, p: topo!.traffic("fe", ["tcp-stream", addressOf(topo!, "beb", f), BACKEND_PORT, STREAM_LINES, STREAM_EVERY_MS], 120_000) }));
    await race(Promise.all(streams.map((s) => s.p.waitLine(`IPv${s.family} stream connected`, (l) => typeof l === "object" && l !== null && "connected" in l, 8_000))));
    const startedAt = Date.now();
    live = setInterval(() => void liveFrame(procs!, [n1, n2], streams, startedAt, say), 1_000);

    const change = async (c: ChangeOutcome) => {
      summary.changes.push(c);
      say(`change: ${c.change}: ${c.effect}${c.ms === undefined ? " (not seen)" : ` in ${c.ms.toFixed(0)} ms`} (${c.how})`, { change: c });
    };
    const answeredText = (by: Record<string, number>) => Object.entries(by).map(([k, v]) => `${k} ${v}`).join(", ") || "nobody";
    let t0 = performance.now();
    await race(procs.apply(join(packageRoot(), "examples/cluster/changes/backend-added.yaml")));
    let ms = await race(timeUntil(procs, [n1, n2], "/v1/services", (s: Array<{ backends: Array<{ addr: string }> }>) => FAMILIES.every((f) => s.some((x) => x.backends.some((b) => b.addr === addressOf(topo!, "bec", f)))), t0));
    // The service's backends come from the EndpointSlices, the pod's endpoint on n2 from its pod record: the operator
    // writes them in separate steps, so under load the VIP can pick backend-c before n2 has its endpoint (a connection
    // then fails). The change is seen once backend-c is also in every node's ipcache (n2's own endpoint, n1's copy).
    const inIpcache = ms === undefined ? undefined : await race(timeUntil(procs, [n1, n2], "/v1/ipcache", (s: Array<{ cidr: string }>) => FAMILIES.every((f) => s.some((e) => e.cidr.split("/")[0] === addressOf(topo!, "bec", f))), t0));
    ms = inIpcache === undefined ? undefined : Math.max(ms!, inIpcache);
    const added: string[] = [];
    for (const f of FAMILIES) {
      // Each connection picks backend-c with odds 1/3 (Maglev over a new source port): 32 tries miss it with odds 2e-6.
      const a = await race(answeredBy(topo, servers, "fe", ["bec"], 32, f));
      added.push(`IPv${f} ${answeredText(a.by)}${a.hit ? "" : " (backend-c never answered)"}`);
      if (!a.hit) ms = undefined;
    }
    await change({ change: "backend-c (n2) added to the service", effect: `in every node's LB table; frontend's connections to the VIP then answered by ${added.join("; ")}`, ms, how: "apply -> every agent's /v1/services and /v1/ipcache list it, and it answers over both families" });

    t0 = performance.now();
    await race(procs.apply(join(packageRoot(), "examples/cluster/changes/backend-removed.yaml")));
    ms = await race(timeUntil(procs, [n1, n2], "/v1/services", (s: Array<{ backends: Array<{ addr: string }> }>) => s.every((x) => !x.backends.some((b) => FAMILIES.some((f) => b.addr === addressOf(topo!, "bea", f)))), t0));
    const removed: string[] = [];
    for (const f of FAMILIES) removed.push(`IPv${f} ${answeredText((await race(answeredBy(topo, servers, "fe", [], 8, f))).by)}`);
    await change({ change: "backend-a (n1) removed from the service", effect: `gone from every node's LB table; 8 new connections per family answered by ${removed.join("; ")}`, ms, how: "apply -> no agent's /v1/services lists it" });

    t0 = performance.now();
    await race(procs.apply(join(packageRoot(), "examples/cluster/changes/label-flip.yaml")));
    const allowedAt: Partial<Record<Family, number>> = {};
    for (let i = 0; i < 20 && FAMILIES.some((f) => allowedAt[f] === undefined); i++) {
      for (const f of FAMILIES) {
        if (allowedAt[f] !== undefined) continue;
        const r = await race(probe("other", addressOf(topo, "beb", f), BACKEND_PORT, 1_000));
        if (r.ok) allowedAt[f] = performance.now() - t0;
      }
    }
    const stillDenied = FAMILIES.filter((f) => allowedAt[f] === undefined);
    ms = stillDenied.length ? undefined : Math.max(...FAMILIES.map((f) => allowedAt[f]!));
    await change({ change: "pod other relabelled app=frontend", effect: stillDenied.length ? `other -> backend-b (n2) still denied over ${stillDenied.map((f) => `IPv${f}`).join(", ")}` : "other -> backend-b (n2) TCP 8080 now allowed over IPv4 and IPv6 (n2's ingress policy regenerated)", ms, how: "apply -> first connection from other accepted on n2, in each family" });

    if (opts.encrypt) {
      // A rolling key update under the streams: each agent installs key 4, advertises it, and sends with it once its peer holds it too.
      t0 = performance.now();
      procs.writeKeys(FIRST_KEY + 1);
      const rotated = await race(encryptionSeen(procs, [n1, n2], (s) => s.currentKey === FIRST_KEY + 1 && s.peers.every((p) => p.sendKey === FIRST_KEY + 1 && p.out.some((o) => o.keyIndex === FIRST_KEY + 1 && o.seq > 0)), 20_000));
      await change({
        change: `IPsec key rotated ${FIRST_KEY} -> ${FIRST_KEY + 1} on both nodes`,
        effect: rotated.ok ? `both nodes send with key ${FIRST_KEY + 1}; the old key opens what was in flight for its grace period` : `not both on key ${FIRST_KEY + 1}: ${JSON.stringify(rotated.statuses.map((s) => s?.peers.map((p) => p.sendKey)))}`,
        ms: rotated.ok ? performance.now() - t0 : undefined, how: "new key files -> each node's ESP status shows packets sent under the new key",
      });
    }

    const echoesBefore = streams.map((s) => echoes(s.p));
    t0 = performance.now();
    await race(procs.killAgent(n2));
    const killedAt = performance.now();
    await race(procs.startAgent(n2));
    const restarted = performance.now();
    await race(waitForState(procs, [n2], (s) => s.counts.endpoints === 2 && s.counts.services === 2 && s.counts.policies === 1, 30_000));
    const rejoined = performance.now();
    await race(Promise.all(streams.map((s, i) => s.p.waitLine(`an IPv${s.family} echo after the restart`, (l) => typeof l === "object" && l !== null && "echo" in l && (l as { echo: number }).echo > echoesBefore[i]! + 1, 20_000).catch(() => undefined))));
    await change({
      change: "n2's agent SIGKILLed and started again",
      effect: `forwarding again ${((restarted - killedAt) / 1000).toFixed(2)} s after the kill, its tables back ${((rejoined - restarted) / 1000).toFixed(2)} s later; the streams frontend -> backend-b went on`,
      ms: rejoined - t0, how: "SIGKILL -> the restarted agent's API shows its endpoints, service and policy",
    });

    for (const s of streams) {
      const end = await race(s.p.exited);
      const outcome: StreamOutcome = { family: s.family, echoes: echoes(s.p), ok: end === 0, detail: end === 0 ? `all ${STREAM_LINES} lines echoed in order, no reset` : s.p.stderr.trim().split("\n").at(-1) ?? `exit ${end}` };
      summary.streams.push(outcome);
      say(`${outcome.ok ? "ok    " : "FAILED"} IPv${s.family} TCP stream frontend (n1) -> backend-b (n2) across every change: ${outcome.detail}`, { stream: outcome });
    }
    if (opts.encrypt) {
      // Nothing sealed under the old key or by the restarted agent was refused: a rotation or a restart that loses packets shows here.
      const statuses = await Promise.all([n1, n2].map((n) => encryptionStatus(procs!, n)));
      const dropped = statuses.map((s) => (s ? Object.entries(s.counters.drops).filter(([, v]) => v > 0) : [["no status", 1] as [string, number]]));
      const outcome: Outcome = {
        what: "no ESP packet dropped on either node (rotation and restart included)", expected: "allowed", result: dropped.every((d) => d.length === 0) ? "ok" : "failed",
        detail: [n1, n2].map((n, i) => `${n.name} ${dropped[i]!.length ? dropped[i]!.map(([k, v]) => `${k} ${v}`).join(", ") : `0 drops, opened ${statuses[i]!.counters.opened}`}`).join("; "),
      };
      summary.traffic.push(outcome);
      say(`${outcome.result === "ok" ? "ok    " : "FAILED"} ${outcome.what}: ${outcome.detail}`, { traffic: outcome });
    }
  } catch (err) {
    if (!(err instanceof Interrupted)) {
      summary.traffic.push({ what: "the demo", expected: "allowed", result: "failed", detail: (err as Error).message });
      io.err(`membrane demo: ${(err as Error).message}`);
    }
  } finally {
    if (live) clearInterval(live);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await procs?.stop();
    summary.cleanup = (await topo?.teardown()) ?? [];
    bridge?.close();
    metricsBridge?.close();
    summary.cleanup.push(...(await sweep(prefix)).map((l) => `left over: ${l}`));
    rmSync(dir, { recursive: true, force: true });
  }
  printSummary(io, summary, opts.json === true);
  return { ran: true, summary };
}

/** One TCP connection with one line echoed back (the echo servers echo bytes as they are): ok, or why not. */
async function tcpOnce(topo: ClusterTopology, from: PodName, to: string, port: number, ms: number): Promise<{ ok: true } | { ok: false; why: string }> {
  const p = topo.traffic(from, ["tcp-stream", to, port, 1, 1], ms);
  const code = await p.exited;
  return code === 0 ? { ok: true } : { ok: false, why: p.stderr.trim().split("\n").at(-1) || `exit ${code}` };
}

/** Connections from `from` to the VIP until one of `want` answers (or `max`); who answered each. */
async function answeredBy(topo: ClusterTopology, servers: Servers, from: PodName, want: string[], max: number, family: Family = 4): Promise<{ hit: boolean; tries: number; by: Record<string, number> }> {
  const src = addressOf(topo, from, family);
  const peers = (s: NetnsProcess[]) => s.flatMap((p) => p.lines).filter((l) => (l as { peer?: { address: string } } | null)?.peer?.address === src).length;
  const by: Record<string, number> = {};
  let tries = 0;
  for (; tries < max; ) {
    const before = Object.fromEntries(Object.entries(servers).map(([k, s]) => [k, peers(s)]));
    tries++;
    const r = await tcpOnce(topo, from, family === 4 ? SERVICE_VIP : SERVICE_VIP6, SERVICE_PORT, 4_000);
    if (!r.ok) continue;
    const who = Object.entries(servers).find(([k, s]) => peers(s) > before[k]!)?.[0] ?? "?";
    by[who] = (by[who] ?? 0) + 1;
    if (want.includes(who)) return { hit: true, tries, by };
  }
  return { hit: want.length === 0, tries, by };
}

const FIRST_KEY = 3;

/** The node's agent's ESP status (the file `membrane encrypt status` reads), or undefined while there is none. */
async function encryptionStatus(procs: ClusterProcesses, node: ClusterNode): Promise<EncryptionStatus | undefined> {
  try {
    return JSON.parse(readFileSync(join(procs.stateDir(node), ESP_STATUS_FILE), "utf8")) as EncryptionStatus;
  } catch {
    return undefined;
  }
}

/** Polls both nodes' ESP status until `ok` holds for each (bounded): whether it did, and the last statuses read. */
async function encryptionSeen(procs: ClusterProcesses, nodes: ClusterNode[], ok: (s: EncryptionStatus) => boolean, ms: number): Promise<{ ok: boolean; statuses: Array<EncryptionStatus | undefined> }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const statuses = await Promise.all(nodes.map((n) => encryptionStatus(procs, n)));
    if (statuses.every((s) => s !== undefined && ok(s))) return { ok: true, statuses };
    if (Date.now() > deadline) return { ok: false, statuses };
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Family = 4 | 6;
const FAMILIES: readonly Family[] = [4, 6];
/** Echo servers by pod name, one per family. */
type Servers = Record<string, NetnsProcess[]>;

function addressOf(topo: ClusterTopology, pod: PodName, family: Family): string {
  return family === 4 ? topo.pods[pod].ip : topo.pods[pod].ip6;
}

/** The distinct peer addresses a server reported ({"peer":{...}} lines), sorted. */
function peerAddresses(server: NetnsProcess): string[] {
  const seen = server.lines.map((l) => (l as { peer?: { address?: unknown } } | null)?.peer?.address).filter((a): a is string => typeof a === "string");
  return [...new Set(seen)].sort();
}

function echoes(stream: NetnsProcess): number {
  return stream.lines.filter((l) => typeof (l as { echo?: number } | null)?.echo === "number").length;
}

async function statusOf(procs: ClusterProcesses, node: ClusterNode): Promise<AgentStatus | undefined> {
  try {
    return await procs.api<AgentStatus>(node, "/v1/status");
  } catch {
    return undefined;
  }
}

async function waitForState(procs: ClusterProcesses, nodes: ClusterNode[], ok: (s: AgentStatus, node: ClusterNode) => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const all = await Promise.all(nodes.map((n) => statusOf(procs, n)));
    if (all.every((s, i) => s !== undefined && ok(s, nodes[i]!))) return;
    if (Date.now() > deadline) throw new Error(`the agents did not converge within ${ms} ms: ${JSON.stringify(all.map((s) => s?.counts))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Milliseconds from `t0` until every node's API answer at `path` satisfies `ok` (polled every 10 ms; bounded 20 s). */
async function timeUntil<T>(procs: ClusterProcesses, nodes: ClusterNode[], path: string, ok: (body: T) => boolean, t0: number): Promise<number | undefined> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const all = await Promise.all(nodes.map((n) => procs.api<T>(n, path).catch(() => undefined)));
    if (all.every((b) => b !== undefined && ok(b))) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}

async function liveFrame(procs: ClusterProcesses, nodes: ClusterNode[], streams: Array<{ family: Family; p: NetnsProcess }>, startedAt: number, say: (t: string, j?: object) => void): Promise<void> {
  const rows = await Promise.all(nodes.map(async (n) => {
    const s = await statusOf(procs, n);
    return s
      ? [n.name, s.kvstore.state, String(s.counts.endpoints), String(s.counts.ipcache), String(s.counts.identities), String(s.counts.services), String(s.counts.policies), String(s.counts.routes), String(s.events), String(s.regenerations)]
      : [n.name, "(agent down)", "", "", "", "", "", "", "", ""];
  }));
  const t = ((Date.now() - startedAt) / 1000).toFixed(0);
  const progress = streams.map((s) => `IPv${s.family} ${echoes(s.p)}/${STREAM_LINES}`).join(", ");
  const text = `── ${t}s ─ streams frontend -> backend-b: ${progress} echoed ${"─".repeat(20)}\n` +
    table(["node", "kvstore", "endpoints", "ipcache", "identities", "services", "policies", "routes", "events", "regenerations"], rows);
  say(text, { live: { t: Number(t), echoes: Object.fromEntries(streams.map((s) => [`ipv${s.family}`, echoes(s.p)])), nodes: rows } });
}

function printSummary(io: Output, s: ClusterDemoSummary, json: boolean): void {
  if (json) {
    io.out(JSON.stringify({ summary: s }));
    return;
  }
  io.out(`\nsummary (kvstore ${s.kvstore}${s.interrupted ? "; interrupted" : ""})`);
  io.out(table(["traffic", "expected", "result", "detail"], s.traffic.map((t) => [t.what, t.expected, t.result, t.detail])));
  io.out("");
  io.out(table(["change", "took effect", "what it did", "measured as"], s.changes.map((c) => [c.change, c.ms === undefined ? "never" : `${c.ms.toFixed(0)} ms`, c.effect, c.how])));
  io.out("");
  for (const st of s.streams) io.out(`IPv${st.family} stream: ${st.echoes} echoes; ${st.detail}`);
  io.out(s.cleanup.length ? `cleanup: could not remove ${s.cleanup.join("; ")}` : "cleanup: every namespace, link, process and the kvstore dir removed");
}

/** Whether every traffic check, change and both streams came out as expected. */
export function clusterDemoOk(s: ClusterDemoSummary): boolean {
  return s.traffic.every((t) => t.result === "ok") && s.changes.length === (s.encrypted ? 5 : 4) && s.changes.every((c) => c.ms !== undefined) &&
    s.streams.length === FAMILIES.length && s.streams.every((st) => st.ok);
}

export type { NodeName };
