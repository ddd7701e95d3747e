// Reading packets back: where the headers are (`locateIp`, shared with the
// checksum verifier so both agree on layout), a plain-object summary
// (`decodePacket`) and a one-line rendering (`describePacket`).
//
// The decoder is fed captures, fuzzer output and whatever a datapath under test
// emitted, so it must never throw: anything it cannot make sense of ends up in
// an `error` field next to whatever it did manage to read. Differential tests
// print two summaries side by side, so partial information beats none.

import { formatIp, formatMac, type IpFamily } from "./address.js";
import { IpProto, PROTO_NAMES as SHARED_PROTO_NAMES } from "./ip-proto.js";
import { TcpFlags, tcpFlagsText } from "../generated/layout.js";

/** IP protocol numbers: the ones the datapaths handle from the shared enum, the rest for walking headers. */
export const IPPROTO = {
  HOPOPTS: 0,
  ICMP: IpProto.PROTO_ICMP,
  TCP: IpProto.PROTO_TCP,
  UDP: IpProto.PROTO_UDP,
  ROUTING: 43,
  FRAGMENT: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: IpProto.PROTO_ICMPV6,
  NONE: 59,
  DSTOPTS: 60,
} as const;

export const ETHERTYPE = {
  IPV4: 0x0800,
  ARP: 0x0806,
  VLAN: 0x8100,
  QINQ: 0x88a8,
  IPV6: 0x86dd,
} as const;

/** RFC 8200 4.1 suggests a sane limit; past 8 it is an attack or garbage, not a packet. */
export const MAX_IPV6_EXT_HEADERS = 8;

const PROTO_NAMES: Record<number, string> = {
  0: "HOPOPT",
  2: "IGMP",
  4: "IPIP",
  41: "IPv6",
  43: "IPv6-Route",
  44: "IPv6-Frag",
  47: "GRE",
  50: "ESP",
  51: "AH",
  59: "IPv6-NoNxt",
  60: "IPv6-Opts",
  132: "SCTP",
  ...SHARED_PROTO_NAMES,
};

export function protoName(proto: number): string {
  return PROTO_NAMES[proto] ?? `proto-${proto}`;
}

const EXT_NAMES: Record<number, string> = { 0: "hop-by-hop", 43: "routing", 44: "fragment", 60: "dest-opts" };

export function isIpv6ExtHeader(nh: number): boolean {
  return nh === 0 || nh === 43 || nh === 44 || nh === 60;
}

// ---------------------------------------------------------------------------
// Layout

export interface ExtHeader {
  type: number;
  offset: number;
  length: number;
}

export interface FragmentInfo {
  id: number;
  /** In bytes (the wire field is in 8-byte units). */
  offset: number;
  more: boolean;
}

export interface IpLayout {
  family: IpFamily;
  l3Offset: number;
  src: Uint8Array;
  dst: Uint8Array;
  /**
   * The destination the L4 pseudo-header uses: with a routing header that
   * still has segments left, that is the final destination, not the IPv6
   * destination field (RFC 8200 8.1).
   */
  pseudoDst: Uint8Array;
  ttl: number;
  /** Upper-layer protocol after any IPv6 extension headers. */
  proto: number;
  l4Offset: number;
  /** Where the datagram ends according to its own length field; may lie past the buffer. */
  declaredEnd: number;
  /** min(declaredEnd, buffer length): trailing link-layer padding is excluded. */
  end: number;
  extHeaders: ExtHeader[];
  /** Present for IPv4 with MF or an offset, and for IPv6 with a fragment header (even atomic). */
  fragment?: FragmentInfo;
  /** Set when the header chain is malformed; fields above hold what was read before that. */
  error?: string;
}

export type IpLocation = IpLayout | { family?: undefined; error: string };

