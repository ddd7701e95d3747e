// Packet builders for tests, benchmarks and sample captures. Every builder
// returns complete bytes with correct lengths and checksums, so a test that
// wants a broken packet breaks one on purpose (flip a byte) instead of
// inheriting a mistake.
//
// Usage - the composed form, which is what most callers want:
//
//   const syn = packet4({ src: "10.0.0.1", dst: "10.0.0.2" })
//     .tcp({ sport: 1234, dport: 80, flags: { syn: true }, options: tcpOptions({ mss: 1460 }) });
//   const dns = packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: [{ type: 60 }] })
//     .udp({ sport: 5353, dport: 53, payload });
//   const ptb = packet6({ src: "fd00::fe", dst: "fd00::1" })
//     .icmp6Error({ type: 2, code: 0, mtu: 1280, quoted: quoteForIcmpError(bigPacket) });
//   const frame = ethernet({ src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02", vlan: 10 }, syn);
//
// The lower layer is there when a test needs an odd combination: the L4
// builders (tcp, udp, icmpEcho, ...) return a segment whose checksum is zero,
// and ipv4()/ipv6() fill it in because only they know the pseudo-header. So
// `ipv4({ src, dst, proto: 6, payload: tcp({...}) })` is also a finished packet.
//
// Addresses are strings ("10.0.0.1", "fd00::1") or raw bytes. All offsets and
// lengths follow the wire formats (network byte order); fragment offsets are in
// 8-byte units as on the wire.

import { ipBytes, parseMac, solicitedNodeMulticast, type IpInput } from "./address.js";
import { fillChecksums, internetChecksum } from "./checksum.js";
import { ETHERTYPE, IPPROTO, locateIp } from "./decode.js";
import { TcpFlags as TcpFlagBits } from "../generated/layout.js";

// ---------------------------------------------------------------------------
// Small helpers

