/** The kernel's endpoint, ipcache and policy maps pinned under a directory, as a read-only PolicyTableStore. */
import { InvalidInputError } from "../errors.js";
import type { PolicyTableName, PolicyTableStore } from "../policy/tables.js";
import { withPinnedMap } from "./pinned.js";

export class PinnedPolicyTables implements PolicyTableStore {
  readonly engine = "bpf";
  constructor(private readonly dir: string) {}

  capacity(table: PolicyTableName): number { return withPinnedMap(this.dir, table, (m) => m.maxEntries); }
  dump(table: PolicyTableName): Array<[Uint8Array, Uint8Array]> { return withPinnedMap(this.dir, table, (m) => m.dump()); }
  upsert(table: PolicyTableName): void { throw new InvalidInputError(`${table}: the pinned view is read-only`); }
  delete(table: PolicyTableName): boolean { throw new InvalidInputError(`${table}: the pinned view is read-only`); }
}