/** Finds the IP header fields and the L4 header of the packet starting at `l3Offset`. */
export function locateIp(pkt: Uint8Array, l3Offset: number): IpLocation {
  if (l3Offset < 0 || l3Offset >= pkt.length) return { error: `no IP header: offset ${l3Offset} of ${pkt.length} bytes` };
  const version = pkt[l3Offset]! >> 4;
  if (version === 4) return locateIpv4(pkt, l3Offset);
  if (version === 6) return locateIpv6(pkt, l3Offset);
  return { error: `unknown IP version ${version}` };
}

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function locateIpv4(pkt: Uint8Array, l3: number): IpLocation {
  if (pkt.length - l3 < 20) return { error: `truncated IPv4 header: ${pkt.length - l3} of 20 bytes` };
  const ihl = (pkt[l3]! & 0x0f) * 4;
  const totalLength = u16(pkt, l3 + 2);
  const fragField = u16(pkt, l3 + 6);
  const layout: IpLayout = {
    family: 4,
    l3Offset: l3,
    src: pkt.slice(l3 + 12, l3 + 16),
    dst: pkt.slice(l3 + 16, l3 + 20),
    pseudoDst: pkt.slice(l3 + 16, l3 + 20),
    ttl: pkt[l3 + 8]!,
    proto: pkt[l3 + 9]!,
    l4Offset: l3 + ihl,
    declaredEnd: l3 + totalLength,
    end: Math.min(l3 + totalLength, pkt.length),
    extHeaders: [],
  };
  const more = (fragField & 0x2000) !== 0;
  const offset = (fragField & 0x1fff) * 8;
  if (more || offset !== 0) layout.fragment = { id: u16(pkt, l3 + 4), offset, more };
  if (ihl < 20) layout.error = `bad IPv4 header length ${ihl} (IHL ${ihl / 4} < 5)`;
  else if (l3 + ihl > pkt.length) layout.error = `truncated IPv4 options: header is ${ihl} bytes, ${pkt.length - l3} captured`;
  else if (totalLength < ihl) layout.error = `IPv4 total length ${totalLength} is shorter than its ${ihl}-byte header`;
  return layout;
}

function locateIpv6(pkt: Uint8Array, l3: number): IpLocation {
  if (pkt.length - l3 < 40) return { error: `truncated IPv6 header: ${pkt.length - l3} of 40 bytes` };
  const declaredEnd = l3 + 40 + u16(pkt, l3 + 4);
  const layout: IpLayout = {
    family: 6,
    l3Offset: l3,
    src: pkt.slice(l3 + 8, l3 + 24),
    dst: pkt.slice(l3 + 24, l3 + 40),
    pseudoDst: pkt.slice(l3 + 24, l3 + 40),
    ttl: pkt[l3 + 7]!,
    proto: pkt[l3 + 6]!,
    l4Offset: l3 + 40,
    declaredEnd,
    end: Math.min(declaredEnd, pkt.length),
    extHeaders: [],
  };
  let nh = layout.proto;
  let off = l3 + 40;
  while (isIpv6ExtHeader(nh)) {
    const name = EXT_NAMES[nh]!;
    if (layout.extHeaders.length === MAX_IPV6_EXT_HEADERS) {
      layout.error = `more than ${MAX_IPV6_EXT_HEADERS} IPv6 extension headers`;
      break;
    }
    if (off + 8 > layout.end) {
      layout.error = `truncated IPv6 ${name} header`;
      break;
    }
    const len = nh === IPPROTO.FRAGMENT ? 8 : (pkt[off + 1]! + 1) * 8;
    if (off + len > layout.end) {
      layout.error = `truncated IPv6 ${name} header: ${len} bytes declared, ${layout.end - off} present`;
      break;
    }
    layout.extHeaders.push({ type: nh, offset: off, length: len });
    if (nh === IPPROTO.ROUTING) {
      const final = routingFinalDestination(pkt, off, len);
      if (final) layout.pseudoDst = final;
    }
    const next = pkt[off]!;
    if (nh === IPPROTO.FRAGMENT) {
      const field = u16(pkt, off + 2);
      layout.fragment = { id: u32(pkt, off + 4), offset: (field >> 3) * 8, more: (field & 1) !== 0 };
      if (layout.fragment.offset !== 0) {
        // What follows a non-first fragment header is the middle of some header, not a header.
        nh = next;
        off += len;
        break;
      }
    }
    nh = next;
    off += len;
  }
  layout.proto = nh;
  layout.l4Offset = off;
  return layout;
}

