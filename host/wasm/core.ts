/**
 * WasmCore: the only owner of the core's linear memory. Everything above it
 * speaks in bytes and numbers; nothing else holds a view into Wasm memory
 * (views detach when memory grows, so they are re-taken here on demand).
 * The table adapters beside it (lb-tables, nat-tables, policy-tables, batch)
 * reach the exports and memory through this class: one I/O area, one dump
 * loop, one restore loop, one check of init results.
 */
import { MembraneError } from "../errors.js";
import { CT_STATS, decodeCtStats, type CtStats, PKT_DESC, METRICS_VALUE, InitResult } from "../generated/layout.js";
import type { ResolvedOptions } from "../config.js";
import { encodeConfig } from "../config.js";
import { encodePolicyOptions } from "../policy/options.js";
import { encodeLbOptions } from "../lb/options.js";
import { encodeNat } from "../nat/config.js";
import { METRICS_SLOTS } from "../conntrack/tables.js";
import { instantiateCore, type CoreBuild } from "./module.js";
import type { CoreExports } from "./exports.js";

export { TABLE_IDS, TABLE_NAMES, METRICS_SLOTS, type TableName } from "../conntrack/tables.js";
export type { CoreBuild };

/** Bytes of the one scratch area through which keys and records cross into Wasm memory. */
export const IO_AREA_BYTES = 1 << 20;

export interface RawBatch {
  /** Address of the struct pkt_desc array. */
  desc: number;
  capacity: number;
  bufferSize: number;
  headroom: number;
}

/** One table's dump export: writes up to `max` records at `out` from `cursor`, returns the next cursor (0: done). */
export type DumpStep = (cursor: number, out: number, max: number) => number;
/** One table's restore export: stores `count` records found at `records`, returns how many fit. */
export type RestoreStep = (records: number, count: number) => number;

/**
 * Throws unless an init export (enum init_result) created its tables.
 * `what` names the export, `advice` what to lower when memory runs out.
 */
export function checkInit(rc: number, what: string, advice: string): void {
  if (rc === InitResult.INIT_NO_MEMORY) {
    throw new MembraneError("OUT_OF_MEMORY", `create datapath: the ${what} tables do not fit in Wasm linear memory (4 GiB at most); ${advice}`);
  }
  if (rc !== InitResult.INIT_OK) throw new MembraneError("INTERNAL", `create datapath: ${what} init returned ${rc}`);
}

export class WasmCore {
  private u8: Uint8Array;
  private ioArea = 0;

  private constructor(readonly exports: CoreExports) {
    this.u8 = new Uint8Array(exports.memory.buffer);
  }

  static create(options: ResolvedOptions, build: CoreBuild = "release"): WasmCore {
    const core = new WasmCore(instantiateCore(build));
    const ex = core.exports;
    core.bytes().set(encodeConfig(options), ex.config_ptr());
    core.bytes().set(encodePolicyOptions(options.policy), ex.policy_config_ptr());
    checkInit(ex.init(), "conntrack",
      `lower conntrack.tcpEntries (${options.conntrack.tcpEntries}) or conntrack.otherEntries (${options.conntrack.otherEntries})`);
    core.bytes().set(encodeLbOptions(options.lb), ex.lb_config_ptr());
    checkInit(ex.lb_init(), "LB", "lower lb.services, lb.backends or lb.maglevRows");
    core.bytes().set(encodeNat(options.nat), ex.nat_config_ptr());
    checkInit(ex.nat_init(), "NAT", `lower nat.entries (${options.nat?.entries})`);
    return core;
  }

  /** The whole linear memory; valid until the next allocation. */
  bytes(): Uint8Array {
    if (this.u8.byteLength === 0 || this.u8.buffer !== this.exports.memory.buffer) {
      this.u8 = new Uint8Array(this.exports.memory.buffer);
    }
    return this.u8;
  }

  view(addr: number, length: number): Uint8Array {
    return this.bytes().subarray(addr, addr + length);
  }

  private alloc(size: number): number {
    const addr = this.exports.alloc(size);
    if (addr === 0) throw new MembraneError("OUT_OF_MEMORY", `allocate ${size} bytes of Wasm memory: linear memory is full`);
    return addr;
  }

  createBatch(capacity: number, bufferSize: number, headroom: number): RawBatch {
    const desc = this.exports.batch_create(capacity, bufferSize, headroom);
    if (desc === 0) {
      throw new MembraneError("OUT_OF_MEMORY", `create a batch of ${capacity} x ${bufferSize} bytes: Wasm linear memory is full`);
    }
    return { desc, capacity, bufferSize, headroom };
  }

