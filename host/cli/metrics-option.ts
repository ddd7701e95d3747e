/**
 * `--metrics <addr:port>` for the long-running commands (agent in both
 * modes, operator): the option, and running a command with the endpoint up
 * for its lifetime. The value is checked before anything starts.
 */
import { Option, type Command } from "commander";
import type { Output } from "../format/output.js";
import { DEFAULT_METRICS_ADDRESS } from "../metrics/server.js";
import { parseMetricsFlag, startProcessMetrics } from "../metrics/process-metrics.js";
import type { Metrics } from "../metrics/registry.js";

export function addMetricsOption(cmd: Command): Command {
  return cmd.addOption(
    new Option("--metrics <addr:port>", `serve Prometheus metrics on GET /metrics at this address (off unless given; e.g. ${DEFAULT_METRICS_ADDRESS}; ":9962" means loopback)`),
  );
}

/** Runs `fn` with the metrics endpoint up when `--metrics` was given (closed when fn ends, however it ends). */
export async function withMetrics<T>(flags: { metrics?: unknown }, io: Output, who: string, fn: (metrics: Metrics | undefined) => Promise<T>): Promise<T> {
  const address = parseMetricsFlag(typeof flags.metrics === "string" ? flags.metrics : undefined);
  if (!address) return fn(undefined);
  const pm = await startProcessMetrics(address, io, who);
  try {
    return await fn(pm.metrics);
  } finally {
    await pm.close();
  }
}
