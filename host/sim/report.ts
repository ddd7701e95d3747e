/**
 * The simulation's report for people: text tables (each figure labelled with
 * the kind of agent it comes from) and SVG plots written by host/format/svg-chart.ts.
 * A figure of a phase that did not complete is never printed as measured: it
 * reads "> bound" (a percentile among pairs that never converged) or
 * "INCOMPLETE", and the incomplete phases are listed with the agents behind.
 */
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { groupedBarChart, lineChart } from "../format/svg-chart.js";
import { renderTable } from "../format/table.js";
import { STANDIN_BUCKET_MS } from "./apiserver-standin.js";
import { describeLag, verdictSummary, type LagDiagnosis } from "./lag-diagnosis.js";
import type { SimReport } from "./simulation.js";

const n0 = (v: number | null) => (v !== null && Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "-");
const n2 = (v: number | null) => (v !== null && Number.isFinite(v) ? v.toFixed(2) : "-");
/** A censored percentile: the measured ms, "> bound" when it lies among pairs that never converged, "-" when there is none. */
const pct = (v: number | null, beyond: boolean, boundMs: number) => (beyond ? `> ${n0(boundMs)}` : n0(v));
const mib = (v: number | null) => (v === null || !Number.isFinite(v) ? "-" : `${(v / 2 ** 20).toFixed(0)} MiB`);

