// Connection tracking, with Cilium's semantics (shared/REFERENCE.md):
// - lookup order: the reverse tuple first (a reply or related packet wins), then
//   the forward tuple; a miss creates the entry (NEW);
// - TCP without a state machine: FIN closes its direction, RST closes both, both
//   closed means the close timeout; the SYN timeout applies until a packet
//   without SYN is seen;
// - a SYN on a closing entry starts a new connection on a reused 5-tuple: it is
//   NEW (so policy judges it again, as Cilium judges CT_REOPENED). In the
//   original direction ctCreate replaces the entry; in the reply direction the
//   new connection runs the other way, so it gets its own entry and the old one
//   is retired when that is created. Refused, the old entry stays as it was;
// - ICMP errors are RELATED to the flow of the packet they quote;
// - an entry whose lifetime has passed is treated as absent (Cilium 1.5 still
//   matched it until GC; the kernel program here does the same as this file).
// Tuples are stored as the creating packet saw them (see bpf/include/types/ct.h).
import {
  CT_EGRESS, CT_ENTRY_CREATED, CT_ENTRY_FLAGS, CT_ENTRY_LIFETIME, CT_ENTRY_RX_BYTES, CT_ENTRY_RX_FLAGS_SEEN,
  CT_ENTRY_RX_PACKETS, CT_ENTRY_TX_BYTES, CT_ENTRY_TX_FLAGS_SEEN, CT_ENTRY_TX_PACKETS, CT_ESTABLISHED, CT_FULL_DROP,
  CT_F_RX_CLOSING, CT_F_SEEN_NON_SYN, CT_F_TX_CLOSING, CT_INGRESS, CT_NEW, CT_NONE, CT_RELATED, CT_REPLY,
  CT_STATS_CREATED, CT_STATS_CREATE_FAILED, CT_STATS_EVICTED, CT_TABLE_ANY4, CT_TABLE_ANY6, CT_TABLE_TCP4,
  CT_TABLE_TCP6, CT_TUPLE4_DADDR, CT_TUPLE4_DPORT, CT_TUPLE4_FLAGS, CT_TUPLE4_NEXTHDR, CT_TUPLE4_SADDR,
  CT_TUPLE4_SPORT, CT_TUPLE6_DADDR, CT_TUPLE6_DPORT, CT_TUPLE6_FLAGS, CT_TUPLE6_NEXTHDR, CT_TUPLE6_SADDR,
  CT_TUPLE6_SPORT, DIR_AUTO, DROP_CT_CREATE_FAILED, DROP_CT_INVALID_HDR, DROP_ICMP_NO_FLOW, TUPLE_F_IN,
  TUPLE_F_OUT,
} from "./generated/layout";
import {
  cfgFullPolicy, cfgTimeoutAny, cfgTimeoutClose, cfgTimeoutSyn, cfgTimeoutTcp,
} from "./config";
import {
  PROTO_TCP, TCP_FIN, TCP_RST, TCP_SYN, iDaddr, iDport, iProto, iSaddr, iSport, pDaddr, pDport, pFamily,
  pIcmpError, pL3Len, pProto, pSaddr, pSport, pTcpFlags,
} from "./parse";
import { Table, slotAddr, tableInsert, tableLookup, tableVictim, tableRemove, tableTouch } from "./table";
import { statsOf, table } from "./tables";

// Zero-padded scratch keys: forward and reverse tuple of the packet being decided.
const keyFwd = memory.data(48, 16);
const keyRev = memory.data(48, 16);

// ---- outputs of ctLookup / ctCreate ----
export let ctResult: i32 = 0;
export let ctDir: i32 = 0;
export let ctTableId: i32 = 0;
export let ctEntry: usize = 0; // the entry, for later stages (LB, NAT, policy)
// A closing entry in the reply direction that a new flow replaces (its key is in keyRev).
let ctRetireReverse: bool = false;

