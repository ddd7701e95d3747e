/**
 * The LB tables as both datapaths hold them (bpf/include/types/lb.h): one
 * writer interface, implemented over the Wasm core's tables and over the
 * kernel's maps, so the service manager writes byte-identical records to both.
 */
import {
  LB4_BACKEND, LB4_KEY, LB4_REVERSE_NAT, LB6_BACKEND, LB6_KEY, LB6_REVERSE_NAT, LB_SERVICE, LbTable,
} from "../generated/layout.js";

export const LB_TABLE_IDS = {
  services4: LbTable.LB_TABLE_SERVICES4, services6: LbTable.LB_TABLE_SERVICES6,
  backends4: LbTable.LB_TABLE_BACKENDS4, backends6: LbTable.LB_TABLE_BACKENDS6,
  revNat4: LbTable.LB_TABLE_REVNAT4, revNat6: LbTable.LB_TABLE_REVNAT6,
} as const;
export type LbTableName = keyof typeof LB_TABLE_IDS;
export const LB_TABLE_NAMES = Object.keys(LB_TABLE_IDS) as LbTableName[];

/** Kernel map of each LB table (bpf/lib/lb.h). */
export const LB_KERNEL_MAP: Readonly<Record<LbTableName, string>> = {
  services4: "lb4_services", services6: "lb6_services", backends4: "lb4_backends", backends6: "lb6_backends",
  revNat4: "lb4_reverse_nat", revNat6: "lb6_reverse_nat",
};

/** Key and value sizes of each table's records: backends are keyed by a __u32 id, reverse NAT by a __u16 index. */
export const LB_RECORD: Readonly<Record<LbTableName, { key: number; value: number }>> = {
  services4: { key: LB4_KEY.size, value: LB_SERVICE.size },
  services6: { key: LB6_KEY.size, value: LB_SERVICE.size },
  backends4: { key: 4, value: LB4_BACKEND.size },
  backends6: { key: 4, value: LB6_BACKEND.size },
  revNat4: { key: 2, value: LB4_REVERSE_NAT.size },
  revNat6: { key: 2, value: LB6_REVERSE_NAT.size },
};

export interface LbTableWriter {
  readonly engine: "wasm" | "bpf";
  /** Inserts or replaces a record; throws when the table is full. */
  update(table: LbTableName, key: Uint8Array, value: Uint8Array): void;
  delete(table: LbTableName, key: Uint8Array): boolean;
  /** Every record, key bytes then value bytes (kernel: hash order). */
  dump(table: LbTableName): Uint8Array[];
  /** Writes row `row` of the Maglev table (lb_config.maglev_m backend ids). */
  writeMaglevRow(row: number, ids: Uint32Array): void;
  readMaglevRow(row: number): Uint32Array;
}

export function joinKeyValue(key: Uint8Array, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + value.length);
  out.set(key);
  out.set(value, key.length);
  return out;
}
