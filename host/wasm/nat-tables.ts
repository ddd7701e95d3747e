/** The Wasm core's NAT tables (assembly/nat-exports.ts) as NatTables. */
import { NAT_STATS, decodeNatStats, type NatStats } from "../generated/layout.js";
import type { CtTableName } from "../conntrack/records.js";
import { NAT_TABLE_NAMES, type NatTables } from "../nat/tables.js";
import { NAT_TABLES, decodeNatRecord, type NatRecord, type NatTableName } from "../nat/records.js";
import type { WasmCore } from "./core.js";
import { MembraneError } from "../errors.js";
import { encodeNat, type ResolvedNat } from "../nat/config.js";

export class WasmNat implements NatTables {
  constructor(private readonly core: WasmCore) {}

  private get ex() {
    return this.core.exports;
  }

  private recordSize(family: number): number {
    return this.ex.nat_key_size(family) + this.ex.nat_value_size(family);
  }

  dump(table: NatTableName): Uint8Array[] {
    const f = NAT_TABLES[table];
    return [...this.core.dumpRecords(this.recordSize(f), (cursor, out, max) => this.ex.nat_dump(f, cursor, out, max))];
  }

  list(table?: NatTableName): NatRecord[] {
    return (table ? [table] : NAT_TABLE_NAMES).flatMap((t) => this.dump(t).map((r) => decodeNatRecord(t, r)));
  }

  info(table: NatTableName): { capacity: number; count: number; recordSize: number } {
    const f = NAT_TABLES[table];
    return { capacity: this.ex.nat_capacity(f), count: this.ex.nat_count(f), recordSize: this.recordSize(f) };
  }

  /** Stores records as dump() gives them (a snapshot's); returns how many fit. */
  restore(table: NatTableName, records: Uint8Array[]): number {
    const f = NAT_TABLES[table];
    return this.core.restoreRecords(table, this.recordSize(f), records, (at, n) => this.ex.nat_restore(f, at, n));
  }

  flush(): void {
    this.ex.nat_flush();
  }

  /**
   * Writes a changed configuration into the running core (validated by the
   * caller against the tables nat_init created: host/nat/live-change.ts); it
   * applies from the next packet on.
   */
  reconfigure(nat: ResolvedNat): void {
    this.core.bytes().set(encodeNat(nat), this.ex.nat_config_ptr());
    const rc = this.ex.nat_reload();
    if (rc !== 0) throw new MembraneError("INTERNAL", `reconfigure NAT: nat_reload returned ${rc} (the NAT tables were never created)`);
  }

  gc(now: number): number {
    return this.ex.nat_gc(now >>> 0);
  }

  /** The conntrack entry with raw key `key` of `table` was deleted: drop its pair. */
  forget(table: CtTableName | string, key: Uint8Array): void {
    const f = table === "tcp4" || table === "any4" ? 4 : table === "tcp6" || table === "any6" ? 6 : 0;
    if (f === 0 || this.ex.nat_key_size(f) === 0) return;
    this.ex.nat_forget(f, this.core.stage(key));
  }

  stats(): Record<NatTableName, NatStats> {
    const read = (f: number) => {
      const ptr = this.ex.nat_stats_ptr(f);
      return decodeNatStats(ptr ? this.core.view(ptr, NAT_STATS.size) : new Uint8Array(NAT_STATS.size));
    };
    return { nat4: read(4), nat6: read(6) };
  }

  /**
   * nat4's + nat6's gc_requests. Asked by the forwarder after every batch
   * (NatGcSignal), so it reads just the two counters, where stats() would
   * decode both records (a few hundred ns, and garbage, per batch).
   */
  gcRequests(): number {
    const mem = this.core.bytes();
    if (this.statsView?.buffer !== mem.buffer) this.statsView = new DataView(mem.buffer);
    if (this.statsAt === undefined) {
      const at = [this.ex.nat_stats_ptr(4), this.ex.nat_stats_ptr(6)];
      // Before nat_init there are no stats (and nothing to cache).
      if (at[0] === 0) return 0;
      this.statsAt = at;
    }
    // Each u64 as two u32 halves: no BigInt to allocate (exact below 2^53).
    const v = this.statsView;
    const a = this.statsAt[0]! + NAT_STATS.offsets.gcRequests;
    const b = this.statsAt[1]! + NAT_STATS.offsets.gcRequests;
    return v.getUint32(a, true) + v.getUint32(a + 4, true) * 2 ** 32 + v.getUint32(b, true) + v.getUint32(b + 4, true) * 2 ** 32;
  }

  /** For gcRequests: a view of the memory (again when it grew) and where each family's stats record is (fixed at nat_init). */
  private statsView?: DataView;
  private statsAt?: number[];
}
