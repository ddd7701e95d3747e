/**
 * Reading capture files: detects classic pcap or pcapng from the magic number
 * and hands off to the format's parser. Any input bytes either parse or raise
 * a CaptureError; nothing else is thrown.
 */
import { readClassic, isClassicMagic } from "./classic.js";
import { CaptureError } from "./errors.js";
import type { CapturePacket } from "./packet.js";
import { readPcapng, isPcapngMagic } from "./pcapng.js";

export { LinkType } from "./link-type.js";
export type { CapturePacket } from "./packet.js";

export type CaptureFormat = "pcap" | "pcapng";

export interface Capture {
  format: CaptureFormat;
  packets: CapturePacket[];
}

/** Parses a whole capture file, validating every record. */
export function readCapture(bytes: Uint8Array): Capture {
  const format = detectFormat(bytes);
  return { format, packets: Array.from(packetsOf(bytes, format)) };
}

/**
 * Yields packets one at a time without materialising the whole list. Errors
 * surface when the iterator reaches the bad header or record, so packets
 * before a corrupt record are still delivered.
 */
export function* iterateCapture(bytes: Uint8Array): Generator<CapturePacket, void, undefined> {
  yield* packetsOf(bytes, detectFormat(bytes));
}

/** Identifies the container format from the first four bytes. */
export function detectFormat(bytes: Uint8Array): CaptureFormat {
  if (bytes.length < 4) {
    throw new CaptureError(
      "CAPTURE_TRUNCATED",
      `capture truncated: file is ${bytes.length} bytes, too short to hold the 4-byte magic number at byte 0`,
      0,
    );
  }
  // Assembled by hand rather than through a DataView so it works for any view.
  const magic = (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
  if (isClassicMagic(magic)) return "pcap";
  if (isPcapngMagic(magic)) return "pcapng";
  throw new CaptureError(
    "CAPTURE_BAD_MAGIC",
    `not a capture file: magic 0x${magic.toString(16).padStart(8, "0")} (little-endian) at byte 0 is neither ` +
      "classic pcap (0xa1b2c3d4 or 0xa1b23c4d, either byte order) nor pcapng (0x0a0d0d0a)",
    0,
  );
}

function packetsOf(bytes: Uint8Array, format: CaptureFormat): Generator<CapturePacket, void, undefined> {
  return format === "pcap" ? readClassic(bytes) : readPcapng(bytes);
}
