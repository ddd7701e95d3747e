/**
 * membrane's Prometheus metrics: Cilium 1.5's names and labels (prefix
 * `membrane_` instead of `cilium_`), in one registry per process.
 *
 * Two kinds of metric live here:
 * - events the host times or counts as they happen (kvstore operations, BPF
 *   system calls, API calls, bootstrap steps, regenerations): recorded
 *   through the handles below;
 * - datapath figures (drops, forwards, conntrack GC, table sizes): never
 *   counted per packet, but read from the datapath's own counters when
 *   Prometheus scrapes (host/metrics/datapath-collector.ts).
 */
import { Counter, Histogram, Registry } from "prom-client";

export const METRICS_PREFIX = "membrane_";

/** Cilium's outcome label values. */
export type Outcome = "success" | "fail";

export interface Metrics {
  readonly registry: Registry;
  /** kvstore_operations_duration_seconds{action,kind,outcome,scope} */
  readonly kvstoreOperations: Histogram<"action" | "kind" | "outcome" | "scope">;
  /** kvstore_events_queue_seconds{action,scope}: time an event waited before it was handled. */
  readonly kvstoreEventsQueue: Histogram<"action" | "scope">;
  /** bpf_syscall_duration_seconds{operation,outcome} */
  readonly bpfSyscalls: Histogram<"operation" | "outcome">;
  /** bpf_map_ops_total{map_name,operation,outcome} */
  readonly bpfMapOps: Counter<"map_name" | "operation" | "outcome">;
  /** api_process_time_seconds{method,path,return_code} */
  readonly apiProcessTime: Histogram<"method" | "path" | "return_code">;
  /** agent_bootstrap_seconds{scope,outcome} */
  readonly agentBootstrap: Histogram<"scope" | "outcome">;
  /** endpoint_regenerations_total{outcome} */
  readonly endpointRegenerations: Counter<"outcome">;
}

/** Latency buckets for control-plane calls: 100 µs .. 30 s. */
const CALL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Bootstrap steps take seconds to minutes. */
const BOOTSTRAP_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** A fresh registry with every host-side metric registered (none of the datapath's yet). */
export function createMetrics(): Metrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    kvstoreOperations: new Histogram({
      name: `${METRICS_PREFIX}kvstore_operations_duration_seconds`,
      help: "Duration of kvstore operations, by action, kind of key, outcome and scope",
      labelNames: ["action", "kind", "outcome", "scope"],
      buckets: CALL_BUCKETS,
      registers,
    }),
    kvstoreEventsQueue: new Histogram({
      name: `${METRICS_PREFIX}kvstore_events_queue_seconds`,
      help: "Time a kvstore watch event waited in the queue before it was handled",
      labelNames: ["action", "scope"],
      buckets: CALL_BUCKETS,
      registers,
    }),
    bpfSyscalls: new Histogram({
      name: `${METRICS_PREFIX}bpf_syscall_duration_seconds`,
      help: "Duration of bpf(2) system calls, by operation and outcome",
      labelNames: ["operation", "outcome"],
      buckets: CALL_BUCKETS,
      registers,
    }),
    bpfMapOps: new Counter({
      name: `${METRICS_PREFIX}bpf_map_ops_total`,
      help: "BPF map operations, by map, operation and outcome",
      labelNames: ["map_name", "operation", "outcome"],
      registers,
    }),
    apiProcessTime: new Histogram({
      name: `${METRICS_PREFIX}api_process_time_seconds`,
      help: "Time the agent API took to answer a request, by method, path and return code",
      labelNames: ["method", "path", "return_code"],
      buckets: CALL_BUCKETS,
      registers,
    }),
    agentBootstrap: new Histogram({
      name: `${METRICS_PREFIX}agent_bootstrap_seconds`,
      help: "Duration of the agent's bootstrap steps, by step and outcome",
      labelNames: ["scope", "outcome"],
      buckets: BOOTSTRAP_BUCKETS,
      registers,
    }),
    endpointRegenerations: new Counter({
      name: `${METRICS_PREFIX}endpoint_regenerations_total`,
      help: "Endpoints whose policy was recomputed, by outcome",
      labelNames: ["outcome"],
      registers,
    }),
  };
}

/** Times `fn` into `histogram` with outcome success or fail (re-throwing). */
export async function timed<L extends string, T>(
  histogram: Histogram<L | "outcome">,
  labels: Partial<Record<L, string>>,
  fn: () => Promise<T> | T,
): Promise<T> {
  const end = histogram.startTimer(labels as never);
  try {
    const value = await fn();
    end({ outcome: "success" } as never);
    return value;
  } catch (err) {
    end({ outcome: "fail" } as never);
    throw err;
  }
}