  descriptorAddr(batch: RawBatch, i: number): number {
    return batch.desc + i * PKT_DESC.size;
  }

  process(batch: RawBatch, count: number, now: number): void {
    this.exports.process(batch.desc, count, now >>> 0);
  }

  parseOnly(batch: RawBatch, count: number): number {
    return this.exports.parse_batch(batch.desc, count);
  }

  /** The I/O area (allocated on first use, IO_AREA_BYTES long). */
  io(): number {
    if (this.ioArea === 0) this.ioArea = this.alloc(IO_AREA_BYTES);
    return this.ioArea;
  }

  /** Copies `parts` one after another into the I/O area; returns its address. */
  stage(...parts: Uint8Array[]): number {
    const at = this.io();
    const mem = this.bytes();
    let offset = at;
    for (const p of parts) {
      mem.set(p, offset);
      offset += p.length;
    }
    return at;
  }

  /** Every record (`recordSize` bytes, copied) a dump export yields, in its order. */
  *dumpRecords(recordSize: number, step: DumpStep): Generator<Uint8Array> {
    if (recordSize === 0) return;
    const max = Math.floor(IO_AREA_BYTES / recordSize);
    let cursor = 1;
    do {
      const out = this.io();
      cursor = step(cursor, out, max);
      const n = this.exports.dump_count();
      const chunk = this.view(out, n * recordSize).slice();
      for (let i = 0; i < n; i++) yield chunk.subarray(i * recordSize, (i + 1) * recordSize);
    } while (cursor !== 0);
  }

  /** Stores records (as dumpRecords yields them) through a restore export; returns how many fit. */
  restoreRecords(what: string, recordSize: number, records: readonly Uint8Array[], step: RestoreStep): number {
    if (recordSize === 0 || records.length === 0) return 0;
    const max = Math.floor(IO_AREA_BYTES / recordSize);
    let stored = 0;
    for (let start = 0; start < records.length; start += max) {
      const part = records.slice(start, start + max);
      const out = this.io();
      const mem = this.bytes();
      part.forEach((r, i) => {
        if (r.length !== recordSize) throw new MembraneError("INVALID_INPUT", `restore ${what}: record ${start + i} is ${r.length} bytes, expected ${recordSize}`);
        mem.set(r, out + i * recordSize);
      });
      const n = step(out, part.length);
      stored += n;
      if (n < part.length) break;
    }
    return stored;
  }

  recordSize(table: number): { key: number; value: number } {
    return { key: this.exports.table_key_size(table), value: this.exports.table_value_size(table) };
  }

  /** Every record (key bytes then value bytes, copied) of a conntrack or fragment table, in slot order. */
  dump(table: number): Generator<Uint8Array> {
    const { key, value } = this.recordSize(table);
    return this.dumpRecords(key + value, (cursor, out, max) => this.exports.table_dump(table, cursor, out, max));
  }

  /** Stores records (as dump yields them); returns how many fit. */
  restore(table: number, records: Uint8Array[]): number {
    const { key, value } = this.recordSize(table);
    return this.restoreRecords(`table ${table}`, key + value, records, (at, n) => this.exports.table_restore(table, at, n));
  }

  deleteKey(table: number, key: Uint8Array): boolean {
    return this.exports.table_delete(table, this.stage(key)) !== 0;
  }

  gc(table: number, now: number): { deleted: number; scanned: number } {
    const deleted = this.exports.table_gc(table, now >>> 0);
    return { deleted, scanned: this.exports.gc_scanned() };
  }

  flush(table: number): void {
    this.exports.table_flush(table);
  }

  stats(table: number): CtStats {
    return decodeCtStats(this.view(this.exports.table_stats(table), CT_STATS.size));
  }

  tableInfo(table: number): { capacity: number; count: number; bytes: number; keySize: number; valueSize: number } {
    const ex = this.exports;
    return {
      capacity: ex.table_capacity(table),
      count: ex.table_count(table),
      bytes: ex.table_bytes(table),
      keySize: ex.table_key_size(table),
      valueSize: ex.table_value_size(table),
    };
  }

  /** A copy of the metrics array: METRICS_SLOTS struct metrics_value. */
  metrics(): Uint8Array {
    return this.view(this.exports.metrics_ptr(), METRICS_SLOTS * METRICS_VALUE.size).slice();
  }

  memoryUsed(): number {
    return this.exports.memory_used();
  }
}
