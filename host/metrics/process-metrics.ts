/**
 * `--metrics <addr:port>` for a long-running command (agent, operator): one
 * registry for the process, bpf(2) calls observed into it, and the endpoint
 * serving it. Off unless the flag is given; the address parsing keeps it on
 * loopback unless the user names another address.
 */
import { observeBpfSyscalls } from "../bpf/syscall-observer.js";
import type { Output } from "../format/output.js";
import { createMetrics, type Metrics } from "./registry.js";
import { parseListenAddress, startMetricsServer, type MetricsServer } from "./server.js";

export interface ProcessMetrics {
  readonly metrics: Metrics;
  readonly server: MetricsServer;
  close(): Promise<void>;
}

/** Records bpf(2) calls and map operations into `metrics` until the returned function is called. */
export function recordBpfSyscalls(metrics: Metrics): () => void {
  return observeBpfSyscalls({
    syscall: (operation, seconds, ok) => metrics.bpfSyscalls.observe({ operation, outcome: ok ? "success" : "fail" }, seconds),
    mapOp: (map_name, operation, ok) => metrics.bpfMapOps.inc({ map_name, operation, outcome: ok ? "success" : "fail" }),
  });
}

/** Parses the flag's value (before anything else starts, so a bad one changes nothing). */
export const parseMetricsFlag = (value: string | undefined) => (value === undefined ? undefined : parseListenAddress(value, "--metrics"));

/** Starts the endpoint for `address` (from parseMetricsFlag); says where it listens on `io`. */
export async function startProcessMetrics(address: ReturnType<typeof parseListenAddress>, io: Output, who: string): Promise<ProcessMetrics> {
  const metrics = createMetrics();
  const stopBpf = recordBpfSyscalls(metrics);
  let server: MetricsServer;
  try {
    server = await startMetricsServer(metrics.registry, address);
  } catch (err) {
    stopBpf();
    throw err;
  }
  const shown = server.address.host.includes(":") ? `[${server.address.host}]:${server.address.port}` : `${server.address.host}:${server.address.port}`;
  io.out(`membrane ${who}: metrics on http://${shown}/metrics`);
  return {
    metrics,
    server,
    close: async () => {
      stopBpf();
      await server.close();
    },
  };
}
