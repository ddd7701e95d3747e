/**
 * Finishing a CHECKSUM_PARTIAL packet (virtio_net_hdr NEEDS_CSUM). The kernel
 * hands such a packet over with the checksum field at csum_start+csum_offset
 * already holding the folded pseudo-header sum (not complemented), and
 * expects the receiver to do what the NIC would have: sum everything from
 * csum_start to the end of the packet, field included, and store the
 * complement. This is generic on purpose - it needs no idea of which
 * protocol sits at csum_start - which is why it is correct for TCP, UDP and
 * anything else the kernel offloads the same way.
 */
import { internetChecksum } from "../../packet/checksum.js";
import { OffloadError } from "./errors.js";
import { put16 } from "./wire.js";

/** csum_offset of the UDP checksum field; there a sum of 0 means "no checksum" (RFC 768), so 0 is sent as 0xffff. */
const UDP_CSUM_OFFSET = 6;

/**
 * Throws OffloadError unless the checksum region and field lie inside a
 * `length`-byte packet. Split checks this before writing anything.
 */
export function checkPartialChecksum(length: number, csumStart: number, csumOffset: number): void {
  if (csumStart >= length) {
    throw new OffloadError(`virtio_net_hdr csum_start ${csumStart} is beyond the ${length}-byte packet`);
  }
  if (csumStart + csumOffset + 2 > length) {
    throw new OffloadError(
      `virtio_net_hdr csum_start ${csumStart} + csum_offset ${csumOffset} puts the 2-byte checksum past the end of the ${length}-byte packet`,
    );
  }
}

/** Completes the partial checksum of pkt in place (see the module comment). Throws OffloadError on a bad range. */
export function completePartialChecksum(pkt: Uint8Array, csumStart: number, csumOffset: number): void {
  checkPartialChecksum(pkt.length, csumStart, csumOffset);
  let c = internetChecksum(pkt, csumStart, pkt.length);
  // The kernel writes CSUM_MANGLED_0 for every protocol; we do it only where
  // it matters (UDP) so a TCP result stays the plain arithmetic one - both
  // forms are the same number in ones' complement.
  if (c === 0 && csumOffset === UDP_CSUM_OFFSET) c = 0xffff;
  put16(pkt, csumStart + csumOffset, c);
}
