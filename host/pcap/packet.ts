/** One packet record of a capture file, whatever its format. */
import type { LinkType } from "./link-type.js";

export interface CapturePacket {
  /** 0-based position among the file's packet records (other pcapng blocks are not counted). */
  index: number;
  /** Nanoseconds since the Unix epoch; 0n when the record has no timestamp (pcapng Simple Packet Block). */
  timestampNs: bigint;
  linkType: LinkType;
  /** A view into the input bytes, not a copy: the bytes that were captured. */
  data: Uint8Array;
  /** Length on the wire; larger than data.length when the capture was cut at the snap length. */
  originalLength: number;
  /** pcapng interface id, local to its section (ids restart at each Section Header Block); 0 for classic pcap. */
  interfaceId: number;
}
