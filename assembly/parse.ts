// Packet parsing: L2 (Ethernet, one 802.1Q tag) or bare L3, IPv4 (options,
// fragments), IPv6 (bounded extension-header walk), TCP, UDP, ICMP, ICMPv6, and
// the quoted packet inside ICMP errors. Every read is preceded by a length check
// against the end of the packet; malformed input yields a drop reason, never a
// trap. Results go to module globals (the packet path allocates nothing).
import {
  DROP_CT_INVALID_HDR, DROP_CT_UNKNOWN_PROTO, DROP_INVALID, DROP_INVALID_EXTHDR, DROP_UNKNOWN_L3,
  DROP_UNSUPPORTED_L2, IPV6_MAX_EXT_HEADERS, LINK_ETHERNET, LINK_RAW_IP,
} from "./generated/layout";

export const PROTO_ICMP: i32 = 1;
export const PROTO_TCP: i32 = 6;
export const PROTO_UDP: i32 = 17;
export const PROTO_ICMPV6: i32 = 58;

export const TCP_FIN: i32 = 0x01;
export const TCP_SYN: i32 = 0x02;
export const TCP_RST: i32 = 0x04;

/** Returned by parsePacket for frames that pass without conntrack (ARP, IPv6 neighbour discovery). */
export const PARSE_UNTRACKED: i32 = -1;


// Fragment position of the parsed datagram.
export const FRAG_NONE: i32 = 0;
export const FRAG_FIRST: i32 = 1; // offset 0, more fragments follow: carries the L4 header
export const FRAG_LATER: i32 = 2; // offset > 0: no L4 header

// ---- results of the last parse ----
export let pFamily: i32 = 0;     // 4 or 6
export let pL3: usize = 0;       // IP header
export let pEnd: usize = 0;      // end of the IP datagram (trailing link padding excluded)
export let pL3Len: u32 = 0;      // IP datagram length, counted in conntrack bytes
export let pSaddr: usize = 0;    // address fields inside the packet
export let pDaddr: usize = 0;
export let pProto: i32 = 0;
export let pL4: usize = 0;       // L4 header; 0 for later fragments
export let pSport: u16 = 0;      // network byte order, as loaded from the packet
export let pDport: u16 = 0;
export let pTcpFlags: i32 = 0;
export let pFrag: i32 = FRAG_NONE;
export let pFragId: u32 = 0;     // IPv4: 16-bit id, IPv6: 32-bit id (raw loads)
export let pFragProto: i32 = 0;  // keys the fragment table: IPv4 protocol, IPv6 fragment header's Next Header
export let pIcmpError: bool = false;
// the packet quoted by an ICMP error (same family as the outer packet)
export let iSaddr: usize = 0;
export let iDaddr: usize = 0;
export let iProto: i32 = 0;
export let iSport: u16 = 0;
export let iDport: u16 = 0;
export let iL4: usize = 0;       // the quoted L4 header (at least 8 bytes inside the datagram)

/** Protocol and ports of a later fragment, from the fragment table. */
export function setFlow(proto: i32, sport: u16, dport: u16): void {
  pProto = proto;
  pSport = sport;
  pDport = dport;
}

/** Ports of the quoted packet after a stage rewrote them (NAT of ICMP errors). */
export function setQuotedPorts(sport: u16, dport: u16): void {
  iSport = sport;
  iDport = dport;
}

// ---- results of walkIpv6 ----
let wProto: i32 = 0;
let wL4: usize = 0;
let wFrag: i32 = FRAG_NONE;
let wFragId: u32 = 0;
let wFragNh: i32 = 0;

/**
 * Walks the IPv6 extension headers after the fixed header at `l3`, within `end`.
 * Returns 0 or a drop reason; sets wProto, wL4, wFrag, wFragId.
 */
function walkIpv6(l3: usize, end: usize): i32 {
  let nh = <i32>load<u8>(l3, 6);
  let cur = l3 + 40;
  wFrag = FRAG_NONE;
  wFragId = 0;
  for (let i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
    if (nh == 0 || nh == 43 || nh == 60 || nh == 51) {
      if (cur + 8 > end) return DROP_INVALID_EXTHDR;
      const hl = <usize>load<u8>(cur, 1);
      const len = nh == 51 ? (hl + 2) << 2 : (hl + 1) << 3;
      if (cur + len > end) return DROP_INVALID_EXTHDR;
      nh = load<u8>(cur);
      cur += len;
    } else if (nh == 44) {
      if (cur + 8 > end) return DROP_INVALID_EXTHDR;
      const offMore = bswap<u16>(load<u16>(cur, 2));
      wFragId = load<u32>(cur, 4);
      wFrag = (offMore & 0xFFF8) != 0 ? FRAG_LATER : (offMore & 1) != 0 ? FRAG_FIRST : FRAG_NONE;
      nh = load<u8>(cur);
      wFragNh = nh;
      cur += 8;
      if (wFrag == FRAG_LATER) {
        // What follows is a slice of the datagram, not headers: stop here.
        wProto = nh;
        wL4 = cur;
        return 0;
      }
    } else {
      wProto = nh;
      wL4 = cur;
      return 0;
    }
  }
  if (nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 44) return DROP_INVALID_EXTHDR;
  wProto = nh;
  wL4 = cur;
  return 0;
}

