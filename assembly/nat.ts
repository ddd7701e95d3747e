// SNAT / masquerading (bpf/lib/nat.h does the same in the kernel): one stage
// after the conntrack lookup, before a new flow's entry is created.
// - egress, original direction of a flow from a cluster address to the outside:
//   find or make the flow's mapping and rewrite the source;
// - ingress to the masquerade address that conntrack did not know: a reverse
//   mapping rewrites the destination back, then conntrack looks again and finds
//   the flow (as a reply); without one, ports below 1024 and echo requests pass
//   to the node, the rest is dropped (DROP_NAT_NO_MAPPING);
// - ICMP errors quoting a translated packet: the quoted packet and the outer
//   destination are rewritten back, then conntrack finds the flow (related).
// Port choice: the original port if its reverse key is free, else candidates
// from a seeded hash of the flow and the attempt, `retries` of them.
import {
  CT_EGRESS, CT_ENTRY_CREATED, CT_ESTABLISHED, CT_NEW, DIR_AUTO, DROP_ICMP_NO_FLOW, DROP_NAT_NO_MAPPING,
  NAT_DIR_EGRESS, NAT_DIR_INGRESS, NAT_STATS_ALLOC_FAILED, NAT_STATS_COLLISIONS, NAT_STATS_CREATED,
  NAT_STATS_GC_REQUESTS, NAT_STATS_RETAINED, NAT_STATS_STALE_REMOVED,
} from "./generated/layout";
import {
  FRAG_LATER, PROTO_TCP, PROTO_UDP, iDaddr, iDport, iProto, iSaddr, iSport, pDaddr, pDport, pFamily, pFrag,
  pIcmpError, pL4, pProto, pSaddr, pSport, setFlow, setQuotedPorts,
} from "./parse";
import { ctDir, ctEntry, ctLookup, ctResult } from "./conntrack";
import { slotAddr, tableInsert, tableLookup, tableRemove } from "./table";
import { isMasqAddr, natAddr4, natAddr6, natEnabled, natPortMin, natPortRange, natRetries, natSeed, shouldMasquerade } from "./nat-config";
import {
  eCreated, ePort, isIcmp, natBump, natKeyA, natReady, natTable, natWriteKey, removePair, slotLive,
} from "./nat-table";
import { rewriteAddr, rewritePort, rewriteQuotedSource } from "./nat-rewrite";
import { murmur3Mix } from "./murmur3";

const masq4 = memory.data(4, 4);

// @ts-ignore: decorator
@inline function masqAddr(f: i32): usize {
  if (f == 4) {
    store<u32>(masq4, natAddr4);
    return masq4;
  }
  return natAddr6;
}

// ---- the port candidates: murmur3's mixing, the same in bpf/lib/nat.h ----
function mixAddr(h: u32, addr: usize, f: i32): u32 {
  if (f == 4) return murmur3Mix(h, bswap<u32>(load<u32>(addr)));
  for (let i: usize = 0; i < 16; i += 4) h = murmur3Mix(h, bswap<u32>(load<u32>(addr + i)));
  return h;
}

/** The candidate port of `attempt` >= 1 for the packet's flow, in [min, min + range). */
function candidate(attempt: u32): u32 {
  let h = natSeed;
  h = mixAddr(h, pSaddr, pFamily);
  h = mixAddr(h, pDaddr, pFamily);
  h = murmur3Mix(h, (<u32>bswap<u16>(pSport) << 16) | <u32>bswap<u16>(pDport));
  h = murmur3Mix(h, <u32>pProto);
  h = murmur3Mix(h, attempt);
  h ^= h >> 16;
  h *= 0x85EBCA6B;
  h ^= h >> 13;
  h *= 0xC2B2AE35;
  h ^= h >> 16;
  return natPortMin + h % natPortRange;
}

// ---- egress ----

