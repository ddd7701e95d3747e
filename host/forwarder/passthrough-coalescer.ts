/**
 * Offload passthrough's write side: consecutive packets of one flow that the
 * kernel handed over as plain packets with a partial checksum (GSO NONE +
 * NEEDS_CSUM: what a socket behind a veth sends when it does not segment on
 * its own, e.g. a stream of small UDP datagrams) go back to the kernel as ONE
 * TSO/USO super-packet, so one write(2) and one trip through the stack carry
 * many packets. The merging itself is ../tun/offload/coalesce.ts, the same
 * code split mode uses, whose rule is "the kernel's segmentation gives back
 * exactly the packets we had".
 *
 * Which packets may take part, and why only those:
 *   - NEEDS_CSUM with GSO NONE, csum_start at the L4 header and csum_offset
 *     at the TCP/UDP checksum field. Written one by one, the kernel would
 *     complete each one's checksum; in a super-packet its GSO computes the
 *     same checksum per segment, so what leaves is the same bytes. A packet
 *     with a complete checksum is NOT merged: merging makes the kernel
 *     recompute its checksum, and a checksum that was wrong (corruption on
 *     the way in) must stay wrong for the receiver to drop the packet.
 *   - TCP only when the device has TSO, UDP only when it has USO (a kernel
 *     that refused USO would refuse UDP super-packets on write too).
 * Everything else - super-packets (already GSO), complete packets, other
 * protocols, packets the datapath moved - goes out as it came, with its own
 * virtio_net_hdr, in batch order; merging never reaches across such a
 * packet, so per-flow order is the batch's order.
 *
 * coalesce() writes an all-zero header ("complete packet") in front of every
 * packet it leaves alone. Here such a packet is still partial, so its header
 * is saved before and put back after: it leaves exactly as it was read.
 */
import { IPPROTO } from "../packet/decode.js";
import { VIRTIO_NET_HDR_LEN } from "../tun/device.js";
import { coalesce } from "../tun/offload/coalesce.js";
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE } from "../tun/virtio-net-hdr.js";
import { endianness } from "node:os";

const HOST_LE = endianness() === "LE";
const TCP_CSUM_OFFSET = 16;
const UDP_CSUM_OFFSET = 6;

/** What the write side merged, for ForwarderStats. */
export interface CoalescingCounts {
  /** Super-packets written that carry more than one packet. */
  coalescedWrites: number;
  /** Packets carried by those super-packets (each would otherwise have been a write of its own). */
  coalescedPackets: number;
}

export class PassthroughCoalescer {
  /** What to write, in order: packets at `offset` of their buffer, their virtio_net_hdr in front. */
  readonly bufs: Uint8Array[] = [];
  readonly sizes: number[] = [];
  /** The run being handed to coalesce() (reused: no allocation per batch for the lists). */
  private readonly runBufs: Uint8Array[] = [];
  private readonly runSizes: number[] = [];
  /** The run's virtio_net_hdrs as read, 10 bytes each, to put back on packets that did not merge. */
  private saved = new Uint8Array(128 * VIRTIO_NET_HDR_LEN);

  constructor(private readonly offloads: { tcp: boolean; udp: boolean }) {}

  /**
   * Plans the write of bufs[i][offset, offset + sizes[i]) (each with its
   * virtio_net_hdr at offset - 10): fills this.bufs/this.sizes, merging runs
   * in place in the buffer of their first packet, and adds to `counts`.
   */
  plan(bufs: readonly Uint8Array[], sizes: readonly number[], offset: number, counts: CoalescingCounts): void {
    this.bufs.length = 0;
    this.sizes.length = 0;
    let i = 0;
    while (i < bufs.length) {
      if (!this.mergeable(bufs[i]!, offset)) {
        this.bufs.push(bufs[i]!);
        this.sizes.push(sizes[i]!);
        i++;
        continue;
      }
      let end = i + 1;
      while (end < bufs.length && this.mergeable(bufs[end]!, offset)) end++;
      if (end - i === 1) {
        this.bufs.push(bufs[i]!);
        this.sizes.push(sizes[i]!);
      } else {
        this.mergeRun(bufs, sizes, i, end, offset, counts);
      }
      i = end;
    }
  }

  /** Packets start..end-1 are all mergeable: coalesce them, restoring the headers of those left alone. */
  private mergeRun(bufs: readonly Uint8Array[], sizes: readonly number[], start: number, end: number, offset: number, counts: CoalescingCounts): void {
    const n = end - start;
    if (this.saved.length < n * VIRTIO_NET_HDR_LEN) this.saved = new Uint8Array(n * VIRTIO_NET_HDR_LEN);
    this.runBufs.length = 0;
    this.runSizes.length = 0;
    for (let k = 0; k < n; k++) {
      const buf = bufs[start + k]!;
      this.runBufs.push(buf);
      this.runSizes.push(sizes[start + k]!);
      this.saved.set(buf.subarray(offset - VIRTIO_NET_HDR_LEN, offset), k * VIRTIO_NET_HDR_LEN);
    }
    const written = coalesce(this.runBufs, this.runSizes, offset, this.offloads);
    for (const w of written) {
      const buf = this.runBufs[w.index]!;
      if (w.segments === 1) {
        buf.set(this.saved.subarray(w.index * VIRTIO_NET_HDR_LEN, (w.index + 1) * VIRTIO_NET_HDR_LEN), offset - VIRTIO_NET_HDR_LEN);
      } else {
        counts.coalescedWrites++;
        counts.coalescedPackets += w.segments;
      }
      this.bufs.push(buf);
      this.sizes.push(w.size);
    }
  }

  /** Whether the packet at buf[offset] is plain, partial, and its checksum fields name its TCP/UDP checksum (see the module comment). */
  private mergeable(buf: Uint8Array, offset: number): boolean {
    const hdr = offset - VIRTIO_NET_HDR_LEN;
    if (!(buf[hdr]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) || buf[hdr + 1] !== VIRTIO_NET_HDR_GSO_NONE) return false;
    const version = buf[offset]! >> 4;
    let l4: number;
    let proto: number;
    if (version === 4) {
      l4 = (buf[offset]! & 0x0f) * 4;
      proto = buf[offset + 9]!;
    } else if (version === 6) {
      l4 = 40;
      proto = buf[offset + 6]!;
    } else {
      return false;
    }
    let csumOffset: number;
    if (proto === IPPROTO.TCP && this.offloads.tcp) csumOffset = TCP_CSUM_OFFSET;
    else if (proto === IPPROTO.UDP && this.offloads.udp) csumOffset = UDP_CSUM_OFFSET;
    else return false;
    return hdr16(buf, hdr + 6) === l4 && hdr16(buf, hdr + 8) === csumOffset;
  }
}

/** A virtio_net_hdr u16 (host byte order: the legacy layout a TUN speaks). */
function hdr16(buf: Uint8Array, at: number): number {
  return HOST_LE ? buf[at]! | (buf[at + 1]! << 8) : (buf[at]! << 8) | buf[at + 1]!;
}