/**
 * Reads the L4 ports of a (possibly quoted) header at `l4` for ICMP echo
 * conventions as Cilium: an echo request has sport 0 and dport = identifier, an
 * echo reply sport = identifier and dport 0, so one is the other reversed.
 * Returns false for ICMP types that are errors (the caller decides).
 */
function icmpEchoPorts(l4: usize, isV6: bool): void {
  const type = <i32>load<u8>(l4);
  const id = load<u16>(l4, 4);
  const req = isV6 ? 128 : 8;
  const rep = isV6 ? 129 : 0;
  if (type == req) { pSport = 0; pDport = id; }
  else if (type == rep) { pSport = id; pDport = 0; }
  else { pSport = 0; pDport = 0; }
}

/** ICMPv6 neighbour discovery (133..137) and multicast listener discovery (130..132, 143). */
function isLinkPlumbing(type: i32): bool {
  return (type >= 130 && type <= 137) || type == 143;
}

function isIcmpError(type: i32, isV6: bool): bool {
  if (isV6) return type >= 1 && type <= 4; // unreachable, packet too big, time exceeded, parameter problem
  return type == 3 || type == 11 || type == 12; // unreachable, time exceeded, parameter problem
}

/** Parses the packet quoted by an ICMP error, starting at `q`, into the i* globals. */
function parseQuoted(q: usize, end: usize): i32 {
  let l4: usize;
  let proto: i32;
  if (pFamily == 4) {
    if (q + 20 > end) return DROP_CT_INVALID_HDR;
    const vihl = <i32>load<u8>(q);
    const ihl = <usize>(vihl & 0xF) << 2;
    if ((vihl >> 4) != 4 || ihl < 20) return DROP_CT_INVALID_HDR;
    if ((bswap<u16>(load<u16>(q, 6)) & 0x1FFF) != 0) return DROP_CT_INVALID_HDR; // a later fragment quotes no ports
    proto = load<u8>(q, 9);
    iSaddr = q + 12;
    iDaddr = q + 16;
    l4 = q + ihl;
  } else {
    if (q + 40 > end) return DROP_CT_INVALID_HDR;
    if ((load<u8>(q) >> 4) != 6) return DROP_CT_INVALID_HDR;
    const r = walkIpv6(q, end);
    if (r != 0) return DROP_CT_INVALID_HDR;
    if (wFrag == FRAG_LATER) return DROP_CT_INVALID_HDR;
    proto = wProto;
    iSaddr = q + 8;
    iDaddr = q + 24;
    l4 = wL4;
  }
  // Routers quote at least 8 bytes of the L4 header: enough for ports and ICMP ids.
  if (l4 + 8 > end) return DROP_CT_INVALID_HDR;
  iL4 = l4;
  iProto = proto;
  if (proto == PROTO_TCP || proto == PROTO_UDP) {
    iSport = load<u16>(l4);
    iDport = load<u16>(l4, 2);
    return 0;
  }
  const icmpProto = pFamily == 4 ? PROTO_ICMP : PROTO_ICMPV6;
  if (proto == icmpProto) {
    const saveS = pSport, saveD = pDport;
    icmpEchoPorts(l4, pFamily == 6);
    iSport = pSport; iDport = pDport;
    pSport = saveS; pDport = saveD;
    return 0;
  }
  return DROP_CT_UNKNOWN_PROTO;
}

