/** Conntrack records as people and programs read them, decoded from the shared layout. */
import {
  CT_TUPLE4, CT_TUPLE6, ctEntryFlagsName, decodeCtEntry, decodeCtTuple4, decodeCtTuple6, tupleFlagsName,
  CtEntryFlags, TcpFlags, type CtEntry,
} from "../generated/layout.js";
import { formatIp } from "../packet/address.js";
import { isIcmpProto } from "../packet/ip-proto.js";
import { TCP_FLAG_ORDER } from "../packet/decode.js";
import { hostPort } from "../format/address.js";

function ipv4FromNumber(n: number): Uint8Array {
  return Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
}


export type CtTableName = "tcp4" | "any4" | "tcp6" | "any6";
export const CT_TABLES: readonly CtTableName[] = ["tcp4", "any4", "tcp6", "any6"];

export interface CtTuple {
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: number;
  /** enum tuple_flags value. */
  flags: number;
}

export interface CtRecord {
  table: CtTableName;
  tuple: CtTuple;
  entry: CtEntry;
  /** The raw key bytes, as stored in both datapaths. */
  key: Uint8Array;
}

/** A table record as both datapaths dump it: key bytes, then value bytes. */
export function joinRecord(key: Uint8Array, value: Uint8Array): Uint8Array {
  const record = new Uint8Array(key.length + value.length);
  record.set(key);
  record.set(value, key.length);
  return record;
}

export function decodeCtRecord(table: CtTableName, record: Uint8Array): CtRecord {
  const v6 = table.endsWith("6");
  const keySize = v6 ? CT_TUPLE6.size : CT_TUPLE4.size;
  const key = record.slice(0, keySize);
  const entry = decodeCtEntry(record, keySize);
  if (v6) {
    const t = decodeCtTuple6(record);
    return { table, key, entry, tuple: { family: 6, src: formatIp(t.saddr), dst: formatIp(t.daddr), sport: t.sport, dport: t.dport, proto: t.nexthdr, flags: t.flags } };
  }
  const t = decodeCtTuple4(record);
  return { table, key, entry, tuple: { family: 4, src: formatIp(ipv4FromNumber(t.saddr)), dst: formatIp(ipv4FromNumber(t.daddr)), sport: t.sport, dport: t.dport, proto: t.nexthdr, flags: t.flags } };
}

export { PROTO_NAMES } from "../packet/ip-proto.js";

/** "10.0.0.1:1234 -> 10.0.0.2:80" (IPv6 addresses in brackets); ICMP flows by echo identifier. */
export function formatTuple(t: CtTuple): string {
  if (isIcmpProto(t.proto)) return `${t.src} -> ${t.dst} id=${t.sport || t.dport}`;
  return `${hostPort(t.src, t.sport)} -> ${hostPort(t.dst, t.dport)}`;
}

/** "OUT", "IN", ... for the tuple flags byte. */
export function formatTupleFlags(flags: number): string {
  return (tupleFlagsName[flags] ?? String(flags)).replace("TUPLE_F_", "");
}

/** "tx-closing,seen-non-syn" for ct_entry.flags. */
export function formatEntryFlags(flags: number): string {
  const names: string[] = [];
  for (const bit of Object.values(CtEntryFlags)) {
    if (flags & bit) names.push(ctEntryFlagsName[bit].replace("CT_F_", "").toLowerCase().replace(/_/g, "-"));
  }
  return names.join(",") || "-";
}

/** "SA", "FPA": the TCP flags seen, in tcpdump's letters. */
export function formatTcpFlags(flags: number): string {
  // SYN first, as people read a handshake ("SA"), then the rest in header bit order.
  const letters = [...TCP_FLAG_ORDER].sort(([a], [b]) => (a === TcpFlags.TCP_SYN ? -1 : b === TcpFlags.TCP_SYN ? 1 : a - b));
  return letters.filter(([bit]) => flags & bit).map(([, l]) => l).join("") || "-";
}
