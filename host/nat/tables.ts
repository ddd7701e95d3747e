/**
 * The NAT tables of both datapaths behind one interface: the Wasm core's
 * (through its nat_* exports) and the kernel's maps (nat4, nat6, read and
 * garbage-collected from the host, pairing each entry with its conntrack entry
 * the way the datapaths do).
 */
import { MembraneError } from "../errors.js";
import { NAT_STATS, decodeNatStats, type NatStats } from "../generated/layout.js";
import type { ResolvedOptions } from "../config.js";
import type { WasmCore } from "../wasm/core.js";
import type { BpfMap } from "../bpf/map.js";
import type { CtTableName } from "../conntrack/records.js";
import { joinRecord } from "../conntrack/records.js";
import { encodeNat, natEntries, type ResolvedNat } from "./config.js";
import { NAT_TABLES, decodeNatRecord, ownerKeepsAlive, ownerOf, type NatRecord, type NatTableName } from "./records.js";

export const NAT_TABLE_NAMES = Object.keys(NAT_TABLES) as NatTableName[];

export interface NatTables {
  /** Decoded entries, both halves of every pair. */
  list(table?: NatTableName): NatRecord[];
  /** Raw records (key bytes, then value bytes). */
  dump(table: NatTableName): Uint8Array[];
  /** Removes every entry. */
  flush(): void;
  /** Removes the entries whose conntrack entry is gone, expired or replaced; returns how many. */
  gc(now: number): number;
  stats(): Record<NatTableName, NatStats>;
  /** Grows each time a new flow found no port (or no room): run conntrack GC sooner when it moves. */
  gcRequests(): number;
}

interface NatExports {
  nat_config_ptr(): number;
  nat_init(): number;
  nat_stats_ptr(f: number): number;
  nat_count(f: number): number;
  nat_capacity(f: number): number;
  nat_key_size(f: number): number;
  nat_value_size(f: number): number;
  nat_dump(f: number, cursor: number, out: number, max: number): number;
  dump_count(): number;
  nat_flush(): void;
  nat_gc(now: number): number;
  nat_forget(f: number, key: number): number;
  nat_reload(): number;
  nat_restore(f: number, records: number, count: number): number;
  alloc(size: number): number;
}

const IO_BYTES = 1 << 20;

/** Writes the NAT configuration into a fresh core and creates its tables. */
export function initWasmNat(core: WasmCore, options: ResolvedOptions): void {
  const ex = core.exports as unknown as NatExports;
  core.bytes().set(encodeNat(options.nat), ex.nat_config_ptr());
  const rc = ex.nat_init();
  if (rc === 2) {
    throw new MembraneError("OUT_OF_MEMORY", `create datapath: the NAT tables do not fit in Wasm linear memory; lower nat.entries (${options.nat?.entries})`);
  }
  if (rc !== 0) throw new MembraneError("INTERNAL", `create datapath: nat_init returned ${rc}`);
}

function sumStats(a: NatStats, b: NatStats): NatStats {
  const out = { ...a };
  for (const k of Object.keys(out) as (keyof NatStats)[]) out[k] = a[k] + b[k];
  return out;
}

export class WasmNat implements NatTables {
  private io = 0;

  constructor(private readonly core: WasmCore) {}

  private get ex(): NatExports {
    return this.core.exports as unknown as NatExports;
  }

  dump(table: NatTableName): Uint8Array[] {
    const f = NAT_TABLES[table];
    const rec = this.ex.nat_key_size(f) + this.ex.nat_value_size(f);
    if (rec === 0) return [];
    if (this.io === 0) {
      this.io = this.ex.alloc(IO_BYTES);
      if (this.io === 0) throw new MembraneError("OUT_OF_MEMORY", "dump the NAT table: Wasm linear memory is full");
    }
    const out: Uint8Array[] = [];
    let cursor = 1;
    do {
      cursor = this.ex.nat_dump(f, cursor, this.io, Math.floor(IO_BYTES / rec));
      const n = this.ex.dump_count();
      const chunk = this.core.view(this.io, n * rec).slice();
      for (let i = 0; i < n; i++) out.push(chunk.subarray(i * rec, (i + 1) * rec));
    } while (cursor !== 0);
    return out;
  }

  list(table?: NatTableName): NatRecord[] {
    return (table ? [table] : NAT_TABLE_NAMES).flatMap((t) => this.dump(t).map((r) => decodeNatRecord(t, r)));
  }

  info(table: NatTableName): { capacity: number; count: number; recordSize: number } {
    const f = NAT_TABLES[table];
    return { capacity: this.ex.nat_capacity(f), count: this.ex.nat_count(f), recordSize: this.ex.nat_key_size(f) + this.ex.nat_value_size(f) };
  }