/** Reverse key of the packet's flow translated to masquerade port `port` (network order), into natKeyA. */
function writeReverse(port: u16): void {
  const f = pFamily;
  if (isIcmp(pProto)) natWriteKey(natKeyA, f, pDaddr, masqAddr(f), port, 0, pProto, NAT_DIR_INGRESS);
  else natWriteKey(natKeyA, f, pDaddr, masqAddr(f), pDport, port, pProto, NAT_DIR_INGRESS);
}

/** Makes the packet's flow a mapping owned by a conntrack entry created at `created`. Returns 0 or a drop reason. */
function allocate(created: u32, now: u32): i32 {
  const f = pFamily;
  const t = natTable(f);
  const icmp = isIcmp(pProto);
  const origPort: u16 = icmp ? pDport : pSport;
  const orig = <u32>bswap<u16>(origPort);
  const first = orig - natPortMin < natPortRange ? orig : natPortMin + orig % natPortRange;
  for (let attempt: u32 = 0; attempt <= natRetries; attempt++) {
    const port = attempt == 0 ? first : candidate(attempt);
    const portBe = bswap<u16>(<u16>port);
    writeReverse(portBe);
    let ridx = tableLookup(t, natKeyA);
    if (ridx != 0) {
      if (slotLive(f, ridx, now)) {
        natBump(f, NAT_STATS_COLLISIONS);
        continue;
      }
      removePair(f, ridx);
      natBump(f, NAT_STATS_STALE_REMOVED);
      writeReverse(portBe); // removePair used the scratch keys
    }
    ridx = tableInsert(t, natKeyA);
    if (ridx == 0) break; // table full: no other port would fit either
    let e = slotAddr(t, ridx);
    memory.copy(e, pSaddr, f == 4 ? 4 : 16);
    store<u16>(e + ePort(f), origPort);
    store<u32>(e + eCreated(f), created);
    natWriteKey(natKeyA, f, pSaddr, pDaddr, pSport, pDport, pProto, NAT_DIR_EGRESS);
    const fidx = tableInsert(t, natKeyA);
    if (fidx == 0) {
      tableRemove(t, ridx);
      break;
    }
    e = slotAddr(t, fidx);
    memory.copy(e, masqAddr(f), f == 4 ? 4 : 16);
    store<u16>(e + ePort(f), portBe);
    store<u32>(e + eCreated(f), created);
    natBump(f, NAT_STATS_CREATED);
    if (port == orig) natBump(f, NAT_STATS_RETAINED);
    return 0;
  }
  natBump(f, NAT_STATS_ALLOC_FAILED);
  natBump(f, NAT_STATS_GC_REQUESTS);
  return DROP_NAT_NO_MAPPING;
}

function egress(now: u32): i32 {
  const f = pFamily;
  const icmp = isIcmp(pProto);
  if (pFrag != FRAG_LATER && icmp && load<u8>(pL4) != (f == 4 ? 8 : 128)) return 0; // only echo requests open ICMP flows
  const t = natTable(f);
  // The owner: the entry found, or the one ctCreate makes right after this stage.
  const created = ctResult == CT_ESTABLISHED ? load<u32>(ctEntry + CT_ENTRY_CREATED) : now;
  natWriteKey(natKeyA, f, pSaddr, pDaddr, pSport, pDport, pProto, NAT_DIR_EGRESS);
  let idx = tableLookup(t, natKeyA);
  if (idx != 0 && (ctResult != CT_ESTABLISHED || load<u32>(slotAddr(t, idx) + eCreated(f)) != created)) {
    removePair(f, idx);
    natBump(f, NAT_STATS_STALE_REMOVED);
    idx = 0;
  }
  if (idx == 0) {
    // A later fragment has no header to rewrite the port in: without its first fragment's mapping it cannot pass.
    if (pFrag == FRAG_LATER) return DROP_NAT_NO_MAPPING;
    const r = allocate(created, now);
    if (r != 0) return r;
    natWriteKey(natKeyA, f, pSaddr, pDaddr, pSport, pDport, pProto, NAT_DIR_EGRESS);
    idx = tableLookup(t, natKeyA);
  }
  const e = slotAddr(t, idx);
  const port = load<u16>(e + ePort(f));
  rewriteAddr(pSaddr, e);
  rewritePort(icmp ? 4 : 0, port);
  return 0;
}