export function reportLines(r: SimReport): string[] {
  const o = r.options;
  const out: string[] = [];
  out.push(`membrane sim: ${n0(o.nodes)} nodes, ${n0(o.pods)} pods, ${n0(o.services)} services, ${n0(o.labelSets)} label sets; kvstore ${r.kvstore.location}`);
  out.push(`agents: ${o.fullAgents} full (ClusterAgentCore, null sink) + ${n0(o.agents - o.fullAgents)} counting${o.agents < o.nodes ? ` on ${n0(o.agents)} of the ${n0(o.nodes)} nodes (the others have records and pods, no agent)` : ""}; ${r.kvstore.clients} kvstore client connection(s) (${r.kvstore.agentsPerClient} agents per client, +1 for the operator)`);
  out.push(`wall ${n2(r.wallSeconds)} s, peak RSS ${mib(r.peakRssBytes)} (this process), etcd peak RSS ${mib(r.kvstore.etcdPeakRssBytes)}, load average ${r.loadAverage.map((x) => x.toFixed(2)).join(" ")}`);
  // a join past its bound has no time: say so rather than a bare "-"
  const joined = (s: number, suffix: string) => (Number.isFinite(s) ? `${n2(s)} s` : `- (${r.phases.find((p) => p.name.endsWith(suffix))?.outcome.toUpperCase() ?? "NOT RUN"})`);
  out.push(`operator wrote ${n0(r.write.records)} records in ${n2(r.write.seconds)} s (${n0(r.write.opsPerSecond)} txns/s of <= 128 ops); counting agents joined in ${joined(r.join.countingSeconds, " counting agents join")}, full agents in ${joined(r.join.fullSeconds, " full agents join")}`);
  const up = r.join.countingUpAtSeconds;
  const at = (q: number) => (up.length ? n2(up[Math.min(up.length - 1, Math.floor(q * up.length))]!) : "-");
  out.push(`counting agents up after (s since the join began): first ${at(0)}, p50 ${at(0.5)}, p99 ${at(0.99)}, last ${up.length ? n2(up.at(-1)!) : "-"}`);
  const l = r.lists;
  out.push(`lists: pages of ${n0(l.pageSize)} keys at one pinned revision, at most ${l.pagesInFlight || "unlimited"} pages in flight (peak ${l.gate.peakInFlight}, peak queued ${n0(l.gate.peakQueued)}, ${n0(l.gate.turns)} pages); counting agents' pages retried in place ${n0(l.pageRetries)}, lists begun again after compaction ${n0(l.relists)}, lists begun again after the first one for any reason (a watch ended or failed) ${n0(l.watchRelists)}`);
  out.push("");
  out.push(renderTable([
    { header: "FROM", value: (k) => `${k.kind} (${k.agents})` },
    { header: "CONVERGE p50 ms", value: (k) => pct(k.convergenceP50Ms, k.convergenceBeyond.p50, k.convergenceBoundMs) },
    { header: "p99 ms", value: (k) => pct(k.convergenceP99Ms, k.convergenceBeyond.p99, k.convergenceBoundMs) },
    { header: "NOT CONVERGED", value: (k) => k.notConverged },
    { header: "EVENTS/AGENT", value: (k) => n0(k.eventsPerAgent) },
    { header: "BYTES/AGENT", value: (k) => n0(k.bytesPerAgent) },
    { header: "BYTES/RECORD", value: (k) => n0(k.bytesPerEvent) },
    { header: "KV OPS/AGENT", value: (k) => n0(k.kvOpsPerAgent) },
  ], r.kinds));
  const m = r.fullAgentMemory;
  if (!Number.isFinite(m.heapDeltaBytes)) out.push(`full agents' memory: not measured (the full agents' join did not complete)`);
  else out.push(`full agents' memory: heap grew ${mib(m.heapDeltaBytes)} for ${o.fullAgents} full agents = ${n0(m.perAgentPerPodBytes)} bytes per agent per cluster pod (goal <= ${m.goalBytes}; Cilium 1.5 ~10.5 KiB)${m.measured ? "" : " (no full GC available: upper bound)"}${m.measured && m.perAgentPerPodBytes > m.goalBytes ? " NOT MET" : ""}`);
  const c = r.churn;
  out.push(`churn: ${c.created} pods created (${c.newIdentities} with a new identity), ${c.deleted} deleted${c.writesFailed ? `, ${c.writesFailed} not created (operator write failed)` : ""}; until every agent had a new pod: p50 ${pct(c.untilEveryAgentP50Ms, c.untilEveryAgentBeyond.p50, c.boundMs)} ms, p99 ${pct(c.untilEveryAgentP99Ms, c.untilEveryAgentBeyond.p99, c.boundMs)} ms${c.complete ? "" : ` — INCOMPLETE: ${c.podsNotEverywhere} pod(s) never reached every agent within ${n0(c.boundMs)} ms (counted as slower than that)`}`);
  if (c.diagnosis) out.push(...diagnosisLines(c.diagnosis));
  out.push(`counting agents' node leases lost (keep-alives late; granted again and the node re-registered): ${r.leasesLost}`);
  out.push(`node burst: ${r.nodeBurst.nodes} nodes joined at once, ${r.nodeBurst.untilEveryAgentMs === null ? "INCOMPLETE: not every agent knew them (see below)" : `every agent knew them after ${n0(r.nodeBurst.untilEveryAgentMs)} ms`}`);
  out.push("");
  out.push(renderTable([
    { header: "MECHANISM", value: (x) => x.mechanism },
    { header: "MEASURE", value: (x) => x.measure },
    { header: "ON", value: (x) => `${n2(x.on)} (${x.onLabel})` },
    { header: "OFF", value: (x) => `${n2(x.off)} (${x.offLabel})` },
    { header: "NOTE", value: (x) => x.note },
  ], r.mechanisms));
  out.push("");
  out.push(renderTable([
    { header: "SYNCHRONIZED RESTART (counting agents)", value: (x) => x.variant },
    { header: "AGENTS", value: (x) => x.agents },
    { header: "ALL UP s", value: (x) => n2(x.untilAllUpMs / 1000) },
    { header: "APISERVER REQ", value: (x) => x.apiserverRequests },
    { header: "429s", value: (x) => x.apiserverTooMany },
    { header: "PEAK REQ/s", value: (x) => n0(x.apiserverPeakPerSecond) },
    { header: "PEAK KV OPS/s", value: (x) => n0(x.kvstorePeakOpsPerSecond) },
  ], r.restarts));
  out.push("");
  out.push(renderTable([
    { header: "AGENT", value: (c) => c.agent },
    { header: "KIND", value: (c) => c.kind },
    { header: "NODES", value: (c) => c.nodes },
    { header: "IPCACHE", value: (c) => c.ipcache },
    { header: "IDENTITIES", value: (c) => c.identities },
    { header: "SERVICES", value: (c) => c.services },
    { header: "POLICIES", value: (c) => c.policies },
    { header: "MATCHES STORE", value: (c) => (c.ok ? "yes" : "NO") },
  ], r.counts));
  out.push("");
  out.push(...failureLines(r));
  out.push("");
  out.push(renderTable([
    { header: "PHASE", value: (p) => p.name },
    { header: "OUTCOME", value: (p) => (p.outcome === "done" ? "done" : p.outcome.toUpperCase()) },
    { header: "START s", value: (p) => n2(p.startS) },
    { header: "SECONDS", value: (p) => n2(p.seconds) },
    { header: "CPU s (this process)", value: (p) => n2(p.nodeCpuSeconds) },
    { header: "CPU s (etcd)", value: (p) => (p.etcdCpuSeconds === null ? "-" : n2(p.etcdCpuSeconds)) },
  ], r.phases));
  return out;
}

/** Who was behind when the churn's bound ran out, lost events first and loudest. */
export function diagnosisLines(d: LagDiagnosis): string[] {
  const out = [`churn at the bound: ${d.agentsBehind} agent(s) behind, ${d.pairsMissing} (pod, agent) pair(s) missing: ${verdictSummary(d)}`];
  if (d.lostEvents > 0) out.push(`LOST EVENTS: ${d.lostEvents} churned pod event(s) never reached agents whose watch had passed them — a bug, not slowness`);
  for (const a of d.agents) out.push(`  ${a.verdicts.lost > 0 ? "LOST  " : "behind"} ${a.agent} (${a.kind}): ${describeLag(a)}`);
  if (d.agentsBehind > d.agents.length) out.push(`  ... and ${d.agentsBehind - d.agents.length} more agent(s) behind`);
  return out;
}