/** Final destination named by a routing header with segments left, or undefined if the IPv6 dst is final. */
function routingFinalDestination(pkt: Uint8Array, off: number, len: number): Uint8Array | undefined {
  const type = pkt[off + 2]!;
  const segmentsLeft = pkt[off + 3]!;
  if (segmentsLeft === 0) return undefined;
  const addrs = Math.floor((len - 8) / 16);
  if (addrs < 1) return undefined;
  // Type 0 (deprecated) and 2 (Mobile IPv6) list addresses in travel order; the last is final.
  if (type === 0 || type === 2) return pkt.slice(off + 8 + 16 * (addrs - 1), off + 8 + 16 * addrs);
  // Segment routing lists segments in reverse; Segment List[0] is the last hop (RFC 8754 2).
  if (type === 4) return pkt.slice(off + 8, off + 24);
  return undefined;
}

// ---------------------------------------------------------------------------
// Summary

export type LinkType = "ethernet" | "ip";

export interface PacketSummary {
  /** Bytes handed to the decoder. */
  length: number;
  ethSrc?: string;
  ethDst?: string;
  etherType?: number;
  /** 802.1Q / 802.1ad VLAN ids, outermost first. */
  vlans?: number[];
  family?: IpFamily;
  src?: string;
  dst?: string;
  /** Length of the IP datagram according to its header (IPv6: 40 + payload length). */
  ipLength?: number;
  ttl?: number;
  dontFragment?: boolean;
  proto?: number;
  protoName?: string;
  extHeaders?: string[];
  fragment?: FragmentInfo;
  sport?: number;
  dport?: number;
  /** Set TCP flags in the order F S R P A U E C, e.g. "S", "SA", "FPA"; "" for none. */
  tcpFlags?: string;
  seq?: number;
  ack?: number;
  window?: number;
  icmpType?: number;
  icmpCode?: number;
  /** e.g. "echo-request", "dest-unreach/frag-needed". */
  icmpName?: string;
  icmpId?: number;
  icmpSeq?: number;
  /** Next-hop MTU of a fragmentation-needed / packet-too-big message. */
  mtu?: number;
  /** Target address of an NDP solicitation or advertisement. */
  ndpTarget?: string;
  /** L4 payload bytes present (after the TCP/UDP/ICMP header). */
  payloadLength?: number;
  /** The packet quoted by an ICMP error, decoded leniently (it is truncated by design). */
  inner?: PacketSummary;
  /** First problem met; fields above hold what was read before it. */
  error?: string;
}

export function decodePacket(bytes: Uint8Array, linkType: LinkType = "ethernet"): PacketSummary {
  const s: PacketSummary = { length: bytes instanceof Uint8Array ? bytes.length : 0 };
  try {
    if (!(bytes instanceof Uint8Array)) {
      s.error = "input is not a Uint8Array";
    } else if (linkType === "ethernet") {
      decodeEthernet(s, bytes);
    } else if (linkType === "ip") {
      decodeIp(s, bytes, 0, false, undefined);
    } else {
      s.error = `unknown link type ${String(linkType)}`;
    }
  } catch (e) {
    // Belt and braces: a decoder bug must not take down a test run that is printing a divergence.
    s.error ??= `internal decoder error: ${(e as Error)?.message ?? String(e)}`;
  }
  return s;
}

function fail(s: PacketSummary, msg: string): void {
  s.error ??= msg;
}

