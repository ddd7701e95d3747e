// Exports through which the host programs the LB tables (host/wasm/lb-tables.ts).
import { LB_TABLE_COUNT, lbConfigArea, lbCreateTables, lbMaglevBase, lbReady, lbTable } from "./lb-tables";
import { dumpCount, dumpNothing, padKey, tableDeleteKey, tableDumpRecords } from "./table-io";
import { slotAddr, tableInsert, tableLookup } from "./table";
import { INIT_AGAIN, INIT_NO_MEMORY, INIT_OK } from "./generated/layout";

/** Where the host writes struct lb_config before lb_init. */
export function lb_config_ptr(): usize {
  return lbConfigArea;
}

/** Creates the LB tables: an enum init_result. */
export function lb_init(): i32 {
  if (lbReady) return INIT_AGAIN;
  return lbCreateTables() ? INIT_OK : INIT_NO_MEMORY;
}

function valid(id: i32): bool {
  return lbReady && id >= 0 && id < LB_TABLE_COUNT;
}

/** Inserts or replaces the record key -> value; false when the table is full (nothing changed). */
export function lb_update(id: i32, key: usize, value: usize): bool {
  if (!valid(id)) return false;
  const t = lbTable(id);
  const padded = padKey(t, key);
  let idx = tableLookup(t, padded);
  if (idx == 0) idx = tableInsert(t, padded);
  if (idx == 0) return false;
  memory.copy(slotAddr(t, idx), value, t.valueSize);
  return true;
}

export function lb_delete(id: i32, key: usize): bool {
  return valid(id) && tableDeleteKey(lbTable(id), key);
}

export function lb_dump_count(): u32 { return dumpCount; }

/** As table_dump, for LB table `id`. */
export function lb_dump(id: i32, cursor: u32, out: usize, max: u32): u32 {
  return valid(id) ? tableDumpRecords(lbTable(id), cursor, out, max) : dumpNothing();
}

export function lb_count(id: i32): u32 { return valid(id) ? lbTable(id).count : 0; }
export function lb_capacity(id: i32): u32 { return valid(id) ? lbTable(id).capacity : 0; }

/** The Maglev array (lb_config.maglev_rows rows of maglev_m u32 backend ids); the host writes rows in place. */
export function lb_maglev_ptr(): usize { return lbReady ? lbMaglevBase : 0; }
