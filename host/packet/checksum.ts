// The Internet checksum (RFC 1071) and everything that feeds it: IPv4 header,
// TCP/UDP/ICMP/ICMPv6 with their pseudo-headers, and a verifier that
// recomputes every checksum in a packet from scratch.
//
// The verifier exists because a datapath that rewrites addresses or ports
// (NAT, load balancing) must patch checksums incrementally, and the only
// trustworthy oracle for "did it patch them right" is a full recomputation
// that shares no code with the incremental path.

import { isIcmpError, IPPROTO, locateIp, type IpLayout } from "./decode.js";

/** Folded 16-bit ones' complement sum of bytes[start, end), odd byte padded with zero. Not complemented. */
export function onesComplementSum(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (i < end) sum += bytes[i]! << 8;
  // Folding at the end is safe: 2^53 / 0xffff leaves room for ~128 TB of input.
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The value to store in a checksum field: the complement of the ones'
 * complement sum. `initial` is a partial sum, e.g. from `pseudoHeaderSum4`.
 * Summing a region that already contains a correct checksum yields 0.
 */
export function internetChecksum(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  return ~onesComplementSum(bytes, start, end, initial) & 0xffff;
}

/** Partial sum of the IPv4 pseudo-header (RFC 793 3.1 / RFC 768). */
export function pseudoHeaderSum4(src: Uint8Array, dst: Uint8Array, proto: number, l4Length: number): number {
  return onesComplementSum(src, 0, 4, onesComplementSum(dst, 0, 4, proto + l4Length));
}

/** Partial sum of the IPv6 pseudo-header (RFC 8200 8.1); `dst` is the final destination. */
export function pseudoHeaderSum6(src: Uint8Array, dst: Uint8Array, nextHeader: number, l4Length: number): number {
  // The 32-bit length contributes its two halves.
  const len = Math.floor(l4Length / 0x10000) + (l4Length & 0xffff);
  return onesComplementSum(src, 0, 16, onesComplementSum(dst, 0, 16, nextHeader + len));
}

/** Offset of the checksum field inside an L4 header, and the header's minimum size. */
function l4ChecksumField(proto: number): { name: string; field: number; min: number } | undefined {
  switch (proto) {
    case IPPROTO.TCP:
      return { name: "TCP", field: 16, min: 20 };
    case IPPROTO.UDP:
      return { name: "UDP", field: 6, min: 8 };
    case IPPROTO.ICMP:
      return { name: "ICMP", field: 2, min: 4 };
    case IPPROTO.ICMPV6:
      return { name: "ICMPv6", field: 2, min: 4 };
  }
  return undefined;
}

/** Starting sum for an L4 checksum: the pseudo-header, except for ICMPv4 which has none. */
function l4InitialSum(layout: IpLayout, proto: number): number {
  const len = layout.end - layout.l4Offset;
  if (proto === IPPROTO.ICMP) return 0;
  if (layout.family === 4) return pseudoHeaderSum4(layout.src, layout.pseudoDst, proto, len);
  return pseudoHeaderSum6(layout.src, layout.pseudoDst, proto, len);
}

/**
 * The correct L4 checksum for the segment at layout.l4Offset..layout.end,
 * computed as if the checksum field were zero.
 */
function computeL4(pkt: Uint8Array, layout: IpLayout, proto: number, field: number): number {
  const start = layout.l4Offset;
  // Checksum fields sit at even offsets, so summing around them keeps word alignment.
  const before = onesComplementSum(pkt, start, start + field, l4InitialSum(layout, proto));
  const c = internetChecksum(pkt, start + field + 2, layout.end, before);
  // UDP reserves 0 for "no checksum"; a computed 0 is sent as its other representation.
  return proto === IPPROTO.UDP && c === 0 ? 0xffff : c;
}

const hex = (v: number) => `0x${v.toString(16).padStart(4, "0")}`;

function readU16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >> 8;
  b[o + 1] = v & 0xff;
}

/**
 * Recomputes and stores the IPv4 header checksum and the L4 checksum, in
 * place. The L4 checksum is left alone for fragments (it covers bytes that
 * are not in this packet), truncated packets and protocols without one.
 * Returns `pkt` for chaining. Use after editing a built packet by hand.
 */
export function fillChecksums(pkt: Uint8Array, l3Offset = 0): Uint8Array {
  const layout = locateIp(pkt, l3Offset);
  if (layout.family === undefined || layout.error) return pkt;
  if (layout.family === 4) {
    writeU16(pkt, l3Offset + 10, 0);
    writeU16(pkt, l3Offset + 10, internetChecksum(pkt, l3Offset, layout.l4Offset));
  }
  if (layout.declaredEnd > pkt.length) return pkt;
  if (layout.fragment && (layout.fragment.more || layout.fragment.offset !== 0)) return pkt;
  const f = l4ChecksumField(layout.proto);
  if (!f || layout.end - layout.l4Offset < f.field + 2) return pkt;
  writeU16(pkt, layout.l4Offset + f.field, computeL4(pkt, layout, layout.proto, f.field));
  return pkt;
}