function decodeEthernet(s: PacketSummary, b: Uint8Array): void {
  if (b.length < 14) return fail(s, `truncated Ethernet header: ${b.length} of 14 bytes`);
  s.ethDst = formatMac(b.subarray(0, 6));
  s.ethSrc = formatMac(b.subarray(6, 12));
  let type = u16(b, 12);
  let off = 14;
  while (type === ETHERTYPE.VLAN || type === ETHERTYPE.QINQ) {
    if (off + 4 > b.length) return fail(s, "truncated VLAN tag");
    (s.vlans ??= []).push(u16(b, off) & 0x0fff);
    type = u16(b, off + 2);
    off += 4;
  }
  s.etherType = type;
  if (type === ETHERTYPE.IPV4) decodeIp(s, b, off, false, 4);
  else if (type === ETHERTYPE.IPV6) decodeIp(s, b, off, false, 6);
}

/** `quoted`: the bytes are an ICMP error's quote, so running out of bytes is expected, not an error. */
function decodeIp(s: PacketSummary, b: Uint8Array, l3: number, quoted: boolean, expect: IpFamily | undefined): void {
  const loc = locateIp(b, l3);
  if (loc.family === undefined) return fail(s, loc.error);
  if (expect !== undefined && loc.family !== expect) {
    return fail(s, `EtherType says IPv${expect} but the header is IPv${loc.family}`);
  }
  s.family = loc.family;
  s.src = formatIp(loc.src);
  s.dst = formatIp(loc.dst);
  s.ttl = loc.ttl;
  s.ipLength = loc.declaredEnd - l3;
  if (loc.family === 4) s.dontFragment = (b[l3 + 6]! & 0x40) !== 0;
  s.proto = loc.proto;
  s.protoName = protoName(loc.proto);
  if (loc.extHeaders.length > 0) s.extHeaders = loc.extHeaders.map((h) => EXT_NAMES[h.type]!);
  if (loc.fragment) s.fragment = loc.fragment;
  if (loc.error) return fail(s, loc.error);
  if (!quoted && loc.declaredEnd > b.length) {
    fail(s, `truncated: IP length is ${loc.declaredEnd - l3} bytes, ${b.length - l3} captured`);
  }
  // The L4 header lives in the first fragment only.
  if (loc.fragment && loc.fragment.offset !== 0) return;
  const l4 = { b, off: loc.l4Offset, end: loc.end, quoted, firstFragment: loc.fragment?.more === true };
  switch (loc.proto) {
    case IPPROTO.TCP:
      return decodeTcp(s, l4);
    case IPPROTO.UDP:
      return decodeUdp(s, l4);
    case IPPROTO.ICMP:
      return decodeIcmp(s, l4, 4);
    case IPPROTO.ICMPV6:
      return decodeIcmp(s, l4, 6);
  }
}

interface L4View {
  b: Uint8Array;
  off: number;
  end: number;
  quoted: boolean;
  /** The L4 header is here but its length fields describe the reassembled datagram. */
  firstFragment: boolean;
}

function short(s: PacketSummary, v: L4View, what: string, need: number): void {
  if (!v.quoted) fail(s, `truncated ${what}: ${Math.max(0, v.end - v.off)} of ${need} bytes`);
}

/** Flag letters in header bit order (the first letter of each enum tcp_flags member's name). */
export const TCP_FLAG_ORDER: [number, string][] = Object.values(TcpFlags).sort((a, b) => a - b).map((bit) => [bit, tcpFlagsText[bit]![0]!]);

