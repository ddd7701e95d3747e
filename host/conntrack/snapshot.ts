/**
 * Conntrack snapshots: every table's records in one file, so a forwarder that
 * restarts keeps its established connections. The NAT tables (nat4, nat6)
 * travel with conntrack: a mapping is only worth keeping with the connection
 * it belongs to.
 *
 * Format (little-endian), version 2:
 *
 *     0   "MBCT"
 *     4   u32  version (2)
 *     8   32 bytes  SHA-256 of every byte from 40 to the end
 *     40  16 bytes  boot id of the machine that wrote it (host/sys/boot-id.ts)
 *     56  16 bytes  run id: random per forwarder start
 *     72  u32  writer's pid
 *     76  u32  sequence: 0 for the write at start, +1 per later write
 *     80  f64  written at, ms since the epoch (wall clock, for people)
 *     88  u32  clock: the datapath clock (seconds) when it was taken
 *     92  u32  horizon: how far (seconds) past `clock` a lifetime may reach
 *     96  u32  table count
 *     100 per table: name length u8, name, record size u32, record count u32,
 *         records (key bytes then value bytes, the shared layout)
 *
 * A snapshot is checked whole before anything is restored: the checksum
 * (flipped bits, truncation), then every record against its table (a TCP
 * tuple only in a TCP table, ICMP only in its family's table, known tuple and
 * entry flags, no key twice, lifetimes that are possible on the snapshot's
 * clock). A snapshot that fails any check is refused whole with
 * SnapshotRefusedError, which says what is wrong and where; nothing is ever
 * half restored.
 */
import { createHash, randomBytes } from "node:crypto";
import { MembraneError } from "../errors.js";
import type { Datapath } from "../datapath.js";
import type { ResolvedOptions } from "../config.js";
import { TABLE_NAMES, type TableName } from "./tables.js";
import { NAT_TABLE_NAMES } from "../nat/tables.js";
import type { NatTableName } from "../nat/records.js";
import {
  CT_ENTRY, CT_TUPLE4, CT_TUPLE6, CtEntryFlags, FRAG_ENTRY, FRAG_KEY4, FRAG_KEY6, NAT_ENTRY4, NAT_ENTRY6, NAT_KEY4, NAT_KEY6,
  NatDir, TupleFlags,
} from "../generated/layout.js";
import { bootId as currentBootId, BOOT_ID_BYTES } from "../sys/boot-id.js";
import { monotonicSeconds } from "../forwarder/clock.js";

const MAGIC = "MBCT";
export const SNAPSHOT_VERSION = 2;
const CHECKSUM_AT = 8;
const BODY_AT = 40;
const HEADER_BYTES = 100;
const NEVER = 0xffffffff;

/** Who wrote a snapshot and when: its header. */
export interface SnapshotMeta {
  bootId: Uint8Array;
  /** Random per forwarder start (hex). */
  runId: string;
  pid: number;
  sequence: number;
  /** Wall clock, ms since the epoch. */
  writtenAt: number;
  /** The datapath clock (seconds) when it was taken. */
  clock: number;
  /** How far past `clock` a lifetime may reach (the writer's largest timeout). */
  horizon: number;
}

export interface SnapshotOptions {
  /**
   * The datapath clock now (seconds). Default: the monotonic clock, raised
   * to what the entries imply when they were made on a synthetic clock
   * (tests, replays), so a snapshot is always consistent with itself.
   */
  now?: number;
  /** Default: the largest timeout of the datapath's configuration (snapshotHorizon). */
  horizon?: number;
  /** Default: a fresh random id, sequence 0. */
  run?: { id: Uint8Array; sequence: number };
}

/** A snapshot that cannot be restored: damaged, from another build, or inconsistent. Nothing was restored. */
export class SnapshotRefusedError extends MembraneError {
  constructor(message: string) {
    super("SNAPSHOT_REFUSED", message);
  }
}

/** The largest lifetime ahead of the clock a datapath with these options gives an entry. */
export function snapshotHorizon(options: ResolvedOptions): number {
  const t = options.conntrack.timeouts;
  return Math.max(t.tcp, t.syn, t.close, t.other, options.fragments.timeout);
}

