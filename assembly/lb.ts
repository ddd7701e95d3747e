// Service load-balancing on the packet path (services v2, REFERENCE.md), the
// same steps as bpf/lib/lb.h:
// - lbForward, before conntrack: a TCP/UDP packet to a service frontend
//   (VIP, port, proto) takes the backend its SERVICE conntrack entry (keyed on
//   the client -> VIP tuple) recorded; a new flow, or one whose backend is gone,
//   selects one (random/legacy: slot = hash % count + 1; maglev: row[hash % M])
//   and records it. The packet is DNATed to the backend, so conntrack then
//   tracks client -> backend.
// - lbAfterCt, after conntrack: the client -> backend entry of a translated
//   packet gets the backend id and rev-NAT index; a reply of such an entry
//   gets VIP:port back as its source, and an ICMP error quoting the client's
//   packet to the backend gets its quoted destination (and its source, when
//   the backend sent it) translated back.
// ICMP echo to a VIP is not a service flow: it passes untouched.
import {
  CT_ENTRY_BACKEND_ID, CT_ENTRY_LIFETIME, CT_ENTRY_REV_NAT_INDEX, CT_ESTABLISHED, CT_NEW, CT_RELATED, CT_REPLY, DROP_CT_CREATE_FAILED,
  DROP_NO_SERVICE, LB4_BACKEND_ADDRESS, LB4_BACKEND_PORT, LB4_KEY_ADDRESS, LB4_KEY_DPORT, LB4_KEY_PROTO, LB4_KEY_SLOT,
  LB4_REVERSE_NAT_ADDRESS, LB4_REVERSE_NAT_PORT, LB6_BACKEND_ADDRESS, LB6_BACKEND_PORT, LB6_KEY_ADDRESS,
  LB6_KEY_DPORT, LB6_KEY_PROTO, LB6_KEY_SLOT, LB6_REVERSE_NAT_ADDRESS, LB6_REVERSE_NAT_PORT, LB_ALG_MAGLEV,
  LB_SERVICE_ALGORITHM, LB_SERVICE_BACKEND_ID, LB_SERVICE_COUNT, LB_SERVICE_MAGLEV_INDEX, LB_SERVICE_REV_NAT_INDEX,
  LB_TABLE_BACKENDS4, LB_TABLE_BACKENDS6, LB_TABLE_REVNAT4, LB_TABLE_REVNAT6, LB_TABLE_SERVICES4,
  LB_TABLE_SERVICES6, TUPLE_F_SERVICE,
} from "./generated/layout";
import {
  FRAG_LATER, PROTO_TCP, PROTO_UDP, iDaddr, iDport, iL4, iProto, pDaddr, pDport, pEnd, pFamily, pFrag, pIcmpError,
  pL3, pL4, pProto, pSaddr, pSport, setFlow,
} from "./parse";
import { ctApplyForward, ctCreateKey, ctEntry, ctResult, lookupLive, tableIdFor, writeTuple } from "./conntrack";
import { table } from "./tables";
import { slotAddr, tableLookup, tableTouch } from "./table";
import { lbHashSeed, lbMaglevBase, lbMaglevM, lbMaglevRows, lbReady, lbTable } from "./lb-tables";
import { csumReplace16, csumReplace32, l4ReplaceAddr32, l4ReplacePort } from "./checksum";
import { murmur3Mix } from "./murmur3";

// Zero-padded scratch keys (the tables compare whole 64-bit words).
const svcKey = memory.data(32, 16);
const idKey = memory.data(8, 8);
const svcCtKey = memory.data(48, 16);

// Set by lbForward for lbAfterCt: the packet was translated to this backend.
let translated = false;
let pendingBackend: u32 = 0;
let pendingRevNat: u32 = 0;

// ---- flow hash: murmur3_32 over 32-bit words, bit for bit as lb_flow_hash in bpf/lib/lb.h ----

/** The seeded hash of the flow (client address and port, VIP and port, protocol) that picks its backend. */
function flowHash(): u32 {
  let h = lbHashSeed;
  const words: i32 = pFamily == 4 ? 1 : 4;
  for (let i = 0; i < words; i++) h = murmur3Mix(h, load<u32>(pSaddr + (<usize>i << 2)));
  for (let i = 0; i < words; i++) h = murmur3Mix(h, load<u32>(pDaddr + (<usize>i << 2)));
  h = murmur3Mix(h, <u32>pSport | (<u32>pDport << 16));
  h = murmur3Mix(h, <u32>pProto);
  h ^= <u32>((words * 2 + 2) << 2);
  h ^= h >> 16;
  h *= 0x85EBCA6B;
  h ^= h >> 13;
  h *= 0xC2B2AE35;
  h ^= h >> 16;
  return h;
}

