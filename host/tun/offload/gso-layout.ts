/**
 * Where the headers of a segmentable packet end: the one parse both
 * directions share, so that what coalesce builds is exactly what split (and
 * the kernel's GSO) will take apart.
 *
 * A segmentable packet is IPv4 (options are copied into every segment, as
 * the kernel does) or IPv6 with the upper layer straight after the fixed
 * header, carries TCP or UDP, is not a fragment,
 * and whose IP length field covers exactly the bytes present: every segment
 * repeats [0, headerLength) and the rest is payload, so trailing bytes or a
 * short packet would change what the payload is.
 *
 * IPv6 extension headers are refused rather than copied: which of them may
 * be repeated per segment (hop-by-hop, routing) and which may not (fragment)
 * is a policy the kernel itself does not apply to virtio GSO, and no Linux
 * sender produces them on a TSO/USO packet.
 */
import { IPPROTO, isIpv6ExtHeader, locateIp } from "../../packet/decode.js";

export interface GsoLayout {
  family: 4 | 6;
  proto: typeof IPPROTO.TCP | typeof IPPROTO.UDP;
  /** The L4 header's offset, which is the IP header length: a TUN packet starts with its IP header. */
  l4Offset: number;
  /** IP + L4 header bytes, repeated in front of every segment. */
  headerLength: number;
  /** Copies of the addresses, for pseudo-header sums. */
  src: Uint8Array;
  dst: Uint8Array;
}

const PROTO_NAME: Record<number, string> = { [IPPROTO.TCP]: "TCP", [IPPROTO.UDP]: "UDP" };

/**
 * The layout of `pkt` as a TCP or UDP packet that can be segmented, or a
 * sentence saying why it cannot be. Returns instead of throwing because the
 * write side asks this of every packet and most answers are a plain "no".
 */
export function gsoLayout(pkt: Uint8Array, proto: typeof IPPROTO.TCP | typeof IPPROTO.UDP): GsoLayout | string {
  const name = PROTO_NAME[proto]!;
  if (pkt.length > 0 && pkt[0]! >> 4 === 6 && pkt.length >= 40 && isIpv6ExtHeader(pkt[6]!)) {
    return `IPv6 extension header ${pkt[6]} before the ${name} header: segmentation offload with IPv6 extension headers is not supported`;
  }
  const loc = locateIp(pkt, 0);
  if (loc.family === undefined) return loc.error;
  if (loc.error) return loc.error;
  if (loc.fragment) return `IPv${loc.family} fragment (offset ${loc.fragment.offset}, more=${loc.fragment.more}) cannot be segmented`;
  if (loc.declaredEnd !== pkt.length) {
    return `IP length field says ${loc.declaredEnd} bytes but the packet has ${pkt.length}`;
  }
  if (loc.proto !== proto) return `IP protocol is ${loc.proto}, not ${name} (${proto})`;
  const l4 = loc.l4Offset;
  let l4Len = 8;
  if (proto === IPPROTO.TCP) {
    if (l4 + 20 > pkt.length) return `truncated TCP header: ${pkt.length - l4} of 20 bytes`;
    l4Len = (pkt[l4 + 12]! >> 4) * 4;
    if (l4Len < 20) return `bad TCP data offset ${l4Len / 4} (< 5)`;
  }
  if (l4 + l4Len > pkt.length) return `truncated ${name} header: ${pkt.length - l4} of ${l4Len} bytes`;
  return { family: loc.family, proto, l4Offset: l4, headerLength: l4 + l4Len, src: loc.src, dst: loc.dst };
}
