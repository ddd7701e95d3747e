/**
 * Datapath metrics, read when Prometheus scrapes: the datapath keeps its own
 * counters (a metrics table indexed by drop reason and direction, per-table
 * conntrack stats), so nothing is counted per packet on the host. Each scrape
 * asks the source for its newest figures and sets the metrics from them.
 *
 * The source is whatever knows the datapath: a Datapath or KernelDatapath in
 * the same thread, or the newest report of a forwarder worker (its counters
 * are at most one report interval old, which the scrape's timestamp does not
 * pretend otherwise).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { METRICS_PREFIX } from "./registry.js";
import type { DatapathCounters } from "../datapath.js";
import type { ForwarderStats } from "../forwarder/forwarder.js";

/** What one scrape reads. Absent parts are simply not exported. */
export interface DatapathFigures {
  counters: DatapathCounters;
  /** The forwarder's own counters (TUN agent only). */
  forwarder?: ForwarderStats;
  /** Live masquerade mappings. */
  natMappings?: number;
  /** Services programmed. */
  services?: number;
  /** Policy rules the engine holds, identities it knows. */
  policies?: number;
  identities?: number;
  /** Duration of the last conntrack GC run, seconds. */
  lastGcSeconds?: number;
}

export type DatapathSource = () => DatapathFigures | undefined;

/** Cilium's direction label values. */
const DIRECTION = { egress: "EGRESS", ingress: "INGRESS" } as const;

/**
 * Registers the datapath metrics on `registry`, read from `source` at each
 * scrape. `node` labels every series when several datapaths share a registry
 * (the demo's agents); leave it out for a single agent.
 */
