/**
 * The read side of TUN offloads: one packet read with its virtio_net_hdr
 * becomes the plain IP packets the datapath decides, written into the
 * caller's buffers at a headroom offset (wireguard-go's bufs/sizes/offset
 * contract, so the datapath can prepend encapsulation in place).
 *
 *   GSO NONE            one packet; with NEEDS_CSUM its L4 checksum is completed
 *   GSO TCPV4 / TCPV6   TSO: gso_size-byte TCP segments
 *   GSO UDP_L4          USO: gso_size-byte UDP datagrams
 *   GSO UDP             UFO, refused: Linux stopped producing it in 4.14, and
 *                       it means IP fragmentation, not datagrams
 *
 * Each segment gets what the kernel's software GSO would give it: the
 * headers of the super-packet with its own lengths, IPv4 id = first id + i
 * and a fresh header checksum, TCP sequence advanced by the payload before
 * it, CWR only on the first segment and FIN/PSH only on the last, and a full
 * L4 checksum. The super-packet's L4 checksum field (a partial pseudo-header
 * sum) is never trusted: every segment's is computed from scratch.
 *
 * hdr_len is only validated against the packet, not used: the kernel fills
 * it with the length of the skb's linear part, which on forwarded packets
 * can include payload. The real header length comes from parsing the
 * headers (gso-layout.ts), as wireguard-go does.
 *
 * Everything is validated before the first byte is written, so a rejected
 * packet leaves the output buffers as they were.
 */
import { internetChecksum, pseudoHeaderSum4, pseudoHeaderSum6 } from "../../packet/checksum.js";
import { IPPROTO } from "../../packet/decode.js";
import { OffloadError } from "./errors.js";
import { gsoLayout, type GsoLayout } from "./gso-layout.js";
import { checkPartialChecksum, completePartialChecksum } from "./partial-checksum.js";
import {
  gsoKind,
  gsoTypeName,
  validateVirtioNetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  type VirtioNetHdr,
} from "./virtio-net-hdr.js";
import { get16, get32, overlaps, put16, put32 } from "./wire.js";

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/** Offsets of the checksum field inside the L4 header. */
const TCP_CSUM = 16;
const UDP_CSUM = 6;

/**
 * Writes the packets carried by `pkt` (an IP packet as read from the TUN,
 * without its virtio_net_hdr) into outBufs[i] at `offset`, sets sizes[i] to
 * each one's length and returns how many there are. `pkt` is not modified,
 * and may itself be a view of one of the output buffers. Throws OffloadError
 * (code OFFLOAD_INVALID) when the header is invalid or contradicts the
 * packet, or when the output buffers are too few or too small.
 */
