// The Wasm module's exports: plain functions over linear memory. host/wasm is
// the only code that calls them. Table ids: enum ct_table (0..3), then the IPv4
// and IPv6 fragment tables (4, 5).
import {
  CT_ENTRY_LIFETIME, CT_STATS_ENTRIES, CT_STATS_GC_DELETED, CT_STATS_GC_RUNS, DP_CONFIG_SIZE, FRAG_ENTRY_LIFETIME,
  PKT_DESC_BUF, PKT_DESC_BUF_SIZE, PKT_DESC_OFF, PKT_DESC_SIZE, INIT_AGAIN, INIT_NO_MEMORY, INIT_OK,
} from "./generated/layout";
import { loadConfig } from "./config";
import { TABLE_COUNT, TABLE_FRAG4, createTables, statsOf, table } from "./tables";
import { slotAddr, tableBytes, tableFlush, tableHighWater, tableRemove, tableSlotUsed } from "./table";
import { dumpCount, dumpNothing, tableDeleteKey, tableDumpRecords, tableRestoreRecords } from "./table-io";
import { createMetrics, metricsBase } from "./metrics";
import { regionAlloc, regionUsed } from "./region";
export { processBatch as process, parseBatch as parse_batch } from "./datapath";
export { monitor_create } from "./monitor";
import { createPolicyTables } from "./policy";
import { policyTablesReady } from "./policy-exports";


const configArea = memory.data(DP_CONFIG_SIZE, 8);
let initialized = false;

/** Where the host writes struct dp_config before calling init. */
export function config_ptr(): usize {
  return configArea;
}

/** Creates the tables from the configuration. Once per instance. */
export function init(): i32 {
  if (initialized) return INIT_AGAIN;
  loadConfig(configArea);
  if (!createMetrics() || !createTables() || !createPolicyTables()) return INIT_NO_MEMORY;
  policyTablesReady();
  initialized = true;
  return INIT_OK;
}

/** Bytes of linear memory handed out so far (tables, batches, buffers). */
export function memory_used(): f64 {
  return <f64>regionUsed();
}

/** Permanent memory for the host (batches, I/O areas); 0 when memory cannot grow. */
export function alloc(size: u32): usize {
  return regionAlloc(size);
}

/**
 * A batch of `count` descriptors, each with its own buffer of `bufSize` bytes and
 * `headroom` bytes reserved in front of the packet. Returns the descriptor array, or 0.
 */
export function batch_create(count: u32, bufSize: u32, headroom: u32): usize {
  if (headroom >= bufSize) return 0;
  const desc = regionAlloc(<u64>count * PKT_DESC_SIZE);
  const bufs = regionAlloc(<u64>count * bufSize);
  if (desc == 0 || bufs == 0) return 0;
  for (let i: u32 = 0; i < count; i++) {
    const d = desc + <usize>i * PKT_DESC_SIZE;
    store<u32>(d + PKT_DESC_BUF, bufs + i * bufSize);
    store<u32>(d + PKT_DESC_BUF_SIZE, bufSize);
    store<u32>(d + PKT_DESC_OFF, headroom);
  }
  return desc;
}

export function metrics_ptr(): usize {
  return metricsBase;
}

function validTable(id: i32): bool {
  return initialized && id >= 0 && id < TABLE_COUNT;
}

/** struct ct_stats of a table, with the entries gauge brought up to date; 0 for a bad id. */
export function table_stats(id: i32): usize {
  if (!validTable(id)) return 0;
  const s = statsOf(id);
  store<u64>(s + CT_STATS_ENTRIES, <u64>table(id).count);
  return s;
}

export function table_capacity(id: i32): u32 { return validTable(id) ? table(id).capacity : 0; }
export function table_count(id: i32): u32 { return validTable(id) ? table(id).count : 0; }
export function table_key_size(id: i32): u32 { return validTable(id) ? table(id).keySize : 0; }
export function table_value_size(id: i32): u32 { return validTable(id) ? table(id).valueSize : 0; }
export function table_bytes(id: i32): f64 { return validTable(id) ? <f64>tableBytes(table(id)) : 0; }

function lifetimeOffset(id: i32): usize {
  return id >= TABLE_FRAG4 ? FRAG_ENTRY_LIFETIME : CT_ENTRY_LIFETIME;
}

/**
 * Copies up to `max` records (key bytes then value bytes) of table `id` into
 * `out`, starting at slot `cursor` (1 to begin). Returns the cursor to continue
 * from, 0 when the scan is complete; dump_count() tells how many were written.
 */
export function dump_count(): u32 { return dumpCount; }
export function table_dump(id: i32, cursor: u32, out: usize, max: u32): u32 {
  return validTable(id) ? tableDumpRecords(table(id), cursor, out, max) : dumpNothing();
}

/**
 * Inserts `count` records (layout as table_dump) into table `id`, replacing
 * entries with the same key. Returns how many were stored (fewer when full).
 */
export function table_restore(id: i32, records: usize, count: u32): u32 {
  return validTable(id) ? tableRestoreRecords(table(id), records, count) : 0;
}

/** Deletes the entries of table `id` whose lifetime ended before `now`; returns how many. */
let lastGcScanned: u32 = 0;
export function gc_scanned(): u32 { return lastGcScanned; }
export function table_gc(id: i32, now: u32): u32 {
  lastGcScanned = 0;
  if (!validTable(id)) return 0;
  const t = table(id);
  const lifeOff = lifetimeOffset(id);
  const end = tableHighWater(t);
  let deleted: u32 = 0;
  for (let idx: u32 = 1; idx < end; idx++) {
    if (!tableSlotUsed(t, idx)) continue;
    lastGcScanned++;
    if (load<u32>(slotAddr(t, idx) + lifeOff) < now) {
      tableRemove(t, idx);
      deleted++;
    }
  }
  const s = statsOf(id);
  store<u64>(s + CT_STATS_GC_DELETED, load<u64>(s + CT_STATS_GC_DELETED) + deleted);
  store<u64>(s + CT_STATS_GC_RUNS, load<u64>(s + CT_STATS_GC_RUNS) + 1);
  return deleted;
}

export function table_flush(id: i32): void {
  if (validTable(id)) tableFlush(table(id));
}

/** Deletes the entry whose record key is at `key`; returns whether it existed. */
export function table_delete(id: i32, key: usize): bool {
  return validTable(id) && tableDeleteKey(table(id), key);
}

export {
  policy_config_ptr, policy_table_capacity, policy_table_count, policy_table_key_size, policy_table_value_size,
  policy_table_upsert, policy_table_delete, policy_table_dump, policy_table_flush, ipcache_identity,
} from "./policy-exports";
export {
  lb_config_ptr, lb_init, lb_update, lb_delete, lb_dump, lb_dump_count, lb_count, lb_capacity, lb_maglev_ptr,
} from "./lb-exports";
export {
  nat_config_ptr, nat_init, nat_stats_ptr, nat_count, nat_capacity, nat_key_size, nat_value_size, nat_dump, nat_flush,
  nat_gc, nat_forget, nat_bytes, nat_restore, nat_reload,
} from "./nat-exports";