function range(what: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new Error(`${what} must be an integer in 0..${max}, got ${v}`);
  return v;
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------------------
// IPv4

export interface Ipv4Spec {
  src: IpInput;
  dst: IpInput;
  proto: number;
  payload: Uint8Array;
  ttl?: number;
  id?: number;
  tos?: number;
  flags?: { df?: boolean; mf?: boolean };
  /** In 8-byte units, as on the wire. */
  fragOffset?: number;
  /** Raw option bytes; padded with End-of-Options to a multiple of 4 (at most 40). */
  options?: Uint8Array;
  /** Compute the L4 checksum (default true; never done for fragments). */
  l4Checksum?: boolean;
}

export function ipv4(spec: Ipv4Spec): Uint8Array {
  const src = ipBytes(spec.src, 4, "IPv4 source");
  const dst = ipBytes(spec.dst, 4, "IPv4 destination");
  const options = spec.options ?? EMPTY;
  const optLen = Math.ceil(options.length / 4) * 4;
  if (optLen > 40) throw new Error(`IPv4 options are ${options.length} bytes; at most 40 fit in a header`);
  const hlen = 20 + optLen;
  const total = hlen + spec.payload.length;
  if (total > 0xffff) throw new Error(`IPv4 packet would be ${total} bytes; the limit is 65535`);
  const fragOffset = range("IPv4 fragOffset", spec.fragOffset ?? 0, 0x1fff);

  const b = new Uint8Array(total);
  b[0] = 0x40 | (hlen / 4);
  b[1] = range("IPv4 tos", spec.tos ?? 0, 0xff);
  put16(b, 2, total);
  put16(b, 4, range("IPv4 id", spec.id ?? 0, 0xffff));
  put16(b, 6, (spec.flags?.df ? 0x4000 : 0) | (spec.flags?.mf ? 0x2000 : 0) | fragOffset);
  b[8] = range("IPv4 ttl", spec.ttl ?? 64, 0xff);
  b[9] = range("IPv4 proto", spec.proto, 0xff);
  b.set(src, 12);
  b.set(dst, 16);
  b.set(options, 20);
  b.set(spec.payload, hlen);
  if (spec.l4Checksum === false) put16(b, 10, internetChecksum(b, 0, hlen));
  else fillChecksums(b, 0);
  return b;
}

// ---------------------------------------------------------------------------
// IPv6

export interface Ipv6ExtHeaderSpec {
  /** 0 hop-by-hop, 43 routing, 44 fragment, 60 destination options. */
  type: 0 | 43 | 44 | 60;
  /**
   * Everything after the next-header and length bytes. Options headers are
   * padded with Pad1/PadN, routing headers with zeros, to a multiple of 8.
   * Default: padding only (routing: type 0 with no segments left).
   */
  body?: Uint8Array;
  /** Fragment header: offset in 8-byte units. */
  fragOffset?: number;
  /** Fragment header: more-fragments flag. */
  more?: boolean;
  /** Fragment header: identification. */
  id?: number;
}

export interface Ipv6Spec {
  src: IpInput;
  dst: IpInput;
  /** Protocol of `payload`; the chain of extension headers ends with it. */
  nextHeader: number;
  payload: Uint8Array;
  hopLimit?: number;
  flowLabel?: number;
  trafficClass?: number;
  /** In wire order; each one's next-header field is filled from its successor. */
  extHeaders?: Ipv6ExtHeaderSpec[];
  /** Compute the L4 checksum (default true; never done for fragments). */
  l4Checksum?: boolean;
}

/** Pad1/PadN padding of `n` bytes, so options headers stay parseable (RFC 8200 4.2). */
function optionPadding(n: number): Uint8Array {
  const p = new Uint8Array(n); // n === 1: a single Pad1 (0x00)
  if (n >= 2) {
    p[0] = 1;
    p[1] = n - 2;
  }
  return p;
}

function extHeader(h: Ipv6ExtHeaderSpec, next: number): Uint8Array {
  if (h.type === IPPROTO.FRAGMENT) {
    if (h.body) throw new Error("IPv6 fragment header takes fragOffset/more/id, not a body");
    const b = new Uint8Array(8);
    b[0] = next;
    put16(b, 2, (range("IPv6 fragOffset", h.fragOffset ?? 0, 0x1fff) << 3) | (h.more ? 1 : 0));
    put32(b, 4, range("IPv6 fragment id", h.id ?? 0, 0xffffffff));
    return b;
  }
  if (h.type !== 0 && h.type !== 43 && h.type !== 60) throw new Error(`unsupported IPv6 extension header type ${h.type}`);
  const body = h.body ?? (h.type === IPPROTO.ROUTING ? new Uint8Array(6) : EMPTY);
  if (h.type === IPPROTO.ROUTING && body.length < 2) {
    throw new Error("IPv6 routing header body needs at least routing type and segments left");
  }
  const total = Math.max(8, Math.ceil((2 + body.length) / 8) * 8);
  if (total > 256 * 8) throw new Error(`IPv6 extension header would be ${total} bytes; at most 2048 fit`);
  const b = new Uint8Array(total);
  b[0] = next;
  b[1] = total / 8 - 1;
  b.set(body, 2);
  if (h.type !== IPPROTO.ROUTING) b.set(optionPadding(total - 2 - body.length), 2 + body.length);
  return b;
}

export function ipv6(spec: Ipv6Spec): Uint8Array {
  const src = ipBytes(spec.src, 6, "IPv6 source");
  const dst = ipBytes(spec.dst, 6, "IPv6 destination");
  const exts = spec.extHeaders ?? [];
  const chain = exts.map((h, i) => extHeader(h, i + 1 < exts.length ? exts[i + 1]!.type : spec.nextHeader));
  const payloadLength = chain.reduce((n, h) => n + h.length, 0) + spec.payload.length;
  if (payloadLength > 0xffff) throw new Error(`IPv6 payload would be ${payloadLength} bytes; jumbograms are not supported`);

  const b = new Uint8Array(40 + payloadLength);
  const tc = range("IPv6 trafficClass", spec.trafficClass ?? 0, 0xff);
  const flow = range("IPv6 flowLabel", spec.flowLabel ?? 0, 0xfffff);
  put32(b, 0, ((6 << 28) | (tc << 20) | flow) >>> 0);
  put16(b, 4, payloadLength);
  b[6] = exts.length > 0 ? exts[0]!.type : range("IPv6 nextHeader", spec.nextHeader, 0xff);
  b[7] = range("IPv6 hopLimit", spec.hopLimit ?? 64, 0xff);
  b.set(src, 8);
  b.set(dst, 24);
  let o = 40;
  for (const h of chain) {
    b.set(h, o);
    o += h.length;
  }
  b.set(spec.payload, o);
  if (spec.l4Checksum !== false) fillChecksums(b, 0);
  return b;
}

/**
 * Body for a routing extension header. Type 4 (segment routing, RFC 8754)
 * lists segments last-hop first; types 0 and 2 list them in travel order.
 */
export function routingBody(spec: { type: 0 | 2 | 4; segmentsLeft: number; addresses: IpInput[] }): Uint8Array {
  const addrs = spec.addresses.map((a) => ipBytes(a, 6, "routing header address"));
  const b = new Uint8Array(6 + 16 * addrs.length);
  b[0] = spec.type;
  b[1] = range("segmentsLeft", spec.segmentsLeft, 0xff);
  if (spec.type === 4) b[2] = Math.max(0, addrs.length - 1); // Last Entry
  addrs.forEach((a, i) => b.set(a, 6 + 16 * i));
  return b;
}

// ---------------------------------------------------------------------------
// L4 (checksums left zero; ipv4()/ipv6() fill them)

export interface TcpFlags {
  fin?: boolean;
  syn?: boolean;
  rst?: boolean;
  psh?: boolean;
  ack?: boolean;
  urg?: boolean;
  ece?: boolean;
  cwr?: boolean;
}

export interface TcpSpec {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags?: TcpFlags;
  window?: number;
  urgent?: number;
  /** Raw option bytes (see tcpOptions), padded with End-of-Options to a multiple of 4, at most 40. */
  options?: Uint8Array;
  payload?: Uint8Array;
}

export function tcp(spec: TcpSpec): Uint8Array {
  const options = spec.options ?? EMPTY;
  const optLen = Math.ceil(options.length / 4) * 4;
  if (optLen > 40) throw new Error(`TCP options are ${options.length} bytes; at most 40 fit in a header`);
  const hlen = 20 + optLen;
  const payload = spec.payload ?? EMPTY;
  const b = new Uint8Array(hlen + payload.length);
  put16(b, 0, range("TCP sport", spec.sport, 0xffff));
  put16(b, 2, range("TCP dport", spec.dport, 0xffff));
  put32(b, 4, range("TCP seq", spec.seq ?? 0, 0xffffffff));
  put32(b, 8, range("TCP ack", spec.ack ?? 0, 0xffffffff));
  b[12] = (hlen / 4) << 4;
  const f = spec.flags ?? {};
  b[13] =
    (f.fin ? TcpFlagBits.TCP_FIN : 0) |
    (f.syn ? TcpFlagBits.TCP_SYN : 0) |
    (f.rst ? TcpFlagBits.TCP_RST : 0) |
    (f.psh ? TcpFlagBits.TCP_PSH : 0) |
    (f.ack ? TcpFlagBits.TCP_ACK : 0) |
    (f.urg ? TcpFlagBits.TCP_URG : 0) |
    (f.ece ? TcpFlagBits.TCP_ECE : 0) |
    (f.cwr ? TcpFlagBits.TCP_CWR : 0);
  put16(b, 14, range("TCP window", spec.window ?? 65535, 0xffff));
  put16(b, 18, range("TCP urgent", spec.urgent ?? 0, 0xffff));
  b.set(options, 20);
  b.set(payload, hlen);
  return b;
}

/** SYN options in the order Linux sends them, so captures look familiar (20 bytes with all four). */
export function tcpOptions(spec: {
  mss?: number;
  sackPermitted?: boolean;
  timestamp?: { value: number; echo: number };
  windowScale?: number;
}): Uint8Array {
  const out: number[] = [];
  if (spec.mss !== undefined) {
    const m = range("TCP MSS", spec.mss, 0xffff);
    out.push(2, 4, m >> 8, m & 0xff);
  }
  if (spec.sackPermitted) out.push(4, 2);
  if (spec.timestamp) {
    const t = new Uint8Array(8);
    put32(t, 0, range("TCP timestamp value", spec.timestamp.value, 0xffffffff));
    put32(t, 4, range("TCP timestamp echo", spec.timestamp.echo, 0xffffffff));
    out.push(8, 10, ...t);
  }
  if (spec.windowScale !== undefined) out.push(1, 3, 3, range("TCP window scale", spec.windowScale, 14));
  return Uint8Array.from(out);
}

export interface UdpSpec {
  sport: number;
  dport: number;
  payload?: Uint8Array;
}

export function udp(spec: UdpSpec): Uint8Array {
  const payload = spec.payload ?? EMPTY;
  const b = new Uint8Array(8 + payload.length);
  put16(b, 0, range("UDP sport", spec.sport, 0xffff));
  put16(b, 2, range("UDP dport", spec.dport, 0xffff));
  put16(b, 4, range("UDP length", b.length, 0xffff));
  b.set(payload, 8);
  return b;
}

export interface EchoSpec {
  request: boolean;
  id: number;
  seq: number;
  payload?: Uint8Array;
}

function icmpMessage(type: number, code: number, rest: Uint8Array, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + body.length);
  b[0] = range("ICMP type", type, 0xff);
  b[1] = range("ICMP code", code, 0xff);
  b.set(rest, 4);
  b.set(body, 8);
  return b;
}

