/** The LB tables of a Wasm core (assembly/lb-exports.ts) as an LbTableWriter. */
import { MembraneError } from "../errors.js";
import type { WasmCore } from "./core.js";
import type { ResolvedLbOptions } from "../lb/options.js";
import { LB_RECORD, LB_TABLE_IDS, type LbTableName, type LbTableWriter } from "../lb/tables.js";

const VALUE_OFFSET = 64;

export class WasmLbTables implements LbTableWriter {
  readonly engine = "wasm" as const;

  constructor(private readonly core: WasmCore, private readonly options: ResolvedLbOptions) {}

  private get ex() {
    return this.core.exports;
  }

  update(table: LbTableName, key: Uint8Array, value: Uint8Array): void {
    // The value goes past the longest key (lb6_key, padded by the core) so the two never overlap.
    const io = this.core.stage(key);
    this.core.bytes().set(value, io + VALUE_OFFSET);
    if (!this.ex.lb_update(LB_TABLE_IDS[table], io, io + VALUE_OFFSET)) {
      throw new MembraneError("TABLE_FULL", `write LB table ${table} (Wasm): the table is full (${this.ex.lb_capacity(LB_TABLE_IDS[table])} entries)`);
    }
  }

  delete(table: LbTableName, key: Uint8Array): boolean {
    return this.ex.lb_delete(LB_TABLE_IDS[table], this.core.stage(key)) !== 0;
  }

  dump(table: LbTableName): Uint8Array[] {
    const id = LB_TABLE_IDS[table];
    const rec = LB_RECORD[table].key + LB_RECORD[table].value;
    return [...this.core.dumpRecords(rec, (cursor, out, max) => this.ex.lb_dump(id, cursor, out, max))];
  }

  private rowAddr(row: number): number {
    const { maglevM, maglevRows } = this.options;
    if (!Number.isInteger(row) || row < 0 || row >= maglevRows) throw new MembraneError("INVALID_INPUT", `Maglev row ${row} is outside 0..${maglevRows - 1}`);
    return this.ex.lb_maglev_ptr() + row * maglevM * 4;
  }

  writeMaglevRow(row: number, ids: Uint32Array): void {
    if (ids.length !== this.options.maglevM) throw new MembraneError("INVALID_INPUT", `Maglev row has ${ids.length} entries, the datapath ${this.options.maglevM}`);
    const addr = this.rowAddr(row);
    const bytes = new Uint8Array(ids.length * 4);
    const v = new DataView(bytes.buffer);
    ids.forEach((id, i) => v.setUint32(i * 4, id, true));
    this.core.bytes().set(bytes, addr);
  }

  readMaglevRow(row: number): Uint32Array {
    const addr = this.rowAddr(row);
    const bytes = this.core.view(addr, this.options.maglevM * 4).slice();
    const v = new DataView(bytes.buffer);
    return Uint32Array.from({ length: this.options.maglevM }, (_, i) => v.getUint32(i * 4, true));
  }
}
