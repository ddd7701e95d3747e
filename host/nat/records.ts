/**
 * NAT records as people and programs read them, and the pairing rule in
 * TypeScript (for GC over kernel maps): which conntrack tuple owns an entry.
 * The same rule as assembly/nat-table.ts and bpf/lib/nat.h.
 */
import {
  CT_ENTRY, CT_TUPLE4, CT_TUPLE6, NAT_ENTRY4, NAT_ENTRY6, NAT_KEY4, NAT_KEY6, NatDir, decodeNatEntry4,
  decodeNatEntry6, decodeNatKey4, decodeNatKey6,
} from "../generated/layout.js";
import { formatIp } from "../packet/address.js";
import type { CtTableName } from "../conntrack/records.js";
import { IpProto, isIcmpProto } from "../packet/ip-proto.js";

export type NatFamily = 4 | 6;
export const NAT_TABLES = { nat4: 4, nat6: 6 } as const;
export type NatTableName = keyof typeof NAT_TABLES;

export interface NatRecord {
  table: NatTableName;
  /** egress: the forward half (pod -> remote, translated source); ingress: the reverse half. */
  dir: "egress" | "ingress";
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** egress: the new source; ingress: the original address and port restored as destination. */
  toAddr: string;
  toPort: number;
  /** Creation time of the owning conntrack entry. */
  created: number;
  key: Uint8Array;
}

const ipv4 = (n: number) => formatIp(Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255));

export function keySize(f: NatFamily): number {
  return f === 4 ? NAT_KEY4.size : NAT_KEY6.size;
}

export function decodeNatRecord(table: NatTableName, record: Uint8Array): NatRecord {
  const f = NAT_TABLES[table];
  const key = record.slice(0, keySize(f));
  if (f === 4) {
    const k = decodeNatKey4(record);
    const e = decodeNatEntry4(record, NAT_KEY4.size);
    return {
      table, dir: k.dir === NatDir.NAT_DIR_EGRESS ? "egress" : "ingress", proto: k.nexthdr, src: ipv4(k.saddr), dst: ipv4(k.daddr),
      sport: k.sport, dport: k.dport, toAddr: ipv4(e.addr), toPort: e.port, created: e.created, key,
    };
  }
  const k = decodeNatKey6(record);
  const e = decodeNatEntry6(record, NAT_KEY6.size);
  return {
    table, dir: k.dir === NatDir.NAT_DIR_EGRESS ? "egress" : "ingress", proto: k.nexthdr, src: formatIp(k.saddr), dst: formatIp(k.daddr),
    sport: k.sport, dport: k.dport, toAddr: formatIp(e.addr), toPort: e.port, created: e.created, key,
  };
}


/**
 * The conntrack table and tuple bytes (flags TUPLE_F_OUT) owning a NAT entry
 * (raw key + value bytes), and the creation time the entry recorded.
 */
export function ownerOf(f: NatFamily, key: Uint8Array, value: Uint8Array): { table: CtTableName; tuple: Uint8Array; created: number } {
  const K = f === 4 ? NAT_KEY4.offsets : NAT_KEY6.offsets;
  const E = f === 4 ? NAT_ENTRY4.offsets : NAT_ENTRY6.offsets;
  const alen = f === 4 ? 4 : 16;
  const tupleSize = f === 4 ? CT_TUPLE4.size : CT_TUPLE6.size;
  const T = f === 4 ? CT_TUPLE4.offsets : CT_TUPLE6.offsets;
  const proto = key[K.nexthdr];
  const created = new DataView(value.buffer, value.byteOffset).getUint32(E.created, true);
  const tuple = new Uint8Array(tupleSize);
  if (key[K.dir] === NatDir.NAT_DIR_EGRESS) {
    tuple.set(key.subarray(0, tupleSize)); // the forward key starts with the tuple; the dir byte is TUPLE_F_OUT
  } else {
    const port = value.subarray(E.port, E.port + 2);
    tuple.set(value.subarray(E.addr, E.addr + alen), T.saddr);
    tuple.set(key.subarray(K.saddr, K.saddr + alen), T.daddr);
    if (isIcmpProto(proto)) tuple.set(port, T.dport);
    else {
      tuple.set(port, T.sport);
      tuple.set(key.subarray(K.sport, K.sport + 2), T.dport);
    }
    tuple[T.nexthdr] = proto;
  }
  const tcp = proto === IpProto.PROTO_TCP;
  const table: CtTableName = f === 4 ? (tcp ? "tcp4" : "any4") : (tcp ? "tcp6" : "any6");
  return { table, tuple, created };
}

/** Whether a conntrack value (raw ct_entry bytes, or none) keeps an entry created at `created` alive at `now`. */
export function ownerKeepsAlive(ct: Uint8Array | undefined, created: number, now: number): boolean {
  if (!ct) return false;
  const v = new DataView(ct.buffer, ct.byteOffset);
  return v.getUint32(CT_ENTRY.offsets.lifetime, true) >= now && v.getUint32(CT_ENTRY.offsets.created, true) === created;
}