function decodeTcp(s: PacketSummary, v: L4View): void {
  const { b, off } = v;
  const avail = v.end - off;
  // Fields are filled progressively: an ICMP quote carries only the first 8 bytes.
  if (avail < 4) return short(s, v, "TCP header", 20);
  s.sport = u16(b, off);
  s.dport = u16(b, off + 2);
  if (avail >= 8) s.seq = u32(b, off + 4);
  if (avail >= 12) s.ack = u32(b, off + 8);
  if (avail >= 14) s.tcpFlags = TCP_FLAG_ORDER.filter(([bit]) => b[off + 13]! & bit).map(([, c]) => c).join("");
  if (avail < 20) return short(s, v, "TCP header", 20);
  s.window = u16(b, off + 14);
  const hlen = (b[off + 12]! >> 4) * 4;
  if (hlen < 20) return fail(s, `bad TCP data offset ${hlen / 4} (< 5)`);
  // A first fragment too short for the TCP header is the "tiny fragment" attack (RFC 1858): worth flagging.
  if (hlen > avail) return short(s, v, "TCP options", hlen);
  s.payloadLength = avail - hlen;
}

function decodeUdp(s: PacketSummary, v: L4View): void {
  const { b, off } = v;
  const avail = v.end - off;
  if (avail < 4) return short(s, v, "UDP header", 8);
  s.sport = u16(b, off);
  s.dport = u16(b, off + 2);
  if (avail < 8) return short(s, v, "UDP header", 8);
  const len = u16(b, off + 4);
  if (v.quoted) return;
  if (v.firstFragment) {
    s.payloadLength = avail - 8;
    return;
  }
  if (len < 8) return fail(s, `bad UDP length ${len} (< 8)`);
  if (len > avail) return fail(s, `UDP length ${len} exceeds the ${avail} bytes of IP payload`);
  s.payloadLength = len - 8;
}

const ICMP4_TYPES: Record<number, string> = {
  0: "echo-reply",
  3: "dest-unreach",
  4: "source-quench",
  5: "redirect",
  8: "echo-request",
  11: "time-exceeded",
  12: "param-problem",
  13: "timestamp",
  14: "timestamp-reply",
};
const ICMP4_UNREACH: Record<number, string> = {
  0: "net-unreach",
  1: "host-unreach",
  2: "proto-unreach",
  3: "port-unreach",
  4: "frag-needed",
  5: "source-route-failed",
  9: "net-prohibited",
  10: "host-prohibited",
  13: "admin-prohibited",
};
const ICMP6_TYPES: Record<number, string> = {
  1: "dest-unreach",
  2: "packet-too-big",
  3: "time-exceeded",
  4: "param-problem",
  128: "echo-request",
  129: "echo-reply",
  133: "router-solicit",
  134: "router-advert",
  135: "neighbor-solicit",
  136: "neighbor-advert",
  137: "redirect",
};
const ICMP6_UNREACH: Record<number, string> = {
  0: "no-route",
  1: "admin-prohibited",
  2: "beyond-scope",
  3: "addr-unreach",
  4: "port-unreach",
  5: "policy-failed",
  6: "reject-route",
};

/** ICMP types whose body quotes the offending packet. */
export function isIcmpError(family: IpFamily, type: number): boolean {
  return family === 4 ? type === 3 || type === 4 || type === 5 || type === 11 || type === 12 : type >= 1 && type <= 4;
}

function icmpName(family: IpFamily, type: number, code: number): string {
  const names = family === 4 ? ICMP4_TYPES : ICMP6_TYPES;
  const base = names[type] ?? `type-${type}`;
  const unreachType = family === 4 ? 3 : 1;
  if (type === unreachType) {
    const codes = family === 4 ? ICMP4_UNREACH : ICMP6_UNREACH;
    return `${base}/${codes[code] ?? `code-${code}`}`;
  }
  return code === 0 ? base : `${base}/code-${code}`;
}

