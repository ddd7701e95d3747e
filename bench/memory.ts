/**
 * Memory suite: what a conntrack entry costs in bytes, compared with the raw
 * key + value (struct ct_tuple4/6 + struct ct_entry). The tables reserve
 * every slot up front (assembly/table.ts), so bytes/capacity is the true price
 * of an entry; the target is at most 1.5x the raw size.
 *
 * The reservation is virtual until used: Wasm linear memory comes from the OS
 * as zero pages, so RSS grows only with the slots and buckets actually
 * written. RSS is therefore measured twice: after creating the datapath, and
 * after filling the IPv4 TCP table to capacity.
 */
import { Datapath } from "../host/datapath.js";
import { DEFAULTS } from "../host/config.js";
import type { TableName } from "../host/wasm/core.js";
import { FlowSet } from "./flows.js";
import { mib, num, printTable } from "./report.js";

const TARGET_RATIO = 1.5;
const CT_TABLES: TableName[] = ["tcp4", "tcp6", "any4", "any6"];
const NOW = 1000;

export interface TableCost {
  table: TableName;
  capacity: number;
  bytes: number;
  keySize: number;
  valueSize: number;
  bytesPerEntry: number;
  ratio: number;
  withinTarget: boolean;
}

export interface MemoryResult {
  targetRatio: number;
  tables: TableCost[];
  wasmMemoryBytes: number;
  rss: {
    /** RSS growth from creating the datapath (all tables, default sizes). */
    afterCreate: number;
    /** Further RSS growth from filling tcp4 to capacity. */
    afterFillTcp4: number;
    /** JS heap growth over the same fill, to show how much of the RSS delta is not Wasm. */
    heapDuringFill: number;
    tcp4Entries: number;
    tcp4Evicted: number;
  };
}

function tableCost(dp: Datapath, table: TableName): TableCost {
  const { capacity, bytes, keySize, valueSize } = dp.tableInfo(table);
  const bytesPerEntry = bytes / capacity;
  const ratio = bytesPerEntry / (keySize + valueSize);
  return { table, capacity, bytes, keySize, valueSize, bytesPerEntry, ratio, withinTarget: ratio <= TARGET_RATIO };
}

export async function runMemory(): Promise<MemoryResult> {
  const rss0 = process.memoryUsage.rss();
  // Default sizes (Cilium's); only the timeouts are stretched, so nothing the fill creates can expire.
  const dp = await Datapath.create({ conntrack: { timeouts: { tcp: 1_000_000, syn: 1_000_000 } } });
  const rss1 = process.memoryUsage.rss();

  const tables = CT_TABLES.map((t) => tableCost(dp, t));
  const wasmMemoryBytes = dp.memory().total;

  // Fill tcp4 to exactly its capacity: no eviction, every slot and the whole bucket array written.
  const capacity = dp.tableInfo("tcp4").capacity;
  const heap0 = process.memoryUsage().heapUsed;
  new FlowSet(4).open(dp, dp.createBatch(256, { bufferSize: 256 }), capacity, NOW);
  const rss2 = process.memoryUsage.rss();
  const heap1 = process.memoryUsage().heapUsed;
  const tcp4 = dp.counters().tables.tcp4;

  const result: MemoryResult = {
    targetRatio: TARGET_RATIO,
    tables,
    wasmMemoryBytes,
    rss: {
      afterCreate: rss1 - rss0,
      afterFillTcp4: rss2 - rss1,
      heapDuringFill: heap1 - heap0,
      tcp4Entries: Number(tcp4.entries),
      tcp4Evicted: Number(tcp4.evicted),
    },
  };
  print(result);
  return result;
}

function print(r: MemoryResult): void {
  printTable(
    `Conntrack memory per entry (default sizes: ${num(DEFAULTS.conntrack.tcpEntries)} TCP, ${num(DEFAULTS.conntrack.otherEntries)} other)`,
    r.tables.map((t) => ({
      table: t.table,
      capacity: num(t.capacity),
      "table bytes": mib(t.bytes),
      "key+value": `${t.keySize}+${t.valueSize}=${t.keySize + t.valueSize} B`,
      "bytes/entry": num(t.bytesPerEntry, 1),
      ratio: `${num(t.ratio, 2)}x`,
      [`<= ${r.targetRatio}x`]: t.withinTarget ? "yes" : "NO",
    })),
    [
      "bytes/entry = table bytes / capacity: slots (value, key padded to 8, chain link, CLOCK meta word) plus a power-of-two bucket array.",
    ],
  );
  const tcp4 = r.tables.find((t) => t.table === "tcp4")!;
  printTable("Process memory", [
    { what: "Wasm linear memory (all tables, batches, scratch)", bytes: mib(r.wasmMemoryBytes) },
    { what: "RSS delta: create datapath", bytes: mib(r.rss.afterCreate) },
    { what: `RSS delta: fill tcp4 to ${num(r.rss.tcp4Entries)} entries`, bytes: mib(r.rss.afterFillTcp4) },
    { what: "  of which JS heap growth", bytes: mib(r.rss.heapDuringFill) },
    { what: "tcp4 table size (for comparison)", bytes: mib(tcp4.bytes) },
  ], [
    "Creating reserves linear memory without touching it, so RSS barely moves; filling writes every tcp4 slot.",
    `tcp4 after the fill: ${num(r.rss.tcp4Entries)} entries, ${num(r.rss.tcp4Evicted)} evicted.`,
  ]);
}
