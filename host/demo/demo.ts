/**
 * `membrane demo`: the userspace forwarder on live traffic, on this machine.
 * As root it builds the namespace topology of topology.ts (prefix
 * "mbr-demo", ext outside the cluster), starts the forwarder with the
 * services of services.ts (a VIP per family in front of pod2) and the
 * masquerading of nat.ts (pod traffic to ext leaves from the node's address),
 * attaches its TUN to the node, drives TCP, UDP and ping over IPv4 and IPv6
 * between the pods, to the VIPs and to ext, prints what the forwarder reports
 * once a second (its counters, the datapath's, the busiest flows, flows per
 * service backend, NAT mappings) and, at the end, the addresses ext saw
 * (the node's, never a pod's), then stops the forwarder and removes everything: at the
 * end, on Ctrl-C (SIGINT/SIGTERM) and on errors alike. Without root it
 * changes nothing and says why; the caller shows the capture replay instead.
 */
import { ForwarderHandle } from "../forwarder/controller.js";
import type { NatSummary, WorkerMessage } from "../forwarder/protocol.js";
import type { ForwarderStats } from "../forwarder/forwarder.js";
import type { DatapathOptions } from "../config.js";
import { renderTable, toJson } from "../format/table.js";
import type { Output } from "../format/output.js";
import { sweep } from "../sys/netns/lab.js";
import type { NetnsProcess } from "../sys/netns/process.js";
import { ForwarderTopology, type Endpoint } from "./topology.js";
import { demoUnavailable } from "./requirements.js";
import { BACKEND_TCP_PORTS, BACKEND_UDP_PORT, SERVICE_TCP_PORT, SERVICE_UDP_PORT, SERVICE_VIP4, SERVICE_VIP6, demoServices } from "./services.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import { formatServiceFlows } from "../format/service-flows.js";
import { flowsTable } from "../format/flows.js";
import { natLines } from "../format/nat-summary.js";
import { demoNat } from "./nat.js";
import { AgentMetrics } from "../agent/agent-metrics.js";
import type { Metrics } from "../metrics/registry.js";

export const DEMO_PREFIX = "mbr-demo";
export const DEMO_SECONDS = 10;

type Report = Extract<WorkerMessage, { type: "report" }>;

export interface DemoOptions {
  /** How long traffic runs (default 10 s; setup and teardown add about a second). */
  seconds?: number;
  /** JSON lines (topology, one report a second, summary) instead of text. */
  json?: boolean;
  /** Names of the namespaces and the TUN ("<prefix>-node", ...); default "mbr-demo". */
  prefix?: string;
  /** Open the TUN with a virtio-net header and TSO/USO/checksum offloads (the forwarder's offload path). */
  offloads?: boolean;
  /** `--metrics`: the forwarder's datapath series go here, labelled with the node namespace. */
  metrics?: Metrics;
}

export interface TrafficOutcome {
  what: string;
  result: "ok" | "failed" | "interrupted";
  detail: string;
}

/** A peer one of ext's servers reported (agent.ts "peer" lines): who ext saw. */
export interface ExtPeer {
  proto: "tcp" | "udp" | "icmp";
  address: string;
  /** TCP/UDP source port, or the ICMP echo identifier. */
  port: number;
}

export interface MasqueradeSummary {
  /** The node's masquerade addresses (its addresses on the ext link). */
  addresses: string[];
  /** Every distinct peer ext's servers saw: with masquerading, only the node's addresses. */
  seenByExt: ExtPeer[];
  /** NAT mappings in the forwarder's last report (newest first) and how many there were. */
  nat: NatSummary[];
  natMappings: number;
}

export interface DemoSummary {
  seconds: number;
  interrupted: boolean;
  /** The forwarder's counters when it stopped (undefined: it never started). */
  stats?: ForwarderStats;
  traffic: TrafficOutcome[];
  /** Flows per service backend in the forwarder's last report: which backend answered. */
  services: ServiceFlowSummary[];
  masquerade: MasqueradeSummary;
  /** What could not be removed (normally empty). */
  cleanup: string[];
}

export type DemoResult = { ran: true; summary: DemoSummary } | { ran: false; reason: string };

const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 65536, otherEntries: 65536 } };
/** NAT rows in each live frame (the summary lists the whole last report). */
const NAT_FRAME_ROWS = 6;
const TCP_PORT = 8080;
const UDP_PORT = 5353;

interface Traffic {
  /** Settles when the traffic is over (or failed). */
  done: Promise<unknown>;
  outcome: (interrupted: boolean) => TrafficOutcome;
}

