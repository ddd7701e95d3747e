/** The kernel datapath's maps: which table lives in which map, sized and typed from the options. */
import type { ResolvedOptions } from "../config.js";
import type { TableName } from "../conntrack/tables.js";
import { policyMapSizes } from "../policy/options.js";
import { lbMapSizes } from "../lb/options.js";
import { kernelNatMapSizes } from "./nat-tables.js";

/** Kernel map of each datapath table (bpf/lib/maps.h). */
export const KERNEL_MAP_OF: Readonly<Record<TableName, string>> = {
  tcp4: "ct_tcp4", any4: "ct_any4", tcp6: "ct_tcp6", any6: "ct_any6", frag4: "frag4", frag6: "frag6",
};

/** max_entries per map, as the Wasm tables are sized. */
export function kernelMapSizes(o: ResolvedOptions): Record<string, number> {
  const ct = o.conntrack;
  return {
    ct_tcp4: ct.tcpEntries, ct_tcp6: ct.tcpEntries, ct_any4: ct.otherEntries, ct_any6: ct.otherEntries,
    frag4: o.fragments.entries, frag6: o.fragments.entries,
    ...policyMapSizes(o.policy),
    ...lbMapSizes(o.lb),
    ...kernelNatMapSizes(o),
  };
}

/**
 * The full-table policy picks the map type: LRU maps evict like the Wasm
 * tables' "evict-lru"; plain hash maps refuse new entries like "drop".
 */
export function kernelMapTypes(o: ResolvedOptions): Record<string, string> | undefined {
  if (o.conntrack.whenFull !== "drop") return undefined;
  return { ct_tcp4: "hash", ct_tcp6: "hash", ct_any4: "hash", ct_any6: "hash" };
}
