/**
 * The kernel's NAT maps (nat4, nat6) as NatTables: read and garbage-collected
 * from the host, pairing each entry with its conntrack entry the way the
 * datapaths do.
 */
import { NAT_STATS, decodeNatStats, type NatStats } from "../generated/layout.js";
import type { ResolvedOptions } from "../config.js";
import type { BpfMap } from "../bpf/map.js";
import type { CtTableName } from "../conntrack/records.js";
import { joinRecord } from "../conntrack/records.js";
import { encodeNat, natEntries } from "../nat/config.js";
import { NAT_TABLE_NAMES, type NatTables } from "../nat/tables.js";
import { NAT_TABLES, decodeNatRecord, ownerKeepsAlive, ownerOf, type NatRecord, type NatTableName } from "../nat/records.js";

function sumStats(a: NatStats, b: NatStats): NatStats {
  const out = { ...a };
  for (const k of Object.keys(out) as (keyof NatStats)[]) out[k] = a[k] + b[k];
  return out;
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

