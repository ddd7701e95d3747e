// The SNAT exports (re-exported by index.ts). Family arguments are 4 or 6.
import { CT_TUPLE4_SIZE, CT_TUPLE6_SIZE } from "./generated/layout";
import { natConfigArea, natLoadConfig, natReloadConfig } from "./nat-config";
import { natCreateTables, natForgetFlow, natGcFamily, natReady, natStats, natTable } from "./nat-table";
import { tableBytes, tableFlush } from "./table";
import { dumpNothing, tableDumpRecords, tableRestoreRecords } from "./table-io";

const INIT_OK: i32 = 0;
const INIT_AGAIN: i32 = 1;
const INIT_NO_MEMORY: i32 = 2;

const forgetKey = memory.data(48, 16);

// @ts-ignore: decorator
@inline function validFamily(f: i32): bool {
  return natReady() && (f == 4 || f == 6);
}

/** Where the host writes struct nat_config before nat_init. */
export function nat_config_ptr(): usize {
  return natConfigArea;
}

/** Loads the NAT configuration and creates its tables; once, after init. */
export function nat_init(): i32 {
  if (natReady()) return INIT_AGAIN;
  natLoadConfig();
  return natCreateTables() ? INIT_OK : INIT_NO_MEMORY;
}

/** Reloads struct nat_config on a running core (after nat_init); INIT_AGAIN before it. */
export function nat_reload(): i32 {
  if (!natReady()) return INIT_AGAIN;
  natReloadConfig();
  return INIT_OK;
}

/** struct nat_stats of a family; 0 before nat_init or for a bad family. */
export function nat_stats_ptr(f: i32): usize { return validFamily(f) ? natStats(f) : 0; }
export function nat_count(f: i32): u32 { return validFamily(f) ? natTable(f).count : 0; }
export function nat_capacity(f: i32): u32 { return validFamily(f) ? natTable(f).capacity : 0; }
export function nat_key_size(f: i32): u32 { return validFamily(f) ? natTable(f).keySize : 0; }
export function nat_value_size(f: i32): u32 { return validFamily(f) ? natTable(f).valueSize : 0; }
export function nat_bytes(f: i32): f64 { return validFamily(f) ? <f64>tableBytes(natTable(f)) : 0; }

/** As table_dump (dump_count tells how many records were written). */
export function nat_dump(f: i32, cursor: u32, out: usize, max: u32): u32 {
  return validFamily(f) ? tableDumpRecords(natTable(f), cursor, out, max) : dumpNothing();
}

/** As table_restore: stores records (key then value) into a family's table; returns how many fit. */
export function nat_restore(f: i32, records: usize, count: u32): u32 {
  return validFamily(f) ? tableRestoreRecords(natTable(f), records, count) : 0;
}

export function nat_flush(): void {
  if (!natReady()) return;
  tableFlush(natTable(4));
  tableFlush(natTable(6));
}

/** Removes every mapping whose conntrack entry is gone, expired or replaced (run after conntrack GC). */
export function nat_gc(now: u32): u32 {
  if (!natReady()) return 0;
  return natGcFamily(4, now) + natGcFamily(6, now);
}

/** The conntrack entry with tuple `key` (ct_tuple4/6 bytes) was deleted: removes its pair. */
export function nat_forget(f: i32, key: usize): u32 {
  if (!validFamily(f)) return 0;
  memory.fill(forgetKey, 0, 48);
  memory.copy(forgetKey, key, f == 4 ? CT_TUPLE4_SIZE : CT_TUPLE6_SIZE);
  return natForgetFlow(f, forgetKey);
}
