// Host access to the policy tables (enum policy_table). Records are key bytes
// then value bytes, the kernel maps' layouts, so the host writes both
// datapaths with the same encodings.
import {
  POLICY_TABLE_ENDPOINT4, POLICY_TABLE_ENDPOINT6, POLICY_TABLE_IPCACHE4, POLICY_TABLE_IPCACHE6, POLICY_TABLE_POLICY,
} from "./generated/layout";
import { Table, tableFlush } from "./table";
import { dumpNothing, tableDeleteKey, tableDumpRecords, tableUpsertRecord } from "./table-io";
import { Lpm, lpmDelete, lpmFlush, lpmTable, lpmUpsert } from "./lpm";
import { endpoints4, endpoints6, identityOf, ipcache4, ipcache6, policyConfigArea, policyTable } from "./policy";

let ready = false;

/** Called by init once the tables exist. */
export function policyTablesReady(): void {
  ready = true;
}

function valid(id: i32): bool {
  return ready && id >= POLICY_TABLE_ENDPOINT4 && id <= POLICY_TABLE_POLICY;
}

function isLpm(id: i32): bool {
  return id == POLICY_TABLE_IPCACHE4 || id == POLICY_TABLE_IPCACHE6;
}

function lpmOf(id: i32): Lpm {
  return id == POLICY_TABLE_IPCACHE4 ? ipcache4 : ipcache6;
}

function tableOf(id: i32): Table {
  if (isLpm(id)) return lpmTable(lpmOf(id));
  if (id == POLICY_TABLE_ENDPOINT4) return endpoints4;
  if (id == POLICY_TABLE_ENDPOINT6) return endpoints6;
  return policyTable;
}

/** Where the host writes struct policy_config before init. */
export function policy_config_ptr(): usize {
  return policyConfigArea;
}

export function policy_table_capacity(id: i32): u32 { return valid(id) ? tableOf(id).capacity : 0; }
export function policy_table_count(id: i32): u32 { return valid(id) ? tableOf(id).count : 0; }
export function policy_table_key_size(id: i32): u32 { return valid(id) ? tableOf(id).keySize : 0; }
export function policy_table_value_size(id: i32): u32 { return valid(id) ? tableOf(id).valueSize : 0; }

/** Stores one record (key then value); false for a bad id, a bad prefix length or a full table. */
export function policy_table_upsert(id: i32, record: usize): bool {
  if (!valid(id)) return false;
  if (isLpm(id)) return lpmUpsert(lpmOf(id), record, record + tableOf(id).keySize);
  return tableUpsertRecord(tableOf(id), record);
}

/** Deletes the record whose key is at `key`; whether it existed. */
export function policy_table_delete(id: i32, key: usize): bool {
  if (!valid(id)) return false;
  if (isLpm(id)) return lpmDelete(lpmOf(id), key);
  return tableDeleteKey(tableOf(id), key);
}

/** As table_dump, for the policy tables; dump_count() tells how many were written. */
export function policy_table_dump(id: i32, cursor: u32, out: usize, max: u32): u32 {
  return valid(id) ? tableDumpRecords(tableOf(id), cursor, out, max) : dumpNothing();
}

export function policy_table_flush(id: i32): void {
  if (!valid(id)) return;
  if (isLpm(id)) lpmFlush(lpmOf(id));
  else tableFlush(tableOf(id));
}

/** The identity the ipcache gives the `family` (4 or 6) address at `addr` (network order bytes). */
export function ipcache_identity(family: i32, addr: usize): u32 {
  if (!ready || (family != 4 && family != 6)) return 0;
  return identityOf(family, addr);
}
