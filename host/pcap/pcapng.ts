/**
 * pcapng format: a sequence of blocks, each framed as
 *   type (u32) | total length (u32) | body | total length again (u32).
 * A Section Header Block starts every section and fixes its byte order;
 * Interface Description Blocks define the section's interfaces (link type,
 * timestamp resolution) and packet blocks refer to them by index.
 * Every block's frame is validated before its body is read, and block types
 * this reader does not need are skipped by their length.
 */
import { CaptureError } from "./errors.js";
import { type LinkType, linkTypeFromNumber, SUPPORTED_LINK_TYPES } from "./link-type.js";
import type { CapturePacket } from "./packet.js";

const SECTION_HEADER_BLOCK = 0x0a0d0d0a;
const INTERFACE_DESCRIPTION_BLOCK = 0x00000001;
const OBSOLETE_PACKET_BLOCK = 0x00000002;
const SIMPLE_PACKET_BLOCK = 0x00000003;
const ENHANCED_PACKET_BLOCK = 0x00000006;

const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const BYTE_ORDER_MAGIC_SWAPPED = 0x4d3c2b1a;
const SUPPORTED_MAJOR_VERSION = 1;

/** Type and length words that open every block. */
const BLOCK_HEADER_LENGTH = 8;
/** Block header plus the trailing length copy. */
const BLOCK_FRAME_LENGTH = 12;

const OPTION_END = 0;
const OPTION_IF_TSRESOL = 9;
const OPTION_IF_TSOFFSET = 14;

interface BlockKind {
  name: string;
  /** Smallest legal total length: the frame plus the block's fixed fields. */
  minLength: number;
  isPacket: boolean;
}

const BLOCK_KINDS = new Map<number, BlockKind>([
  [SECTION_HEADER_BLOCK, { name: "section header block", minLength: 28, isPacket: false }],
  [INTERFACE_DESCRIPTION_BLOCK, { name: "interface description block", minLength: 20, isPacket: false }],
  [OBSOLETE_PACKET_BLOCK, { name: "obsolete packet block", minLength: 32, isPacket: true }],
  [SIMPLE_PACKET_BLOCK, { name: "simple packet block", minLength: 16, isPacket: true }],
  [ENHANCED_PACKET_BLOCK, { name: "enhanced packet block", minLength: 32, isPacket: true }],
]);

interface Interface {
  /** Where the Interface Description Block sits, so errors can point at it. */
  blockOffset: number;
  linkTypeNumber: number;
  linkType: LinkType | undefined;
  /** 0 means unlimited. */
  snaplen: number;
  /** timestampNs = ticks * multiplier / divisor + offsetNs */
  multiplier: bigint;
  divisor: bigint;
  offsetNs: bigint;
}

/** A validated block frame. */
interface Block {
  type: number;
  offset: number;
  length: number;
  littleEndian: boolean;
  /** Packet index if this is a packet block, for error reporting. */
  record: number | undefined;
  /** "record 3 (enhanced packet block) at byte 120" style description for messages. */
  where: string;
}

export function isPcapngMagic(magicReadLittleEndian: number): boolean {
  return magicReadLittleEndian === SECTION_HEADER_BLOCK;
}

