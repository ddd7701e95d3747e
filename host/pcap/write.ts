/**
 * Writing classic pcap files: little-endian, nanosecond-resolution magic
 * (0xa1b23c4d), version 2.4. A classic pcap file holds exactly one link type
 * (it lives in the global header), so a writer is bound to one LinkType;
 * packets of different link types need separate files (or pcapng).
 */
import type { LinkType } from "./link-type.js";

const MAGIC_NANOSECONDS = 0xa1b23c4d;
const VERSION_MAJOR = 2;
const VERSION_MINOR = 4;
const GLOBAL_HEADER_LENGTH = 24;
const RECORD_HEADER_LENGTH = 16;
const MAX_U32 = 0xffff_ffff;
const NS_PER_SECOND = 1_000_000_000n;

export const DEFAULT_SNAPLEN = 262144;

export interface PacketToWrite {
  timestampNs: bigint;
  data: Uint8Array;
  /** Defaults to data.length. */
  originalLength?: number;
}

export class PcapWriter {
  readonly linkType: LinkType;
  readonly snaplen: number;
  /** One header+data buffer per packet, copied at add() so later caller mutations don't leak in. */
  readonly #records: Uint8Array[] = [];
  #byteLength = GLOBAL_HEADER_LENGTH;

  constructor(linkType: LinkType, snaplen = DEFAULT_SNAPLEN) {
    if (!Number.isInteger(linkType) || linkType < 0 || linkType > 0xffff) {
      throw new RangeError(`pcap link type must be an integer in 0..65535, got ${linkType}`);
    }
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > MAX_U32) {
      throw new RangeError(`pcap snaplen must be an integer in 1..${MAX_U32}, got ${snaplen}`);
    }
    this.linkType = linkType;
    this.snaplen = snaplen;
  }

  get packetCount(): number {
    return this.#records.length;
  }

  /**
   * Appends a packet. Data longer than the snaplen is cut to snaplen bytes,
   * as a capturing tool would, while originalLength keeps the wire length.
   */
  add(timestampNs: bigint, data: Uint8Array, originalLength: number = data.length): void {
    // The record header stores unsigned 32-bit seconds: 1970 up to early 2106.
    if (timestampNs < 0n || timestampNs / NS_PER_SECOND > BigInt(MAX_U32)) {
      throw new RangeError(
        `pcap timestamp must be between 0 and ${MAX_U32} seconds after the epoch, got ${timestampNs} ns`,
      );
    }
    if (!Number.isInteger(originalLength) || originalLength < data.length || originalLength > MAX_U32) {
      throw new RangeError(
        `pcap original length must be an integer between the data length (${data.length}) and ${MAX_U32}, ` +
          `got ${originalLength}`,
      );
    }
    const captured = data.subarray(0, Math.min(data.length, this.snaplen));
    const record = new Uint8Array(RECORD_HEADER_LENGTH + captured.length);
    const view = new DataView(record.buffer);
    view.setUint32(0, Number(timestampNs / NS_PER_SECOND), true);
    view.setUint32(4, Number(timestampNs % NS_PER_SECOND), true);
    view.setUint32(8, captured.length, true);
    view.setUint32(12, originalLength, true);
    record.set(captured, RECORD_HEADER_LENGTH);
    this.#records.push(record);
    this.#byteLength += record.length;
  }

  /** The complete file so far; the writer stays usable for further add() calls. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.#byteLength);
    const view = new DataView(out.buffer);
    view.setUint32(0, MAGIC_NANOSECONDS, true);
    view.setUint16(4, VERSION_MAJOR, true);
    view.setUint16(6, VERSION_MINOR, true);
    view.setInt32(8, 0, true); // thiszone: timestamps are UTC
    view.setUint32(12, 0, true); // sigfigs: always 0 in practice
    view.setUint32(16, this.snaplen, true);
    view.setUint32(20, this.linkType, true);
    let offset = GLOBAL_HEADER_LENGTH;
    for (const record of this.#records) {
      out.set(record, offset);
      offset += record.length;
    }
    return out;
  }
}

/** Writes a whole classic pcap file of one link type in one call. */
export function writeCapture(
  linkType: LinkType,
  packets: readonly PacketToWrite[],
  snaplen: number = DEFAULT_SNAPLEN,
): Uint8Array {
  const writer = new PcapWriter(linkType, snaplen);
  for (const packet of packets) writer.add(packet.timestampNs, packet.data, packet.originalLength);
  return writer.toBytes();
}
