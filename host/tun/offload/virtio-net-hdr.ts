/**
 * struct virtio_net_hdr (linux/virtio_net.h) for the offload layer: the
 * device's codec (../virtio-net-hdr.ts) plus the validation that makes a
 * header safe to act on. The split and coalesce code only ever sees headers
 * that passed validateVirtioNetHdr, so their own checks are about the header
 * against its packet, never about the header alone.
 *
 *   offset size field
 *   0      1    flags        NEEDS_CSUM=1 (the L4 checksum is left to us), DATA_VALID=2
 *   1      1    gso_type     NONE=0 TCPV4=1 UDP=3 TCPV6=4 UDP_L4=5, | ECN=0x80
 *   2      2    hdr_len      bytes of IP+L4 headers (a hint: see split.ts)
 *   4      2    gso_size     payload bytes per segment
 *   6      2    csum_start   where the checksummed region starts (from the IP header)
 *   8      2    csum_offset  where the checksum field is, from csum_start
 *
 * Byte order: little-endian on x86-64 and arm64, which is what we run on. We
 * get it by sharing the TUN device's codec, which uses host order, rather
 * than by hard-coding LE: an IFF_VNET_HDR TUN speaks the legacy (pre-1.0)
 * virtio layout, which is native-endian; the kernel's tun_is_little_endian()
 * is true on LE hosts and otherwise only after TUNSETVNETLE, which we never
 * issue. TUNSETVNETHDRSZ changes the header's size (e.g. 12 with
 * num_buffers), not its byte order; we keep the default 10. Sharing the codec
 * means the device and this layer cannot disagree about the bytes.
 */
import { VIRTIO_NET_HDR_LEN } from "../device.js";
import {
  decodeVirtioNetHdr,
  encodeVirtioNetHdr,
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  type VirtioNetHdr,
} from "../virtio-net-hdr.js";
import { OffloadError } from "./errors.js";

export {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VIRTIO_NET_HDR_LEN,
  type VirtioNetHdr,
};

/** Flag bits a TUN may set. RSC_INFO (4) exists in the spec but only for virtio NICs, never for TUN. */
const KNOWN_FLAGS = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;

const GSO_NAMES: Record<number, string> = {
  [VIRTIO_NET_HDR_GSO_NONE]: "NONE",
  [VIRTIO_NET_HDR_GSO_TCPV4]: "TCPV4",
  [VIRTIO_NET_HDR_GSO_UDP]: "UDP",
  [VIRTIO_NET_HDR_GSO_TCPV6]: "TCPV6",
  [VIRTIO_NET_HDR_GSO_UDP_L4]: "UDP_L4",
};

/** A header that says "complete packet, nothing to do": what every non-offloaded packet carries. */
export const ZERO_VIRTIO_NET_HDR: Readonly<VirtioNetHdr> = Object.freeze({
  flags: 0,
  gsoType: VIRTIO_NET_HDR_GSO_NONE,
  hdrLen: 0,
  gsoSize: 0,
  csumStart: 0,
  csumOffset: 0,
});

/** gso_type without the ECN modifier bit. */
export function gsoKind(gsoType: number): number {
  return gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
}

/** "TCPV4", "TCPV4|ECN", "gso_type 9" - for messages. */
export function gsoTypeName(gsoType: number): string {
  const name = GSO_NAMES[gsoKind(gsoType)] ?? `gso_type ${gsoKind(gsoType)}`;
  return gsoType & VIRTIO_NET_HDR_GSO_ECN ? `${name}|ECN` : name;
}

function field(name: string, v: unknown, max: number): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
    throw new OffloadError(`virtio_net_hdr ${name} must be an integer in 0..${max}, got ${String(v)}`);
  }
}

/**
 * Checks what a header means on its own: field ranges, known flag bits and
 * gso types, ECN only on TCP, and a segment size for every GSO type. Throws
 * OffloadError. gso_size with GSO NONE is ignored (the kernel ignores it too),
 * and so are csum_start/csum_offset without NEEDS_CSUM.
 */
export function validateVirtioNetHdr(hdr: VirtioNetHdr): void {
  field("flags", hdr.flags, 0xff);
  field("gso_type", hdr.gsoType, 0xff);
  field("hdr_len", hdr.hdrLen, 0xffff);
  field("gso_size", hdr.gsoSize, 0xffff);
  field("csum_start", hdr.csumStart, 0xffff);
  field("csum_offset", hdr.csumOffset, 0xffff);
  const unknown = hdr.flags & ~KNOWN_FLAGS;
  if (unknown !== 0) throw new OffloadError(`virtio_net_hdr flags 0x${hdr.flags.toString(16)} has unknown bits 0x${unknown.toString(16)}`);
  const kind = gsoKind(hdr.gsoType);
  if (GSO_NAMES[kind] === undefined) throw new OffloadError(`virtio_net_hdr has unknown ${gsoTypeName(hdr.gsoType)}`);
  if (hdr.gsoType & VIRTIO_NET_HDR_GSO_ECN && kind !== VIRTIO_NET_HDR_GSO_TCPV4 && kind !== VIRTIO_NET_HDR_GSO_TCPV6) {
    // ECN says "the super-packet carries CWR, put it on the first segment only": a TCP notion.
    throw new OffloadError(`virtio_net_hdr ${gsoTypeName(hdr.gsoType)}: the ECN bit only applies to TCP segmentation`);
  }
  if (kind !== VIRTIO_NET_HDR_GSO_NONE && hdr.gsoSize === 0) {
    throw new OffloadError(`virtio_net_hdr gso_size 0 with gso_type ${gsoTypeName(hdr.gsoType)}: segmentation needs a segment size`);
  }
}

function span(buf: Uint8Array, at: number): void {
  if (!Number.isInteger(at) || at < 0 || at + VIRTIO_NET_HDR_LEN > buf.length) {
    throw new OffloadError(`virtio_net_hdr at ${at} needs ${VIRTIO_NET_HDR_LEN} bytes, the buffer has ${buf.length}`);
  }
}

/** Reads and validates the header at buf[at .. at+10), e.g. at = offset - VIRTIO_NET_HDR_LEN after a read. */
export function readVirtioNetHdr(buf: Uint8Array, at: number): VirtioNetHdr {
  span(buf, at);
  const hdr = decodeVirtioNetHdr(buf, at);
  validateVirtioNetHdr(hdr);
  return hdr;
}

/** Validates `hdr`, then writes it at buf[at .. at+10); nothing is written if it is invalid. */
export function writeVirtioNetHdr(buf: Uint8Array, at: number, hdr: VirtioNetHdr): void {
  span(buf, at);
  validateVirtioNetHdr(hdr);
  encodeVirtioNetHdr(buf, at, hdr);
}
