/** The kernel's LB maps pinned under a directory, read-only (for `membrane bpf lb list`). */
import { join } from "node:path";
import { InvalidInputError } from "../errors.js";
import { decodeLbConfig } from "../generated/layout.js";
import type { LbTableReader } from "../lb/listing.js";
import { LB_KERNEL_MAP, joinKeyValue, type LbTableName } from "../lb/tables.js";
import { readMaglevRowFrom } from "./lb-tables.js";
import { withPinnedMap } from "./pinned.js";

export class PinnedLbTables implements LbTableReader {
  readonly engine = "bpf" as const;
  constructor(private readonly dir: string) {}

  dump(table: LbTableName): Uint8Array[] {
    return withPinnedMap(this.dir, LB_KERNEL_MAP[table], (m) => m.dump().map(([k, v]) => joinKeyValue(k, v)));
  }

  readMaglevRow(row: number): Uint32Array {
    const config = withPinnedMap(this.dir, "lb_config", (m) => m.lookup(new Uint8Array(4)));
    if (!config) throw new InvalidInputError(`read ${join(this.dir, "lb_config")}: no LB configuration in it`);
    const { maglevM: m, maglevRows } = decodeLbConfig(config);
    if (row >= maglevRows) throw new InvalidInputError(`Maglev row ${row} is outside 0..${maglevRows - 1} (lb_config)`);
    return withPinnedMap(this.dir, "lb_maglev", (map) => readMaglevRowFrom(map, row, m));
  }
}
