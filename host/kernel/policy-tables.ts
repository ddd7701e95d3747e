/** The kernel program's policy maps (bpf/lib/policy.h) as a PolicyTableStore: map names are the table names. */
import type { BpfObject } from "../bpf/object.js";
import { wrap } from "../errors.js";
import type { PolicyTableName, PolicyTableStore } from "../policy/tables.js";

export class KernelPolicyTables implements PolicyTableStore {
  readonly engine = "bpf";

  constructor(private readonly object: BpfObject) {}

  capacity(table: PolicyTableName): number {
    return this.object.map(table).maxEntries;
  }

  upsert(table: PolicyTableName, key: Uint8Array, value: Uint8Array): void {
    try {
      this.object.map(table).update(key, value);
    } catch (err) {
      throw wrap(`write ${table} (bpf)`, err);
    }
  }

  delete(table: PolicyTableName, key: Uint8Array): boolean {
    return this.object.map(table).delete(key);
  }

  dump(table: PolicyTableName): Array<[Uint8Array, Uint8Array]> {
    return this.object.map(table).dump();
  }
}
