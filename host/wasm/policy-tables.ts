/** The Wasm core's policy tables (assembly/policy-exports.ts) as a PolicyTableStore. */
import { MembraneError } from "../errors.js";
import type { WasmCore } from "./core.js";
import { POLICY_TABLE_IDS, type PolicyTableName, type PolicyTableStore } from "../policy/tables.js";

/** The exports of assembly/policy-exports.ts. */
export interface PolicyCoreExports {
  policy_config_ptr(): number;
  policy_table_capacity(id: number): number;
  policy_table_count(id: number): number;
  policy_table_key_size(id: number): number;
  policy_table_value_size(id: number): number;
  policy_table_upsert(id: number, record: number): number;
  policy_table_delete(id: number, key: number): number;
  policy_table_dump(id: number, cursor: number, out: number, max: number): number;
  policy_table_flush(id: number): void;
  ipcache_identity(family: number, addr: number): number;
}

const IO_BYTES = 64 * 1024;

export class WasmPolicyTables implements PolicyTableStore {
  readonly engine = "wasm";
  private io = 0;

  constructor(private readonly core: WasmCore) {}

  private area(): number {
    if (this.io === 0) {
      this.io = this.core.exports.alloc(IO_BYTES);
      if (this.io === 0) throw new MembraneError("OUT_OF_MEMORY", "policy tables: no Wasm memory left for the I/O area");
    }
    return this.io;
  }

  private sizes(table: PolicyTableName): { key: number; value: number } {
    const id = POLICY_TABLE_IDS[table];
    return { key: this.core.exports.policy_table_key_size(id), value: this.core.exports.policy_table_value_size(id) };
  }

  capacity(table: PolicyTableName): number {
    return this.core.exports.policy_table_capacity(POLICY_TABLE_IDS[table]);
  }

  count(table: PolicyTableName): number {
    return this.core.exports.policy_table_count(POLICY_TABLE_IDS[table]);
  }

  upsert(table: PolicyTableName, key: Uint8Array, value: Uint8Array): void {
    const s = this.sizes(table);
    if (key.length !== s.key || value.length !== s.value) {
      throw new MembraneError("INVALID_INPUT", `write ${table}: record is ${key.length}+${value.length} bytes, expected ${s.key}+${s.value}`);
    }
    const at = this.area();
    const mem = this.core.bytes();
    mem.set(key, at);
    mem.set(value, at + key.length);
    if (!this.core.exports.policy_table_upsert(POLICY_TABLE_IDS[table], at)) {
      throw new MembraneError("TABLE_FULL", `write ${table} (wasm): the table is full (${this.capacity(table)} entries)`);
    }
  }

  delete(table: PolicyTableName, key: Uint8Array): boolean {
    const at = this.area();
    this.core.bytes().set(key, at);
    return this.core.exports.policy_table_delete(POLICY_TABLE_IDS[table], at) !== 0;
  }

  dump(table: PolicyTableName): Array<[Uint8Array, Uint8Array]> {
    const id = POLICY_TABLE_IDS[table];
    const { key, value } = this.sizes(table);
    const rec = key + value;
    const max = Math.floor(IO_BYTES / rec);
    const out: Array<[Uint8Array, Uint8Array]> = [];
    let cursor = 1;
    do {
      const at = this.area();
      cursor = this.core.exports.policy_table_dump(id, cursor, at, max);
      const n = this.core.exports.dump_count();
      const chunk = this.core.view(at, n * rec).slice();
      for (let i = 0; i < n; i++) out.push([chunk.subarray(i * rec, i * rec + key), chunk.subarray(i * rec + key, (i + 1) * rec)]);
    } while (cursor !== 0);
    return out;
  }

  /** The identity the ipcache gives `addr` (4 or 16 bytes, network order): longest prefix, else world. */
  identityOf(addr: Uint8Array): number {
    const at = this.area();
    this.core.bytes().set(addr, at);
    return this.core.exports.ipcache_identity(addr.length === 4 ? 4 : 6, at) >>> 0;
  }
}
