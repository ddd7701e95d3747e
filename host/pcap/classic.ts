/**
 * Classic libpcap format: a 24-byte global header, then for each packet a
 * 16-byte record header followed by the captured bytes. The whole file has
 * one byte order, one timestamp resolution and one link type, all fixed by
 * the global header.
 */
import { CaptureError } from "./errors.js";
import { linkTypeFromNumber, SUPPORTED_LINK_TYPES } from "./link-type.js";
import type { CapturePacket } from "./read.js";

const GLOBAL_HEADER_LENGTH = 24;
const LINK_TYPE_OFFSET = 20;
const RECORD_HEADER_LENGTH = 16;

interface ClassicMagic {
  littleEndian: boolean;
  /** Nanoseconds per unit of the record header's sub-second field. */
  nsPerTick: bigint;
}

/** Keyed by the magic as read little-endian, so a big-endian file shows up byte-swapped. */
const MAGICS = new Map<number, ClassicMagic>([
  [0xa1b2c3d4, { littleEndian: true, nsPerTick: 1000n }],
  [0xa1b23c4d, { littleEndian: true, nsPerTick: 1n }],
  [0xd4c3b2a1, { littleEndian: false, nsPerTick: 1000n }],
  [0x4d3cb2a1, { littleEndian: false, nsPerTick: 1n }],
]);

export function isClassicMagic(magicReadLittleEndian: number): boolean {
  return MAGICS.has(magicReadLittleEndian);
}

export function* readClassic(bytes: Uint8Array): Generator<CapturePacket, void, undefined> {
  if (bytes.length < GLOBAL_HEADER_LENGTH) {
    throw new CaptureError(
      "CAPTURE_TRUNCATED",
      `capture truncated: pcap global header at byte 0 needs ${GLOBAL_HEADER_LENGTH} bytes but the file has only ${bytes.length}`,
      0,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = MAGICS.get(view.getUint32(0, true));
  if (magic === undefined) {
    // Callers dispatch on isClassicMagic first; this guards direct use.
    throw new CaptureError("CAPTURE_BAD_MAGIC", "not a classic pcap file: unknown magic number at byte 0", 0);
  }
  const { littleEndian, nsPerTick } = magic;

  // Only the low 16 bits name the link type; the high bits carry FCS-length
  // flags and reserved bits that some writers set.
  const linkTypeNumber = view.getUint32(LINK_TYPE_OFFSET, littleEndian) & 0xffff;
  const linkType = linkTypeFromNumber(linkTypeNumber);
  if (linkType === undefined) {
    throw new CaptureError(
      "CAPTURE_UNSUPPORTED_LINKTYPE",
      `unsupported link type ${linkTypeNumber} in pcap global header at byte ${LINK_TYPE_OFFSET} ` +
        `(supported: ${SUPPORTED_LINK_TYPES})`,
      LINK_TYPE_OFFSET,
    );
  }

  let offset = GLOBAL_HEADER_LENGTH;
  for (let index = 0; offset < bytes.length; index++) {
    const headerRemaining = bytes.length - offset;
    if (headerRemaining < RECORD_HEADER_LENGTH) {
      throw new CaptureError(
        "CAPTURE_TRUNCATED",
        `capture truncated: record ${index} at byte ${offset} needs a ${RECORD_HEADER_LENGTH}-byte record header ` +
          `but only ${headerRemaining} bytes remain`,
        offset,
        index,
      );
    }
    const seconds = view.getUint32(offset, littleEndian);
    const fraction = view.getUint32(offset + 4, littleEndian);
    const capturedLength = view.getUint32(offset + 8, littleEndian);
    const originalLength = view.getUint32(offset + 12, littleEndian);
    // A fraction of a second that is a second or more is no timestamp: refused, not carried into the next second.
    const ticksPerSecond = nsPerTick === 1n ? 1_000_000_000 : 1_000_000;
    if (fraction >= ticksPerSecond) {
      throw new CaptureError(
        "CAPTURE_CORRUPT",
        `capture corrupt: record ${index} at byte ${offset} has a timestamp fraction of ${fraction} ` +
          `${nsPerTick === 1n ? "nanoseconds" : "microseconds"} (expected below ${ticksPerSecond})`,
        offset,
        index,
      );
    }
    const dataStart = offset + RECORD_HEADER_LENGTH;
    const dataRemaining = bytes.length - dataStart;
    if (capturedLength > dataRemaining) {
      throw new CaptureError(
        "CAPTURE_TRUNCATED",
        `capture truncated: record ${index} at byte ${offset} claims ${capturedLength} bytes ` +
          `but only ${dataRemaining} remain`,
        offset,
        index,
      );
    }
    yield {
      index,
      timestampNs: BigInt(seconds) * 1_000_000_000n + BigInt(fraction) * nsPerTick,
      linkType,
      data: bytes.subarray(dataStart, dataStart + capturedLength),
      originalLength,
      interfaceId: 0,
    };
    offset = dataStart + capturedLength;
  }
}
