/**
 * The datapath's conntrack and fragment tables by name, with the ids both
 * engines use (enum ct_table, then enum frag_table: bpf/include/types/ct.h).
 */
import { CtTable, DatapathLimits, FragTable } from "../generated/layout.js";

export const TABLE_IDS = {
  tcp4: CtTable.CT_TABLE_TCP4, any4: CtTable.CT_TABLE_ANY4, tcp6: CtTable.CT_TABLE_TCP6, any6: CtTable.CT_TABLE_ANY6,
  frag4: FragTable.TABLE_FRAG4, frag6: FragTable.TABLE_FRAG6,
} as const;
export type TableName = keyof typeof TABLE_IDS;
export const TABLE_NAMES = Object.keys(TABLE_IDS) as TableName[];

/** Reason x direction slots of the metrics array (enum datapath_limits). */
export const METRICS_SLOTS = DatapathLimits.METRICS_SLOTS;