export function* readPcapng(bytes: Uint8Array): Generator<CapturePacket, void, undefined> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let littleEndian = true;
  let interfaces: Interface[] = [];
  let sectionOffset = 0;
  let index = 0;
  let offset = 0;

  while (offset < bytes.length) {
    const block = readBlockFrame(bytes, view, offset, littleEndian, index);
    switch (block.type) {
      case SECTION_HEADER_BLOCK: {
        const major = view.getUint16(offset + 12, block.littleEndian);
        const minor = view.getUint16(offset + 14, block.littleEndian);
        if (major !== SUPPORTED_MAJOR_VERSION) {
          throw new CaptureError(
            "CAPTURE_UNSUPPORTED_VERSION",
            `${block.where} declares pcapng version ${major}.${minor}; only major version ${SUPPORTED_MAJOR_VERSION} is supported`,
            offset,
          );
        }
        littleEndian = block.littleEndian;
        // Interface ids are scoped to their section.
        interfaces = [];
        sectionOffset = offset;
        break;
      }
      case INTERFACE_DESCRIPTION_BLOCK:
        interfaces.push(readInterface(view, block));
        break;
      case ENHANCED_PACKET_BLOCK:
      case OBSOLETE_PACKET_BLOCK: {
        // Both share one layout apart from the interface id: the obsolete
        // block packs a 16-bit id with a 16-bit drop count into the same word.
        const interfaceId =
          block.type === ENHANCED_PACKET_BLOCK
            ? view.getUint32(offset + 8, littleEndian)
            : view.getUint16(offset + 8, littleEndian);
        const ticks =
          (BigInt(view.getUint32(offset + 12, littleEndian)) << 32n) |
          BigInt(view.getUint32(offset + 16, littleEndian));
        const capturedLength = view.getUint32(offset + 20, littleEndian);
        const originalLength = view.getUint32(offset + 24, littleEndian);
        const dataStart = offset + 28;
        checkCapturedFits(block, dataStart, capturedLength);
        const iface = lookupInterface(interfaces, interfaceId, block, sectionOffset);
        yield {
          index,
          timestampNs: (ticks * iface.multiplier) / iface.divisor + iface.offsetNs,
          linkType: supportedLinkType(iface, interfaceId, block),
          data: bytes.subarray(dataStart, dataStart + capturedLength),
          originalLength,
          interfaceId,
        };
        index++;
        break;
      }
      case SIMPLE_PACKET_BLOCK: {
        // No interface id (always 0), no timestamp, and no captured length:
        // it is implied as min(original length, the interface's snaplen).
        const originalLength = view.getUint32(offset + 8, littleEndian);
        const dataStart = offset + 12;
        const iface = lookupInterface(interfaces, 0, block, sectionOffset);
        const capturedLength =
          iface.snaplen === 0 ? originalLength : Math.min(originalLength, iface.snaplen);
        checkCapturedFits(block, dataStart, capturedLength);
        yield {
          index,
          timestampNs: 0n,
          linkType: supportedLinkType(iface, 0, block),
          data: bytes.subarray(dataStart, dataStart + capturedLength),
          originalLength,
          interfaceId: 0,
        };
        index++;
        break;
      }
      default:
        // Name resolution, statistics, custom and future blocks carry nothing we need.
        break;
    }
    offset += block.length;
  }
}

/**
 * Validates the frame of the block at `offset` (header in bounds, length a
 * multiple of 4 and at least the block's minimum, within the file, trailing
 * copy equal) before anything inside the block is read.
 */
function readBlockFrame(
  bytes: Uint8Array,
  view: DataView,
  offset: number,
  sectionLittleEndian: boolean,
  nextPacketIndex: number,
): Block {
  const remaining = bytes.length - offset;
  if (remaining < BLOCK_HEADER_LENGTH) {
    throw new CaptureError(
      "CAPTURE_TRUNCATED",
      `capture truncated: block at byte ${offset} needs an ${BLOCK_HEADER_LENGTH}-byte block header ` +
        `but only ${remaining} bytes remain`,
      offset,
    );
  }
  // The section header's type is a byte palindrome, so it can be recognised
  // before its byte-order magic tells us how to read the rest.
  const type = view.getUint32(offset, sectionLittleEndian);
  const kind = BLOCK_KINDS.get(type);
  const record = kind?.isPacket ? nextPacketIndex : undefined;
  const name = kind?.name ?? `block of type 0x${type.toString(16).padStart(8, "0")}`;
  const where = record === undefined ? `${name} at byte ${offset}` : `record ${record} (${name}) at byte ${offset}`;

  let littleEndian = sectionLittleEndian;
  if (type === SECTION_HEADER_BLOCK) {
    if (remaining < BLOCK_FRAME_LENGTH) {
      throw new CaptureError(
        "CAPTURE_TRUNCATED",
        `capture truncated: ${where} needs ${BLOCK_FRAME_LENGTH} bytes to reach its byte-order magic ` +
          `but only ${remaining} remain`,
        offset,
      );
    }
    const magic = view.getUint32(offset + 8, true);
    if (magic === BYTE_ORDER_MAGIC) littleEndian = true;
    else if (magic === BYTE_ORDER_MAGIC_SWAPPED) littleEndian = false;
    else {
      throw new CaptureError(
        "CAPTURE_BAD_MAGIC",
        `${where} has byte-order magic 0x${magic.toString(16).padStart(8, "0")} (little-endian) at byte ${offset + 8}; ` +
          `expected 0x1a2b3c4d in either byte order`,
        offset + 8,
      );
    }
  }

  const length = view.getUint32(offset + 4, littleEndian);
  const minLength = kind?.minLength ?? BLOCK_FRAME_LENGTH;
  if (length % 4 !== 0 || length < minLength) {
    throw new CaptureError(
      "CAPTURE_CORRUPT",
      `${where} has total length ${length}; it must be a multiple of 4 and at least ${minLength}`,
      offset,
      record,
    );
  }
  if (length > remaining) {
    throw new CaptureError(
      "CAPTURE_TRUNCATED",
      `capture truncated: ${where} claims ${length} bytes but only ${remaining} remain`,
      offset,
      record,
    );
  }
  const trailingLength = view.getUint32(offset + length - 4, littleEndian);
  if (trailingLength !== length) {
    throw new CaptureError(
      "CAPTURE_CORRUPT",
      `${where} has total length ${length} but its trailing length copy at byte ${offset + length - 4} says ${trailingLength}`,
      offset,
      record,
    );
  }
  return { type, offset, length, littleEndian, record, where };
}

