/**
 * struct virtio_net_hdr (linux/virtio_net.h), the 10 bytes a vnetHdr TUN
 * exchanges with each packet: whether the L4 checksum is still to be done
 * (and where), and whether the packet is a segmentation super-packet (and the
 * segment size). Multi-byte fields are in host byte order: TUN uses the
 * legacy virtio layout unless TUNSETVNETLE/BE is set, which we never do.
 */
import { endianness } from "node:os";
import { VIRTIO_NET_HDR_LEN } from "./device.js";

const LITTLE_ENDIAN = endianness() === "LE";

/** flags */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;

/** gso_type */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** UDP segmentation (USO), Linux >= 6.2; missing from older installed headers. */
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

export interface VirtioNetHdr {
  flags: number;
  gsoType: number;
  /** Bytes of headers (IP + L4) before the payload that gso_size splits. */
  hdrLen: number;
  gsoSize: number;
  /** Where checksumming starts, from the start of the packet (the IP header on a TUN). */
  csumStart: number;
  /** Where the checksum goes, from csumStart. */
  csumOffset: number;
}

/**
 * The wire packets a packet read with this header stands for: a super-packet
 * (a GSO type) its segments, else 1. The headers each segment repeats are
 * worked out from csum_start and the L4 header, not taken from hdr_len: the
 * kernel fills hdr_len with the skb's linear length (virtio_net_hdr_from_skb:
 * skb_headlen), which is the whole packet when the skb was built linear, e.g.
 * by another TUN's write. native/tun_io.c admit() counts the same way.
 */
export function segmentsOf(buf: Uint8Array, hdrAt: number, pktAt: number, len: number): number {
  const gsoType = buf[hdrAt + 1]! & ~VIRTIO_NET_HDR_GSO_ECN;
  const gsoSize = u16(buf, hdrAt + 4);
  if (gsoType === VIRTIO_NET_HDR_GSO_NONE || gsoSize === 0) return 1;
  const csumStart = u16(buf, hdrAt + 6);
  let headers: number;
  if (!(buf[hdrAt]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) || csumStart >= len) headers = u16(buf, hdrAt + 2);
  else if (gsoType === VIRTIO_NET_HDR_GSO_TCPV4 || gsoType === VIRTIO_NET_HDR_GSO_TCPV6) headers = csumStart + 12 < len ? csumStart + (buf[pktAt + csumStart + 12]! >> 4) * 4 : len;
  else headers = csumStart + 8;
  return len > headers ? Math.ceil((len - headers) / gsoSize) : 1;
}

function u16(buf: Uint8Array, at: number): number {
  return LITTLE_ENDIAN ? buf[at]! | (buf[at + 1]! << 8) : (buf[at]! << 8) | buf[at + 1]!;
}

/** Reads the header at buf[at .. at+10), e.g. at = offset - VIRTIO_NET_HDR_LEN. */
export function decodeVirtioNetHdr(buf: Uint8Array, at: number): VirtioNetHdr {
  if (at < 0 || at + VIRTIO_NET_HDR_LEN > buf.length) throw new RangeError(`virtio_net_hdr at ${at} overruns a ${buf.length}-byte buffer`);
  const v = new DataView(buf.buffer, buf.byteOffset + at, VIRTIO_NET_HDR_LEN);
  return {
    flags: v.getUint8(0),
    gsoType: v.getUint8(1),
    hdrLen: v.getUint16(2, LITTLE_ENDIAN),
    gsoSize: v.getUint16(4, LITTLE_ENDIAN),
    csumStart: v.getUint16(6, LITTLE_ENDIAN),
    csumOffset: v.getUint16(8, LITTLE_ENDIAN),
  };
}

/** Writes the header at buf[at .. at+10); omitted fields are zero ("complete packet, nothing to do"). */
export function encodeVirtioNetHdr(buf: Uint8Array, at: number, hdr: Partial<VirtioNetHdr> = {}): void {
  if (at < 0 || at + VIRTIO_NET_HDR_LEN > buf.length) throw new RangeError(`virtio_net_hdr at ${at} overruns a ${buf.length}-byte buffer`);
  const v = new DataView(buf.buffer, buf.byteOffset + at, VIRTIO_NET_HDR_LEN);
  v.setUint8(0, hdr.flags ?? 0);
  v.setUint8(1, hdr.gsoType ?? VIRTIO_NET_HDR_GSO_NONE);
  v.setUint16(2, hdr.hdrLen ?? 0, LITTLE_ENDIAN);
  v.setUint16(4, hdr.gsoSize ?? 0, LITTLE_ENDIAN);
  v.setUint16(6, hdr.csumStart ?? 0, LITTLE_ENDIAN);
  v.setUint16(8, hdr.csumOffset ?? 0, LITTLE_ENDIAN);
}