function echoRest(spec: EchoSpec): Uint8Array {
  const r = new Uint8Array(4);
  put16(r, 0, range("echo id", spec.id, 0xffff));
  put16(r, 2, range("echo seq", spec.seq, 0xffff));
  return r;
}

export function icmpEcho(spec: EchoSpec): Uint8Array {
  return icmpMessage(spec.request ? 8 : 0, 0, echoRest(spec), spec.payload ?? EMPTY);
}

export function icmp6Echo(spec: EchoSpec): Uint8Array {
  return icmpMessage(spec.request ? 128 : 129, 0, echoRest(spec), spec.payload ?? EMPTY);
}

export interface IcmpErrorSpec {
  /** ICMPv4: 3 dest-unreach, 4 source-quench, 5 redirect, 11 time-exceeded, 12 param-problem. ICMPv6: 1-4. */
  type: number;
  code: number;
  /** The offending packet as a router would quote it; see quoteForIcmpError. */
  quoted: Uint8Array;
  /** Next-hop MTU: ICMPv4 type 3 code 4, ICMPv6 type 2. */
  mtu?: number;
  /** Offset of the offending byte: ICMPv4 type 12, ICMPv6 type 4. */
  pointer?: number;
}

export function icmpError(spec: IcmpErrorSpec): Uint8Array {
  const rest = new Uint8Array(4);
  if (spec.mtu !== undefined) put16(rest, 2, range("ICMP next-hop MTU", spec.mtu, 0xffff));
  if (spec.pointer !== undefined) rest[0] = range("ICMP pointer", spec.pointer, 0xff);
  return icmpMessage(spec.type, spec.code, rest, spec.quoted);
}