export function newRunId(): Uint8Array {
  return randomBytes(16);
}

const isNat = (t: string): t is NatTableName => (NAT_TABLE_NAMES as string[]).includes(t);
const isCt = (t: string): t is "tcp4" | "any4" | "tcp6" | "any6" => t === "tcp4" || t === "any4" || t === "tcp6" || t === "any6";

export function takeSnapshot(dp: Datapath, opts: SnapshotOptions = {}): Uint8Array {
  const tables: SnapshotTable[] = [];
  for (const table of TABLE_NAMES) {
    const info = dp.tableInfo(table);
    tables.push({ table, recordSize: info.keySize + info.valueSize, records: dp.dumpTable(table) });
  }
  for (const table of NAT_TABLE_NAMES) tables.push({ table, recordSize: dp.nat.info(table).recordSize, records: dp.nat.dump(table) });
  const horizon = opts.horizon ?? snapshotHorizon(dp.options);
  const run = opts.run ?? { id: newRunId(), sequence: 0 };
  return encodeSnapshot({
    bootId: currentBootId(), runId: Buffer.from(run.id.subarray(0, 16)).toString("hex"), pid: process.pid, sequence: run.sequence,
    writtenAt: Date.now(), clock: opts.now ?? impliedClock(tables, horizon), horizon,
  }, tables);
}

export interface SnapshotTable {
  table: TableName | NatTableName;
  recordSize: number;
  records: Uint8Array[];
}

/** Lays out a snapshot (see the file comment) and seals it with its checksum. No checks: parseSnapshot does those. */
export function encodeSnapshot(meta: SnapshotMeta, tables: readonly SnapshotTable[]): Uint8Array {
  // One allocation, filled in place: a table can hold millions of records (no spreading them into a call).
  let size = HEADER_BYTES;
  for (const { table, recordSize, records } of tables) size += 1 + Buffer.byteLength(table, "latin1") + 8 + recordSize * records.length;
  const bytes = new Uint8Array(size);
  const v = new DataView(bytes.buffer);
  bytes.set(Buffer.from(MAGIC, "latin1"), 0);
  v.setUint32(4, SNAPSHOT_VERSION, true);
  bytes.set(meta.bootId.subarray(0, BOOT_ID_BYTES), 40);
  bytes.set(Buffer.from(meta.runId, "hex").subarray(0, 16), 56);
  v.setUint32(72, meta.pid >>> 0, true);
  v.setUint32(76, meta.sequence >>> 0, true);
  v.setFloat64(80, meta.writtenAt, true);
  v.setUint32(88, meta.clock >>> 0, true);
  v.setUint32(92, meta.horizon >>> 0, true);
  v.setUint32(96, tables.length, true);
  let at = HEADER_BYTES;
  for (const { table, recordSize, records } of tables) {
    const name = Buffer.from(table, "latin1");
    bytes[at] = name.length;
    bytes.set(name, at + 1);
    at += 1 + name.length;
    v.setUint32(at, recordSize, true);
    v.setUint32(at + 4, records.length, true);
    at += 8;
    for (const r of records) {
      if (r.length !== recordSize) throw new MembraneError("INTERNAL", `snapshot table ${table}: a record of ${r.length} bytes, the table's are ${recordSize}`);
      bytes.set(r, at);
      at += recordSize;
    }
  }
  bytes.set(sha256(bytes.subarray(BODY_AT)), CHECKSUM_AT);
  return bytes;
}

/** The monotonic clock, or later when the entries were made on a clock ahead of it. */
function impliedClock(tables: readonly SnapshotTable[], horizon: number): number {
  let clock = monotonicSeconds();
  for (const { table, records } of tables) {
    if (!isCt(table)) continue;
    const keySize = table.endsWith("6") ? CT_TUPLE6.size : CT_TUPLE4.size;
    for (const r of records) {
      const dv = new DataView(r.buffer, r.byteOffset, r.byteLength);
      const lifetime = dv.getUint32(keySize + CT_ENTRY.offsets.lifetime, true);
      const created = dv.getUint32(keySize + CT_ENTRY.offsets.created, true);
      clock = Math.max(clock, created, lifetime - horizon);
    }
  }
  return Math.min(clock, NEVER);
}