export function writeTuple(key: usize, saddr: usize, daddr: usize, sport: u16, dport: u16, proto: i32): void {
  if (pFamily == 4) {
    store<u32>(key + CT_TUPLE4_SADDR, load<u32>(saddr));
    store<u32>(key + CT_TUPLE4_DADDR, load<u32>(daddr));
    store<u16>(key + CT_TUPLE4_SPORT, sport);
    store<u16>(key + CT_TUPLE4_DPORT, dport);
    store<u8>(key + CT_TUPLE4_NEXTHDR, <u8>proto);
    store<u8>(key + CT_TUPLE4_FLAGS, 0);
    store<u16>(key + 14, 0);
  } else {
    memory.copy(key + CT_TUPLE6_SADDR, saddr, 16);
    memory.copy(key + CT_TUPLE6_DADDR, daddr, 16);
    store<u16>(key + CT_TUPLE6_SPORT, sport);
    store<u16>(key + CT_TUPLE6_DPORT, dport);
    store<u8>(key + CT_TUPLE6_NEXTHDR, <u8>proto);
    store<u8>(key + CT_TUPLE6_FLAGS, 0);
    store<u16>(key + 38, 0);
  }
}

// @ts-ignore: decorator
@inline function setFlags(key: usize, flags: i32): void {
  store<u8>(key + (pFamily == 4 ? CT_TUPLE4_FLAGS : CT_TUPLE6_FLAGS), <u8>flags);
}

export function tableIdFor(proto: i32): i32 {
  if (pFamily == 4) return proto == PROTO_TCP ? CT_TABLE_TCP4 : CT_TABLE_ANY4;
  return proto == PROTO_TCP ? CT_TABLE_TCP6 : CT_TABLE_ANY6;
}

// @ts-ignore: decorator
@inline function flagFor(dir: i32): i32 {
  return dir == CT_INGRESS ? TUPLE_F_IN : TUPLE_F_OUT;
}

/** The live entry under `key` with `flags`, or 0. Expired entries count as absent. */
export function lookupLive(t: Table, key: usize, flags: i32, now: u32): u32 {
  setFlags(key, flags);
  const idx = tableLookup(t, key);
  if (idx == 0) return 0;
  return load<u32>(slotAddr(t, idx) + CT_ENTRY_LIFETIME) >= now ? idx : 0;
}

/**
 * lookupLive, without the probe when `flags` is TUPLE_F_IN and the table holds
 * no IN-flagged tuple (tables.ts counts them): it could only miss. The key's
 * flags are set all the same, as the probe would leave them.
 */
function lookupLiveTagged(t: Table, key: usize, flags: i32, now: u32): u32 {
  if (flags == TUPLE_F_IN && t.tagged == 0) {
    setFlags(key, flags);
    return 0;
  }
  return lookupLive(t, key, flags, now);
}

/** Whether the packet, a SYN on closing entry `e`, starts a new connection on a reused 5-tuple. */
function startsOver(e: usize): bool {
  return pProto == PROTO_TCP && (pTcpFlags & TCP_SYN) != 0
    && (<i32>load<u8>(e + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)) != 0;
}

/** Lifetime after a packet: close timeout once both sides closed, else by SYN/non-SYN or protocol. */
function refreshLifetime(e: usize, now: u32): void {
  let timeout: u32;
  if (pProto == PROTO_TCP) {
    const f = <i32>load<u8>(e + CT_ENTRY_FLAGS);
    const closing = CT_F_TX_CLOSING | CT_F_RX_CLOSING;
    if ((f & closing) == closing) timeout = cfgTimeoutClose;
    else timeout = (f & CT_F_SEEN_NON_SYN) != 0 ? cfgTimeoutTcp : cfgTimeoutSyn;
  } else {
    timeout = cfgTimeoutAny;
  }
  store<u32>(e + CT_ENTRY_LIFETIME, now + timeout);
}

/** Applies one packet's TCP flags to the entry's closing and SYN state. */
function tcpTrack(e: usize, isReply: bool): void {
  const tcp = pTcpFlags;
  let f = <i32>load<u8>(e + CT_ENTRY_FLAGS);
  const closing = CT_F_TX_CLOSING | CT_F_RX_CLOSING;
  if ((tcp & TCP_SYN) != 0 && (f & closing) != 0) {
    // A new SYN on a closing entry: the 5-tuple is being reused, start over. Flow entries
    // never get here (ctLookup makes such a packet NEW); service entries, which see
    // only the client's packets and carry the backend, do.
    f &= ~(closing | CT_F_SEEN_NON_SYN);
  }
  if ((tcp & TCP_RST) != 0) f |= closing; // the connection is gone in both directions
  else if ((tcp & TCP_FIN) != 0) f |= isReply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
  if ((tcp & TCP_SYN) == 0) f |= CT_F_SEEN_NON_SYN;
  store<u8>(e + CT_ENTRY_FLAGS, <u8>f);
}