/** Traffic from one agent: its result line, described for people, or why it failed. */
function agentTraffic(what: string, agent: NetnsProcess, describe: (result: Record<string, unknown>) => string): Traffic {
  return {
    done: agent.exited,
    outcome: (interrupted) => {
      if (agent.child.exitCode === 0) {
        const result = agent.lines.filter((l) => typeof l === "object" && l !== null && !("ready" in l) && !("echo" in l) && !("connected" in l)).at(-1);
        return { what, result: "ok", detail: describe((result ?? {}) as Record<string, unknown>) };
      }
      const echoes = agent.lines.filter((l) => typeof (l as { echo?: number } | null)?.echo === "number").length;
      const why = interrupted ? "stopped early" : agent.running ? "still running at the end" : (agent.stderr.trim().split("\n").at(-1) || `exited with ${agent.child.exitCode ?? agent.child.signalCode}`);
      return { what, result: interrupted ? "interrupted" : "failed", detail: echoes ? `${why} (${echoes} lines echoed)` : why };
    },
  };
}

function bytes(n: number): string {
  if (n < 10_000) return `${n} B`;
  if (n < 10_000_000) return `${(n / 1000).toFixed(1)} kB`;
  return `${(n / 1_000_000).toFixed(1)} MB`;
}

/** Who ext saw, per protocol: the peer addresses its servers reported. */
function extPeersText(peers: ExtPeer[]): string {
  const protos = (["tcp", "udp", "icmp"] as const).map((proto) => {
    const mine = peers.filter((p) => p.proto === proto);
    const addrs = [...new Set(mine.map((p) => p.address))];
    const what = (n: number) => `${n} ${proto === "icmp" ? "echo identifier" : "port"}${n === 1 ? "" : "s"}`;
    return `${proto === "icmp" ? "ping" : proto.toUpperCase()} from ${addrs.length ? addrs.map((a) => `${a} (${what(mine.filter((p) => p.address === a).length)})`).join(", ") : "nobody"}`;
  });
  return `what ext saw (the peers its servers reported): ${protos.join("; ")}`;
}

/** One second of the live view, as text. */
function frame(r: Report, prev: ForwarderStats | undefined, t: number, seconds: number, where: string): string {
  const s = r.stats;
  const rate = prev ? s.packetsIn - prev.packetsIn : s.packetsIn;
  const c = r.counters;
  const drops = c.drops.length ? c.drops.map((d) => `${d.reason} ${d.direction} ${d.packets}`).join(", ") : "none";
  return [
    `── ${t}s/${seconds}s ─ forwarder on ${where} ${"─".repeat(20)}`,
    `forwarder: ${s.packetsIn} packets in (${bytes(s.bytesIn)}), ${s.packetsOut} out (${bytes(s.bytesOut)}), ${s.dropped} dropped; ` +
      `${s.batches} batches, ${rate} packets in the last second; GC runs ${s.gcRuns}`,
    `datapath: egress ${c.forwarded.egress.packets} packets (${bytes(c.forwarded.egress.bytes)}), ingress ${c.forwarded.ingress.packets} ` +
      `(${bytes(c.forwarded.ingress.bytes)}); drops: ${drops}; conntrack ${r.entries} entries`,
    r.flows.length ? flowsTable(r.flows) : "(no flows yet)",
    ...(r.services.length ? ["", formatServiceFlows(r.services)] : []),
    ...natLines(r, NAT_FRAME_ROWS),
    "",
  ].join("\n");
}

const TOPOLOGY_TEXT = (t: ForwarderTopology, tun: string) => {
  const row = (e: Endpoint) => `  ${e.ns.padEnd(15)} ${e.v4.padEnd(11)} ${e.v6.padEnd(15)} -- veth -- ${e.nodeIf} (${t.node})`;
  return [
    `membrane demo: the userspace forwarder (Wasm datapath in a worker thread) between network namespaces`,
    row(t.pod1), row(t.pod2), row(t.ext),
    `  ${t.node}: every packet from a veth is routed into ${tun} (ip rule iif lxc-* lookup 100); what the forwarder writes back is routed on`,
    `  services: ${SERVICE_VIP4} and [${SERVICE_VIP6}] port ${SERVICE_TCP_PORT}/tcp -> pod2 ports ${BACKEND_TCP_PORTS.join(" and ")}, port ${SERVICE_UDP_PORT}/udp -> pod2 port ${BACKEND_UDP_PORT}`,
    `  masquerading: ext is outside the cluster (${t.pod1.cidr4}, ${t.pod2.cidr4}, ${t.pod1.cidr6}, ${t.pod2.cidr6}) and routes only its own subnet;`,
    `  pod traffic to it leaves from the node's ${t.ext.gw4} and ${t.ext.gw6}, whose replies ip rules (pref 10) send into ${tun} to be translated back`,
    `traffic: TCP streams pod1 -> pod2, pod1 -> the VIPs and pod1 -> ext, UDP pod1 -> ext and pod1 -> the VIPs, ping pod2 -> ext (all IPv4 and IPv6),`,
    `  short TCP connections pod1 -> pod2 and pod1 -> the VIPs; Ctrl-C stops early`,
    "",
  ].join("\n");
};