/** Parses L4 at pL4 (already known to lie inside the datagram or be a later fragment). */
function parseL4(): i32 {
  pSport = 0;
  pDport = 0;
  pTcpFlags = 0;
  pIcmpError = false;
  // No L4 header in a later fragment: the fragment table supplies protocol and ports.
  if (pFrag == FRAG_LATER) return 0;
  const l4 = pL4;
  const avail = <i64>pEnd - <i64>l4;
  if (pProto == PROTO_TCP) {
    if (avail < 20) return DROP_CT_INVALID_HDR;
    const doff = <i64>(load<u8>(l4, 12) >> 4) << 2;
    if (doff < 20 || doff > avail) return DROP_CT_INVALID_HDR;
    pSport = load<u16>(l4);
    pDport = load<u16>(l4, 2);
    pTcpFlags = load<u8>(l4, 13);
    return 0;
  }
  if (pProto == PROTO_UDP) {
    if (avail < 8) return DROP_CT_INVALID_HDR;
    pSport = load<u16>(l4);
    pDport = load<u16>(l4, 2);
    return 0;
  }
  const isV6 = pFamily == 6;
  if ((pProto == PROTO_ICMP && !isV6) || (pProto == PROTO_ICMPV6 && isV6)) {
    if (avail < 8) return DROP_CT_INVALID_HDR;
    const type = <i32>load<u8>(l4);
    // Neighbour discovery and multicast listener discovery are link plumbing, not flows:
    // they pass untouched and untracked.
    if (isV6 && isLinkPlumbing(type)) return PARSE_UNTRACKED;
    if (isIcmpError(type, isV6)) {
      if (pFrag != FRAG_NONE) return DROP_CT_INVALID_HDR; // a fragmented error quotes nothing usable
      pIcmpError = true;
      return parseQuoted(l4 + 8, pEnd);
    }
    icmpEchoPorts(l4, isV6);
    return 0;
  }
  return DROP_CT_UNKNOWN_PROTO;
}

function parseIpv4(l3: usize, end: usize): i32 {
  if (l3 + 20 > end) return DROP_INVALID;
  const vihl = <i32>load<u8>(l3);
  const ihl = <usize>(vihl & 0xF) << 2;
  if ((vihl >> 4) != 4 || ihl < 20) return DROP_INVALID;
  const total = <usize>bswap<u16>(load<u16>(l3, 2));
  if (total < ihl || l3 + total > end) return DROP_INVALID;
  pFamily = 4;
  pL3 = l3;
  pEnd = l3 + total;
  pL3Len = <u32>total;
  pSaddr = l3 + 12;
  pDaddr = l3 + 16;
  pProto = load<u8>(l3, 9);
  pL4 = l3 + ihl;
  const frag = bswap<u16>(load<u16>(l3, 6));
  pFrag = (frag & 0x1FFF) != 0 ? FRAG_LATER : (frag & 0x2000) != 0 ? FRAG_FIRST : FRAG_NONE;
  pFragId = load<u16>(l3, 4);
  pFragProto = pProto;
  return parseL4();
}

function parseIpv6(l3: usize, end: usize): i32 {
  if (l3 + 40 > end) return DROP_INVALID;
  if ((load<u8>(l3) >> 4) != 6) return DROP_INVALID;
  const plen = <usize>bswap<u16>(load<u16>(l3, 4));
  // Payload length 0 means a jumbogram (hop-by-hop option); only "no next header" may be empty.
  if (plen == 0 && load<u8>(l3, 6) != 59) return DROP_INVALID;
  if (l3 + 40 + plen > end) return DROP_INVALID;
  pFamily = 6;
  pL3 = l3;
  pEnd = l3 + 40 + plen;
  pL3Len = 40 + <u32>plen;
  pSaddr = l3 + 8;
  pDaddr = l3 + 24;
  const r = walkIpv6(l3, pEnd);
  if (r != 0) return r;
  pProto = wProto;
  pL4 = wL4;
  pFrag = wFrag;
  pFragId = wFragId;
  pFragProto = wFragNh;
  return parseL4();
}

/**
 * Parses the packet at [start, start+len). Returns 0 when the packet is to be
 * tracked, PARSE_UNTRACKED when it passes untouched, or a drop reason.
 */
export function parsePacket(start: usize, len: u32, link: i32): i32 {
  const end = start + <usize>len;
  let l3 = start;
  if (link == LINK_ETHERNET) {
    if (len < 14) return DROP_UNSUPPORTED_L2;
    let etherType = bswap<u16>(load<u16>(start, 12));
    l3 = start + 14;
    if (etherType == 0x8100) {
      if (len < 18) return DROP_UNSUPPORTED_L2;
      etherType = bswap<u16>(load<u16>(start, 16));
      l3 = start + 18;
    }
    if (etherType == 0x0800) return parseIpv4(l3, end);
    if (etherType == 0x86DD) return parseIpv6(l3, end);
    if (etherType == 0x0806) return PARSE_UNTRACKED; // ARP resolves neighbours; not a flow
    if (etherType == 0x8100 || etherType == 0x88A8) return DROP_UNSUPPORTED_L2; // stacked VLAN tags
    return DROP_UNKNOWN_L3;
  }
  if (link != LINK_RAW_IP) return DROP_UNSUPPORTED_L2;
  // The version nibble is a raw-IP packet's ethertype (the TUN driver sets
  // skb->protocol from it; the kernel engine maps it to one). An empty packet
  // has none, so it is an unknown L3 like any other version, as in the kernel.
  const version = len < 1 ? 0 : load<u8>(start) >> 4;
  if (version == 4) return parseIpv4(l3, end);
  if (version == 6) return parseIpv6(l3, end);
  return DROP_UNKNOWN_L3;
}
