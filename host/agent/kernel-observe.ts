/**
 * What `membrane agent --datapath bpf` shows of itself: the API socket
 * (<state-dir>/agent.sock, 0600) with GET /v1/monitor, whose events are
 * drained from the programs' pinned BPF ring buffer while someone listens;
 * the status file `membrane status` reads, rewritten every report interval
 * from the pinned maps' counters; and, with --metrics, the datapath
 * collector reading those counters at scrape time. Conntrack GC in the
 * kernel path is the agent's (pinned-gc.ts), so its runs, deletions and the
 * last run's duration are tallied here from its onGc, not from ct_stats.
 * Kept out of kernel-agent.ts so the agent carries one-line hooks.
 */
import { rmSync } from "node:fs";
import type { ApiRoutes, ApiServer } from "../api/server.js";
import { startApiServer } from "../api/server.js";
import { agentSocketPath } from "../api/socket-path.js";
import type { DatapathCounters } from "../engine.js";
import { MembraneError } from "../errors.js";
import type { ForwarderStats } from "../forwarder/forwarder.js";
import type { KernelAgentDatapath } from "../kernel/agent-datapath.js";
import type { PinnedGcRun } from "../kernel/pinned-gc.js";
import { registerDatapathCollector } from "../metrics/datapath-collector.js";
import type { Metrics } from "../metrics/registry.js";
import { monitorApiRoutes } from "../monitor/api-route.js";
import { MonitorHub } from "../monitor/hub.js";
import type { MonitorSettings } from "../monitor/settings.js";
import { endpointLookup } from "./agent-monitor.js";
import { statusPath, writeStatus } from "./status-file.js";

/** How often the ring is drained while a monitor listens (ms): small enough for a live view, a few syscalls per tick. */
const DRAIN_EVERY_MS = 50;
const REPORT_EVERY_MS = 1_000;

export interface KernelObserveOptions {
  stateDir: string;
  pinDir: string;
  externalDevice?: string;
  metrics?: Metrics;
  /** The endpoints the agent runs now (the monitor's lookup by id and address). */
  endpoints: () => Iterable<{ id: number; ipv4?: string; ipv6?: string }>;
  /** What metrics count now: services, identities, policy rules (from the state file, or the cluster core). */
  tables: () => { services: number; identities: number; policies: number };
  /** Said once per distinct problem (a status write that failed). */
  warn: (line: string) => void;
}

export class KernelAgentObserver {
  readonly hub: MonitorHub;
  #datapath: KernelAgentDatapath | undefined;
  #api: ApiServer | undefined;
  #drainTimer: NodeJS.Timeout | undefined;
  #reportTimer: NodeJS.Timeout | undefined;
  #statusError: string | undefined;
  readonly #startedAt = new Date().toISOString();
  readonly #gc = { runs: 0, deleted: new Map<string, number>(), lastSeconds: undefined as number | undefined };

  constructor(private readonly opts: KernelObserveOptions) {
    this.hub = new MonitorHub(async (settings) => this.#configureMonitor(settings), endpointLookup(opts.endpoints));
    if (opts.metrics) {
      registerDatapathCollector(opts.metrics.registry, () => {
        if (!this.#datapath) return undefined;
        return { counters: this.counters(), lastGcSeconds: this.#gc.lastSeconds, ...opts.tables() };
      });
    }
  }

  /** The agent's pinned GC ran (its onGc). */
  readonly gcRan = (run: PinnedGcRun): void => {
    this.#gc.runs++;
    this.#gc.lastSeconds = run.seconds;
    for (const t of run.tables) this.#gc.deleted.set(t.table, (this.#gc.deleted.get(t.table) ?? 0) + t.deleted);
  };

  /** The pinned maps' counters, with GC figures from the agent's own GC loop. */
  counters(): DatapathCounters {
    const c = this.#datapath!.counters();
    for (const [table, s] of Object.entries(c.tables)) {
      s.gcRuns = BigInt(this.#gc.runs);
      s.gcDeleted = BigInt(this.#gc.deleted.get(table) ?? 0);
    }
    return c;
  }

  /** The datapath runs: serve the API socket (the monitor, plus `routes`: the cluster core's in cluster mode) and start writing the status file. */
  async attach(datapath: KernelAgentDatapath, routes: ApiRoutes = {}): Promise<void> {
    this.#datapath = datapath;
    // Off until a client asks: an agent that died with a monitor on left the pinned settings on.
    datapath.monitor().configure(undefined);
    this.#api = await startApiServer(agentSocketPath(this.opts.stateDir), { ...routes, ...monitorApiRoutes(this.hub) }, this.opts.metrics);
    this.#writeStatus();
    this.#reportTimer = setInterval(() => this.#writeStatus(), REPORT_EVERY_MS);
    this.#reportTimer.unref();
  }

  async #configureMonitor(settings: MonitorSettings | undefined): Promise<void> {
    const ring = this.#datapath?.monitor();
    if (!ring) throw new MembraneError("NOT_READY", "monitor: the kernel datapath is not running yet");
    ring.configure(settings);
    if (this.#drainTimer) clearInterval(this.#drainTimer);
    this.#drainTimer = undefined;
    if (!settings) return;
    this.#drainTimer = setInterval(() => {
      const raw = ring.drain();
      if (raw) this.hub.deliver(raw);
    }, DRAIN_EVERY_MS);
    this.#drainTimer.unref();
  }

  #writeStatus(): void {
    const dp = this.#datapath;
    if (!dp) return;
    try {
      const counters = this.counters();
      const forwarded = counters.forwarded.egress.packets + counters.forwarded.ingress.packets;
      const dropped = counters.drops.reduce((n, d) => n + d.packets, 0);
      const entries = Object.entries(counters.tables).filter(([t]) => !t.startsWith("frag")).reduce((n, [, s]) => n + Number(s.entries), 0);
      // The kernel has no batches or device reads: the packet figures are the datapath's decisions.
      const stats: ForwarderStats = {
        batches: 0, reads: 0, writes: 0, packetsIn: forwarded + dropped, bytesIn: 0, wirePacketsIn: forwarded + dropped,
        packetsOut: forwarded, bytesOut: 0, dropped, offloadUnwritable: 0, writeErrors: 0, gcRuns: this.#gc.runs,
      };
      writeStatus(this.opts.stateDir, {
        pid: process.pid, datapath: "bpf", device: this.opts.externalDevice ?? "-", mtu: 0, routes: [],
        startedAt: this.#startedAt, updatedAt: new Date().toISOString(), restoredEntries: 0, entries,
        stats, counters, flows: [], reportEveryMs: REPORT_EVERY_MS,
        kernel: {
          pinDir: this.opts.pinDir,
          endpoints: [...dp.endpoints.endpoints].map(([id, live]) => ({ id, device: live.device.ifname, programs: live.attachments.map((a) => a.progId) })),
        },
      });
      this.#statusError = undefined;
    } catch (err) {
      const message = `status ${statusPath(this.opts.stateDir)}: ${(err as Error).message}`;
      if (message !== this.#statusError) this.opts.warn(message);
      this.#statusError = message;
    }
  }

  /** Monitoring off, the socket closed, the status file removed (no agent holds the dir any more). */
  async close(): Promise<void> {
    if (this.#reportTimer) clearInterval(this.#reportTimer);
    if (this.#drainTimer) clearInterval(this.#drainTimer);
    this.#reportTimer = this.#drainTimer = undefined;
    await this.#api?.close();
    rmSync(statusPath(this.opts.stateDir), { force: true });
  }
}