export interface ChecksumReport {
  /** True when no problem was found (skipped checks do not count against it). */
  ok: boolean;
  /** e.g. "TCP checksum wrong: expected 0x1c46, found 0x1c47". */
  problems: string[];
  /** Checksums that were recomputed and matched, e.g. "IPv4 header", "UDP". */
  checked: string[];
  /** Checks not performed, with the reason. */
  skipped: string[];
}

/**
 * Recomputes every checksum of the IP packet at `l3Offset` (pass 14 for an
 * untagged Ethernet frame). Never throws; malformed packets are problems.
 */
export function verifyChecksums(pkt: Uint8Array, l3Offset: number): ChecksumReport {
  const r: ChecksumReport = { ok: true, problems: [], checked: [], skipped: [] };
  try {
    verifyInto(r, pkt, l3Offset);
  } catch (e) {
    r.problems.push(`internal verifier error: ${(e as Error)?.message ?? String(e)}`);
  }
  r.ok = r.problems.length === 0;
  return r;
}

function verifyIpv4Header(r: ChecksumReport, pkt: Uint8Array, l3: number, hlen: number, label: string): void {
  const found = readU16(pkt, l3 + 10);
  const expected = internetChecksum(pkt, l3, l3 + 10, onesComplementSum(pkt, l3 + 12, l3 + hlen));
  // A header that sums to zero including its checksum is valid even if the
  // field holds the other representation of zero (0xffff vs 0x0000).
  if (internetChecksum(pkt, l3, l3 + hlen) === 0) r.checked.push(label);
  else r.problems.push(`${label} checksum wrong: expected ${hex(expected)}, found ${hex(found)}`);
}

function verifyInto(r: ChecksumReport, pkt: Uint8Array, l3: number): void {
  const layout = locateIp(pkt, l3);
  if (layout.family === undefined) {
    r.problems.push(layout.error);
    return;
  }
  if (layout.family === 4 && layout.l4Offset - l3 >= 20 && layout.l4Offset <= pkt.length) {
    verifyIpv4Header(r, pkt, l3, layout.l4Offset - l3, "IPv4 header");
  }
  if (layout.error) {
    r.problems.push(layout.error);
    return;
  }
  if (layout.declaredEnd > pkt.length) {
    r.problems.push(`truncated: IP length is ${layout.declaredEnd - l3} bytes, ${pkt.length - l3} present`);
    return;
  }
  const f = l4ChecksumField(layout.proto);
  const frag = layout.fragment;
  if (frag && (frag.more || frag.offset !== 0)) {
    // A non-first fragment's "protocol" may even be a further extension header, so name it only if known.
    r.skipped.push(`${f?.name ?? "L4"}: fragment (offset ${frag.offset}, more=${frag.more}); the checksum covers the reassembled datagram`);
    return;
  }
  if (!f) {
    r.skipped.push(`L4: no checksum known for protocol ${layout.proto}`);
    return;
  }
  if (layout.proto === IPPROTO.ICMPV6 && layout.family === 4) {
    r.skipped.push("ICMPv6: carried over IPv4, which has no ICMPv6 pseudo-header");
    return;
  }
  const start = layout.l4Offset;
  const len = layout.end - start;
  if (len < f.min) {
    r.problems.push(`truncated ${f.name} header: ${len} of ${f.min} bytes`);
    return;
  }
  const found = readU16(pkt, start + f.field);
  if (layout.proto === IPPROTO.UDP && found === 0) {
    // RFC 768 lets IPv4 senders opt out; RFC 8200 8.1 makes it mandatory over IPv6.
    if (layout.family === 4) r.skipped.push("UDP: checksum none (0) over IPv4");
    else r.problems.push("UDP checksum missing: 0 is not allowed over IPv6");
  } else {
    const expected = computeL4(pkt, layout, layout.proto, f.field);
    // Summing over the stored field accepts either representation of zero.
    if (internetChecksum(pkt, start, layout.end, l4InitialSum(layout, layout.proto)) === 0) r.checked.push(f.name);
    else r.problems.push(`${f.name} checksum wrong: expected ${hex(expected)}, found ${hex(found)}`);
  }

  if ((layout.proto === IPPROTO.ICMP || layout.proto === IPPROTO.ICMPV6) && len >= 8) {
    const family = layout.proto === IPPROTO.ICMP ? 4 : 6;
    if (isIcmpError(family, pkt[start]!)) verifyQuoted(r, pkt.subarray(start + 8, layout.end));
  }
}

function verifyQuoted(r: ChecksumReport, quoted: Uint8Array): void {
  const version = quoted.length > 0 ? quoted[0]! >> 4 : 0;
  if (version === 4) {
    const hlen = (quoted[0]! & 0x0f) * 4;
    if (hlen < 20) r.problems.push(`inner IPv4 header: bad header length ${hlen}`);
    else if (hlen > quoted.length) r.skipped.push("inner IPv4 header: truncated in the quote");
    else verifyIpv4Header(r, quoted, 0, hlen, "inner IPv4 header");
  } else if (version === 6) {
    r.skipped.push("inner IPv6 header: has no checksum");
  } else {
    r.skipped.push(`inner header: ${quoted.length === 0 ? "nothing quoted" : `unknown IP version ${version}`}`);
  }
  r.skipped.push("inner L4: the quote is usually truncated, so its checksum cannot be recomputed");
}