// ---- ingress ----

/** What a packet to the masquerade address without a mapping may do: ports below 1024 and echo requests reach the node. */
function passesUnmapped(): bool {
  if (isIcmp(pProto)) return pSport == 0 && pDport != 0; // an echo request (id in dport)
  return (pProto == PROTO_TCP || pProto == PROTO_UDP) && bswap<u16>(pDport) < 1024;
}

function ingress(dirIn: i32, now: u32): i32 {
  const f = pFamily;
  const t = natTable(f);
  natWriteKey(natKeyA, f, pSaddr, pDaddr, pSport, pDport, pProto, NAT_DIR_INGRESS);
  let idx = tableLookup(t, natKeyA);
  if (idx != 0 && !slotLive(f, idx, now)) {
    removePair(f, idx);
    natBump(f, NAT_STATS_STALE_REMOVED);
    idx = 0;
  }
  if (idx == 0) return passesUnmapped() ? 0 : DROP_NAT_NO_MAPPING;
  const e = slotAddr(t, idx);
  const port = load<u16>(e + ePort(f));
  rewriteAddr(pDaddr, e);
  if (isIcmp(pProto)) {
    rewritePort(4, port);
    setFlow(pProto, port, pDport);
  } else {
    rewritePort(2, port);
    setFlow(pProto, pSport, port);
  }
  return ctLookup(dirIn, now);
}

/** An ICMP error quoting a translated packet: its quote and destination go back to the pod. */
function icmpError(dirIn: i32, now: u32): i32 {
  const f = pFamily;
  if (!isMasqAddr(iSaddr, f) || !isMasqAddr(pDaddr, f)) return DROP_ICMP_NO_FLOW;
  const t = natTable(f);
  // The reply the quoted packet would have drawn: that is the reverse key.
  natWriteKey(natKeyA, f, iDaddr, iSaddr, iDport, iSport, iProto, NAT_DIR_INGRESS);
  const idx = tableLookup(t, natKeyA);
  if (idx == 0 || !slotLive(f, idx, now)) return DROP_ICMP_NO_FLOW;
  const e = slotAddr(t, idx);
  const port = load<u16>(e + ePort(f));
  const icmpQuoted = isIcmp(iProto);
  const quoted = pL4 + 8;
  rewriteQuotedSource(quoted, iSaddr, e, port);
  if (icmpQuoted) setQuotedPorts(iSport, port);
  else setQuotedPorts(port, iDport);
  rewriteAddr(pDaddr, e);
  return ctLookup(dirIn, now);
}

/**
 * The SNAT stage. `reason` is the conntrack lookup's (0 or a drop reason); returns the
 * packet's reason after NAT. On ingress it may run the conntrack lookup again on the
 * translated packet.
 */
export function natStage(reason: i32, dirIn: i32, now: u32): i32 {
  if (!natReady() || !natEnabled(pFamily)) return reason;
  if (pIcmpError) {
    return reason == DROP_ICMP_NO_FLOW && dirIn != CT_EGRESS ? icmpError(dirIn, now) : reason;
  }
  if (reason != 0) return reason;
  if (ctResult == CT_NEW && dirIn != CT_EGRESS && isMasqAddr(pDaddr, pFamily)) return ingress(dirIn, now);
  if ((ctResult == CT_NEW || ctResult == CT_ESTABLISHED) && ctDir == CT_EGRESS && (dirIn == CT_EGRESS || dirIn == DIR_AUTO)) {
    if (!shouldMasquerade(pSaddr, pDaddr, pFamily)) return 0;
    return egress(now);
  }
  return 0;
}