function sha256(bytes: Uint8Array): Uint8Array {
  return createHash("sha256").update(bytes).digest();
}

export interface ParsedSnapshot {
  meta: SnapshotMeta;
  tables: SnapshotTable[];
}

/** The header alone (no checks beyond its own): who wrote the snapshot, when. */
export function readSnapshotMeta(bytes: Uint8Array): SnapshotMeta | undefined {
  if (bytes.length < HEADER_BYTES || Buffer.from(bytes.subarray(0, 4)).toString("latin1") !== MAGIC) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(4, true) !== SNAPSHOT_VERSION) return undefined;
  return {
    bootId: bytes.slice(40, 40 + BOOT_ID_BYTES),
    runId: Buffer.from(bytes.subarray(56, 72)).toString("hex"),
    pid: v.getUint32(72, true),
    sequence: v.getUint32(76, true),
    writtenAt: v.getFloat64(80, true),
    clock: v.getUint32(88, true),
    horizon: v.getUint32(92, true),
  };
}

/**
 * Parses and checks a snapshot completely (see the file comment); throws
 * SnapshotRefusedError naming `what` (the file), the table, the record and
 * the byte offset of the first problem.
 */
export function parseSnapshot(bytes: Uint8Array, what = "snapshot"): ParsedSnapshot {
  const fail = (at: number, msg: string): never => {
    throw new SnapshotRefusedError(`conntrack ${what}: ${msg} (byte ${at})`);
  };
  if (bytes.length < 8 || Buffer.from(bytes.subarray(0, 4)).toString("latin1") !== MAGIC) fail(0, "not a membrane conntrack snapshot");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = v.getUint32(4, true);
  if (version !== SNAPSHOT_VERSION) {
    fail(4, `format version ${version}, this build reads version ${SNAPSHOT_VERSION}${version < SNAPSHOT_VERSION ? " (written by an older membrane, without a checksum)" : ""}`);
  }
  if (bytes.length < HEADER_BYTES) fail(bytes.length, `truncated header: ${bytes.length} bytes, a header is ${HEADER_BYTES}`);
  const expected = Buffer.from(bytes.subarray(CHECKSUM_AT, BODY_AT));
  const actual = Buffer.from(sha256(bytes.subarray(BODY_AT)));
  if (!expected.equals(actual)) fail(CHECKSUM_AT, `checksum mismatch: the file is damaged or truncated (SHA-256 of the body is ${actual.toString("hex").slice(0, 16)}..., the header says ${expected.toString("hex").slice(0, 16)}...)`);
  const meta = readSnapshotMeta(bytes)!;
  if (meta.horizon > 0x7fffffff) fail(92, `horizon ${meta.horizon} s is beyond any configurable timeout`);
  const count = v.getUint32(96, true);
  let at = HEADER_BYTES;
  const tables: ParsedSnapshot["tables"] = [];
  const seen = new Set<string>();
  for (let t = 0; t < count; t++) {
    if (at + 1 > bytes.length) fail(at, "truncated table header");
    const len = bytes[at];
    if (at + 1 + len + 8 > bytes.length) fail(at, "truncated table header");
    const name = Buffer.from(bytes.subarray(at + 1, at + 1 + len)).toString("latin1");
    if (!TABLE_NAMES.includes(name as TableName) && !isNat(name)) fail(at, `unknown table "${name}"`);
    if (seen.has(name)) fail(at, `table ${name} appears twice`);
    seen.add(name);
    const recordSize = v.getUint32(at + 1 + len, true);
    const n = v.getUint32(at + 5 + len, true);
    at += 9 + len;
    if ((recordSize === 0 && n > 0) || at + recordSize * n > bytes.length) fail(at, `table ${name}: ${n} records of ${recordSize} bytes do not fit`);
    const records = Array.from({ length: n }, (_, i) => bytes.subarray(at + i * recordSize, at + (i + 1) * recordSize));
    checkTable(name as TableName | NatTableName, recordSize, records, meta, (i, msg) => fail(at + i * recordSize, `table ${name}, record ${i}: ${msg}`));
    at += recordSize * n;
    tables.push({ table: name as TableName | NatTableName, recordSize, records });
  }
  if (at !== bytes.length) fail(at, "trailing bytes");
  return { meta, tables };
}

