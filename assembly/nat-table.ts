// The SNAT tables (one per family) and the rules tying a pair to its
// conntrack entry (bpf/include/types/nat.h): a forward key is the flow's
// conntrack tuple with TUPLE_F_OUT, a reverse key is derived from the forward
// key and entry, and a pair is live exactly while that conntrack entry is live
// and has the creation time the pair recorded.
import {
  CT_ENTRY_CREATED, CT_ENTRY_LIFETIME, CT_TABLE_ANY4, CT_TABLE_ANY6, CT_TABLE_TCP4, CT_TABLE_TCP6, CT_TUPLE4_SIZE,
  CT_TUPLE6_SIZE, NAT_DIR_EGRESS, NAT_DIR_INGRESS, NAT_ENTRY4_CREATED, NAT_ENTRY4_PORT, NAT_ENTRY4_SIZE,
  NAT_ENTRY6_CREATED, NAT_ENTRY6_PORT, NAT_ENTRY6_SIZE, NAT_KEY4_DADDR, NAT_KEY4_DIR, NAT_KEY4_DPORT,
  NAT_KEY4_NEXTHDR, NAT_KEY4_SADDR, NAT_KEY4_SIZE, NAT_KEY4_SPORT, NAT_KEY6_DADDR, NAT_KEY6_DIR, NAT_KEY6_DPORT,
  NAT_KEY6_NEXTHDR, NAT_KEY6_SADDR, NAT_KEY6_SIZE, NAT_KEY6_SPORT, NAT_STATS_GC_DELETED, NAT_STATS_SIZE,
} from "./generated/layout";
import { Table, keyAddr, slotAddr, tableCreate, tableLookup, tableRemove, tableHighWater, tableSlotUsed } from "./table";
import { table } from "./tables";
import { regionAlloc } from "./region";
import { natMax4, natMax6, natSeed } from "./nat-config";
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP } from "./parse";

let nat4: usize = 0;
let nat6: usize = 0;
export let natStatsBase: usize = 0; // struct nat_stats[2]: IPv4, IPv6

// Zero-padded scratch keys (table keys are compared as whole 64-bit words).
export const natKeyA = memory.data(48, 16);
export const natKeyB = memory.data(48, 16);
const ctKey = memory.data(48, 16);

export function natCreateTables(): bool {
  const seed = (<u64>natSeed << 32) ^ 0x2545F4914F6CDD1D;
  const t4 = tableCreate(natMax4, NAT_KEY4_SIZE, NAT_ENTRY4_SIZE, seed);
  const t6 = tableCreate(natMax6, NAT_KEY6_SIZE, NAT_ENTRY6_SIZE, seed + 1);
  natStatsBase = regionAlloc(2 * NAT_STATS_SIZE);
  if (t4 === null || t6 === null || natStatsBase == 0) return false;
  nat4 = changetype<usize>(t4);
  nat6 = changetype<usize>(t6);
  return true;
}

export function natReady(): bool {
  return nat4 != 0;
}

// @ts-ignore: decorator
@inline export function natTable(family: i32): Table {
  return changetype<Table>(family == 4 ? nat4 : nat6);
}

// @ts-ignore: decorator
@inline export function natStats(family: i32): usize {
  return natStatsBase + (family == 4 ? 0 : NAT_STATS_SIZE);
}

export function natBump(family: i32, field: i32): void {
  const s = natStats(family) + field;
  store<u64>(s, load<u64>(s) + 1);
}

// ---- field access by family ----
// @ts-ignore: decorator
@inline export function kSaddr(f: i32): i32 { return f == 4 ? NAT_KEY4_SADDR : NAT_KEY6_SADDR; }
// @ts-ignore: decorator
@inline export function kDaddr(f: i32): i32 { return f == 4 ? NAT_KEY4_DADDR : NAT_KEY6_DADDR; }
// @ts-ignore: decorator
@inline export function kSport(f: i32): i32 { return f == 4 ? NAT_KEY4_SPORT : NAT_KEY6_SPORT; }
// @ts-ignore: decorator
@inline export function kDport(f: i32): i32 { return f == 4 ? NAT_KEY4_DPORT : NAT_KEY6_DPORT; }
// @ts-ignore: decorator
@inline export function kProto(f: i32): i32 { return f == 4 ? NAT_KEY4_NEXTHDR : NAT_KEY6_NEXTHDR; }
// @ts-ignore: decorator
@inline export function kDir(f: i32): i32 { return f == 4 ? NAT_KEY4_DIR : NAT_KEY6_DIR; }
// @ts-ignore: decorator
@inline export function ePort(f: i32): i32 { return f == 4 ? NAT_ENTRY4_PORT : NAT_ENTRY6_PORT; }
// @ts-ignore: decorator
@inline export function eCreated(f: i32): i32 { return f == 4 ? NAT_ENTRY4_CREATED : NAT_ENTRY6_CREATED; }
// @ts-ignore: decorator
@inline export function addrLen(f: i32): usize { return f == 4 ? 4 : 16; }

export function isIcmp(proto: i32): bool {
  return proto == PROTO_ICMP || proto == PROTO_ICMPV6;
}

/** Writes a zero-padded key. Ports are network byte order, as loaded from packets. */
export function natWriteKey(key: usize, f: i32, saddr: usize, daddr: usize, sport: u16, dport: u16, proto: i32, dir: i32): void {
  memory.fill(key, 0, 48);
  memory.copy(key + kSaddr(f), saddr, addrLen(f));
  memory.copy(key + kDaddr(f), daddr, addrLen(f));
  store<u16>(key + kSport(f), sport);
  store<u16>(key + kDport(f), dport);
  store<u8>(key + kProto(f), <u8>proto);
  store<u8>(key + kDir(f), <u8>dir);
}