// ---- table lookups ----

function writeServiceKey(addr: usize, port: u16, proto: i32, slot: u32): void {
  memory.fill(svcKey, 0, 32);
  if (pFamily == 4) {
    store<u32>(svcKey + LB4_KEY_ADDRESS, load<u32>(addr));
    store<u16>(svcKey + LB4_KEY_DPORT, port);
    store<u16>(svcKey + LB4_KEY_SLOT, <u16>slot);
    store<u8>(svcKey + LB4_KEY_PROTO, <u8>proto);
  } else {
    memory.copy(svcKey + LB6_KEY_ADDRESS, addr, 16);
    store<u16>(svcKey + LB6_KEY_DPORT, port);
    store<u16>(svcKey + LB6_KEY_SLOT, <u16>slot);
    store<u8>(svcKey + LB6_KEY_PROTO, <u8>proto);
  }
}

/** The slot `slot` of the frontend (pDaddr, pDport, pProto); 0 when absent. */
function serviceSlot(slot: u32): usize {
  writeServiceKey(pDaddr, pDport, pProto, slot);
  const t = lbTable(pFamily == 4 ? LB_TABLE_SERVICES4 : LB_TABLE_SERVICES6);
  const idx = tableLookup(t, svcKey);
  return idx == 0 ? 0 : slotAddr(t, idx);
}

/** struct lb4_backend / lb6_backend of backend `id`; 0 when absent. */
function backendOf(id: u32): usize {
  if (id == 0) return 0;
  store<u64>(idKey, <u64>id);
  const t = lbTable(pFamily == 4 ? LB_TABLE_BACKENDS4 : LB_TABLE_BACKENDS6);
  const idx = tableLookup(t, idKey);
  return idx == 0 ? 0 : slotAddr(t, idx);
}

function revNatOf(index: u32): usize {
  if (index == 0) return 0;
  store<u64>(idKey, <u64>index);
  const t = lbTable(pFamily == 4 ? LB_TABLE_REVNAT4 : LB_TABLE_REVNAT6);
  const idx = tableLookup(t, idKey);
  return idx == 0 ? 0 : slotAddr(t, idx);
}

/** The backend id the service's algorithm gives this flow; 0 when the tables hold none. */
function selectBackend(master: usize, count: u32): u32 {
  const h = flowHash();
  if (<i32>load<u8>(master + LB_SERVICE_ALGORITHM) == LB_ALG_MAGLEV) {
    const row = load<u32>(master + LB_SERVICE_MAGLEV_INDEX);
    if (lbMaglevM == 0 || row >= lbMaglevRows) return 0;
    return load<u32>(lbMaglevBase + ((<usize>row * <usize>lbMaglevM + <usize>(h % lbMaglevM)) << 2));
  }
  const slot = serviceSlot(h % count + 1);
  return slot == 0 ? 0 : load<u32>(slot + LB_SERVICE_BACKEND_ID);
}

// ---- rewriting ----

// @ts-ignore: decorator
@inline function l4CsumField(proto: i32, l4: usize): usize {
  return l4 + (proto == PROTO_TCP ? 16 : 6);
}

/** Replaces the address at `field` (4 or 16 bytes) with the one at `value`, fixing the IPv4 header and L4 checksums. */
function rewriteAddr(field: usize, value: usize): void {
  const withL4 = pFrag != FRAG_LATER;
  const csum = l4CsumField(pProto, pL4);
  const udp = pProto == PROTO_UDP;
  const words: i32 = pFamily == 4 ? 1 : 4;
  for (let i = 0; i < words; i++) {
    const at = <usize>i << 2;
    const oldW = bswap<u32>(load<u32>(field + at));
    const newW = bswap<u32>(load<u32>(value + at));
    if (oldW == newW) continue;
    if (pFamily == 4) {
      store<u16>(pL3 + 10, bswap<u16>(<u16>csumReplace32(<u32>bswap<u16>(load<u16>(pL3 + 10)), oldW, newW)));
    }
    if (withL4) l4ReplaceAddr32(csum, oldW, newW, udp);
    store<u32>(field + at, bswap<u32>(newW));
  }
}

/** Replaces the L4 port at `field` with `port` (network order as loaded), fixing the L4 checksum. */
function rewritePort(field: usize, port: u16): void {
  if (pFrag == FRAG_LATER) return;
  const oldP = <u32>bswap<u16>(load<u16>(field));
  const newP = <u32>bswap<u16>(port);
  if (oldP == newP) return;
  l4ReplacePort(l4CsumField(pProto, pL4), oldP, newP, pProto == PROTO_UDP);
  store<u16>(field, port);
}

