/**
 * Conntrack snapshots: every table's records in one file, so a forwarder that
 * restarts keeps its established connections. Format (little-endian):
 * "MBCT", version u32, table count u32, then per table: name length u8, name,
 * record size u32, record count u32, records (key bytes then value bytes, the
 * shared layout). A snapshot is validated whole before anything is restored.
 * The NAT tables (nat4, nat6) travel with conntrack: a mapping is only worth
 * keeping with the connection it belongs to.
 */
import { InvalidInputError } from "../errors.js";
import type { Datapath } from "../datapath.js";
import { TABLE_NAMES, type TableName } from "./tables.js";
import { NAT_TABLE_NAMES } from "../nat/tables.js";
import type { NatTableName } from "../nat/records.js";

const MAGIC = "MBCT";
const VERSION = 1;

export function takeSnapshot(dp: Datapath): Uint8Array {
  const parts: Uint8Array[] = [];
  const head = new Uint8Array(12);
  head.set(Buffer.from(MAGIC), 0);
  new DataView(head.buffer).setUint32(4, VERSION, true);
  new DataView(head.buffer).setUint32(8, TABLE_NAMES.length + NAT_TABLE_NAMES.length, true);
  parts.push(head);
  const add = (table: string, recordSize: number, records: Uint8Array[]) => {
    const name = Buffer.from(table);
    const th = new Uint8Array(1 + name.length + 8);
    th[0] = name.length;
    th.set(name, 1);
    const v = new DataView(th.buffer);
    v.setUint32(1 + name.length, recordSize, true);
    v.setUint32(5 + name.length, records.length, true);
    parts.push(th, ...records);
  };
  for (const table of TABLE_NAMES) {
    const info = dp.tableInfo(table);
    add(table, info.keySize + info.valueSize, dp.dumpTable(table));
  }
  for (const table of NAT_TABLE_NAMES) add(table, dp.nat.info(table).recordSize, dp.nat.dump(table));
  return Buffer.concat(parts);
}

export interface ParsedSnapshot {
  tables: { table: TableName | NatTableName; recordSize: number; records: Uint8Array[] }[];
}

const isNat = (t: string): t is NatTableName => (NAT_TABLE_NAMES as string[]).includes(t);

export function parseSnapshot(bytes: Uint8Array, what = "snapshot"): ParsedSnapshot {
  const fail = (at: number, msg: string): never => { throw new InvalidInputError(`read conntrack ${what}: ${msg} (byte ${at})`); };
  if (bytes.length < 12 || Buffer.from(bytes.subarray(0, 4)).toString("latin1") !== MAGIC) fail(0, "not a membrane conntrack snapshot");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(4, true) !== VERSION) fail(4, `version ${v.getUint32(4, true)}, this build reads ${VERSION}`);
  const count = v.getUint32(8, true);
  let at = 12;
  const tables: ParsedSnapshot["tables"] = [];
  for (let t = 0; t < count; t++) {
    if (at + 1 > bytes.length) fail(at, "truncated table header");
    const len = bytes[at];
    if (at + 1 + len + 8 > bytes.length) fail(at, "truncated table header");
    const name = Buffer.from(bytes.subarray(at + 1, at + 1 + len)).toString("latin1");
    if (!TABLE_NAMES.includes(name as TableName) && !isNat(name)) fail(at, `unknown table "${name}"`);
    const recordSize = v.getUint32(at + 1 + len, true);
    const n = v.getUint32(at + 5 + len, true);
    at += 9 + len;
    if ((recordSize === 0 && n > 0) || at + recordSize * n > bytes.length) fail(at, `table ${name}: ${n} records of ${recordSize} bytes do not fit`);
    const records = Array.from({ length: n }, (_, i) => bytes.subarray(at + i * recordSize, at + (i + 1) * recordSize));
    at += recordSize * n;
    tables.push({ table: name as TableName | NatTableName, recordSize, records });
  }
  if (at !== bytes.length) fail(at, "trailing bytes");
  return { tables };
}

/**
 * Restores a snapshot into `dp`. Checks every table's record size and that
 * every table fits before storing anything, so a bad or oversized snapshot
 * changes nothing. Returns the records restored per table.
 */
export function restoreSnapshot(dp: Datapath, bytes: Uint8Array, what?: string): Record<string, number> {
  const snap = parseSnapshot(bytes, what);
  // Mappings of a family this datapath does not masquerade (any more) are not restored.
  const wanted = snap.tables.filter(({ table, records }) => !isNat(table) || (records.length > 0 && dp.nat.info(table).capacity > 0));
  for (const { table, recordSize, records } of wanted) {
    const info = isNat(table) ? natInfo(dp, table) : dp.tableInfo(table);
    if (recordSize !== info.keySize + info.valueSize) {
      throw new InvalidInputError(`restore conntrack ${what ?? "snapshot"}: table ${table} records are ${recordSize} bytes, this datapath's are ${info.keySize + info.valueSize}`);
    }
    if (info.count + records.length > info.capacity) {
      throw new InvalidInputError(`restore conntrack ${what ?? "snapshot"}: table ${table} has room for ${info.capacity - info.count} more entries, the snapshot holds ${records.length}`);
    }
  }
  const restored: Record<string, number> = {};
  for (const { table, records } of wanted) {
    if (isNat(table)) dp.nat.restore(table, records); // reported per conntrack table only: callers count connections
    else restored[table] = dp.restoreTable(table, records);
  }
  return restored;
}

function natInfo(dp: Datapath, table: NatTableName) {
  const i = dp.nat.info(table);
  return { keySize: i.recordSize, valueSize: 0, capacity: i.capacity, count: i.count };
}