export function icmp6Error(spec: IcmpErrorSpec): Uint8Array {
  const rest = new Uint8Array(4);
  if (spec.mtu !== undefined) put32(rest, 0, range("ICMPv6 MTU", spec.mtu, 0xffffffff));
  if (spec.pointer !== undefined) put32(rest, 0, range("ICMPv6 pointer", spec.pointer, 0xffffffff));
  return icmpMessage(spec.type, spec.code, rest, spec.quoted);
}

export interface NdpSpec {
  /** "solicit" (type 135, default) or "advert" (type 136). */
  kind?: "solicit" | "advert";
  target: IpInput;
  /** Link-layer address option: source (solicit) or target (advert) MAC. Omitted if absent. */
  linkAddr?: string | Uint8Array;
  /** Advertisement flags. */
  router?: boolean;
  solicited?: boolean;
  override?: boolean;
}

export function icmp6Ndp(spec: NdpSpec): Uint8Array {
  const advert = spec.kind === "advert";
  const rest = new Uint8Array(4);
  if (advert) rest[0] = (spec.router ? 0x80 : 0) | (spec.solicited ? 0x40 : 0) | (spec.override ? 0x20 : 0);
  const target = ipBytes(spec.target, 6, "NDP target");
  let body = target;
  if (spec.linkAddr !== undefined) {
    const mac = typeof spec.linkAddr === "string" ? parseMac(spec.linkAddr) : spec.linkAddr;
    if (mac.length !== 6) throw new Error(`NDP link-layer address must be 6 bytes, got ${mac.length}`);
    // Option type 1 = source, 2 = target link-layer address; length in 8-octet units.
    body = concat(target, Uint8Array.of(advert ? 2 : 1, 1), mac);
  }
  return icmpMessage(advert ? 136 : 135, 0, rest, body);
}