function account(e: usize, isReply: bool): void {
  const len = <u64>pL3Len;
  if (isReply) {
    store<u64>(e + CT_ENTRY_RX_PACKETS, load<u64>(e + CT_ENTRY_RX_PACKETS) + 1);
    store<u64>(e + CT_ENTRY_RX_BYTES, load<u64>(e + CT_ENTRY_RX_BYTES) + len);
    store<u8>(e + CT_ENTRY_RX_FLAGS_SEEN, load<u8>(e + CT_ENTRY_RX_FLAGS_SEEN) | <u8>pTcpFlags);
  } else {
    store<u64>(e + CT_ENTRY_TX_PACKETS, load<u64>(e + CT_ENTRY_TX_PACKETS) + 1);
    store<u64>(e + CT_ENTRY_TX_BYTES, load<u64>(e + CT_ENTRY_TX_BYTES) + len);
    store<u8>(e + CT_ENTRY_TX_FLAGS_SEEN, load<u8>(e + CT_ENTRY_TX_FLAGS_SEEN) | <u8>pTcpFlags);
  }
}

function update(t: Table, idx: u32, isReply: bool, now: u32): void {
  const e = slotAddr(t, idx);
  tableTouch(t, idx);
  account(e, isReply);
  if (pProto == PROTO_TCP) tcpTrack(e, isReply);
  refreshLifetime(e, now);
  ctEntry = e;
}

function bump(stats: usize, field: i32): void {
  store<u64>(stats + field, load<u64>(stats + field) + 1);
}

/**
 * Creates the entry of a CT_NEW packet from `keyFwd` (flags set by ctLookup), so
 * stages between lookup and creation (policy) can still refuse the flow. An expired entry under
 * the same key is reused; a full table evicts the entry CLOCK picks or,
 * under the drop policy, reclaims it only if it expired. Returns 0 or a drop reason.
 */
export function ctCreate(now: u32): i32 {
  const e = ctCreateKey(ctTableId, keyFwd, now);
  if (e == 0) return DROP_CT_CREATE_FAILED;
  ctEntry = e;
  if (ctRetireReverse) {
    // Slots never move in the table, so ctEntry stays valid across the removal.
    const t = table(ctTableId);
    const old = tableLookup(t, keyRev);
    if (old != 0) tableRemove(t, old);
    ctRetireReverse = false;
  }
  return 0;
}

/**
 * Creates (or reinitialises) the entry under `key` (flags set) in table `id`
 * for the packet being decided, as ctCreate does; returns it, or 0 when the
 * table refused it (counted). The service stage creates its SERVICE entries so.
 */
export function ctCreateKey(id: i32, key: usize, now: u32): usize {
  const t = table(id);
  const stats = statsOf(id);
  let idx = tableLookup(t, key);
  if (idx != 0) {
    memory.fill(slotAddr(t, idx), 0, t.valueSize);
    tableTouch(t, idx);
  } else {
    idx = tableInsert(t, key);
    if (idx == 0) {
      const oldest = tableVictim(t);
      if (oldest == 0) { // a zero-capacity table
        bump(stats, CT_STATS_CREATE_FAILED);
        return 0;
      }
      const expired = load<u32>(slotAddr(t, oldest) + CT_ENTRY_LIFETIME) < now;
      if (!expired && cfgFullPolicy == CT_FULL_DROP) {
        bump(stats, CT_STATS_CREATE_FAILED);
        return 0;
      }
      if (!expired) bump(stats, CT_STATS_EVICTED);
      tableRemove(t, oldest);
      idx = tableInsert(t, key);
    }
  }
  bump(stats, CT_STATS_CREATED);
  const e = slotAddr(t, idx);
  store<u32>(e + CT_ENTRY_CREATED, now);
  ctApplyForward(e, now);
  return e;
}

/** Applies the packet being decided to entry `e` as a packet of the flow's original direction. */
export function ctApplyForward(e: usize, now: u32): void {
  account(e, false);
  if (pProto == PROTO_TCP) tcpTrack(e, false);
  refreshLifetime(e, now);
}

