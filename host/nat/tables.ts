/**
 * The NAT tables of both datapaths behind one interface: the Wasm core's
 * (host/wasm/nat-tables.ts) and the kernel's maps (host/kernel/nat-tables.ts).
 */
import type { NatStats } from "../generated/layout.js";
import { NAT_TABLES, type NatRecord, type NatTableName } from "./records.js";

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

