/** The kernel's NAT maps, read and flushed through their pins. */
import { joinRecord } from "../conntrack/records.js";
import { decodeNatRecord, type NatRecord, type NatTableName } from "../nat/records.js";
import { openPinnedMap, withPinnedMap } from "./pinned.js";

export function readPinnedNat(dir: string, tables: readonly NatTableName[]): NatRecord[] {
  return tables.flatMap((t) => withPinnedMap(dir, t, (map) => map.dump().map(([k, v]) => decodeNatRecord(t, joinRecord(k, v))), "NAT"));
}

/**
 * Empties the pinned NAT maps; returns how many entries each held. Every map
 * is found before any is touched, so a missing one changes nothing.
 */
export function flushPinnedNat(dir: string, tables: readonly NatTableName[]): Array<{ table: NatTableName; entries: number }> {
  const maps = tables.map((t) => [t, openPinnedMap(dir, t, "NAT")] as const);
  try {
    return maps.map(([table, map]) => {
      const entries = map.dump().length;
      map.clear();
      return { table, entries };
    });
  } finally {
    for (const [, map] of maps) map.close();
  }
}