/** Record sizes of the shared layout, per table. */
function layoutRecordSize(table: TableName | NatTableName): number {
  switch (table) {
    case "tcp4": case "any4": return CT_TUPLE4.size + CT_ENTRY.size;
    case "tcp6": case "any6": return CT_TUPLE6.size + CT_ENTRY.size;
    case "frag4": return FRAG_KEY4.size + FRAG_ENTRY.size;
    case "frag6": return FRAG_KEY6.size + FRAG_ENTRY.size;
    case "nat4": return NAT_KEY4.size + NAT_ENTRY4.size;
    case "nat6": return NAT_KEY6.size + NAT_ENTRY6.size;
  }
}

const TUPLE_FLAGS = new Set<number>(Object.values(TupleFlags));
const ENTRY_FLAGS = Object.values(CtEntryFlags).reduce((m, b) => m | b, 0);
const NAT_DIRS = new Set<number>(Object.values(NatDir));
const PROTO_TCP = 6, PROTO_ICMP = 1, PROTO_ICMPV6 = 58;

/** Checks every record of one table against that table; `bad(i, why)` throws. */
function checkTable(
  table: TableName | NatTableName, recordSize: number, records: Uint8Array[], meta: SnapshotMeta, bad: (i: number, why: string) => never,
): void {
  // An empty table of a family this build lays out differently is harmless; records must match the layout.
  if (records.length === 0) return;
  const size = layoutRecordSize(table);
  if (recordSize !== size) bad(0, `records are ${recordSize} bytes, the layout's are ${size}`);
  const v6 = table.endsWith("6");
  const keySize = isNat(table) ? (v6 ? NAT_KEY6.size : NAT_KEY4.size)
    : isCt(table) ? (v6 ? CT_TUPLE6.size : CT_TUPLE4.size)
    : (v6 ? FRAG_KEY6.size : FRAG_KEY4.size);
  const keys = new Set<string>();
  const limit = meta.clock + meta.horizon;
  const lifetimeOk = (i: number, lifetime: number, created?: number) => {
    if (lifetime === NEVER) bad(i, "lifetime 0xffffffff (never expires) is not a lifetime any datapath gives");
    if (lifetime > limit) bad(i, `lifetime ${lifetime} is more than the horizon (${meta.horizon} s) past the snapshot's clock (${meta.clock})`);
    if (created !== undefined && created > meta.clock) bad(i, `created at ${created}, after the snapshot's clock (${meta.clock})`);
    if (created !== undefined && lifetime < created) bad(i, `lifetime ${lifetime} ends before the entry was created (${created})`);
  };
  const wrongFamilyIcmp = v6 ? PROTO_ICMP : PROTO_ICMPV6;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const dv = new DataView(r.buffer, r.byteOffset, r.byteLength);
    const key = Buffer.from(r.buffer, r.byteOffset, keySize).toString("latin1");
    if (keys.has(key)) bad(i, "duplicate key (the same connection twice)");
    keys.add(key);
    if (isCt(table)) {
      const T = v6 ? CT_TUPLE6.offsets : CT_TUPLE4.offsets;
      const proto = r[T.nexthdr];
      if (table.startsWith("tcp") && proto !== PROTO_TCP) bad(i, `protocol ${proto} in TCP table ${table}`);
      if (table.startsWith("any") && proto === PROTO_TCP) bad(i, `a TCP tuple in non-TCP table ${table}`);
      if (proto === wrongFamilyIcmp) bad(i, `${v6 ? "ICMP (IPv4)" : "ICMPv6"} tuple in IPv${v6 ? 6 : 4} table ${table}`);
      if (!TUPLE_FLAGS.has(r[T.flags])) bad(i, `tuple flags ${r[T.flags]} are none of ${[...TUPLE_FLAGS].join(", ")}`);
      const flags = r[keySize + CT_ENTRY.offsets.flags];
      if (flags & ~ENTRY_FLAGS) bad(i, `entry flags 0x${flags.toString(16)} have bits outside 0x${ENTRY_FLAGS.toString(16)}`);
      lifetimeOk(i, dv.getUint32(keySize + CT_ENTRY.offsets.lifetime, true), dv.getUint32(keySize + CT_ENTRY.offsets.created, true));
    } else if (isNat(table)) {
      const K = v6 ? NAT_KEY6.offsets : NAT_KEY4.offsets;
      const E = v6 ? NAT_ENTRY6.offsets : NAT_ENTRY4.offsets;
      if (!NAT_DIRS.has(r[K.dir])) bad(i, `direction ${r[K.dir]} is neither egress (0) nor ingress (1)`);
      if (r[K.nexthdr] === wrongFamilyIcmp) bad(i, `${v6 ? "ICMP (IPv4)" : "ICMPv6"} mapping in IPv${v6 ? 6 : 4} table ${table}`);
      const created = dv.getUint32(keySize + E.created, true);
      if (created > meta.clock) bad(i, `created at ${created}, after the snapshot's clock (${meta.clock})`);
    } else {
      lifetimeOk(i, dv.getUint32(keySize + FRAG_ENTRY.offsets.lifetime, true));
    }
  }
}