/** Failed operator writes, failed and incomplete phases, each named; "none" when the run had none (never left out). */
export function failureLines(r: SimReport): string[] {
  const f = r.failures;
  const out = [`failures: ${f.operatorWrites.length} operator write(s) failed after every retry (${f.operatorRetries} retries in all, ${r.options.operatorAttempts} attempts each); ${f.phases.length} phase(s) failed; ${f.incomplete.length} phase(s) incomplete (a bounded wait ran out)`];
  if (f.operatorWrites.length) {
    out.push(renderTable([
      { header: "FAILED OPERATOR WRITE (phase)", value: (x) => x.phase },
      { header: "OPERATION", value: (x) => x.operation },
      { header: "ERROR", value: (x) => x.error },
    ], f.operatorWrites));
  }
  for (const p of f.phases) out.push(`FAILED PHASE ${p.phase}: ${p.error}`);
  for (const p of f.incomplete) {
    out.push(`INCOMPLETE PHASE ${p.phase}: ${p.wait} did not happen within ${n0(p.boundMs)} ms; ${p.agentsBehind} agent(s) behind${p.agentsBehind > p.behind.length ? ` (first ${p.behind.length} named)` : ""}`);
    for (const b of p.behind) out.push(`  behind: ${b.agent} (${b.kind}): ${b.lacks}`);
  }
  return out;
}

function cdf(ms: readonly number[]): [number, number][] {
  const step = Math.max(1, Math.floor(ms.length / 200));
  const pts: [number, number][] = [];
  for (let i = 0; i < ms.length; i += step) pts.push([ms[i]!, (i + 1) / ms.length]);
  if (ms.length) pts.push([ms.at(-1)!, 1]);
  return pts;
}

/** Writes the plots into `dir`; returns the file names. */
export function writePlots(r: SimReport, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [
    ["sim-convergence.svg", lineChart({ title: "New pod visible (identity + ipcache) per agent: CDF", xLabel: "ms after the operator wrote it", yLabel: "fraction of (pod, agent) pairs", series: r.convergenceCdf.map((c) => ({ name: c.kind, points: cdf(c.ms) })) })],
    ["sim-kvstore-ops.svg", lineChart({ title: "kvstore operations per second (all clients)", xLabel: "seconds since start", yLabel: "ops/s", series: [{ name: "ops/s", points: r.kvstoreOpsPerSecond.map((v, i) => [i, v] as [number, number]) }] })],
    ["sim-restart.svg", lineChart({ title: "apiserver stand-in requests during a synchronized restart", xLabel: "seconds since the restart", yLabel: "requests/s", series: r.restarts.map((x) => ({ name: `${x.variant}: ${x.apiserverTooMany} x 429`, points: x.timeline.map((v, i) => [(i * STANDIN_BUCKET_MS) / 1000, v] as [number, number]) })) })],
    ["sim-mechanisms.svg", groupedBarChart({ title: "Each 1.5 mechanism on and off (each pair scaled to its own maximum)", yLabel: "relative to the larger of the pair", bars: ["on", "off"], groups: r.mechanisms.map((x) => ({ label: x.mechanism, values: [x.on, x.off] })) })],
    ["sim-per-agent.svg", groupedBarChart({ title: "Per agent, by kind", yLabel: "relative", bars: r.kinds.map((k) => k.kind), groups: [
      { label: "events/agent", values: r.kinds.map((k) => k.eventsPerAgent) },
      { label: "bytes/agent", values: r.kinds.map((k) => k.bytesPerAgent) },
      { label: "kv ops/agent", values: r.kinds.map((k) => k.kvOpsPerAgent) },
      // a p99 beyond the bound is no bar height: the group is left out then (the text report says "> bound")
      ...(r.kinds.every((k) => k.convergenceP99Ms !== null) ? [{ label: "p99 converge ms", values: r.kinds.map((k) => k.convergenceP99Ms!) }] : []),
    ] })],
  ];
  for (const [name, svg] of files) writeFileSync(join(dir, name), svg);
  return files.map(([name]) => name);
}

/** The report as JSON, without the bulky series (they are in the plots). */
export function reportJson(r: SimReport): string {
  return JSON.stringify({ ...r, convergenceCdf: undefined, restarts: r.restarts.map((x) => ({ ...x, timeline: undefined })) });
}

export function writeReportFiles(r: SimReport, dir: string): void {
  writePlots(r, dir);
  writeFileSync(join(dir, "sim-report.txt"), reportLines(r).join("\n") + "\n");
  writeFileSync(join(dir, "sim-report.json"), reportJson(r) + "\n");
}