/**
 * The reverse key of the pair whose forward half is (`fwd`, `entry`): a reply from
 * the remote end to the translated address and port (for echo: identifier in sport).
 */
export function reverseOf(out: usize, f: i32, fwd: usize, entry: usize): void {
  const proto = <i32>load<u8>(fwd + kProto(f));
  const port = load<u16>(entry + ePort(f));
  if (isIcmp(proto)) natWriteKey(out, f, fwd + kDaddr(f), entry, port, 0, proto, NAT_DIR_INGRESS);
  else natWriteKey(out, f, fwd + kDaddr(f), entry, load<u16>(fwd + kDport(f)), port, proto, NAT_DIR_INGRESS);
}

/** The forward key (= conntrack tuple) of the pair whose reverse half is (`rev`, `entry`). */
export function forwardOf(out: usize, f: i32, rev: usize, entry: usize): void {
  const proto = <i32>load<u8>(rev + kProto(f));
  const port = load<u16>(entry + ePort(f));
  if (isIcmp(proto)) natWriteKey(out, f, entry, rev + kSaddr(f), 0, port, proto, NAT_DIR_EGRESS);
  else natWriteKey(out, f, entry, rev + kSaddr(f), port, load<u16>(rev + kSport(f)), proto, NAT_DIR_EGRESS);
}

/** Whether the conntrack entry of forward key `fwd` is live and was created at `created`. */
export function ownerLive(f: i32, fwd: usize, created: u32, now: u32): bool {
  const proto = <i32>load<u8>(fwd + kProto(f));
  const id = f == 4 ? (proto == PROTO_TCP ? CT_TABLE_TCP4 : CT_TABLE_ANY4) : (proto == PROTO_TCP ? CT_TABLE_TCP6 : CT_TABLE_ANY6);
  // The forward key's first bytes are the conntrack tuple, and NAT_DIR_EGRESS is TUPLE_F_OUT.
  const n = f == 4 ? CT_TUPLE4_SIZE : CT_TUPLE6_SIZE;
  memory.fill(ctKey, 0, 48);
  memory.copy(ctKey, fwd, n);
  const t = table(id);
  const idx = tableLookup(t, ctKey);
  if (idx == 0) return false;
  const e = slotAddr(t, idx);
  return load<u32>(e + CT_ENTRY_LIFETIME) >= now && load<u32>(e + CT_ENTRY_CREATED) == created;
}

/** Whether slot `idx` (either half) belongs to a live conntrack entry. */
export function slotLive(f: i32, idx: u32, now: u32): bool {
  const t = natTable(f);
  const key = keyAddr(t, idx);
  const e = slotAddr(t, idx);
  const created = load<u32>(e + eCreated(f));
  if (load<u8>(key + kDir(f)) == NAT_DIR_EGRESS) return ownerLive(f, key, created, now);
  forwardOf(natKeyB, f, key, e);
  return ownerLive(f, natKeyB, created, now);
}

/** Whether the entry in `idx` is the other half of (`key`, `entry`), not a newer mapping. */
function isPartner(f: i32, t: Table, idx: u32, key: usize, entry: usize): bool {
  const other = slotAddr(t, idx);
  if (load<u32>(other + eCreated(f)) != load<u32>(entry + eCreated(f))) return false;
  const otherKey = keyAddr(t, idx);
  // The partner's own derivation must lead back to `key`.
  if (load<u8>(key + kDir(f)) == NAT_DIR_EGRESS) forwardOf(ctKey, f, otherKey, other);
  else reverseOf(ctKey, f, otherKey, other);
  const words = f == 4 ? 2 : 5;
  for (let i = 0; i < words; i++) if (load<u64>(ctKey + (<usize>i << 3)) != load<u64>(key + (<usize>i << 3))) return false;
  return true;
}

/** Removes the entry in `idx` and its partner, if the partner points back at it. Returns entries removed. */
export function removePair(f: i32, idx: u32): u32 {
  const t = natTable(f);
  const key = keyAddr(t, idx);
  const e = slotAddr(t, idx);
  if (load<u8>(key + kDir(f)) == NAT_DIR_EGRESS) reverseOf(natKeyB, f, key, e);
  else forwardOf(natKeyB, f, key, e);
  const other = tableLookup(t, natKeyB);
  let removed: u32 = 1;
  if (other != 0 && isPartner(f, t, other, key, e)) {
    tableRemove(t, other);
    removed++;
  }
  tableRemove(t, idx);
  return removed;
}

/** GC: removes every entry whose conntrack entry is gone, expired or replaced. Returns how many. */
export function natGcFamily(f: i32, now: u32): u32 {
  const t = natTable(f);
  const end = tableHighWater(t);
  let deleted: u32 = 0;
  for (let idx: u32 = 1; idx < end; idx++) {
    if (!tableSlotUsed(t, idx) || slotLive(f, idx, now)) continue;
    tableRemove(t, idx);
    deleted++;
  }
  const s = natStats(f) + NAT_STATS_GC_DELETED;
  store<u64>(s, load<u64>(s) + deleted);
  return deleted;
}

/** Removes the pair owned by conntrack tuple `ct` (a deleted conntrack entry); returns entries removed. */
export function natForgetFlow(f: i32, ct: usize): u32 {
  const n = f == 4 ? CT_TUPLE4_SIZE : CT_TUPLE6_SIZE;
  if (load<u8>(ct + n - 1) != NAT_DIR_EGRESS) return 0; // only egress-created flows are translated
  memory.fill(natKeyA, 0, 48);
  memory.copy(natKeyA, ct, n);
  const t = natTable(f);
  const idx = tableLookup(t, natKeyA);
  return idx == 0 ? 0 : removePair(f, idx);
}