/**
 * Restores a snapshot (bytes, or one parseSnapshot checked) into `dp`.
 * Checks it whole first: the checks of parseSnapshot, then that every
 * table's records have this datapath's size and fit, so a bad or oversized
 * snapshot changes nothing. Returns the entries restored per conntrack and
 * fragment table (NAT mappings ride along uncounted: callers count
 * connections).
 */
export function restoreSnapshot(dp: Datapath, snapshot: Uint8Array | ParsedSnapshot, what = "snapshot"): Record<string, number> {
  const snap = snapshot instanceof Uint8Array ? parseSnapshot(snapshot, what) : snapshot;
  // Mappings of a family this datapath does not masquerade (any more) are not restored.
  const wanted = snap.tables.filter(({ table, records }) => !isNat(table) || (records.length > 0 && dp.nat.info(table).capacity > 0));
  for (const { table, recordSize, records } of wanted) {
    if (records.length === 0) continue;
    const info = isNat(table) ? natInfo(dp, table) : dp.tableInfo(table);
    if (recordSize !== info.keySize + info.valueSize) {
      throw new SnapshotRefusedError(`restore conntrack ${what}: table ${table} records are ${recordSize} bytes, this datapath's are ${info.keySize + info.valueSize}`);
    }
    if (info.count + records.length > info.capacity) {
      throw new SnapshotRefusedError(`restore conntrack ${what}: table ${table} has room for ${info.capacity - info.count} more entries, the snapshot holds ${records.length}`);
    }
  }
  const restored: Record<string, number> = Object.fromEntries(TABLE_NAMES.map((t) => [t, 0]));
  for (const { table, records } of wanted) {
    if (isNat(table)) {
      const stored = dp.nat.restore(table, records);
      if (stored !== records.length) throw new MembraneError("INTERNAL", `restore conntrack ${what}: table ${table} took ${stored} of ${records.length} records after they were checked to fit`);
      continue;
    }
    const before = dp.tableInfo(table).count;
    const stored = dp.restoreTable(table, records);
    if (stored !== records.length) throw new MembraneError("INTERNAL", `restore conntrack ${what}: table ${table} took ${stored} of ${records.length} records after they were checked to fit`);
    // Counted in the table, not from the input: an entry that replaced one already there is not a new connection.
    restored[table] = dp.tableInfo(table).count - before;
  }
  return restored;
}

function natInfo(dp: Datapath, table: NatTableName) {
  const i = dp.nat.info(table);
  return { keySize: i.recordSize, valueSize: 0, capacity: i.capacity, count: i.count };
}

/** Whether `meta` was written since the machine last booted (its lifetimes are on the current clock). */
export function sameBoot(meta: SnapshotMeta): boolean {
  return Buffer.from(meta.bootId).equals(Buffer.from(currentBootId()));
}
