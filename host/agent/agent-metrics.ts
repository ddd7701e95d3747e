/**
 * The agent's side of `--metrics`: the datapath collector reads the
 * forwarder worker's newest report (the worker owns the datapath; its report
 * is at most one report interval old), and the bootstrap and regenerations
 * of a state-file agent are recorded here, so agent.ts and cluster-agent.ts
 * carry one-line hooks only.
 */
import type { WorkerMessage } from "../forwarder/protocol.js";
import { registerDatapathCollector, type DatapathFigures } from "../metrics/datapath-collector.js";
import type { Metrics } from "../metrics/registry.js";
import type { EngineChange } from "../policy/engine.js";

type Report = Extract<WorkerMessage, { type: "report" }>;

export class AgentMetrics {
  private last: Report | undefined;
  private readonly startedAt = performance.now();
  /** What the agent holds, read at each scrape: state-file agents from their state file, cluster agents from the cluster loop. */
  tables: () => { policies?: number; identities?: number; services?: number } = () => ({});

  /** `node` labels the datapath series when several forwarders share the registry (the demo). */
  constructor(readonly metrics: Metrics, node?: string) {
    registerDatapathCollector(metrics.registry, () => this.figures(), node);
  }

  /** A state-file agent's: its tables are the state file's, fixed for the run. */
  static forStateFile(metrics: Metrics, opts: { services?: readonly unknown[]; policy?: EngineChange; policyRules?: number }): AgentMetrics {
    const m = new AgentMetrics(metrics);
    const endpoints = opts.policy?.endpoints.upsert ?? [];
    const identities = new Set([...endpoints.map((e) => e.identity), ...(opts.policy?.ipcache.upsert ?? []).map((i) => i.identity)]);
    m.tables = () => ({ services: opts.services?.length ?? 0, identities: identities.size, policies: opts.policyRules ?? 0 });
    m.pendingRegenerations = endpoints.length;
    return m;
  }

  private pendingRegenerations = 0;

  /** Forwarding started: the bootstrap is over, and the endpoints programmed at start were generated. */
  started(): void {
    this.bootstrapped("overall", "success");
    this.regenerated(this.pendingRegenerations);
    this.pendingRegenerations = 0;
  }

  /** The forwarder's periodic report (onReport). */
  report(r: Report): void {
    this.last = r;
  }

  /** Bootstrap step `scope` ended now, having started at `since` (performance.now(); default: when the agent started). */
  bootstrapped(scope: string, outcome: "success" | "fail", since = this.startedAt): void {
    this.metrics.agentBootstrap.observe({ scope, outcome }, (performance.now() - since) / 1000);
  }

  /** `count` endpoints had their policy computed. */
  regenerated(count: number, outcome: "success" | "fail" = "success"): void {
    if (count > 0) this.metrics.endpointRegenerations.inc({ outcome }, count);
  }

  private figures(): DatapathFigures | undefined {
    const r = this.last;
    if (!r) return undefined;
    return {
      counters: r.counters,
      forwarder: r.stats,
      natMappings: r.natMappings,
      lastGcSeconds: r.stats.lastGcSeconds,
      ...this.tables(),
    };
  }
}
