/**
 * `npm run bench:monitor`: what observability costs the forwarding path, side
 * by side in one run.
 *
 * 1. Forwarding rate of the Wasm datapath (batches of 256 through
 *    Datapath.process, which drains the monitor ring after each batch, the
 *    drained events posted over a MessageChannel as the forwarder's worker
 *    posts them), with the monitor off / drops only / full trace (drops,
 *    traces, policy verdicts) at the default rate cap / full trace with
 *    1-in-100 sampling and no cap / full trace with no cap at all. Traffic:
 *    established UDP flows of a policed endpoint, one packet in 16 a new flow
 *    the policy denies (a drop and a policy verdict each time). The modes run
 *    in turns, ROUNDS times, and each keeps its best round (the machine is
 *    shared; the best round is the least disturbed one).
 * 2. The kernel program under BPF_PROG_TEST_RUN, the same traffic one packet
 *    per call (the call itself, ~1-2 us, dominates: this bounds what the ring
 *    buffer adds, it is not a forwarding rate), monitor off / drops only /
 *    full trace capped, the ring drained between rounds.
 * 3. Scrape time (registry.metrics() with the datapath collector) with an
 *    empty conntrack table and with 100,000 entries.
 * Goals print MET or NOT MET.
 */
import { MessageChannel } from "node:worker_threads";
import { Datapath } from "../host/datapath.js";
import type { DatapathEngine } from "../host/engine.js";
import { KernelDatapath } from "../host/kernel/datapath.js";
import { kernelUnavailable } from "./kernel-setup.js";
import { createMetrics, registerDatapathCollector } from "../host/metrics/index.js";
import { checkMonitorSettings, type MonitorSettings } from "../host/monitor/settings.js";
import { packet4 } from "../host/packet/build.js";
import { PolicyEngine } from "../host/policy/engine.js";
import { endpointLabels } from "../host/policy/endpoint.js";
import { parseDocuments } from "../host/policy/document.js";
import { programPolicyTables } from "../host/state/policy.js";
import { machineFacts, printMachineFacts } from "./machine.js";
import { num, printTable } from "./report.js";

const BATCH = 256;
const ROUND_MS = 600;
const ROUNDS = 5;
const NOW = 100;
const SRC = "10.91.0.1";

const MODES: { name: string; settings?: MonitorSettings; goal?: number }[] = [
  { name: "monitor off" },
  { name: "drops only (1000/s cap)", settings: checkMonitorSettings({ types: ["drop"] }), goal: 0.95 },
  { name: "full trace (1000/s cap)", settings: checkMonitorSettings({ types: ["drop", "trace", "policy-verdict"] }), goal: 0.9 },
  { name: "full trace, 1 in 100, no cap", settings: checkMonitorSettings({ types: ["drop", "trace", "policy-verdict"], sample: 100, ratePerSecond: 10_000_000 }), goal: 0.9 },
  { name: "full trace, every packet, no cap", settings: checkMonitorSettings({ types: ["drop", "trace", "policy-verdict"], ratePerSecond: 10_000_000 }) },
];

function programPolicy(dp: Pick<DatapathEngine, "policyTables">): void {
  const engine = new PolicyEngine();
  engine.upsertEndpoint({ id: 1, labels: endpointLabels({ app: "src" }, "labels"), ifindex: 1, mac: "02:00:00:00:00:01", ipv4: SRC });
  engine.importPolicies(parseDocuments({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "src" }, spec: { endpointSelector: { matchLabels: { app: "src" } }, egress: [{ toCIDR: ["10.92.0.0/16"], toPorts: [{ ports: [{ port: "7000", protocol: "UDP" }] }] }] } }));
  programPolicyTables(engine, [dp.policyTables()]);
}

async function policedDatapath(): Promise<Datapath> {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 4096, otherEntries: 131072 }, policy: { endpoints: 16, ipcache: 64, entries: 256 } });
  programPolicy(dp);
  return dp;
}

/** 256 packets: 240 of established allowed flows, 16 denied new flows. */
function traffic(dp: DatapathEngine): Uint8Array[] {
  const allowed = Array.from({ length: 240 }, (_, i) => packet4({ src: SRC, dst: `10.92.${i >> 8}.${(i & 255) + 1}` }).udp({ sport: 40000 + i, dport: 7000, payload: new Uint8Array(64) }));
  dp.decideAll(allowed.map((data) => ({ data, link: "ip" as const })), NOW); // the flows exist before timing
  const denied = Array.from({ length: 16 }, (_, i) => packet4({ src: SRC, dst: `10.92.9.${i + 1}` }).udp({ sport: 50000 + i, dport: 7001, payload: new Uint8Array(64) }));
  const out: Uint8Array[] = [];
  for (let i = 0; i < BATCH; i++) out.push(i % 16 === 15 ? denied[i >> 4]! : allowed[i - (i >> 4)]!);
  return out;
}