/** Parses an Interface Description Block whose frame is already validated. */
function readInterface(view: DataView, block: Block): Interface {
  const { offset, length, littleEndian } = block;
  const linkTypeNumber = view.getUint16(offset + 8, littleEndian);
  const snaplen = view.getUint32(offset + 12, littleEndian);
  // Default resolution is microseconds (if_tsresol absent).
  let multiplier = 1000n;
  let divisor = 1n;
  let offsetNs = 0n;

  const end = offset + length - 4;
  let position = offset + 16;
  // Options are 4-aligned inside a 4-aligned body, so a partial option header cannot occur.
  while (end - position >= 4) {
    const code = view.getUint16(position, littleEndian);
    const valueLength = view.getUint16(position + 2, littleEndian);
    if (code === OPTION_END) break;
    const valueStart = position + 4;
    if (valueLength > end - valueStart) {
      throw new CaptureError(
        "CAPTURE_CORRUPT",
        `${block.where}: option ${code} at byte ${position} claims ${valueLength} bytes ` +
          `but only ${end - valueStart} remain in the block`,
        position,
      );
    }
    if (code === OPTION_IF_TSRESOL) {
      expectOptionLength(block, position, code, "if_tsresol", valueLength, 1);
      const resolution = view.getUint8(valueStart);
      const exponent = resolution & 0x7f;
      if (resolution & 0x80) {
        // Units of 2^-exponent seconds.
        multiplier = 1_000_000_000n;
        divisor = 1n << BigInt(exponent);
      } else if (exponent <= 9) {
        multiplier = 10n ** BigInt(9 - exponent);
        divisor = 1n;
      } else {
        multiplier = 1n;
        divisor = 10n ** BigInt(exponent - 9);
      }
    } else if (code === OPTION_IF_TSOFFSET) {
      expectOptionLength(block, position, code, "if_tsoffset", valueLength, 8);
      // Seconds to add to every timestamp on this interface.
      offsetNs = view.getBigInt64(valueStart, littleEndian) * 1_000_000_000n;
    }
    position = valueStart + ((valueLength + 3) & ~3);
  }

  return {
    blockOffset: offset,
    linkTypeNumber,
    linkType: linkTypeFromNumber(linkTypeNumber),
    snaplen,
    multiplier,
    divisor,
    offsetNs,
  };
}

function expectOptionLength(
  block: Block,
  position: number,
  code: number,
  optionName: string,
  actual: number,
  expected: number,
): void {
  if (actual !== expected) {
    throw new CaptureError(
      "CAPTURE_CORRUPT",
      `${block.where}: option ${code} (${optionName}) at byte ${position} has length ${actual}; expected ${expected}`,
      position,
    );
  }
}

function checkCapturedFits(block: Block, dataStart: number, capturedLength: number): void {
  const room = block.offset + block.length - 4 - dataStart;
  if (capturedLength > room) {
    throw new CaptureError(
      "CAPTURE_CORRUPT",
      `${block.where} claims ${capturedLength} captured bytes but the block has room for only ${room}`,
      block.offset,
      block.record,
    );
  }
}

function lookupInterface(
  interfaces: readonly Interface[],
  interfaceId: number,
  block: Block,
  sectionOffset: number,
): Interface {
  const iface = interfaces[interfaceId];
  if (iface === undefined) {
    throw new CaptureError(
      "CAPTURE_CORRUPT",
      `${block.where} refers to interface ${interfaceId}, but the section starting at byte ${sectionOffset} ` +
        `has defined only ${interfaces.length} interface(s) before it`,
      block.offset,
      block.record,
    );
  }
  return iface;
}

/**
 * Unsupported link types are reported on the first packet that uses the
 * interface, not at its description, so files whose extra interfaces carry
 * no packets (or only packets we never reach) still read.
 */
function supportedLinkType(iface: Interface, interfaceId: number, block: Block): LinkType {
  if (iface.linkType === undefined) {
    throw new CaptureError(
      "CAPTURE_UNSUPPORTED_LINKTYPE",
      `unsupported link type ${iface.linkTypeNumber} on ${block.where}: interface ${interfaceId} ` +
        `(described at byte ${iface.blockOffset}) uses it; supported: ${SUPPORTED_LINK_TYPES}`,
      block.offset,
      block.record,
    );
  }
  return iface.linkType;
}