/** Finds the flow an ICMP error quotes. Returns 0 or a drop reason. */
function related(dirIn: i32, now: u32): i32 {
  // The quoted packet was sent by the error's receiver: if it went in the flow's original
  // direction, the quoted tuple is the stored tuple and the error travels the reply way.
  ctTableId = tableIdFor(iProto);
  const t = table(ctTableId);
  writeTuple(keyFwd, iSaddr, iDaddr, iSport, iDport, iProto);
  writeTuple(keyRev, iDaddr, iSaddr, iDport, iSport, iProto);
  let idx: u32 = 0;
  if (dirIn == DIR_AUTO) {
    if ((idx = lookupLive(t, keyFwd, TUPLE_F_OUT, now)) != 0) ctDir = CT_INGRESS;
    else if ((idx = lookupLive(t, keyRev, TUPLE_F_OUT, now)) != 0) ctDir = CT_EGRESS;
    else if ((idx = lookupLive(t, keyFwd, TUPLE_F_IN, now)) != 0) ctDir = CT_EGRESS;
    else if ((idx = lookupLive(t, keyRev, TUPLE_F_IN, now)) != 0) ctDir = CT_INGRESS;
  } else {
    ctDir = dirIn;
    idx = lookupLive(t, keyFwd, flagFor(dirIn) ^ 1, now);
    if (idx == 0) idx = lookupLive(t, keyRev, flagFor(dirIn), now);
  }
  if (idx == 0) {
    if (dirIn == DIR_AUTO) ctDir = CT_EGRESS;
    return DROP_ICMP_NO_FLOW;
  }
  ctResult = CT_RELATED;
  ctEntry = slotAddr(t, idx);
  return 0;
}

/**
 * Looks the parsed packet up. `dirIn` is CT_EGRESS, CT_INGRESS or DIR_AUTO.
 * Sets ctResult, ctDir, ctTableId, ctEntry; returns 0 or a drop reason. A reply
 * or established packet updates its entry; a miss leaves ctResult = CT_NEW,
 * ctEntry = 0 and creates nothing (see ctCreate).
 */
export function ctLookup(dirIn: i32, now: u32): i32 {
  ctEntry = 0;
  ctResult = CT_NONE;
  ctTableId = 0;
  ctRetireReverse = false;
  if (dirIn != CT_EGRESS && dirIn != CT_INGRESS && dirIn != DIR_AUTO) {
    ctDir = CT_EGRESS;
    return DROP_CT_INVALID_HDR;
  }
  if (pIcmpError) return related(dirIn, now);
  ctTableId = tableIdFor(pProto);
  const t = table(ctTableId);
  writeTuple(keyFwd, pSaddr, pDaddr, pSport, pDport, pProto);
  writeTuple(keyRev, pDaddr, pSaddr, pDport, pSport, pProto);
  let dir = dirIn;
  let idx: u32 = 0;
  if (dir == DIR_AUTO) {
    // Without an endpoint view: a packet answering an egress-created entry is ingress.
    idx = lookupLive(t, keyRev, TUPLE_F_OUT, now);
    dir = idx != 0 ? CT_INGRESS : CT_EGRESS;
    if (idx == 0) idx = lookupLiveTagged(t, keyRev, TUPLE_F_IN, now);
  } else {
    idx = lookupLiveTagged(t, keyRev, flagFor(dir) ^ 1, now);
  }
  if (idx != 0 && startsOver(slotAddr(t, idx))) {
    // A SYN answering a closed connection opens a new one the other way round.
    ctRetireReverse = true;
    idx = 0;
    if (dirIn == DIR_AUTO) dir = CT_EGRESS;
  }
  ctDir = dir;
  if (idx != 0) {
    ctResult = CT_REPLY;
    update(t, idx, true, now);
    return 0;
  }
  idx = lookupLive(t, keyFwd, flagFor(dir), now);
  if (idx != 0 && !startsOver(slotAddr(t, idx))) {
    ctRetireReverse = false; // the packet continues a flow: nothing is replaced
    ctResult = CT_ESTABLISHED;
    update(t, idx, false, now);
    return 0;
  }
  ctResult = CT_NEW;
  return 0;
}