// ---------------------------------------------------------------------------
// Composed builders

export type Ipv4Header = Omit<Ipv4Spec, "proto" | "payload">;
export type Ipv6Header = Omit<Ipv6Spec, "nextHeader" | "payload">;

export interface Packet4Builder {
  tcp(spec: TcpSpec): Uint8Array;
  udp(spec: UdpSpec): Uint8Array;
  icmpEcho(spec: EchoSpec): Uint8Array;
  icmpError(spec: IcmpErrorSpec): Uint8Array;
  /** Any protocol; the L4 checksum is still filled if `proto` is TCP/UDP/ICMP. */
  raw(proto: number, payload: Uint8Array): Uint8Array;
}

export interface Packet6Builder {
  tcp(spec: TcpSpec): Uint8Array;
  udp(spec: UdpSpec): Uint8Array;
  icmp6Echo(spec: EchoSpec): Uint8Array;
  icmp6Error(spec: IcmpErrorSpec): Uint8Array;
  /** Hop limit defaults to 255 here: receivers drop NDP with anything else (RFC 4861 7.1.1). */
  icmp6Ndp(spec: NdpSpec): Uint8Array;
  raw(nextHeader: number, payload: Uint8Array): Uint8Array;
}

export function packet4(header: Ipv4Header): Packet4Builder {
  const raw = (proto: number, payload: Uint8Array) => ipv4({ ...header, proto, payload });
  return {
    raw,
    tcp: (s) => raw(IPPROTO.TCP, tcp(s)),
    udp: (s) => raw(IPPROTO.UDP, udp(s)),
    icmpEcho: (s) => raw(IPPROTO.ICMP, icmpEcho(s)),
    icmpError: (s) => raw(IPPROTO.ICMP, icmpError(s)),
  };
}

export function packet6(header: Ipv6Header): Packet6Builder {
  const raw = (nextHeader: number, payload: Uint8Array) => ipv6({ ...header, nextHeader, payload });
  return {
    raw,
    tcp: (s) => raw(IPPROTO.TCP, tcp(s)),
    udp: (s) => raw(IPPROTO.UDP, udp(s)),
    icmp6Echo: (s) => raw(IPPROTO.ICMPV6, icmp6Echo(s)),
    icmp6Error: (s) => raw(IPPROTO.ICMPV6, icmp6Error(s)),
    icmp6Ndp: (s) =>
      ipv6({ ...header, hopLimit: header.hopLimit ?? 255, nextHeader: IPPROTO.ICMPV6, payload: icmp6Ndp(s) }),
  };
}

/**
 * A neighbour solicitation as a host sends it: from `src` to the target's
 * solicited-node multicast group, hop limit 255, with a source link-layer option.
 */
export function neighborSolicitation(spec: { src: IpInput; target: IpInput; srcMac?: string | Uint8Array }): Uint8Array {
  return packet6({ src: spec.src, dst: solicitedNodeMulticast(spec.target) }).icmp6Ndp({
    target: spec.target,
    linkAddr: spec.srcMac,
  });
}