// ---- the stages ----

/**
 * Before conntrack: DNATs a packet to a service frontend to its flow's backend.
 * Returns 0 (translated or not a service packet) or a drop reason.
 */
export function lbForward(now: u32): i32 {
  translated = false;
  if (!lbReady || pIcmpError || (pProto != PROTO_TCP && pProto != PROTO_UDP)) return 0;
  // No service of the family: the frontend lookup below could only miss.
  if (lbTable(pFamily == 4 ? LB_TABLE_SERVICES4 : LB_TABLE_SERVICES6).count == 0) return 0;
  const master = serviceSlot(0);
  if (master == 0) return 0;
  const count = <u32>load<u16>(master + LB_SERVICE_COUNT);
  const revNat = <u32>load<u16>(master + LB_SERVICE_REV_NAT_INDEX);

  const ctId = tableIdFor(pProto);
  const ct = table(ctId);
  writeTuple(svcCtKey, pSaddr, pDaddr, pSport, pDport, pProto);
  const ctIdx = lookupLive(ct, svcCtKey, TUPLE_F_SERVICE, now);
  let e: usize = 0;
  let backendId: u32 = 0;
  let backend: usize = 0;
  if (ctIdx != 0) {
    e = slotAddr(ct, ctIdx);
    backendId = load<u32>(e + CT_ENTRY_BACKEND_ID);
    backend = backendOf(backendId);
  }
  if (backend == 0) {
    // A new flow, or its backend is gone: select (again). No backend to select is a named drop.
    if (count == 0) return DROP_NO_SERVICE;
    backendId = selectBackend(master, count);
    backend = backendOf(backendId);
    if (backend == 0) return DROP_NO_SERVICE;
  }
  if (e == 0) {
    e = ctCreateKey(ctId, svcCtKey, now);
    if (e == 0) return DROP_CT_CREATE_FAILED;
  } else {
    tableTouch(ct, ctIdx);
    ctApplyForward(e, now);
  }
  store<u32>(e + CT_ENTRY_BACKEND_ID, backendId);
  store<u16>(e + CT_ENTRY_REV_NAT_INDEX, <u16>revNat);

  const port = load<u16>(backend + (pFamily == 4 ? LB4_BACKEND_PORT : LB6_BACKEND_PORT));
  rewriteAddr(pDaddr, backend + (pFamily == 4 ? LB4_BACKEND_ADDRESS : LB6_BACKEND_ADDRESS));
  rewritePort(pL4 + 2, port);
  setFlow(pProto, pSport, port);
  translated = true;
  pendingBackend = backendId;
  pendingRevNat = revNat;
  return 0;
}

/** After conntrack: records the service in a translated flow's entry; reverse-NATs replies and related ICMP errors. */
export function lbAfterCt(): i32 {
  if (!lbReady || ctEntry == 0) return 0;
  if (translated) {
    if (ctResult == CT_NEW || ctResult == CT_ESTABLISHED) {
      store<u32>(ctEntry + CT_ENTRY_BACKEND_ID, pendingBackend);
      store<u16>(ctEntry + CT_ENTRY_REV_NAT_INDEX, <u16>pendingRevNat);
      // The SERVICE entry sees only the client's packets, so it cannot tell when the
      // connection closes: it lives as long as the flow's own entry, which sees both sides.
      const ct = table(tableIdFor(pProto));
      const svc = tableLookup(ct, svcCtKey);
      if (svc != 0) store<u32>(slotAddr(ct, svc) + CT_ENTRY_LIFETIME, load<u32>(ctEntry + CT_ENTRY_LIFETIME));
    }
    return 0;
  }
  const revNat = revNatOf(<u32>load<u16>(ctEntry + CT_ENTRY_REV_NAT_INDEX));
  // No reverse-NAT entry (the service is gone): the packet passes as it is, as in Cilium.
  if (revNat == 0) return 0;
  if (ctResult == CT_REPLY) {
    rewriteAddr(pSaddr, revNat + (pFamily == 4 ? LB4_REVERSE_NAT_ADDRESS : LB6_REVERSE_NAT_ADDRESS));
    const port = load<u16>(revNat + (pFamily == 4 ? LB4_REVERSE_NAT_PORT : LB6_REVERSE_NAT_PORT));
    rewritePort(pL4, port);
    setFlow(pProto, port, pDport);
  } else if (ctResult == CT_RELATED) {
    revNatIcmpError(revNat);
  }
  return 0;
}

