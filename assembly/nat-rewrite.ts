// Header rewrites of SNAT, with incremental checksum updates (RFC 1624). The
// packet was parsed (assembly/parse.ts); addresses are rewritten in place, so
// the parse globals that point into the packet see the new values.
import { csumReplace16, csumReplace32, l4ReplaceAddr32, l4ReplacePort } from "./checksum";
import { FRAG_LATER, PROTO_ICMP, PROTO_TCP, PROTO_UDP, iL4, iProto, pEnd, pFamily, pFrag, pL3, pL4, pProto } from "./parse";

/** Offset of the L4 checksum field of `proto` from its header. */
// @ts-ignore: decorator
@inline function csumOffset(proto: i32): usize {
  return proto == PROTO_TCP ? 16 : proto == PROTO_UDP ? 6 : 2;
}

/**
 * Replaces the address at `field` (the packet's source or destination) with the
 * one at `value`: IPv4 header checksum, and the L4 checksum where the pseudo-header
 * covers it (TCP, UDP, ICMPv6; not ICMPv4; not in a later fragment, which has no L4 header).
 */
export function rewriteAddr(field: usize, value: usize): void {
  const withL4 = pFrag != FRAG_LATER && pProto != PROTO_ICMP;
  const l4csum = pL4 + csumOffset(pProto);
  const udp = pProto == PROTO_UDP;
  if (pFamily == 4) {
    const oldA = bswap<u32>(load<u32>(field));
    const newA = bswap<u32>(load<u32>(value));
    store<u16>(pL3 + 10, bswap<u16>(<u16>csumReplace32(<u32>bswap<u16>(load<u16>(pL3 + 10)), oldA, newA)));
    if (withL4) l4ReplaceAddr32(l4csum, oldA, newA, udp);
    store<u32>(field, load<u32>(value));
    return;
  }
  for (let i: usize = 0; i < 16; i += 4) {
    const oldW = bswap<u32>(load<u32>(field + i));
    const newW = bswap<u32>(load<u32>(value + i));
    if (withL4) l4ReplaceAddr32(l4csum, oldW, newW, udp);
    store<u32>(field + i, load<u32>(value + i));
  }
}

/**
 * Replaces the port (TCP/UDP, at `offset` 0 or 2 of the L4 header) or the ICMP
 * identifier (offset 4) with `value` (network byte order). Nothing to do in a later fragment.
 */
export function rewritePort(offset: usize, value: u16): void {
  if (pFrag == FRAG_LATER) return;
  const field = pL4 + offset;
  const oldP = <u32>bswap<u16>(load<u16>(field));
  l4ReplacePort(pL4 + csumOffset(pProto), oldP, <u32>bswap<u16>(value), pProto == PROTO_UDP);
  store<u16>(field, value);
}

// ---- ICMP errors: the quoted packet lies inside the ICMP message ----

/** Writes a 16-bit word (host-order `value`) of the ICMP payload, keeping the outer ICMP checksum right. */
function payloadWrite16(at: usize, value: u32): void {
  const old = <u32>bswap<u16>(load<u16>(at));
  l4ReplacePort(pL4 + 2, old, value, false);
  store<u16>(at, bswap<u16>(<u16>value));
}

function payloadWrite32(at: usize, value: u32): void {
  payloadWrite16(at, value >> 16);
  payloadWrite16(at + 2, value & 0xFFFF);
}

/**
 * Rewrites the quoted packet's source address to the one at `addr` and its source port
 * (TCP/UDP) or identifier (echo) to `port` (network order): the quoted IPv4 header
 * checksum, the quoted L4 checksum when the quote holds it (a real, full checksum), and
 * the ICMP checksum for every word changed. The outer addresses are the caller's.
 */
export function rewriteQuotedSource(quoted: usize, saddr: usize, addr: usize, port: u16): void {
  const l4 = iL4;
  const proto = iProto;
  const csumAt = l4 + csumOffset(proto);
  const haveCsum = csumAt + 2 <= pEnd;
  let l4sum: u32 = haveCsum ? <u32>bswap<u16>(load<u16>(csumAt)) : 0;
  const udpNone = proto == PROTO_UDP && l4sum == 0;
  const pseudo = proto != PROTO_ICMP; // TCP, UDP and ICMPv6 cover the addresses
  const portAt = l4 + (proto == PROTO_TCP || proto == PROTO_UDP ? 0 : 4);
  const oldPort = <u32>bswap<u16>(load<u16>(portAt));
  const newPort = <u32>bswap<u16>(port);
  if (pFamily == 4) {
    const oldA = bswap<u32>(load<u32>(saddr));
    const newA = bswap<u32>(load<u32>(addr));
    if (pseudo) l4sum = csumReplace32(l4sum, oldA, newA);
    const ipsum = csumReplace32(<u32>bswap<u16>(load<u16>(quoted + 10)), oldA, newA);
    payloadWrite32(saddr, newA);
    payloadWrite16(quoted + 10, ipsum);
  } else {
    for (let i: usize = 0; i < 16; i += 4) {
      const oldW = bswap<u32>(load<u32>(saddr + i));
      const newW = bswap<u32>(load<u32>(addr + i));
      l4sum = csumReplace32(l4sum, oldW, newW);
      payloadWrite32(saddr + i, newW);
    }
  }
  l4sum = csumReplace16(l4sum, oldPort, newPort);
  payloadWrite16(portAt, newPort);
  if (haveCsum && !udpNone) payloadWrite16(csumAt, proto == PROTO_UDP && l4sum == 0 ? 0xFFFF : l4sum);
}
