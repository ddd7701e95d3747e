/**
 * The kernel datapath's own counters, read from its maps: the metrics table
 * (per-CPU, one slot per drop reason and direction; reason 0 is forwarded)
 * and the per-table conntrack stats. Shared by the test-run datapath
 * (KernelDatapath) and the agent's pinned maps (KernelAgentDatapath), so
 * `--metrics` and `membrane status` read the same figures either way.
 */
import type { BpfMap } from "../bpf/map.js";
import type { BpfObject } from "../bpf/object.js";
import type { DatapathCounters, DropCount } from "../engine.js";
import type { TableName } from "../conntrack/tables.js";
import { METRICS_SLOTS, TABLE_NAMES } from "../conntrack/tables.js";
import { CT_STATS, decodeCtStats, decodeMetricsValue, dropReasonName, dropReasonText, type CtStats } from "../generated/layout.js";
import { KERNEL_MAP_OF } from "./maps.js";

function sumPerCpu<T>(map: BpfMap, key: Uint8Array, decode: (b: Uint8Array) => T, add: (a: T, b: T) => T): T | undefined {
  const value = map.lookup(key);
  if (!value) return undefined;
  return map.perCpuValues(value).map(decode).reduce(add);
}

/** Forwards and drops by reason and direction, and each conntrack table's stats with its live entry count. */
export function readKernelCounters(object: Pick<BpfObject, "map">): DatapathCounters {
  const metrics = object.map("metrics");
  const forwarded = { egress: { packets: 0, bytes: 0 }, ingress: { packets: 0, bytes: 0 } };
  const drops: DropCount[] = [];
  const key = new Uint8Array(4);
  const view = new DataView(key.buffer);
  for (let slot = 0; slot < METRICS_SLOTS; slot++) {
    view.setUint32(0, slot, true);
    const v = sumPerCpu(metrics, key, (b) => decodeMetricsValue(b), (a, b) => ({ packets: a.packets + b.packets, bytes: a.bytes + b.bytes }));
    if (!v || v.packets === 0n) continue;
    const reason = slot >> 1;
    const direction = slot & 1 ? "ingress" : "egress";
    const count = { packets: Number(v.packets), bytes: Number(v.bytes) };
    if (reason === 0) forwarded[direction] = count;
    else drops.push({ reason: dropReasonName[reason] ?? `DROP_${reason}`, code: reason, text: dropReasonText[reason] ?? "", direction, ...count });
  }
  const statsMap = object.map("ct_stats");
  const tables = {} as Record<TableName, CtStats>;
  TABLE_NAMES.forEach((table, id) => {
    view.setUint32(0, id, true);
    const s = sumPerCpu(statsMap, key, (b) => decodeCtStats(b), (a, b) => {
      const out = { ...a };
      for (const k of Object.keys(out) as (keyof CtStats)[]) out[k] = a[k] + b[k];
      return out;
    }) ?? decodeCtStats(new Uint8Array(CT_STATS.size));
    s.entries = BigInt(object.map(KERNEL_MAP_OF[table]).dump().length);
    tables[table] = s;
  });
  return { forwarded, drops, tables };
}