// ---- ICMP errors about a service flow ----

/** Sets the 16-bit word at `field` (inside the ICMP message) to `value` (host order), keeping the ICMP checksum. */
function icmpPut16(field: usize, value: u32): void {
  const old = <u32>bswap<u16>(load<u16>(field));
  if (old == value) return;
  l4ReplacePort(pL4 + 2, old, value, false);
  store<u16>(field, bswap<u16>(<u16>value));
}

/** RFC 1624 update of the quoted L4 checksum at `field` (0 = not quoted), keeping the ICMP checksum. */
function quotedL4Csum(field: usize, oldValue: u32, newValue: u32, is32: bool): void {
  if (field == 0) return;
  const check = <u32>bswap<u16>(load<u16>(field));
  const udp = iProto == PROTO_UDP;
  if (udp && check == 0) return; // the quoted datagram carried no checksum
  let next = is32 ? csumReplace32(check, oldValue, newValue) : csumReplace16(check, oldValue, newValue);
  if (udp && next == 0) next = 0xFFFF;
  icmpPut16(field, next);
}

/**
 * The error quotes the client's packet to the backend and travels to the
 * client: the quoted destination becomes VIP:port again (quoted checksums
 * kept right), and so does the outer source when the backend sent the error.
 */
function revNatIcmpError(revNat: usize): void {
  if (iProto != PROTO_TCP && iProto != PROTO_UDP) return;
  const backend = backendOf(load<u32>(ctEntry + CT_ENTRY_BACKEND_ID));
  if (backend == 0) return;
  const v4 = pFamily == 4;
  const words: i32 = v4 ? 1 : 4;
  const bAddr = backend + (v4 ? LB4_BACKEND_ADDRESS : LB6_BACKEND_ADDRESS);
  const bPort = load<u16>(backend + (v4 ? LB4_BACKEND_PORT : LB6_BACKEND_PORT));
  if (iDport != bPort || memory.compare(iDaddr, bAddr, v4 ? 4 : 16) != 0) return; // quotes a reply: goes to the backend
  const vip = revNat + (v4 ? LB4_REVERSE_NAT_ADDRESS : LB6_REVERSE_NAT_ADDRESS);
  const vport = load<u16>(revNat + (v4 ? LB4_REVERSE_NAT_PORT : LB6_REVERSE_NAT_PORT));
  // The quoted L4 checksum, when the quote holds it (TCP's lies 16 bytes in).
  const l4Csum = iL4 + (iProto == PROTO_TCP ? 16 : 6);
  const l4Field: usize = l4Csum + 2 <= pEnd ? l4Csum : 0;
  const outerFromBackend = memory.compare(pSaddr, bAddr, v4 ? 4 : 16) == 0;
  for (let i = 0; i < words; i++) {
    const at = <usize>i << 2;
    const oldW = bswap<u32>(load<u32>(iDaddr + at));
    const newW = bswap<u32>(load<u32>(vip + at));
    if (oldW == newW) continue;
    if (v4) {
      const ipCsum = pL4 + 8 + 10;
      icmpPut16(ipCsum, csumReplace32(<u32>bswap<u16>(load<u16>(ipCsum)), oldW, newW));
    }
    quotedL4Csum(l4Field, oldW, newW, true);
    icmpPut16(iDaddr + at, newW >> 16);
    icmpPut16(iDaddr + at + 2, newW & 0xFFFF);
  }
  const oldP = <u32>bswap<u16>(load<u16>(iL4 + 2));
  const newP = <u32>bswap<u16>(vport);
  if (oldP != newP) {
    quotedL4Csum(l4Field, oldP, newP, false);
    icmpPut16(iL4 + 2, newP);
  }
  if (outerFromBackend) {
    // ICMPv4 has no pseudo-header; ICMPv6's covers the source (l4ReplaceAddr32 on the ICMPv6 checksum).
    for (let i = 0; i < words; i++) {
      const at = <usize>i << 2;
      const oldW = bswap<u32>(load<u32>(pSaddr + at));
      const newW = bswap<u32>(load<u32>(vip + at));
      if (oldW == newW) continue;
      if (v4) store<u16>(pL3 + 10, bswap<u16>(<u16>csumReplace32(<u32>bswap<u16>(load<u16>(pL3 + 10)), oldW, newW)));
      else l4ReplaceAddr32(pL4 + 2, oldW, newW, false);
      store<u32>(pSaddr + at, bswap<u32>(newW));
    }
  }
}