// ---------------------------------------------------------------------------
// ICMP error quoting and fragmentation

/** IPv6 minimum MTU: an ICMPv6 error must fit in it (RFC 4443 2.4(c)). */
const IPV6_MIN_MTU = 1280;

/**
 * What a router quotes from the offending IP packet `pkt`: IPv4 header plus
 * the first 8 payload bytes (RFC 792); for IPv6 as much as keeps the error,
 * with its own 40-byte IPv6 and 8-byte ICMPv6 headers, within 1280 bytes.
 * Trailing link-layer padding beyond the IP length is never quoted.
 */
export function quoteForIcmpError(pkt: Uint8Array): Uint8Array {
  const loc = locateIp(pkt, 0);
  if (loc.family === undefined) throw new Error(`quoteForIcmpError: not an IP packet (${loc.error})`);
  if (loc.family === 4) {
    const hlen = (pkt[0]! & 0x0f) * 4;
    return pkt.slice(0, Math.min(hlen + 8, loc.end));
  }
  return pkt.slice(0, Math.min(loc.end, IPV6_MIN_MTU - 40 - 8));
}

/** Non-first IPv4 fragments keep only options whose "copied" bit is set (RFC 791). */
function copiedIpv4Options(opts: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < opts.length; ) {
    const type = opts[i]!;
    if (type === 0) break;
    if (type === 1) {
      i++;
      continue;
    }
    const len = opts[i + 1] ?? 0;
    if (len < 2 || i + len > opts.length) break;
    if (type & 0x80) out.push(...opts.subarray(i, i + len));
    i += len;
  }
  return Uint8Array.from(out);
}

/**
 * Splits an IPv4 packet into fragments carrying at most `maxPayload` bytes
 * each (rounded down to a multiple of 8). The first fragment carries the
 * original L4 header and checksum. Works on a fragment too (offsets add up).
 */
export function fragment4(pkt: Uint8Array, maxPayload: number): Uint8Array[] {
  const loc = locateIp(pkt, 0);
  if (loc.family !== 4 || loc.error) throw new Error(`fragment4: not a well-formed IPv4 packet${loc.error ? ` (${loc.error})` : ""}`);
  const step = Math.floor(maxPayload / 8) * 8;
  if (step < 8) throw new Error(`fragment4: maxPayload ${maxPayload} is below the 8-byte fragment unit`);
  const hlen = loc.l4Offset;
  const payload = pkt.subarray(hlen, loc.end);
  const field = (pkt[6]! << 8) | pkt[7]!;
  const baseOffset = field & 0x1fff;
  const lastMore = (field & 0x2000) !== 0;
  const common = {
    src: loc.src,
    dst: loc.dst,
    proto: loc.proto,
    ttl: loc.ttl,
    id: (pkt[4]! << 8) | pkt[5]!,
    tos: pkt[1]!,
    l4Checksum: false,
  };
  const firstOptions = pkt.subarray(20, hlen);
  const laterOptions = copiedIpv4Options(firstOptions);
  const out: Uint8Array[] = [];
  for (let o = 0; o === 0 || o < payload.length; o += step) {
    const last = o + step >= payload.length;
    out.push(
      ipv4({
        ...common,
        flags: { df: (field & 0x4000) !== 0, mf: last ? lastMore : true },
        fragOffset: baseOffset + o / 8,
        options: o === 0 ? firstOptions : laterOptions,
        payload: payload.subarray(o, Math.min(o + step, payload.length)),
      }),
    );
  }
  return out;
}

/**
 * Splits an IPv6 packet into fragments whose fragmentable part is at most
 * `maxPayload` bytes (rounded down to a multiple of 8). Hop-by-hop and routing
 * headers (and anything before the last of them) are repeated in each fragment
 * (RFC 8200 4.5); a fragment header with identification `id` follows them.
 */
