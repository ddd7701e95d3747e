/**
 * WasmCore: the only owner of the core's linear memory. Everything above it
 * speaks in bytes and numbers; nothing else holds a view into Wasm memory
 * (views detach when memory grows, so they are re-taken here on demand).
 */
import { MembraneError } from "../errors.js";
import { CT_STATS, DatapathLimits, decodeCtStats, type CtStats, PKT_DESC, METRICS_VALUE } from "../generated/layout.js";
import type { ResolvedOptions } from "../config.js";
import { encodeConfig } from "../config.js";
import { encodePolicyOptions } from "../policy/options.js";
import { instantiateCore, type CoreBuild, type CoreExports } from "./module.js";
import { initWasmLb } from "../lb/wasm-tables.js";
import { initWasmNat } from "../nat/tables.js";

/** Table ids of the core: enum ct_table, then the two fragment tables. */
export const TABLE_IDS = { tcp4: 0, any4: 1, tcp6: 2, any6: 3, frag4: 4, frag6: 5 } as const;
export type TableName = keyof typeof TABLE_IDS;
export const TABLE_NAMES = Object.keys(TABLE_IDS) as TableName[];

/** Reason x direction slots of the metrics array (enum datapath_limits). */
export const METRICS_SLOTS = DatapathLimits.METRICS_SLOTS;

const IO_AREA_BYTES = 1 << 20;

export interface RawBatch {
  /** Address of the struct pkt_desc array. */
  desc: number;
  capacity: number;
  bufferSize: number;
  headroom: number;
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
    const rc = ex.init();
    if (rc === ex.INIT_NO_MEMORY.value) {
      throw new MembraneError("OUT_OF_MEMORY",
        `create datapath: the tables do not fit in Wasm linear memory (4 GiB at most); lower conntrack.tcpEntries (${options.conntrack.tcpEntries}) or conntrack.otherEntries (${options.conntrack.otherEntries})`);
    }
    if (rc !== ex.INIT_OK.value) throw new MembraneError("INTERNAL", `create datapath: init returned ${rc}`);
    initWasmLb(core, options.lb);
    initWasmNat(core, options);
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

  private io(): number {
    if (this.ioArea === 0) this.ioArea = this.alloc(IO_AREA_BYTES);
    return this.ioArea;
  }

  recordSize(table: number): { key: number; value: number } {
    return { key: this.exports.table_key_size(table), value: this.exports.table_value_size(table) };
  }

  /** Every record (key bytes then value bytes, copied) of a table, in slot order. */
  *dump(table: number): Generator<Uint8Array> {
    const { key, value } = this.recordSize(table);
    const rec = key + value;
    const max = Math.floor(IO_AREA_BYTES / rec);
    let cursor = 1;
    do {
      const out = this.io();
      cursor = this.exports.table_dump(table, cursor, out, max);
      const n = this.exports.dump_count();
      const chunk = this.view(out, n * rec).slice();
      for (let i = 0; i < n; i++) yield chunk.subarray(i * rec, (i + 1) * rec);
    } while (cursor !== 0);
  }

  /** Stores records (as dump yields them); returns how many fit. */
  restore(table: number, records: Uint8Array[]): number {
    const { key, value } = this.recordSize(table);
    const rec = key + value;
    const max = Math.floor(IO_AREA_BYTES / rec);
    let stored = 0;
    for (let start = 0; start < records.length; start += max) {
      const part = records.slice(start, start + max);
      const out = this.io();
      const mem = this.bytes();
      part.forEach((r, i) => {
        if (r.length !== rec) throw new MembraneError("INVALID_INPUT", `restore table ${table}: record ${start + i} is ${r.length} bytes, expected ${rec}`);
        mem.set(r, out + i * rec);
      });
      const n = this.exports.table_restore(table, out, part.length);
      stored += n;
      if (n < part.length) break;
    }
    return stored;
  }

  deleteKey(table: number, key: Uint8Array): boolean {
    const out = this.io();
    this.bytes().set(key, out);
    return this.exports.table_delete(table, out) !== 0;
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