  /** Stores records as dump() gives them (a snapshot's); returns how many fit. */
  restore(table: NatTableName, records: Uint8Array[]): number {
    const f = NAT_TABLES[table];
    const { recordSize } = this.info(table);
    if (recordSize === 0 || records.length === 0) return 0;
    if (this.io === 0) this.io = this.ex.alloc(IO_BYTES);
    if (this.io === 0) throw new MembraneError("OUT_OF_MEMORY", "restore the NAT table: Wasm linear memory is full");
    const max = Math.floor(IO_BYTES / recordSize);
    let stored = 0;
    for (let start = 0; start < records.length; start += max) {
      const part = records.slice(start, start + max);
      const mem = this.core.bytes();
      part.forEach((r, i) => {
        if (r.length !== recordSize) throw new MembraneError("INVALID_INPUT", `restore ${table}: record ${start + i} is ${r.length} bytes, expected ${recordSize}`);
        mem.set(r, this.io + i * recordSize);
      });
      const n = this.ex.nat_restore(f, this.io, part.length);
      stored += n;
      if (n < part.length) break;
    }
    return stored;
  }

  flush(): void {
    this.ex.nat_flush();
  }

  /**
   * Writes a changed configuration into the running core (validated by the
   * caller against the tables nat_init created: host/forwarder/nat-change.ts);
   * it applies from the next packet on.
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
    if (this.io === 0) this.io = this.ex.alloc(IO_BYTES);
    if (this.io === 0) return;
    this.core.bytes().set(key, this.io);
    this.ex.nat_forget(f, this.io);
  }

  stats(): Record<NatTableName, NatStats> {
    const read = (f: number) => {
      const ptr = this.ex.nat_stats_ptr(f);
      return decodeNatStats(ptr ? this.core.view(ptr, NAT_STATS.size) : new Uint8Array(NAT_STATS.size));
    };
    return { nat4: read(4), nat6: read(6) };
  }

  gcRequests(): number {
    const s = this.stats();
    return Number(s.nat4.gcRequests + s.nat6.gcRequests);
  }
}

/** The maps a kernel object carries for NAT, by name. */
export interface KernelMaps {
  map(name: string): BpfMap;
}

const CT_MAP_OF: Record<CtTableName, string> = { tcp4: "ct_tcp4", any4: "ct_any4", tcp6: "ct_tcp6", any6: "ct_any6" };

/** max_entries of the kernel's NAT maps (a map needs at least one). */
export function kernelNatMapSizes(options: ResolvedOptions): Record<string, number> {
  return { nat4: Math.max(1, natEntries(options.nat, 4)), nat6: Math.max(1, natEntries(options.nat, 6)) };
}

/** Writes the NAT configuration into a loaded kernel object. */
export function configureKernelNat(object: KernelMaps, options: ResolvedOptions): void {
  object.map("nat_config").update(new Uint8Array(4), encodeNat(options.nat));
}

export class KernelNat implements NatTables {
  /** Kernel GC runs in the host, so its deletions are counted here. */
  private readonly gcDeleted: Record<NatTableName, bigint> = { nat4: 0n, nat6: 0n };

  constructor(private readonly object: KernelMaps) {}

  dump(table: NatTableName): Uint8Array[] {
    return this.object.map(table).dump().map(([k, v]) => joinRecord(k, v));
  }

  list(table?: NatTableName): NatRecord[] {
    return (table ? [table] : NAT_TABLE_NAMES).flatMap((t) => this.dump(t).map((r) => decodeNatRecord(t, r)));
  }

  flush(): void {
    for (const t of NAT_TABLE_NAMES) this.object.map(t).clear();
  }

  gc(now: number): number {
    let deleted = 0;
    for (const t of NAT_TABLE_NAMES) {
      const f = NAT_TABLES[t];
      const map = this.object.map(t);
      for (const [key, value] of map.dump()) {
        const owner = ownerOf(f, key, value);
        const ct = this.object.map(CT_MAP_OF[owner.table]).lookup(owner.tuple);
        if (!ownerKeepsAlive(ct, owner.created, now) && map.delete(key)) {
          deleted++;
          this.gcDeleted[t]++;
        }
      }
    }
    return deleted;
  }

  stats(): Record<NatTableName, NatStats> {
    const map = this.object.map("nat_stats");
    const key = new Uint8Array(4);
    const read = (idx: number) => {
      new DataView(key.buffer).setUint32(0, idx, true);
      const v = map.lookup(key);
      return v ? map.perCpuValues(v).map((b) => decodeNatStats(b)).reduce(sumStats) : decodeNatStats(new Uint8Array(NAT_STATS.size));
    };
    const s = { nat4: read(0), nat6: read(1) };
    s.nat4.gcDeleted += this.gcDeleted.nat4;
    s.nat6.gcDeleted += this.gcDeleted.nat6;
    return s;
  }

  gcRequests(): number {
    const s = this.stats();
    return Number(s.nat4.gcRequests + s.nat6.gcRequests);
  }
}

