/** The LB tables as kernel maps of a loaded BPF object (bpf/lib/lb.h). */
import type { BpfObject } from "../bpf/object.js";
import type { BpfMap } from "../bpf/map.js";
import { MembraneError, wrap } from "../errors.js";
import { encodeLbOptions, type ResolvedLbOptions } from "../lb/options.js";
import { LB_KERNEL_MAP, joinKeyValue, type LbTableName, type LbTableWriter } from "../lb/tables.js";

/** Writes struct lb_config into the object's lb_config map. */
export function configureKernelLb(object: BpfObject, options: ResolvedLbOptions): void {
  object.map("lb_config").update(new Uint8Array(4), encodeLbOptions(options));
}

/** Row `row` (m backend ids) of the lb_maglev array map; entries never written read as 0. */
export function readMaglevRowFrom(map: BpfMap, row: number, m: number): Uint32Array {
  const key = new Uint8Array(4);
  const kv = new DataView(key.buffer);
  return Uint32Array.from({ length: m }, (_, i) => {
    kv.setUint32(0, row * m + i, true);
    const v = map.lookup(key);
    return v ? new DataView(v.buffer, v.byteOffset).getUint32(0, true) : 0;
  });
}

export class KernelLbTables implements LbTableWriter {
  readonly engine = "bpf" as const;

  constructor(private readonly object: BpfObject, private readonly options: ResolvedLbOptions) {}

  update(table: LbTableName, key: Uint8Array, value: Uint8Array): void {
    try {
      this.object.map(LB_KERNEL_MAP[table]).update(key, value);
    } catch (err) {
      throw wrap(`write LB table ${table} (kernel map ${LB_KERNEL_MAP[table]})`, err);
    }
  }

  delete(table: LbTableName, key: Uint8Array): boolean {
    return this.object.map(LB_KERNEL_MAP[table]).delete(key);
  }

  dump(table: LbTableName): Uint8Array[] {
    return this.object.map(LB_KERNEL_MAP[table]).dump().map(([k, v]) => joinKeyValue(k, v));
  }

  private checkRow(row: number): void {
    if (!Number.isInteger(row) || row < 0 || row >= this.options.maglevRows) {
      throw new MembraneError("INVALID_INPUT", `Maglev row ${row} is outside 0..${this.options.maglevRows - 1}`);
    }
  }

  writeMaglevRow(row: number, ids: Uint32Array): void {
    this.checkRow(row);
    const m = this.options.maglevM;
    if (ids.length !== m) throw new MembraneError("INVALID_INPUT", `Maglev row has ${ids.length} entries, the datapath ${m}`);
    const map = this.object.map("lb_maglev");
    const key = new Uint8Array(4), value = new Uint8Array(4);
    const kv = new DataView(key.buffer), vv = new DataView(value.buffer);
    for (let i = 0; i < m; i++) {
      kv.setUint32(0, row * m + i, true);
      vv.setUint32(0, ids[i], true);
      map.update(key, value);
    }
  }

  readMaglevRow(row: number): Uint32Array {
    this.checkRow(row);
    return readMaglevRowFrom(this.object.map("lb_maglev"), row, this.options.maglevM);
  }
}
