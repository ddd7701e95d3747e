/** The Wasm core's policy tables (assembly/policy-exports.ts) as a PolicyTableStore. */
import { MembraneError } from "../errors.js";
import type { WasmCore } from "./core.js";
import { POLICY_TABLE_IDS, type PolicyTableName, type PolicyTableStore } from "../policy/tables.js";

export class WasmPolicyTables implements PolicyTableStore {
  readonly engine = "wasm";

  constructor(private readonly core: WasmCore) {}

  private get ex() {
    return this.core.exports;
  }

  private sizes(table: PolicyTableName): { key: number; value: number } {
    const id = POLICY_TABLE_IDS[table];
    return { key: this.ex.policy_table_key_size(id), value: this.ex.policy_table_value_size(id) };
  }

  capacity(table: PolicyTableName): number {
    return this.ex.policy_table_capacity(POLICY_TABLE_IDS[table]);
  }

  count(table: PolicyTableName): number {
    return this.ex.policy_table_count(POLICY_TABLE_IDS[table]);
  }

  upsert(table: PolicyTableName, key: Uint8Array, value: Uint8Array): void {
    const s = this.sizes(table);
    if (key.length !== s.key || value.length !== s.value) {
      throw new MembraneError("INVALID_INPUT", `write ${table}: record is ${key.length}+${value.length} bytes, expected ${s.key}+${s.value}`);
    }
    if (!this.ex.policy_table_upsert(POLICY_TABLE_IDS[table], this.core.stage(key, value))) {
      throw new MembraneError("TABLE_FULL", `write ${table} (wasm): the table is full (${this.capacity(table)} entries)`);
    }
  }

  delete(table: PolicyTableName, key: Uint8Array): boolean {
    return this.ex.policy_table_delete(POLICY_TABLE_IDS[table], this.core.stage(key)) !== 0;
  }

  dump(table: PolicyTableName): Array<[Uint8Array, Uint8Array]> {
    const id = POLICY_TABLE_IDS[table];
    const { key, value } = this.sizes(table);
    const records = this.core.dumpRecords(key + value, (cursor, out, max) => this.ex.policy_table_dump(id, cursor, out, max));
    return [...records].map((r) => [r.subarray(0, key), r.subarray(key)]);
  }

  /** The identity the ipcache gives `addr` (4 or 16 bytes, network order): longest prefix, else world. */
  identityOf(addr: Uint8Array): number {
    return this.ex.ipcache_identity(addr.length === 4 ? 4 : 6, this.core.stage(addr)) >>> 0;
  }
}