export function registerDatapathCollector(registry: Registry, source: DatapathSource, node?: string): void {
  const registers = [registry];
  const nodeLabel = node === undefined ? [] : ["node"];
  const withNode = <T extends Record<string, string>>(labels: T): T => (node === undefined ? labels : { ...labels, node });
  let figures: DatapathFigures | undefined;
  // prom-client calls collect() on each metric before reading it; the first
  // one to run reads the source, so one scrape reads it once.
  let readAt = -1;
  scrapeTick(registry);
  const read = (): DatapathFigures | undefined => {
    const tick = scrapeTick(registry);
    if (tick !== readAt) {
      readAt = tick;
      figures = source();
    }
    return figures;
  };

  new Counter({
    name: `${METRICS_PREFIX}drop_count_total`,
    help: "Packets the datapath dropped, by reason and direction",
    labelNames: ["reason", "direction", ...nodeLabel],
    registers,
    collect() {
      this.reset();
      for (const d of read()?.counters.drops ?? []) this.inc(withNode({ reason: d.text || d.reason, direction: DIRECTION[d.direction] }), d.packets);
    },
  });
  new Counter({
    name: `${METRICS_PREFIX}drop_bytes_total`,
    help: "Bytes of the packets the datapath dropped, by reason and direction",
    labelNames: ["reason", "direction", ...nodeLabel],
    registers,
    collect() {
      this.reset();
      for (const d of read()?.counters.drops ?? []) this.inc(withNode({ reason: d.text || d.reason, direction: DIRECTION[d.direction] }), d.bytes);
    },
  });
  new Counter({
    name: `${METRICS_PREFIX}forward_count_total`,
    help: "Packets the datapath passed, by direction",
    labelNames: ["direction", ...nodeLabel],
    registers,
    collect() {
      this.reset();
      const f = read()?.counters.forwarded;
      if (!f) return;
      for (const dir of ["egress", "ingress"] as const) this.inc(withNode({ direction: DIRECTION[dir] }), f[dir].packets);
    },
  });
  new Counter({
    name: `${METRICS_PREFIX}forward_bytes_total`,
    help: "Bytes of the packets the datapath passed, by direction",
    labelNames: ["direction", ...nodeLabel],
    registers,
    collect() {
      this.reset();
      const f = read()?.counters.forwarded;
      if (!f) return;
      for (const dir of ["egress", "ingress"] as const) this.inc(withNode({ direction: DIRECTION[dir] }), f[dir].bytes);
    },
  });
  new Counter({
    name: `${METRICS_PREFIX}datapath_conntrack_gc_runs_total`,
    help: "Conntrack garbage collection runs, by table",
    labelNames: ["table", ...nodeLabel],
    registers,
    collect() {
      this.reset();
      for (const [table, s] of Object.entries(read()?.counters.tables ?? {})) this.inc(withNode({ table }), Number(s.gcRuns));
    },
  });
  new Gauge({
    name: `${METRICS_PREFIX}datapath_conntrack_gc_entries`,
    help: "Conntrack entries: alive now, and deleted by garbage collection so far, by table",
    labelNames: ["table", "status", ...nodeLabel],
    registers,
    collect() {
      this.reset();
      for (const [table, s] of Object.entries(read()?.counters.tables ?? {})) {
        this.set(withNode({ table, status: "alive" }), Number(s.entries));
        this.set(withNode({ table, status: "deleted" }), Number(s.gcDeleted));
      }
    },
  });
  new Gauge({
    name: `${METRICS_PREFIX}datapath_conntrack_gc_duration_seconds`,
    help: "Duration of the last conntrack garbage collection run",
    labelNames: nodeLabel,
    registers,
    collect() {
      this.reset();
      const s = read()?.lastGcSeconds;
      if (s !== undefined) this.set(withNode({}), s);
    },
  });
  const gauge = (name: string, help: string, pick: (f: DatapathFigures) => number | undefined): void => {
    new Gauge({
      name: `${METRICS_PREFIX}${name}`,
      help,
      labelNames: nodeLabel,
      registers,
      collect() {
        this.reset();
        const f = read();
        const v = f && pick(f);
        if (v !== undefined) this.set(withNode({}), v);
      },
    });
  };
  gauge("nat_mappings", "Live masquerade mappings", (f) => f.natMappings);
  gauge("services", "Services programmed into the datapath", (f) => f.services);
  gauge("policy", "Policy rules the agent holds (Cilium 1.5: policy_count, renamed as later Cilium did: a gauge may not end in _count)", (f) => f.policies);
  gauge("identity", "Security identities the agent knows (Cilium 1.5: identity_count; renamed like policy)", (f) => f.identities);

  const forwarderCounter = (name: string, help: string, pick: (s: ForwarderStats) => number): void => {
    new Counter({
      name: `${METRICS_PREFIX}forwarder_${name}`,
      help,
      labelNames: nodeLabel,
      registers,
      collect() {
        this.reset();
        const s = read()?.forwarder;
        if (s) this.inc(withNode({}), pick(s));
      },
    });
  };
  forwarderCounter("batches_total", "Batches the TUN forwarder decided", (s) => s.batches);
  forwarderCounter("packets_total", "Packets the TUN forwarder read from its device", (s) => s.packetsIn);
  forwarderCounter("device_errors_total", "Writes the TUN device refused or pushed back", (s) => s.writeErrors);
  forwarderCounter("coalesced_writes_total", "Super-packets the TUN forwarder wrote that carry several packets of a flow (offload passthrough)", (s) => s.coalescedWrites ?? 0);
  forwarderCounter("coalesced_packets_total", "Packets the TUN forwarder wrote inside coalesced super-packets", (s) => s.coalescedPackets ?? 0);
  forwarderCounter("tun_io_switches_total", "Times adaptive TUN I/O changed a thread's mode (io_uring <-> read/write) after measuring both", (s) => (s.tunIo ?? []).reduce((n, t) => n + t.switches, 0));
  new Gauge({
    name: `${METRICS_PREFIX}forwarder_tun_io_threads`,
    help: "Threads moving TUN packets with adaptive I/O, by the mode each uses now (uring or batch)",
    labelNames: [...nodeLabel, "mode"],
    registers,
    collect() {
      this.reset();
      const threads = read()?.forwarder?.tunIo;
      if (!threads?.length) return;
      for (const mode of ["uring", "batch"] as const) this.set(withNode({ mode }), threads.filter((t) => t.mode === mode).length);
    },
  });
  new Gauge({
    name: `${METRICS_PREFIX}forwarder_packets_per_batch`,
    help: "Mean packets per batch since the forwarder started",
    labelNames: nodeLabel,
    registers,
    collect() {
      this.reset();
      const s = read()?.forwarder;
      if (s && s.batches > 0) this.set(withNode({}), s.packetsIn / s.batches);
    },
  });
}

/**
 * A number that changes once per scrape of `registry`: prom-client has no
 * scrape hook, so the registry's metrics() is wrapped once to count calls.
 */
const ticks = new WeakMap<Registry, { n: number }>();
function scrapeTick(registry: Registry): number {
  let t = ticks.get(registry);
  if (!t) {
    const counter = { n: 0 };
    t = counter;
    ticks.set(registry, counter);
    const original = registry.metrics.bind(registry);
    registry.metrics = () => {
      counter.n++;
      return original();
    };
  }
  return t.n;
}
