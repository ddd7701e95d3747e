/** The kernel's conntrack maps, read from their pins. */
import { decodeCtRecord, joinRecord, type CtRecord, type CtTableName } from "../conntrack/records.js";
import { withPinnedMap } from "./pinned.js";

export { monotonicSeconds } from "./pinned.js";

export function readPinnedConntrack(dir: string, tables: readonly CtTableName[]): CtRecord[] {
  return tables.flatMap((table) =>
    withPinnedMap(dir, `ct_${table}`, (map) => map.dump().map(([key, value]) => decodeCtRecord(table, joinRecord(key, value))), "conntrack"));
}
