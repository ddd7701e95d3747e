/** The LB tables of a Wasm core (assembly/lb-exports.ts). */
import { MembraneError } from "../errors.js";
import type { WasmCore } from "../wasm/core.js";
import { encodeLbOptions, type ResolvedLbOptions } from "./options.js";
import { LB_RECORD, LB_TABLE_IDS, type LbTableName, type LbTableWriter } from "./tables.js";

interface LbExports {
  lb_config_ptr(): number;
  lb_init(): number;
  lb_update(id: number, key: number, value: number): number;
  lb_delete(id: number, key: number): number;
  lb_dump(id: number, cursor: number, out: number, max: number): number;
  lb_dump_count(): number;
  lb_count(id: number): number;
  lb_capacity(id: number): number;
  lb_maglev_ptr(): number;
}

const IO_BYTES = 1 << 16;

/** Creates the LB tables of a freshly initialised core. */
export function initWasmLb(core: WasmCore, options: ResolvedLbOptions): void {
  const ex = core.exports as unknown as LbExports;
  core.bytes().set(encodeLbOptions(options), ex.lb_config_ptr());
  const rc = ex.lb_init();
  if (rc === 2) throw new MembraneError("OUT_OF_MEMORY", `create datapath: the LB tables do not fit in Wasm linear memory; lower lb.services, lb.backends or lb.maglevRows`);
  if (rc !== 0) throw new MembraneError("INTERNAL", `create datapath: lb_init returned ${rc}`);
}

export class WasmLbTables implements LbTableWriter {
  readonly engine = "wasm" as const;
  private io = 0;
  private readonly ex: LbExports;

  constructor(private readonly core: WasmCore, private readonly options: ResolvedLbOptions) {
    this.ex = core.exports as unknown as LbExports;
  }

  private area(): number {
    if (this.io === 0) {
      this.io = this.core.exports.alloc(IO_BYTES);
      if (this.io === 0) throw new MembraneError("OUT_OF_MEMORY", "allocate the LB I/O area: Wasm linear memory is full");
    }
    return this.io;
  }

  update(table: LbTableName, key: Uint8Array, value: Uint8Array): void {
    const io = this.area();
    const mem = this.core.bytes();
    mem.set(key, io);
    mem.set(value, io + 64);
    if (!this.ex.lb_update(LB_TABLE_IDS[table], io, io + 64)) {
      throw new MembraneError("TABLE_FULL", `write LB table ${table} (Wasm): the table is full (${this.ex.lb_capacity(LB_TABLE_IDS[table])} entries)`);
    }
  }

  delete(table: LbTableName, key: Uint8Array): boolean {
    const io = this.area();
    this.core.bytes().set(key, io);
    return this.ex.lb_delete(LB_TABLE_IDS[table], io) !== 0;
  }

  dump(table: LbTableName): Uint8Array[] {
    const id = LB_TABLE_IDS[table];
    const out: Uint8Array[] = [];
    const io = this.area();
    const rec = LB_RECORD[table].key + LB_RECORD[table].value;
    const max = Math.floor(IO_BYTES / rec);
    let cursor = 1;
    do {
      cursor = this.ex.lb_dump(id, cursor, io, max);
      const n = this.ex.lb_dump_count();
      const chunk = this.core.view(io, n * rec).slice();
      for (let i = 0; i < n; i++) out.push(chunk.subarray(i * rec, (i + 1) * rec));
    } while (cursor !== 0);
    return out;
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