function decodeIcmp(s: PacketSummary, v: L4View, family: IpFamily): void {
  const { b, off } = v;
  const avail = v.end - off;
  const what = family === 4 ? "ICMP header" : "ICMPv6 header";
  if (avail < 2) return short(s, v, what, 8);
  const type = b[off]!;
  const code = b[off + 1]!;
  s.icmpType = type;
  s.icmpCode = code;
  s.icmpName = icmpName(family, type, code);
  if (avail < 8) return short(s, v, what, 8);
  s.payloadLength = avail - 8;
  const echo = family === 4 ? type === 0 || type === 8 : type === 128 || type === 129;
  if (echo) {
    s.icmpId = u16(b, off + 4);
    s.icmpSeq = u16(b, off + 6);
    return;
  }
  if (family === 4 && type === 3 && code === 4) s.mtu = u16(b, off + 6);
  if (family === 6 && type === 2) s.mtu = u32(b, off + 4);
  if (family === 6 && (type === 135 || type === 136)) {
    if (avail < 24) return short(s, v, "neighbor discovery message", 24);
    s.ndpTarget = formatIp(b.subarray(off + 8, off + 24));
    return;
  }
  // One level only: an error about an error is not supposed to exist, and recursion on garbage is a risk.
  if (isIcmpError(family, type) && !v.quoted) {
    const inner: PacketSummary = { length: avail - 8 };
    if (avail === 8) inner.error = "nothing quoted";
    else decodeIp(inner, b.subarray(off + 8, v.end), 0, true, undefined);
    s.inner = inner;
  }
}

// ---------------------------------------------------------------------------
// One-line rendering

/**
 * e.g. "10.0.0.1:1234 -> 10.0.0.2:80 TCP [S] len=60". `len` is the IP length
 * from the header; the capture length is shown only for non-IP frames.
 */
export function describePacket(input: Uint8Array | PacketSummary, linkType: LinkType = "ethernet"): string {
  const s = input instanceof Uint8Array ? decodePacket(input, linkType) : input;
  try {
    const vlan = s.vlans?.length ? `vlan ${s.vlans.join(".")} ` : "";
    return vlan + describeSummary(s, true);
  } catch (e) {
    return `<undescribable packet: ${(e as Error)?.message ?? String(e)}>`;
  }
}

function endpoint(family: IpFamily | undefined, addr: string | undefined, port: number | undefined): string {
  const a = addr ?? "?";
  if (port === undefined) return a;
  return family === 6 ? `[${a}]:${port}` : `${a}:${port}`;
}

function describeSummary(s: PacketSummary, outer: boolean): string {
  const parts: string[] = [];
  if (s.family === undefined) {
    if (s.ethSrc !== undefined) {
      const type = s.etherType !== undefined ? ` ethertype 0x${s.etherType.toString(16).padStart(4, "0")}` : "";
      const arp = s.etherType === ETHERTYPE.ARP ? " (ARP)" : "";
      parts.push(`${s.ethSrc} -> ${s.ethDst}${type}${arp}`);
    }
    if (outer) parts.push(`len=${s.length}`);
  } else {
    const ports = s.sport !== undefined && s.dport !== undefined;
    parts.push(
      `${endpoint(s.family, s.src, ports ? s.sport : undefined)} -> ${endpoint(s.family, s.dst, ports ? s.dport : undefined)}`,
    );
    parts.push(s.protoName ?? "?");
    if (s.tcpFlags !== undefined) parts.push(`[${s.tcpFlags}]`);
    if (s.icmpName !== undefined) parts.push(s.icmpName);
    if (s.icmpId !== undefined) parts.push(`id=${s.icmpId} seq=${s.icmpSeq}`);
    if (s.mtu !== undefined) parts.push(`mtu=${s.mtu}`);
    if (s.ndpTarget !== undefined) parts.push(`target=${s.ndpTarget}`);
    if (s.extHeaders) parts.push(`ext=${s.extHeaders.join(",")}`);
    if (s.fragment) {
      const f = s.fragment;
      parts.push(`frag id=0x${f.id.toString(16)} off=${f.offset}${f.more ? " MF" : ""}`);
    }
    if (outer && s.ipLength !== undefined) parts.push(`len=${s.ipLength}`);
    if (s.inner) parts.push(`{${describeSummary(s.inner, false)}}`);
  }
  if (s.error !== undefined) parts.push(`error: ${s.error}`);
  return parts.join(" ");
}
