/**
 * What the kernel puts on the wire for one packet written to an offload TUN:
 * its GSO segments (split() is the kernel's segmentation, modelled), or the
 * packet itself with a partial checksum finished. Tests compare these with
 * what one-by-one writes would have sent.
 */
import { completePartialChecksum, readVirtioNetHdr, split } from "../../host/tun/offload/index.js";
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE } from "../../host/tun/virtio-net-hdr.js";

export function wireSegments(w: { packet: Uint8Array; vnetHdr?: Uint8Array }): Uint8Array[] {
  const hdr = readVirtioNetHdr(w.vnetHdr!, 0);
  if (hdr.gsoType === VIRTIO_NET_HDR_GSO_NONE) {
    const p = w.packet.slice();
    if (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) completePartialChecksum(p, hdr.csumStart, hdr.csumOffset);
    return [p];
  }
  const bufs = Array.from({ length: 64 }, () => new Uint8Array(2000));
  const sizes: number[] = [];
  const n = split(w.packet, hdr, bufs, sizes, 0);
  return bufs.slice(0, n).map((b, i) => b.slice(0, sizes[i]));
}
