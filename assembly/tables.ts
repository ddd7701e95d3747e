// The datapath's tables, created once at init. Table ids: the four conntrack
// tables (enum ct_table) followed by the two fragment tables.
import { Table, tableCountTag, tableCreate } from "./table";
import { regionAlloc } from "./region";
import {
  CT_ENTRY_SIZE, CT_STATS_SIZE, CT_TUPLE4_FLAGS, CT_TUPLE6_FLAGS, TUPLE_F_IN, TABLE_FRAG4, TABLE_FRAG6, CT_TUPLE4_SIZE, CT_TUPLE6_SIZE, FRAG_ENTRY_SIZE, FRAG_KEY4_SIZE, FRAG_KEY6_SIZE,
} from "./generated/layout";
import { cfgCtMaxAny, cfgCtMaxTcp, cfgFragMax, cfgHashSeed } from "./config";

export const TABLE_COUNT: i32 = TABLE_FRAG6 + 1;
export { TABLE_FRAG4, TABLE_FRAG6 };

let tableList: usize = 0; // TABLE_COUNT pointers
let statsBase: usize = 0; // TABLE_COUNT struct ct_stats

// @ts-ignore: decorator
@inline export function table(id: i32): Table {
  return changetype<Table>(load<usize>(tableList + (<usize>id << 2)));
}

/** struct ct_stats of table `id`. */
// @ts-ignore: decorator
@inline export function statsOf(id: i32): usize {
  return statsBase + <usize>id * CT_STATS_SIZE;
}

/** Creates every table from the loaded configuration; false when memory runs out. */
export function createTables(): bool {
  tableList = regionAlloc(TABLE_COUNT * 4);
  statsBase = regionAlloc(TABLE_COUNT * CT_STATS_SIZE);
  if (tableList == 0 || statsBase == 0) return false;
  const seed = (<u64>cfgHashSeed << 32) | <u64>cfgHashSeed ^ 0x5851F42D;
  // Literal arrays would allocate through the runtime, whose heap would collide
  // with the region allocator: keep init free of `new` too.
  // Conntrack tables count their IN-flagged tuples: a forwarder deciding with DIR_AUTO
  // creates only OUT ones, and the reverse-IN probe of each packet can then be skipped.
  return addTable(0, cfgCtMaxTcp, CT_TUPLE4_SIZE, CT_ENTRY_SIZE, seed, CT_TUPLE4_FLAGS)
    && addTable(1, cfgCtMaxAny, CT_TUPLE4_SIZE, CT_ENTRY_SIZE, seed, CT_TUPLE4_FLAGS)
    && addTable(2, cfgCtMaxTcp, CT_TUPLE6_SIZE, CT_ENTRY_SIZE, seed, CT_TUPLE6_FLAGS)
    && addTable(3, cfgCtMaxAny, CT_TUPLE6_SIZE, CT_ENTRY_SIZE, seed, CT_TUPLE6_FLAGS)
    && addTable(TABLE_FRAG4, cfgFragMax, FRAG_KEY4_SIZE, FRAG_ENTRY_SIZE, seed, -1)
    && addTable(TABLE_FRAG6, cfgFragMax, FRAG_KEY6_SIZE, FRAG_ENTRY_SIZE, seed, -1);
}

function addTable(id: i32, capacity: u32, keySize: i32, valueSize: i32, seed: u64, inFlagOff: i32): bool {
  const t = tableCreate(capacity, <u32>keySize, <u32>valueSize, seed + <u64>id);
  if (t === null) return false;
  if (inFlagOff >= 0) tableCountTag(t, inFlagOff, <u32>TUPLE_F_IN);
  store<usize>(tableList + (<usize>id << 2), changetype<usize>(t));
  return true;
}