export function fragment6(pkt: Uint8Array, maxPayload: number, id: number): Uint8Array[] {
  const loc = locateIp(pkt, 0);
  if (loc.family !== 6 || loc.error) throw new Error(`fragment6: not a well-formed IPv6 packet${loc.error ? ` (${loc.error})` : ""}`);
  if (loc.fragment) throw new Error("fragment6: packet already has a fragment header");
  const step = Math.floor(maxPayload / 8) * 8;
  if (step < 8) throw new Error(`fragment6: maxPayload ${maxPayload} is below the 8-byte fragment unit`);

  let split = 0; // number of ext headers in the unfragmentable part
  loc.extHeaders.forEach((h, i) => {
    if (h.type === IPPROTO.HOPOPTS || h.type === IPPROTO.ROUTING) split = i + 1;
  });
  const unfragEnd = split > 0 ? loc.extHeaders[split - 1]!.offset + loc.extHeaders[split - 1]!.length : 40;
  const firstFragmentable = split < loc.extHeaders.length ? loc.extHeaders[split]!.type : loc.proto;
  // Where the "next header" byte pointing into the fragmentable part lives.
  const nhAt = split > 0 ? loc.extHeaders[split - 1]!.offset : 6;
  const fragmentable = pkt.subarray(unfragEnd, loc.end);

  const out: Uint8Array[] = [];
  for (let o = 0; o === 0 || o < fragmentable.length; o += step) {
    const chunk = fragmentable.subarray(o, Math.min(o + step, fragmentable.length));
    const f = new Uint8Array(unfragEnd + 8 + chunk.length);
    f.set(pkt.subarray(0, unfragEnd), 0);
    f[nhAt] = IPPROTO.FRAGMENT;
    put16(f, 4, f.length - 40);
    f[unfragEnd] = firstFragmentable;
    put16(f, unfragEnd + 2, ((o / 8) << 3) | (o + step < fragmentable.length ? 1 : 0));
    put32(f, unfragEnd + 4, range("IPv6 fragment id", id, 0xffffffff));
    f.set(chunk, unfragEnd + 8);
    out.push(f);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Ethernet

export interface VlanTag {
  id: number;
  pcp?: number;
  dei?: boolean;
}

export interface EthernetSpec {
  /** Default 02:00:00:00:00:01 (locally administered). */
  src?: string | Uint8Array;
  /** Default 02:00:00:00:00:02. */
  dst?: string | Uint8Array;
  /** Default: inferred from the IP version of the payload. */
  etherType?: number;
  /** 802.1Q tag inserted after the source MAC. */
  vlan?: number | VlanTag;
}

function mac(v: string | Uint8Array | undefined, dflt: string, what: string): Uint8Array {
  const m = v === undefined ? parseMac(dflt) : typeof v === "string" ? parseMac(v) : v;
  if (m.length !== 6) throw new Error(`Ethernet ${what} must be 6 bytes, got ${m.length}`);
  return m;
}

export function ethernet(spec: EthernetSpec, payload: Uint8Array): Uint8Array {
  let etherType = spec.etherType;
  if (etherType === undefined) {
    const version = payload.length > 0 ? payload[0]! >> 4 : -1;
    if (version === 4) etherType = ETHERTYPE.IPV4;
    else if (version === 6) etherType = ETHERTYPE.IPV6;
    else throw new Error("ethernet: etherType not given and the payload is not IPv4 or IPv6");
  }
  const tag = typeof spec.vlan === "number" ? { id: spec.vlan } : spec.vlan;
  const hlen = tag ? 18 : 14;
  const b = new Uint8Array(hlen + payload.length);
  b.set(mac(spec.dst, "02:00:00:00:00:02", "destination"), 0);
  b.set(mac(spec.src, "02:00:00:00:00:01", "source"), 6);
  if (tag) {
    put16(b, 12, ETHERTYPE.VLAN);
    put16(b, 14, (range("VLAN pcp", tag.pcp ?? 0, 7) << 13) | (tag.dei ? 0x1000 : 0) | range("VLAN id", tag.id, 0xfff));
  }
  put16(b, hlen - 2, range("etherType", etherType, 0xffff));
  b.set(payload, hlen);
  return b;
}