/**
 * Runs the live demo (see the file comment). Resolves with { ran: false,
 * reason } when this machine cannot run it (not root, no TUN, not built),
 * having changed nothing.
 */
export async function runDemo(io: Output, opts: DemoOptions = {}): Promise<DemoResult> {
  const missing = demoUnavailable();
  if (missing) return { ran: false, reason: `the live demo cannot run here: ${missing}` };
  const seconds = opts.seconds ?? DEMO_SECONDS;
  if (!(seconds > 0 && seconds <= 3600)) throw new RangeError(`demo seconds: expected 1..3600, got ${seconds}`);
  const prefix = opts.prefix ?? DEMO_PREFIX;
  const json = opts.json ?? false;
  const say = (text: string, obj: object) => io.out(json ? toJson(obj) : text);

  // What a demo killed before its teardown (kill -9, a crash) left behind.
  const swept = await sweep(prefix);
  if (swept.length) io.err(`membrane demo: removed what an earlier run left: ${swept.join(", ")}`);

  let interrupted = false;
  let wake: () => void = () => {};
  const onSignal = () => {
    interrupted = true;
    wake();
  };
  /** Sleeps `ms`, or less when interrupted. */
  const pause = (ms: number) => new Promise<void>((resolve) => {
    const t = setTimeout(resolve, Math.max(0, ms));
    wake = () => {
      clearTimeout(t);
      resolve();
    };
  });
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let topo: ForwarderTopology | undefined;
  let fwd: ForwarderHandle | undefined;
  let stats: ForwarderStats | undefined;
  let serviceRows: ServiceFlowSummary[] = [];
  let natRows: { nat: NatSummary[]; natMappings: number } = { nat: [], natMappings: 0 };
  let extServers: NetnsProcess[] = [];
  const traffic: Traffic[] = [];
  const cleanup: string[] = [];
  let failure: unknown;
  let live = true;
  let seenByExt: ExtPeer[] = [];
  try {
    topo = await ForwarderTopology.create(prefix, { masquerade: true });
    const observed = opts.metrics && new AgentMetrics(opts.metrics, topo.node);
    await topo.resolveNeighbours();
    if (interrupted) throw new Error("interrupted while setting up");
    const started = Date.now();
    let prev: ForwarderStats | undefined;
    const where = () => `${fwd?.ready.device ?? "?"} in ${topo!.node}`;
    let topologyShown = false;
    fwd = await ForwarderHandle.start({
      options: { ...OPTIONS, nat: demoNat(topo) }, services: demoServices(topo.pod2), device: { name: `${prefix}-tun`, offloads: opts.offloads ?? false }, reportEveryMs: 1000,
      onReport: (r) => {
        observed?.report(r);
        stats = r.stats;
        serviceRows = r.services;
        natRows = { nat: r.nat, natMappings: r.natMappings };
        // The worker reports once before it is ready (the agent's status has content from the start); frames follow the topology.
        if (!live || !topologyShown) return;
        const t = Math.min(seconds, Math.round((Date.now() - started) / 1000));
        say(frame(r, prev, t, seconds, where()), { type: "report", t, stats: r.stats, counters: r.counters, entries: r.entries, flows: r.flows, services: r.services, nat: r.nat, natMappings: r.natMappings });
        prev = r.stats;
      },
    });
    topo.attachTun(fwd.ready.device);
    say(TOPOLOGY_TEXT(topo, fwd.ready.device), {
      type: "topology", node: topo.node, tun: fwd.ready.device,
      endpoints: Object.values(topo.endpoints).map((e) => ({ name: e.name, ns: e.ns, v4: e.v4, v6: e.v6, nodeIf: e.nodeIf })),
    });
    topologyShown = true;

    const longRunning = await startTraffic(topo, seconds);
    traffic.push(...longRunning.traffic);
    extServers = longRunning.extServers;
    // Short TCP connections, one a second, to pod2 and to the VIPs in both families: new flows keep
    // appearing, and those to a VIP spread over its backends.
    const limit = seconds * 1000 + 5_000;
    let shortOk = 0;
    let shortFailed = 0;
    const shorts: Promise<void>[] = [];
    const deadline = started + seconds * 1000;
    for (let i = 0; !interrupted && Date.now() < deadline; i++) {
      const [dst, port] = ([[topo.pod2.v4, TCP_PORT], [SERVICE_VIP4, SERVICE_TCP_PORT], [topo.pod2.v6, TCP_PORT], [SERVICE_VIP6, SERVICE_TCP_PORT]] as const)[i % 4];
      const a = topo.agent(topo.pod1, ["tcp-stream", dst, port, 3, 50], { limitMs: limit });
      shorts.push(a.result(limit).then(() => void shortOk++, () => void shortFailed++));
      await pause(Math.min(1000, deadline - Date.now()));
    }
    traffic.push({
      done: Promise.all(shorts),
      outcome: (stopped) => {
        const started = shorts.length;
        const ok = shortOk === started && started > 0;
        const detail = `${shortOk} of ${started} completed${shortFailed ? `, ${shortFailed} failed` : ""}`;
        return { what: "short TCP connections pod1 -> pod2 and the VIPs (IPv4, IPv6)", result: ok ? "ok" : stopped ? "interrupted" : "failed", detail };
      },
    });
    // The long-running agents were sized to finish by the deadline, but on a loaded machine their
    // processes start late: wait for them up to their own limit (5 s past it), unless interrupted.
    if (!interrupted) await Promise.race([Promise.all(traffic.map((t) => t.done)), pause(Math.max(0, started + limit - Date.now()))]);
  } catch (err) {
    failure = err;
    // A Ctrl-C during a synchronous step reaches its child (ip, same process group) before our handler
    // has run: let the handler run, so the failure is known for the interruption it is.
    await new Promise((r) => setTimeout(r, 20));
  } finally {
    live = false;
    if (fwd) {
      try {
        stats = (await fwd.stop()).stats;
        await topo?.releaseTun();
      } catch (err) {
        cleanup.push(`stop the forwarder: ${(err as Error).message}`);
      }
    }
    // Read before the teardown kills the agents (their lines stay with them).
    seenByExt = extPeers(extServers);
    if (topo) {
      cleanup.push(...(await topo.teardown()));
      cleanup.push(...topo.leftovers());
    }
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  if (failure && !interrupted) {
    if (cleanup.length) io.err(`membrane demo: cleanup incomplete: ${cleanup.join("; ")}`);
    throw failure;
  }
  // Ctrl-C reaches the agents too (same process group): what failed after it is the interruption's doing.
  if (failure) io.err(`membrane demo: interrupted (${(failure as Error).message})`);

  const outcomes = traffic.map((t) => t.outcome(interrupted));
  const summary: DemoSummary = {
    seconds, interrupted,
    stats, traffic: outcomes, services: serviceRows,
    masquerade: { addresses: topo ? [topo.ext.gw4, topo.ext.gw6] : [], seenByExt, ...natRows },
    cleanup,
  };
  if (json) {
    io.out(toJson({ type: "summary", ...summary }));
  } else {
    const s = summary.stats;
    io.out(`membrane demo: ${interrupted ? "interrupted; " : ""}` + (s ? `forwarder stopped after ${s.packetsIn} packets in, ${s.packetsOut} out, ${s.dropped} dropped` : "the forwarder did not start"));
    if (outcomes.length) io.out(renderTable<TrafficOutcome>([
      { header: "TRAFFIC", value: (o) => o.what },
      { header: "RESULT", value: (o) => (o.result === "failed" ? "FAILED" : o.result) },
      { header: "", value: (o) => o.detail },
    ], outcomes));
    if (serviceRows.length) io.out(`which backend answered (flows per service backend, from conntrack):\n${formatServiceFlows(serviceRows)}`);
    if (s) {
      io.out(extPeersText(seenByExt));
      const m = summary.masquerade;
      io.out(natLines(m, m.nat.length).slice(1).join("\n") || "masquerading: no NAT mappings in the last report");
    }
    if (cleanup.length) io.err(`membrane demo: cleanup incomplete: ${cleanup.join("; ")}`);
    else io.out(`removed the namespaces ${prefix}-{node,pod1,pod2,ext}, their veths and the TUN device`);
  }
  return { ran: true, summary };
}

/** The distinct peers in the "peer" lines of ext's servers. */
function extPeers(servers: NetnsProcess[]): ExtPeer[] {
  const seen = new Map<string, ExtPeer>();
  for (const line of servers.flatMap((s) => s.lines)) {
    const p = (line as { peer?: ExtPeer } | null)?.peer;
    if (p && typeof p.address === "string") seen.set(`${p.proto} ${p.address} ${p.port}`, { proto: p.proto, address: p.address, port: p.port });
  }
  return [...seen.values()];
}

/**
 * The long-running traffic: servers, then clients sized to finish within
 * `seconds`. extServers: ext's servers, whose "peer" lines say whom ext saw.
 */
async function startTraffic(topo: ForwarderTopology, seconds: number): Promise<{ traffic: Traffic[]; extServers: NetnsProcess[] }> {
  const { pod1, pod2, ext } = topo;
  const limitMs = seconds * 1000 + 5_000;
  const extServers = [
    ...[ext.v4, ext.v6].flatMap((a) => [
      topo.agent(ext, ["udp-echo", a, UDP_PORT], { limitMs }),
      topo.agent(ext, ["tcp-echo", a, TCP_PORT], { limitMs }),
      topo.agent(ext, ["icmp-watch", a, 0], { limitMs }),
    ]),
  ];
  const servers = [
    ...extServers,
    topo.agent(pod2, ["tcp-echo", pod2.v4, TCP_PORT], { limitMs }),
    topo.agent(pod2, ["tcp-echo", pod2.v6, TCP_PORT], { limitMs }),
    // The services' backends (TCP_PORT, the first, already echoes above).
    ...BACKEND_TCP_PORTS.filter((p) => p !== TCP_PORT).flatMap((p) => [pod2.v4, pod2.v6].map((a) => topo.agent(pod2, ["tcp-echo", a, p], { limitMs }))),
    ...[pod2.v4, pod2.v6].map((a) => topo.agent(pod2, ["udp-echo", a, BACKEND_UDP_PORT], { limitMs })),
  ];
  await Promise.all(servers.map((s) => s.ready()));
  const lines = Math.max(1, seconds * 10 - 5);
  const requests = Math.max(1, (seconds - 1) * 4);
  const pings = Math.max(1, seconds - 1);
  const traffic: Traffic[] = [];
  for (const family of [4, 6] as const) {
    const v = (e: Endpoint) => (family === 4 ? e.v4 : e.v6);
    const vip = family === 4 ? SERVICE_VIP4 : SERVICE_VIP6;
    const vipText = family === 4 ? vip : `[${vip}]`;
    traffic.push(
      agentTraffic(`TCP stream IPv${family} pod1 -> pod2`, topo.agent(pod1, ["tcp-stream", v(pod2), TCP_PORT, lines, 100], { limitMs }),
        (r) => `${String(r.echoed)} lines echoed in order, closed cleanly`),
      agentTraffic(`TCP stream IPv${family} pod1 -> ext (masqueraded)`, topo.agent(pod1, ["tcp-stream", v(ext), TCP_PORT, lines, 100], { limitMs }),
        (r) => `${String(r.echoed)} lines echoed in order, closed cleanly`),
      agentTraffic(`UDP IPv${family} pod1 -> ext (masqueraded)`, topo.agent(pod1, ["udp-client", v(ext), UDP_PORT, requests, 250], { limitMs }),
        (r) => `${String(r.replies)} replies to ${String(r.sent)} requests`),
      agentTraffic(`TCP stream IPv${family} pod1 -> service ${vipText}:${SERVICE_TCP_PORT}`, topo.agent(pod1, ["tcp-stream", vip, SERVICE_TCP_PORT, lines, 100], { limitMs }),
        (r) => `${String(r.echoed)} lines echoed in order by a backend, closed cleanly`),
      agentTraffic(`UDP IPv${family} pod1 -> service ${vipText}:${SERVICE_UDP_PORT}`, topo.agent(pod1, ["udp-client", vip, SERVICE_UDP_PORT, requests, 250], { limitMs }),
        (r) => `${String(r.replies)} replies from the VIP to ${String(r.sent)} requests`),
      agentTraffic(`ping IPv${family} pod2 -> ext (masqueraded)`, topo.agent(pod2, ["ping", v(ext), 4400 + family, pings, 1000], { limitMs }),
        (r) => `${String(r.replies)} echo requests, all answered`),
    );
  }
  return { traffic, extServers };
}