export function split(pkt: Uint8Array, hdr: VirtioNetHdr, outBufs: Uint8Array[], sizes: number[], offset: number): number {
  validateVirtioNetHdr(hdr);
  if (!Number.isInteger(offset) || offset < 0) throw new OffloadError(`offset must be a non-negative integer, got ${offset}`);
  if (hdr.hdrLen > pkt.length) {
    throw new OffloadError(`virtio_net_hdr hdr_len ${hdr.hdrLen} is beyond the ${pkt.length}-byte packet`);
  }
  const needsCsum = (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
  if (needsCsum) checkPartialChecksum(pkt.length, hdr.csumStart, hdr.csumOffset);
  switch (gsoKind(hdr.gsoType)) {
    case VIRTIO_NET_HDR_GSO_NONE:
      return single(pkt, needsCsum ? hdr : undefined, outBufs, sizes, offset);
    case VIRTIO_NET_HDR_GSO_TCPV4:
    case VIRTIO_NET_HDR_GSO_TCPV6:
    case VIRTIO_NET_HDR_GSO_UDP_L4:
      return segment(pkt, hdr, needsCsum, outBufs, sizes, offset);
    case VIRTIO_NET_HDR_GSO_UDP:
      throw new OffloadError(
        "virtio_net_hdr gso_type UDP (UFO) is not supported: it asks for IP fragmentation, and Linux has not produced it since 4.14 (USO is GSO UDP_L4)",
      );
  }
  // validateVirtioNetHdr admits only the kinds above.
  throw new OffloadError(`virtio_net_hdr has unknown ${gsoTypeName(hdr.gsoType)}`);
}

function room(outBufs: Uint8Array[], i: number, offset: number, need: number): void {
  const have = outBufs[i]!.length - offset;
  if (have < need) {
    throw new OffloadError(`output buffer ${i} has ${Math.max(have, 0)} bytes after offset ${offset}; packet ${i} needs ${need}`);
  }
}

function enough(outBufs: Uint8Array[], count: number, what: string): void {
  if (outBufs.length < count) {
    throw new OffloadError(`${what} makes ${count} packet${count === 1 ? "" : "s"} but only ${outBufs.length} output buffer${outBufs.length === 1 ? " was" : "s were"} given`);
  }
}

/** GSO NONE: a copy, with the checksum finished when the kernel left it partial. */
function single(pkt: Uint8Array, partial: VirtioNetHdr | undefined, outBufs: Uint8Array[], sizes: number[], offset: number): number {
  enough(outBufs, 1, "GSO NONE");
  room(outBufs, 0, offset, pkt.length);
  const out = outBufs[0]!.subarray(offset, offset + pkt.length);
  // set() copies correctly even when pkt and out share memory.
  out.set(pkt);
  if (partial) completePartialChecksum(out, partial.csumStart, partial.csumOffset);
  sizes[0] = pkt.length;
  return 1;
}

function segment(pkt: Uint8Array, hdr: VirtioNetHdr, needsCsum: boolean, outBufs: Uint8Array[], sizes: number[], offset: number): number {
  const kind = gsoKind(hdr.gsoType);
  const name = gsoTypeName(hdr.gsoType);
  const version = pkt.length > 0 ? pkt[0]! >> 4 : -1;
  const want = kind === VIRTIO_NET_HDR_GSO_TCPV4 ? [4] : kind === VIRTIO_NET_HDR_GSO_TCPV6 ? [6] : [4, 6];
  if (!want.includes(version)) {
    throw new OffloadError(`GSO ${name} on a packet with IP version ${version < 0 ? "(empty packet)" : version}`);
  }
  const proto = kind === VIRTIO_NET_HDR_GSO_UDP_L4 ? IPPROTO.UDP : IPPROTO.TCP;
  const layout = gsoLayout(pkt, proto);
  if (typeof layout === "string") throw new OffloadError(`GSO ${name}: ${layout}`);
  const csumField = proto === IPPROTO.TCP ? TCP_CSUM : UDP_CSUM;
  if (needsCsum && (hdr.csumStart !== layout.l4Offset || hdr.csumOffset !== csumField)) {
    throw new OffloadError(
      `GSO ${name}: csum_start ${hdr.csumStart} / csum_offset ${hdr.csumOffset} do not name the ${proto === IPPROTO.TCP ? "TCP" : "UDP"} checksum (expected ${layout.l4Offset} / ${csumField})`,
    );
  }

  const gso = hdr.gsoSize;
  const payload = pkt.length - layout.headerLength;
  // A GSO packet with no payload is not split further; it still gets its checksums, as one segment.
  const count = Math.max(1, Math.ceil(payload / gso));
  enough(outBufs, count, `GSO ${name} with gso_size ${gso} and ${payload} payload bytes`);
  for (let i = 0; i < count; i++) room(outBufs, i, offset, layout.headerLength + Math.min(gso, payload - i * gso));

  // Segment 0's header lands on the source's header when reading in place;
  // later segments would then copy rewritten bytes. One copy avoids that.
  let src = pkt;
  for (let i = 0; i < count; i++) {
    const len = layout.headerLength + Math.min(gso, payload - i * gso);
    if (overlaps(pkt, 0, pkt.length, outBufs[i]!, offset, offset + len)) {
      src = pkt.slice();
      break;
    }
  }

  const pseudo =
    layout.family === 4 ? pseudoHeaderSum4(layout.src, layout.dst, proto, 0) : pseudoHeaderSum6(layout.src, layout.dst, proto, 0);
  const id = layout.family === 4 ? get16(src, 4) : 0;
  const seq = proto === IPPROTO.TCP ? get32(src, layout.l4Offset + 4) : 0;
  for (let i = 0; i < count; i++) {
    const start = layout.headerLength + i * gso;
    const end = Math.min(start + gso, pkt.length);
    const out = outBufs[i]!.subarray(offset, offset + layout.headerLength + (end - start));
    out.set(src.subarray(0, layout.headerLength), 0);
    out.set(src.subarray(start, end), layout.headerLength);
    writeSegment(out, layout, pseudo, { index: i, last: i === count - 1, id, seq: seq + i * gso });
    sizes[i] = out.length;
  }
  return count;
}

/** Fixes lengths, ids, sequence, flags and checksums of one segment whose bytes are in place. */
function writeSegment(out: Uint8Array, layout: GsoLayout, pseudo: number, s: { index: number; last: boolean; id: number; seq: number }): void {
  const l4 = layout.l4Offset;
  const l4Len = out.length - l4;
  if (layout.family === 4) {
    put16(out, 2, out.length);
    // Linux gives segment i the id of the first plus i (unless the sender
    // asked for fixed ids, which virtio_net_hdr cannot express).
    put16(out, 4, (s.id + s.index) & 0xffff);
    put16(out, 10, 0);
    put16(out, 10, internetChecksum(out, 0, l4));
  } else {
    put16(out, 4, out.length - 40);
  }
  let csum: number;
  if (layout.proto === IPPROTO.TCP) {
    put32(out, l4 + 4, s.seq % 0x1_0000_0000);
    let flags = out[l4 + 13]!;
    // CWR announces a window reduction once; FIN and PSH belong to the end of the data.
    if (s.index > 0) flags &= ~TCP_CWR;
    if (!s.last) flags &= ~(TCP_FIN | TCP_PSH);
    out[l4 + 13] = flags;
    put16(out, l4 + TCP_CSUM, 0);
    csum = internetChecksum(out, l4, out.length, pseudo + l4Len);
  } else {
    put16(out, l4 + 4, l4Len);
    put16(out, l4 + UDP_CSUM, 0);
    csum = internetChecksum(out, l4, out.length, pseudo + l4Len);
    // 0 would mean "no checksum"; its other representation keeps the datagram checked.
    if (csum === 0) csum = 0xffff;
  }
  put16(out, l4 + (layout.proto === IPPROTO.TCP ? TCP_CSUM : UDP_CSUM), csum);
}
