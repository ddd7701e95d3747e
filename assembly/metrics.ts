// Datapath counters: packets and bytes per (drop reason, direction), reason 0
// meaning forwarded, laid out as an array of struct metrics_value indexed by
// reason * 2 + direction. The host reads and aggregates it at scrape time.
import { CT_INGRESS, METRICS_SLOTS, METRICS_VALUE_BYTES, METRICS_VALUE_PACKETS, METRICS_VALUE_SIZE } from "./generated/layout";
import { regionAlloc } from "./region";

export let metricsBase: usize = 0;

export function createMetrics(): bool {
  metricsBase = regionAlloc(<u64>METRICS_SLOTS * METRICS_VALUE_SIZE);
  return metricsBase != 0;
}

// @ts-ignore: decorator
@inline export function count(reason: i32, dir: i32, bytes: u32): void {
  const slot = metricsBase + ((<usize>(reason & 0xFF) << 1) + <usize>(dir == CT_INGRESS ? 1 : 0)) * METRICS_VALUE_SIZE;
  store<u64>(slot + METRICS_VALUE_PACKETS, load<u64>(slot + METRICS_VALUE_PACKETS) + 1);
  store<u64>(slot + METRICS_VALUE_BYTES, load<u64>(slot + METRICS_VALUE_BYTES) + <u64>bytes);
}