async function forwardingRates(): Promise<{ name: string; pps: number; events: number; lost: number }[]> {
  const dp = await policedDatapath();
  const packets = traffic(dp);
  const batch = dp.createBatch(BATCH);
  const channel = new MessageChannel();
  channel.port2.on("message", () => {});
  let events = 0;
  let lost = 0;
  dp.monitor().listener = (e) => {
    events += e.count;
    lost += e.lost;
    channel.port1.postMessage({ type: "monitor", events: e });
  };
  const best = new Map<string, { pps: number; events: number; lost: number }>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of MODES) {
      dp.monitor().configure(mode.settings);
      events = 0;
      lost = 0;
      let n = 0;
      const t0 = performance.now();
      let elapsed = 0;
      while ((elapsed = performance.now() - t0) < ROUND_MS) {
        batch.clear();
        for (const p of packets) batch.push(p);
        dp.process(batch, NOW);
        n += BATCH;
        // Let the port deliver (as the worker's event loop would between its polls).
        if ((n & 0x3fff) === 0) await new Promise((r) => setImmediate(r));
      }
      const pps = (n / elapsed) * 1000;
      const prev = best.get(mode.name);
      if (!prev || pps > prev.pps) best.set(mode.name, { pps, events: (events / elapsed) * 1000, lost: (lost / elapsed) * 1000 });
    }
  }
  dp.monitor().configure(undefined);
  channel.port1.close();
  return MODES.map((m) => ({ name: m.name, ...best.get(m.name)! }));
}

async function kernelRates(): Promise<{ name: string; pps: number }[] | string> {
  const missing = kernelUnavailable();
  if (missing) return missing;
  const dp = await KernelDatapath.create({ conntrack: { tcpEntries: 4096, otherEntries: 131072 }, policy: { endpoints: 16, ipcache: 64, entries: 256 } });
  try {
    programPolicy(dp);
    const packets = traffic(dp).map((data) => ({ data }));
    const modes = MODES.slice(0, 3);
    const best = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of modes) {
        dp.monitor().configure(mode.settings);
        let n = 0;
        const t0 = performance.now();
        let elapsed = 0;
        while ((elapsed = performance.now() - t0) < ROUND_MS / 2) {
          dp.decideAll(packets, NOW);
          n += packets.length;
          dp.monitor().drain();
        }
        const pps = (n / elapsed) * 1000;
        if (pps > (best.get(mode.name) ?? 0)) best.set(mode.name, pps);
      }
    }
    dp.monitor().configure(undefined);
    return modes.map((m) => ({ name: m.name, pps: best.get(m.name)! }));
  } finally {
    dp.close();
  }
}

async function scrapeTimes(): Promise<{ entries: number; ms: number }[]> {
  const out: { entries: number; ms: number }[] = [];
  for (const entries of [0, 100_000]) {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 4096, otherEntries: 131072 } });
    const fill = dp.createBatch(BATCH);
    for (let i = 0; i < entries; i += BATCH) {
      fill.clear();
      for (let k = i; k < Math.min(entries, i + BATCH); k++) fill.push(packet4({ src: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`, dst: "10.200.0.1" }).udp({ sport: 1000 + (k % 50000), dport: 53, payload: new Uint8Array(8) }));
      dp.process(fill, NOW);
    }
    const metrics = createMetrics();
    registerDatapathCollector(metrics.registry, () => ({ counters: dp.counters() }));
    const alive = Number(dp.counters().tables.any4.entries);
    const times: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      await metrics.registry.metrics();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    out.push({ entries: alive, ms: times[Math.floor(times.length / 2)]! });
  }
  return out;
}

async function main(): Promise<void> {
  printMachineFacts(machineFacts());
  const { loadavg } = await import("node:os");
  console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(", ")}`);
  const rates = await forwardingRates();
  const off = rates[0]!.pps;
  printTable(`Wasm forwarding rate with the monitor (batches of ${BATCH}, best of ${ROUNDS} rounds of ${ROUND_MS} ms each, modes in turns)`, rates.map((r) => ({
    mode: r.name, "packets/s": num(r.pps), "vs off": `${(r.pps / off).toFixed(3)}x`, "events/s delivered": num(r.events), "events/s lost": num(r.lost),
  })), ["one packet in 16 is a new flow the policy denies: a drop and a policy verdict each"]);
  for (const [i, m] of MODES.entries()) {
    if (m.goal === undefined) continue;
    const ratio = rates[i]!.pps / off;
    console.log(`  GOAL ${m.name} >= ${m.goal}x monitor off: ${ratio >= m.goal ? "MET" : "NOT MET"} - ${ratio.toFixed(3)}x`);
  }
  const kernel = await kernelRates();
  if (typeof kernel === "string") console.log(`\nkernel: skipped (${kernel})`);
  else {
    const koff = kernel[0]!.pps;
    printTable("Kernel program under BPF_PROG_TEST_RUN, one packet per call (the call dominates), best of 5", kernel.map((r) => ({ mode: r.name, "packets/s": num(r.pps), "vs off": `${(r.pps / koff).toFixed(3)}x` })));
  }
  const scrapes = await scrapeTimes();
  printTable("Scrape time (registry.metrics() with the datapath collector, median of 30)", scrapes.map((s) => ({ "conntrack entries": num(s.entries), "ms per scrape": num(s.ms, 3) })));
  const big = scrapes[1]!;
  console.log(`  GOAL scrape with ${num(big.entries)} conntrack entries <= 10 ms: ${big.ms <= 10 ? "MET" : "NOT MET"} - ${num(big.ms, 3)} ms (${(big.ms / scrapes[0]!.ms).toFixed(2)}x the empty table)`);
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(", ")}`);
}

await main();
