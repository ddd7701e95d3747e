/**
 * Writing pcapng, block by block, so a live capture can append packets as
 * they come and still leave a file Wireshark and tshark open at any moment:
 * a Section Header Block, one Interface Description Block per interface
 * (name, link type, nanosecond timestamps), then Enhanced Packet Blocks,
 * each optionally with a comment. Little-endian throughout.
 */
import type { LinkType } from "./link-type.js";

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const OPT_END = 0;
const OPT_COMMENT = 1;
const IF_NAME = 2;
const IF_TSRESOL = 9;

export interface PcapngInterface {
  name: string;
  linkType: LinkType;
  snaplen?: number;
}

const pad4 = (n: number) => (n + 3) & ~3;

function option(code: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + pad4(value.length));
  const v = new DataView(out.buffer);
  v.setUint16(0, code, true);
  v.setUint16(2, value.length, true);
  out.set(value, 4);
  return out;
}

function block(type: number, body: Uint8Array[]): Uint8Array {
  const bodyLength = body.reduce((n, b) => n + b.length, 0);
  const total = 12 + bodyLength;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, total, true);
  let at = 8;
  for (const b of body) {
    out.set(b, at);
    at += b.length;
  }
  v.setUint32(total - 4, total, true);
  return out;
}

function withEnd(options: Uint8Array[]): Uint8Array[] {
  return options.length ? [...options, new Uint8Array(4) /* opt_endofopt */] : [];
}

/** The section header and the interfaces' descriptions: the start of a file. */
export function pcapngHeader(interfaces: readonly PcapngInterface[]): Uint8Array {
  const shb = new Uint8Array(16);
  const s = new DataView(shb.buffer);
  s.setUint32(0, 0x1a2b3c4d, true);
  s.setUint16(4, 1, true);
  s.setUint16(6, 0, true);
  s.setBigInt64(8, -1n, true); // section length unknown: the file grows while capturing
  const blocks = [block(SHB, [shb])];
  for (const i of interfaces) {
    const fixed = new Uint8Array(8);
    const f = new DataView(fixed.buffer);
    f.setUint16(0, i.linkType, true);
    f.setUint32(4, i.snaplen ?? 262144, true);
    blocks.push(block(IDB, [fixed, ...withEnd([option(IF_NAME, new TextEncoder().encode(i.name)), option(IF_TSRESOL, Uint8Array.of(9))])]));
  }
  return Buffer.concat(blocks);
}

/** One packet on interface `iface` (its index in the header), at `timestampNs` since the epoch. */
export function pcapngPacket(iface: number, timestampNs: bigint, data: Uint8Array, originalLength = data.length, comment?: string): Uint8Array {
  const fixed = new Uint8Array(20);
  const v = new DataView(fixed.buffer);
  v.setUint32(0, iface, true);
  v.setUint32(4, Number((timestampNs >> 32n) & 0xffffffffn), true);
  v.setUint32(8, Number(timestampNs & 0xffffffffn), true);
  v.setUint32(12, data.length, true);
  v.setUint32(16, originalLength, true);
  const padded = new Uint8Array(pad4(data.length));
  padded.set(data);
  const options = comment ? withEnd([option(OPT_COMMENT, new TextEncoder().encode(comment))]) : [];
  return block(EPB, [fixed, padded, ...options]);
}


// Kept for readers of this file: option codes used above.
export const PCAPNG_OPTION = { end: OPT_END, comment: OPT_COMMENT, ifName: IF_NAME, ifTsresol: IF_TSRESOL } as const;
