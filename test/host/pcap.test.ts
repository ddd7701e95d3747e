import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CaptureError,
  iterateCapture,
  LinkType,
  PcapWriter,
  readCapture,
  writeCapture,
  type CaptureErrorCode,
} from "../../host/pcap/index.js";

/** Fuzz cases per property; override with PCAP_FUZZ_RUNS for longer soaks. */
const RUNS = Number(process.env.PCAP_FUZZ_RUNS ?? 2000);

// ---------------------------------------------------------------------------
// Byte builders for hand-made files (so byte order and layout are explicit).
// ---------------------------------------------------------------------------

class ByteBuilder {
  readonly #parts: number[] = [];
  constructor(readonly littleEndian = true) {}

  get length(): number {
    return this.#parts.length;
  }
  u8(value: number): this {
    this.#parts.push(value & 0xff);
    return this;
  }
  u16(value: number): this {
    return this.#scalar(2, (v) => v.setUint16(0, value, this.littleEndian));
  }
  u32(value: number): this {
    return this.#scalar(4, (v) => v.setUint32(0, value, this.littleEndian));
  }
  i64(value: bigint): this {
    return this.#scalar(8, (v) => v.setBigInt64(0, value, this.littleEndian));
  }
  bytes(data: ArrayLike<number>): this {
    for (let i = 0; i < data.length; i++) this.#parts.push(data[i]!);
    return this;
  }
  pad4(): this {
    while (this.#parts.length % 4 !== 0) this.#parts.push(0);
    return this;
  }
  build(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }
  #scalar(size: number, write: (view: DataView) => void): this {
    const buffer = new Uint8Array(size);
    write(new DataView(buffer.buffer));
    return this.bytes(buffer);
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function payload(length: number, seed = 0): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff);
}

interface ClassicRecord {
  seconds: number;
  fraction: number;
  data: Uint8Array;
  originalLength?: number;
}

/** A classic pcap file in either byte order and either resolution. */
function classicFile(options: {
  littleEndian: boolean;
  nanoseconds: boolean;
  linkType: number;
  records: ClassicRecord[];
}): Uint8Array {
  const b = new ByteBuilder(options.littleEndian)
    .u32(options.nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4)
    .u16(2)
    .u16(4)
    .u32(0)
    .u32(0)
    .u32(65535)
    .u32(options.linkType);
  for (const r of options.records) {
    b.u32(r.seconds).u32(r.fraction).u32(r.data.length).u32(r.originalLength ?? r.data.length).bytes(r.data);
  }
  return b.build();
}

// pcapng blocks ------------------------------------------------------------

function block(littleEndian: boolean, type: number, body: Uint8Array): Uint8Array {
  const total = 12 + ((body.length + 3) & ~3);
  return new ByteBuilder(littleEndian).u32(type).u32(total).bytes(body).pad4().u32(total).build();
}

function shb(littleEndian: boolean, major = 1, minor = 0): Uint8Array {
  const body = new ByteBuilder(littleEndian).u32(0x1a2b3c4d).u16(major).u16(minor).i64(-1n).build();
  return block(littleEndian, 0x0a0d0d0a, body);
}

function idb(
  littleEndian: boolean,
  linkType: number,
  options: { snaplen?: number; tsresol?: number; tsoffsetSeconds?: bigint } = {},
): Uint8Array {
  const b = new ByteBuilder(littleEndian).u16(linkType).u16(0).u32(options.snaplen ?? 0);
  const hasOptions = options.tsresol !== undefined || options.tsoffsetSeconds !== undefined;
  if (options.tsresol !== undefined) b.u16(9).u16(1).u8(options.tsresol).pad4();
  if (options.tsoffsetSeconds !== undefined) b.u16(14).u16(8).i64(options.tsoffsetSeconds);
  if (hasOptions) b.u16(0).u16(0);
  return block(littleEndian, 1, b.build());
}

function epb(
  littleEndian: boolean,
  interfaceId: number,
  ticks: bigint,
  data: Uint8Array,
  originalLength = data.length,
): Uint8Array {
  const body = new ByteBuilder(littleEndian)
    .u32(interfaceId)
    .u32(Number(ticks >> 32n))
    .u32(Number(ticks & 0xffff_ffffn))
    .u32(data.length)
    .u32(originalLength)
    .bytes(data)
    .build();
  return block(littleEndian, 6, body);
}

function opb(littleEndian: boolean, interfaceId: number, ticks: bigint, data: Uint8Array): Uint8Array {
  const body = new ByteBuilder(littleEndian)
    .u16(interfaceId)
    .u16(0) // drops count
    .u32(Number(ticks >> 32n))
    .u32(Number(ticks & 0xffff_ffffn))
    .u32(data.length)
    .u32(data.length)
    .bytes(data)
    .build();
  return block(littleEndian, 2, body);
}

function spb(littleEndian: boolean, originalLength: number, data: Uint8Array): Uint8Array {
  return block(littleEndian, 3, new ByteBuilder(littleEndian).u32(originalLength).bytes(data).build());
}

function withU32(bytes: Uint8Array, offset: number, value: number, littleEndian = true): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(offset, value, littleEndian);
  return copy;
}

// Assertions --------------------------------------------------------------

function captureErrorOf(bytes: Uint8Array): CaptureError {
  try {
    readCapture(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(CaptureError);
    return error as CaptureError;
  }
  throw new Error("expected readCapture to throw a CaptureError");
}

function expectCaptureError(
  bytes: Uint8Array,
  expected: { code: CaptureErrorCode; offset: number; record: number | undefined; message?: string | RegExp },
): CaptureError {
  const error = captureErrorOf(bytes);
  expect({ code: error.code, offset: error.offset, record: error.record }).toEqual({
    code: expected.code,
    offset: expected.offset,
    record: expected.record,
  });
  if (typeof expected.message === "string") expect(error.message).toBe(expected.message);
  else if (expected.message) expect(error.message).toMatch(expected.message);
  return error;
}

const ERROR_CODES: readonly string[] = [
  "CAPTURE_TRUNCATED",
  "CAPTURE_BAD_MAGIC",
  "CAPTURE_UNSUPPORTED_LINKTYPE",
  "CAPTURE_UNSUPPORTED_VERSION",
  "CAPTURE_CORRUPT",
];
const LINK_TYPES: readonly number[] = [LinkType.Ethernet, LinkType.Raw, LinkType.LinuxSll, LinkType.Ipv4, LinkType.Ipv6];

/**
 * The reader's contract for arbitrary input: it returns well-formed packets
 * that view the input buffer, or it throws a CaptureError with sane fields.
 */
function checkReaderContract(bytes: Uint8Array): void {
  let capture;
  try {
    capture = readCapture(bytes);
  } catch (error) {
    if (!(error instanceof CaptureError)) throw error;
    expect(ERROR_CODES).toContain(error.code);
    expect(Number.isInteger(error.offset)).toBe(true);
    expect(error.offset).toBeGreaterThanOrEqual(0);
    expect(error.offset).toBeLessThanOrEqual(bytes.length);
    if (error.record !== undefined) expect(Number.isInteger(error.record) && error.record >= 0).toBe(true);
    expect(error.message).toContain(`byte ${error.offset}`);
    return;
  }
  capture.packets.forEach((packet, i) => {
    expect(packet.index).toBe(i);
    expect(LINK_TYPES).toContain(packet.linkType);
    expect(packet.data.buffer).toBe(bytes.buffer);
    expect(packet.data.byteOffset).toBeGreaterThanOrEqual(bytes.byteOffset);
    expect(packet.data.byteOffset + packet.data.length).toBeLessThanOrEqual(bytes.byteOffset + bytes.length);
    expect(Number.isInteger(packet.originalLength) && packet.originalLength >= 0).toBe(true);
    expect(typeof packet.timestampNs).toBe("bigint");
  });
}

/** Places bytes at an odd offset inside a larger buffer, to catch reads that ignore byteOffset. */
function embedUnaligned(bytes: Uint8Array): Uint8Array {
  const host = new Uint8Array(bytes.length + 8).fill(0xee);
  host.set(bytes, 3);
  return host.subarray(3, 3 + bytes.length);
}

// ---------------------------------------------------------------------------
// Classic pcap
// ---------------------------------------------------------------------------

describe("classic pcap", () => {
  it("round-trips the writer's little-endian nanosecond files", () => {
    const packets = [
      { timestampNs: 1_700_000_000_123_456_789n, data: payload(60, 1) },
      { timestampNs: 0n, data: new Uint8Array(0) },
      { timestampNs: 4_294_967_295_999_999_999n, data: payload(1514, 2) },
    ];
    const bytes = writeCapture(LinkType.Ethernet, packets);

    // Global header: LE nanosecond magic, v2.4, default snaplen, link type.
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0x4d, 0x3c, 0xb2, 0xa1]);
    const header = new DataView(bytes.buffer);
    expect([header.getUint16(4, true), header.getUint16(6, true)]).toEqual([2, 4]);
    expect(header.getUint32(16, true)).toBe(262144);
    expect(header.getUint32(20, true)).toBe(1);
    expect(bytes.length).toBe(24 + 3 * 16 + 60 + 0 + 1514);

    const capture = readCapture(bytes);
    expect(capture.format).toBe("pcap");
    expect(capture.packets.map((p) => [p.index, p.timestampNs, p.linkType, p.originalLength, p.interfaceId])).toEqual([
      [0, 1_700_000_000_123_456_789n, LinkType.Ethernet, 60, 0],
      [1, 0n, LinkType.Ethernet, 0, 0],
      [2, 4_294_967_295_999_999_999n, LinkType.Ethernet, 1514, 0],
    ]);
    capture.packets.forEach((p, i) => expect(p.data).toEqual(packets[i]!.data));
  });

  it("PcapWriter cuts data at the snaplen but keeps the original length", () => {
    const writer = new PcapWriter(LinkType.Ipv4, 32);
    writer.add(5_000_000_001n, payload(100), 1500);
    writer.add(6n, payload(10, 3));
    expect(writer.packetCount).toBe(2);
    const [first, second] = readCapture(writer.toBytes()).packets;
    expect(first!.data).toEqual(payload(32));
    expect(first!.originalLength).toBe(1500);
    expect(first!.timestampNs).toBe(5_000_000_001n);
    expect(first!.linkType).toBe(LinkType.Ipv4);
    expect(second!.data).toEqual(payload(10, 3));
    expect(second!.originalLength).toBe(10);
    expect(new DataView(writer.toBytes().buffer).getUint32(16, true)).toBe(32);
  });

  it("PcapWriter copies data at add() and stays usable after toBytes()", () => {
    const writer = new PcapWriter(LinkType.Raw);
    const data = payload(8);
    writer.add(1n, data);
    data.fill(0);
    const once = writer.toBytes();
    writer.add(2n, payload(4));
    expect(readCapture(once).packets.map((p) => Array.from(p.data))).toEqual([Array.from(payload(8))]);
    expect(readCapture(writer.toBytes()).packets).toHaveLength(2);
  });

  it("PcapWriter rejects values the format cannot hold", () => {
    expect(() => new PcapWriter(LinkType.Ethernet, 0)).toThrow(RangeError);
    expect(() => new PcapWriter(LinkType.Ethernet, 2 ** 32)).toThrow(RangeError);
    const writer = new PcapWriter(LinkType.Ethernet);
    expect(() => writer.add(-1n, payload(1))).toThrow(/timestamp/);
    expect(() => writer.add(2n ** 32n * 1_000_000_000n, payload(1))).toThrow(/timestamp/);
    expect(() => writer.add(0n, payload(10), 9)).toThrow(/original length/);
    expect(() => writer.add(0n, payload(10), 2 ** 32)).toThrow(/original length/);
    expect(writer.packetCount).toBe(0);
  });

  it.each([
    { name: "little-endian microseconds", littleEndian: true, nanoseconds: false, scale: 1000n },
    { name: "big-endian microseconds", littleEndian: false, nanoseconds: false, scale: 1000n },
    { name: "little-endian nanoseconds", littleEndian: true, nanoseconds: true, scale: 1n },
    { name: "big-endian nanoseconds", littleEndian: false, nanoseconds: true, scale: 1n },
  ])("reads hand-built $name files", ({ littleEndian, nanoseconds, scale }) => {
    const bytes = classicFile({
      littleEndian,
      nanoseconds,
      linkType: LinkType.LinuxSll,
      records: [
        { seconds: 1_600_000_000, fraction: 999_999, data: payload(20, 5), originalLength: 1000 },
        { seconds: 0xffff_ffff, fraction: 1, data: payload(3, 6) },
      ],
    });
    const capture = readCapture(bytes);
    expect(capture.format).toBe("pcap");
    expect(capture.packets).toHaveLength(2);
    const [a, b] = capture.packets;
    expect(a!.timestampNs).toBe(1_600_000_000n * 1_000_000_000n + 999_999n * scale);
    expect(a!.originalLength).toBe(1000);
    expect(a!.data).toEqual(payload(20, 5));
    expect(a!.linkType).toBe(LinkType.LinuxSll);
    expect(b!.timestampNs).toBe(0xffff_ffffn * 1_000_000_000n + scale);
    expect(b!.data).toEqual(payload(3, 6));
    expect(b!.index).toBe(1);
  });

  it.each([
    { unit: "microseconds", nanoseconds: false, fraction: 1_000_000 },
    { unit: "nanoseconds", nanoseconds: true, fraction: 1_000_000_000 },
  ])("refuses a record whose $unit fraction is a whole second or more, naming the record", ({ nanoseconds, fraction, unit }) => {
    const ok = { seconds: 5, fraction: fraction - 1, data: payload(4) };
    const bytes = classicFile({ littleEndian: true, nanoseconds, linkType: LinkType.Raw, records: [ok, ok, { seconds: 6, fraction, data: payload(4) }] });
    const err = captureErrorOf(bytes);
    expect(err.code).toBe("CAPTURE_CORRUPT");
    expect(err.message).toContain(`record 2 at byte ${24 + 2 * (16 + 4)}`);
    expect(err.message).toContain(`${fraction} ${unit}`);
  });

  it("maps DLT_RAW values 12 and 14 to Raw and keeps the other supported link types", () => {
    const linkOf = (n: number) =>
      readCapture(classicFile({ littleEndian: true, nanoseconds: false, linkType: n, records: [{ seconds: 1, fraction: 0, data: payload(1) }] }))
        .packets[0]!.linkType;
    expect([12, 14, 101, 1, 113, 228, 229].map(linkOf)).toEqual([
      LinkType.Raw,
      LinkType.Raw,
      LinkType.Raw,
      LinkType.Ethernet,
      LinkType.LinuxSll,
      LinkType.Ipv4,
      LinkType.Ipv6,
    ]);
    // High bits of the link-type word carry FCS flags, not the link type.
    expect(linkOf(0x1000_0000 | 1)).toBe(LinkType.Ethernet);
  });

  it("returns packet data as views into the input, even when the input is itself an unaligned view", () => {
    const file = writeCapture(LinkType.Ethernet, [{ timestampNs: 7n, data: payload(9, 4) }]);
    const bytes = embedUnaligned(file);
    const [packet] = readCapture(bytes).packets;
    expect(packet!.data.buffer).toBe(bytes.buffer);
    expect(packet!.data.byteOffset).toBe(bytes.byteOffset + 24 + 16);
    expect(packet!.data).toEqual(payload(9, 4));
    expect(packet!.timestampNs).toBe(7n);
  });

  it("iterateCapture yields packets lazily, before a later corrupt record is reached", () => {
    const file = writeCapture(LinkType.Ethernet, [
      { timestampNs: 1n, data: payload(4) },
      { timestampNs: 2n, data: payload(4) },
    ]);
    const truncated = file.subarray(0, file.length - 1);
    const iterator = iterateCapture(truncated);
    const first = iterator.next();
    expect(first.done).toBe(false);
    expect(first.value).toMatchObject({ index: 0, timestampNs: 1n });
    expect(() => iterator.next()).toThrow(CaptureError);
  });
});

describe("classic pcap errors", () => {
  // Records of 10, 20 and 30 bytes: record 0 at 24, record 1 at 50, record 2 at 86 (data from 102).
  const file = writeCapture(LinkType.Ethernet, [
    { timestampNs: 1n, data: payload(10) },
    { timestampNs: 2n, data: payload(20) },
    { timestampNs: 3n, data: payload(30) },
  ]);

  it("checks the fixture layout the error cases rely on", () => {
    expect(file.length).toBe(24 + 16 * 3 + 60);
    expect(readCapture(file).packets.map((p) => p.data.byteOffset)).toEqual([40, 66, 102]);
  });

  it("rejects an empty file and files too short for a magic number", () => {
    expectCaptureError(new Uint8Array(0), {
      code: "CAPTURE_TRUNCATED",
      offset: 0,
      record: undefined,
      message: "capture truncated: file is 0 bytes, too short to hold the 4-byte magic number at byte 0",
    });
    expectCaptureError(file.subarray(0, 3), { code: "CAPTURE_TRUNCATED", offset: 0, record: undefined });
  });

  it("rejects a bad magic number", () => {
    const error = expectCaptureError(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"), {
      code: "CAPTURE_BAD_MAGIC",
      offset: 0,
      record: undefined,
    });
    expect(error.message).toContain("0x20544547");
    expect(error.name).toBe("CaptureError");
    expect(error).toBeInstanceOf(Error);
  });

  it("rejects a truncated global header", () => {
    expectCaptureError(file.subarray(0, 10), {
      code: "CAPTURE_TRUNCATED",
      offset: 0,
      record: undefined,
      message: "capture truncated: pcap global header at byte 0 needs 24 bytes but the file has only 10",
    });
  });

  it("rejects a truncated record header with its record index and offset", () => {
    expectCaptureError(file.subarray(0, 86 + 7), {
      code: "CAPTURE_TRUNCATED",
      offset: 86,
      record: 2,
      message: "capture truncated: record 2 at byte 86 needs a 16-byte record header but only 7 bytes remain",
    });
  });

  it("rejects truncated record data with its record index and offset", () => {
    expectCaptureError(file.subarray(0, 102 + 5), {
      code: "CAPTURE_TRUNCATED",
      offset: 86,
      record: 2,
      message: "capture truncated: record 2 at byte 86 claims 30 bytes but only 5 remain",
    });
    // A captured length that overruns the file rather than being cut short.
    expectCaptureError(withU32(file, 50 + 8, 0xffff_ffff), {
      code: "CAPTURE_TRUNCATED",
      offset: 50,
      record: 1,
      message: "capture truncated: record 1 at byte 50 claims 4294967295 bytes but only 66 remain",
    });
  });

  it("rejects an unsupported link type, naming the number", () => {
    expectCaptureError(classicFile({ littleEndian: false, nanoseconds: false, linkType: 105, records: [] }), {
      code: "CAPTURE_UNSUPPORTED_LINKTYPE",
      offset: 20,
      record: undefined,
      message: /^unsupported link type 105 in pcap global header at byte 20 /,
    });
  });
});

// ---------------------------------------------------------------------------
// pcapng
// ---------------------------------------------------------------------------

describe("pcapng", () => {
  /**
   * Layout (offsets): SHB 0 (28) | IDB0 Ethernet, snaplen 64, default µs 28 (20) |
   * IDB1 Raw, ns 48 (32) | IDB2 IPv6, 2^-10 s + 100 s offset 80 (44) |
   * unknown block 124 (20) | EPB if0 144 (48) | EPB if1 192 (52) | NRB (type 4) 244 (16) |
   * EPB if2 260 (72) | SPB 332 (80) | OPB if1 412 (40)
   */
  function sampleFile(le: boolean): Uint8Array {
    return concat(
      shb(le),
      idb(le, LinkType.Ethernet, { snaplen: 64 }),
      idb(le, LinkType.Raw, { tsresol: 9 }),
      idb(le, LinkType.Ipv6, { tsresol: 0x80 | 10, tsoffsetSeconds: 100n }),
      block(le, 0x0badbeef, payload(5)),
      epb(le, 0, 1_700_000_000_123_456n, payload(14, 1), 60),
      epb(le, 1, 1_700_000_000_123_456_789n, payload(20, 2)),
      block(le, 4, new ByteBuilder(le).u16(0).u16(0).build()),
      epb(le, 2, 5n * 1024n + 512n, payload(40, 3)),
      spb(le, 100, payload(64, 4)),
      opb(le, 1, 42n, payload(7, 5)),
    );
  }

  it.each([
    { order: "little-endian", le: true },
    { order: "big-endian", le: false },
  ])("reads two+ interfaces with different link types and resolutions ($order)", ({ le }) => {
    const bytes = sampleFile(le);
    expect(bytes.length).toBe(28 + 20 + 32 + 44 + 20 + 48 + 52 + 16 + 72 + 80 + 40);
    const capture = readCapture(bytes);
    expect(capture.format).toBe("pcapng");
    expect(
      capture.packets.map((p) => ({
        index: p.index,
        interfaceId: p.interfaceId,
        linkType: p.linkType,
        timestampNs: p.timestampNs,
        originalLength: p.originalLength,
        captured: p.data.length,
        at: p.data.byteOffset,
      })),
    ).toEqual([
      { index: 0, interfaceId: 0, linkType: LinkType.Ethernet, timestampNs: 1_700_000_000_123_456_000n, originalLength: 60, captured: 14, at: 144 + 28 },
      { index: 1, interfaceId: 1, linkType: LinkType.Raw, timestampNs: 1_700_000_000_123_456_789n, originalLength: 20, captured: 20, at: 192 + 28 },
      { index: 2, interfaceId: 2, linkType: LinkType.Ipv6, timestampNs: 105_500_000_000n, originalLength: 40, captured: 40, at: 260 + 28 },
      // SPB: interface 0, no timestamp, captured length = min(100, snaplen 64).
      { index: 3, interfaceId: 0, linkType: LinkType.Ethernet, timestampNs: 0n, originalLength: 100, captured: 64, at: 332 + 12 },
      // OPB on the nanosecond interface.
      { index: 4, interfaceId: 1, linkType: LinkType.Raw, timestampNs: 42n, originalLength: 7, captured: 7, at: 412 + 28 },
    ]);
    expect(capture.packets.map((p) => Array.from(p.data))).toEqual(
      [payload(14, 1), payload(20, 2), payload(40, 3), payload(64, 4), payload(7, 5)].map((d) => Array.from(d)),
    );
  });

  it("converts power-of-10 and power-of-2 timestamp resolutions", () => {
    const tsOf = (tsresol: number, ticks: bigint) =>
      readCapture(concat(shb(true), idb(true, LinkType.Raw, { tsresol }), epb(true, 0, ticks, payload(1)))).packets[0]!
        .timestampNs;
    expect(tsOf(0, 3n)).toBe(3_000_000_000n); // seconds
    expect(tsOf(3, 3n)).toBe(3_000_000n); // milliseconds
    expect(tsOf(6, 3n)).toBe(3_000n); // microseconds
    expect(tsOf(9, 3n)).toBe(3n); // nanoseconds
    expect(tsOf(12, 3_999n)).toBe(3n); // picoseconds, floored
    expect(tsOf(0x80 | 0, 2n)).toBe(2_000_000_000n); // 2^0 s
    expect(tsOf(0x80 | 1, 3n)).toBe(1_500_000_000n); // half seconds
    expect(tsOf(0x80 | 30, 1n << 30n)).toBe(1_000_000_000n); // 2^-30 s
    expect(tsOf(0x80 | 32, (7n << 32n) | 0x8000_0000n)).toBe(7_500_000_000n); // 32.32 fixed point
    expect(tsOf(6, 0xffff_ffff_ffff_ffffn)).toBe(0xffff_ffff_ffff_ffffn * 1000n);
  });

  it("reads multiple sections with different byte orders and per-section interface ids", () => {
    const bytes = concat(
      shb(true),
      idb(true, LinkType.Ethernet),
      idb(true, LinkType.Ipv4),
      epb(true, 1, 10n, payload(3)),
      shb(false),
      idb(false, LinkType.Ipv6, { tsresol: 9 }),
      epb(false, 0, 20n, payload(5)),
      spb(false, 2, payload(2)),
    );
    const capture = readCapture(bytes);
    expect(capture.packets.map((p) => [p.index, p.interfaceId, p.linkType, p.timestampNs, p.data.length])).toEqual([
      [0, 1, LinkType.Ipv4, 10_000n, 3],
      [1, 0, LinkType.Ipv6, 20n, 5],
      [2, 0, LinkType.Ipv6, 0n, 2],
    ]);

    // Interface 1 existed in the first section only, so the second section may not use it.
    const stale = concat(shb(true), idb(true, 1), idb(true, 1), shb(false), idb(false, 1), epb(false, 1, 0n, payload(1)));
    expectCaptureError(stale, {
      code: "CAPTURE_CORRUPT",
      offset: 28 + 20 + 20 + 28 + 20,
      record: 0,
      message:
        "record 0 (enhanced packet block) at byte 116 refers to interface 1, but the section starting at byte 68 has defined only 1 interface(s) before it",
    });
  });

  it("skips blocks of unknown or unneeded types by their length", () => {
    const bytes = concat(
      shb(true),
      block(true, 5, payload(24)), // interface statistics, before any interface
      block(true, 0x40000bad, payload(3)), // custom block
      block(true, 0x7fffffff, new Uint8Array(0)),
      idb(true, LinkType.Ethernet),
      block(true, 0x00000bad, payload(100)),
      epb(true, 0, 1n, payload(6)),
    );
    const { packets } = readCapture(bytes);
    expect(packets).toHaveLength(1);
    expect(packets[0]!.data).toEqual(payload(6));
    expect(packets[0]!.timestampNs).toBe(1000n);
  });

  it("reads a section with no interfaces and no packets", () => {
    expect(readCapture(shb(false))).toEqual({ format: "pcapng", packets: [] });
  });

  it("ignores unsupported link types on interfaces no packet uses", () => {
    const bytes = concat(shb(true), idb(true, 147), idb(true, LinkType.Ethernet), epb(true, 1, 0n, payload(2)));
    expect(readCapture(bytes).packets.map((p) => p.linkType)).toEqual([LinkType.Ethernet]);
  });
});

describe("pcapng errors", () => {
  const le = true;
  // SHB 0 (28) | IDB 28 (20) | EPB 48 (32 + 8 = 40) | EPB 88 (40)
  const file = concat(shb(le), idb(le, LinkType.Ethernet), epb(le, 0, 1n, payload(8)), epb(le, 0, 2n, payload(8)));

  it("checks the fixture layout the error cases rely on", () => {
    expect(file.length).toBe(128);
    expect(readCapture(file).packets.map((p) => p.data.byteOffset)).toEqual([48 + 28, 88 + 28]);
  });

  it("rejects a block length that is not a multiple of 4", () => {
    expectCaptureError(withU32(file, 28 + 4, 22), {
      code: "CAPTURE_CORRUPT",
      offset: 28,
      record: undefined,
      message: "interface description block at byte 28 has total length 22; it must be a multiple of 4 and at least 20",
    });
  });

  it("rejects a block length below the block type's minimum", () => {
    const tooShort = withU32(withU32(file, 88 + 4, 28), 88 + 24, 28);
    expectCaptureError(tooShort, {
      code: "CAPTURE_CORRUPT",
      offset: 88,
      record: 1,
      message: "record 1 (enhanced packet block) at byte 88 has total length 28; it must be a multiple of 4 and at least 32",
    });
    expectCaptureError(withU32(file, 4, 0), { code: "CAPTURE_CORRUPT", offset: 0, record: undefined });
  });

  it("rejects a block whose trailing length copy differs", () => {
    expectCaptureError(withU32(file, 48 + 36, 44), {
      code: "CAPTURE_CORRUPT",
      offset: 48,
      record: 0,
      message: "record 0 (enhanced packet block) at byte 48 has total length 40 but its trailing length copy at byte 84 says 44",
    });
  });

  it("rejects a block that runs past the end of the file", () => {
    expectCaptureError(file.subarray(0, 120), {
      code: "CAPTURE_TRUNCATED",
      offset: 88,
      record: 1,
      message: "capture truncated: record 1 (enhanced packet block) at byte 88 claims 40 bytes but only 32 remain",
    });
    expectCaptureError(withU32(file, 28 + 4, 0x7fff_fff0), { code: "CAPTURE_TRUNCATED", offset: 28, record: undefined });
  });

  it("rejects trailing bytes too short for a block header", () => {
    expectCaptureError(concat(file, payload(5)), {
      code: "CAPTURE_TRUNCATED",
      offset: 128,
      record: undefined,
      message: "capture truncated: block at byte 128 needs an 8-byte block header but only 5 bytes remain",
    });
  });

  it("rejects a pcapng file too short to hold its byte-order magic", () => {
    expectCaptureError(file.subarray(0, 10), { code: "CAPTURE_TRUNCATED", offset: 0, record: undefined });
  });

  it("rejects a bad byte-order magic", () => {
    expectCaptureError(withU32(file, 8, 0x12345678), {
      code: "CAPTURE_BAD_MAGIC",
      offset: 8,
      record: undefined,
      message: /^section header block at byte 0 has byte-order magic 0x12345678/,
    });
  });

  it("rejects an unsupported major version", () => {
    expectCaptureError(concat(shb(true), shb(false, 2, 0)), {
      code: "CAPTURE_UNSUPPORTED_VERSION",
      offset: 28,
      record: undefined,
      message: "section header block at byte 28 declares pcapng version 2.0; only major version 1 is supported",
    });
  });

  it("rejects a captured length larger than its block", () => {
    expectCaptureError(withU32(file, 88 + 20, 9), {
      code: "CAPTURE_CORRUPT",
      offset: 88,
      record: 1,
      message: "record 1 (enhanced packet block) at byte 88 claims 9 captured bytes but the block has room for only 8",
    });
    // SPB whose implied captured length (original length, snaplen 0 = unlimited) exceeds the block.
    expectCaptureError(concat(shb(le), idb(le, 1), spb(le, 9, payload(8))), {
      code: "CAPTURE_CORRUPT",
      offset: 48,
      record: 0,
      message: "record 0 (simple packet block) at byte 48 claims 9 captured bytes but the block has room for only 8",
    });
  });

  it("rejects an unknown interface id", () => {
    expectCaptureError(concat(shb(le), idb(le, 1), epb(le, 1, 0n, payload(1))), {
      code: "CAPTURE_CORRUPT",
      offset: 48,
      record: 0,
      message:
        "record 0 (enhanced packet block) at byte 48 refers to interface 1, but the section starting at byte 0 has defined only 1 interface(s) before it",
    });
    // Simple packet blocks need interface 0.
    expectCaptureError(concat(shb(le), spb(le, 1, payload(1))), { code: "CAPTURE_CORRUPT", offset: 28, record: 0 });
  });

  it("rejects an unsupported link type on the packet that uses it", () => {
    const bytes = concat(shb(le), idb(le, 1), idb(le, 147), epb(le, 0, 0n, payload(1)), epb(le, 1, 0n, payload(1)));
    expectCaptureError(bytes, {
      code: "CAPTURE_UNSUPPORTED_LINKTYPE",
      offset: 68 + 36,
      record: 1,
      message:
        /^unsupported link type 147 on record 1 \(enhanced packet block\) at byte 104: interface 1 \(described at byte 48\) uses it; supported: /,
    });
  });

  it("rejects interface options that overrun their block or have the wrong size", () => {
    // if_tsresol claiming 200 bytes inside a 32-byte IDB: option header at byte 28 + 16.
    const overrun = concat(shb(le), withU32(idb(le, 1, { tsresol: 6 }), 16, 9 | (200 << 16)));
    expectCaptureError(overrun, {
      code: "CAPTURE_CORRUPT",
      offset: 44,
      record: undefined,
      message: "interface description block at byte 28: option 9 at byte 44 claims 200 bytes but only 8 remain in the block",
    });
    const wrongSize = concat(shb(le), withU32(idb(le, 1, { tsresol: 6 }), 16, 9 | (2 << 16)));
    expectCaptureError(wrongSize, {
      code: "CAPTURE_CORRUPT",
      offset: 44,
      record: undefined,
      message: "interface description block at byte 28: option 9 (if_tsresol) at byte 44 has length 2; expected 1",
    });
  });
});

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const packetArb = fc.record({
  timestampNs: fc.bigInt({ min: 0n, max: 0xffff_ffffn * 1_000_000_000n + 999_999_999n }),
  data: fc.uint8Array({ maxLength: 80 }),
});

/** Valid captures of every flavour the reader supports. */
const validCaptureArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc
    .tuple(fc.constantFrom(...LINK_TYPES), fc.array(packetArb, { maxLength: 6 }))
    .map(([linkType, packets]) => writeCapture(linkType as LinkType, packets)),
  fc
    .record({
      littleEndian: fc.boolean(),
      nanoseconds: fc.boolean(),
      linkType: fc.constantFrom(1, 12, 14, 101, 113, 228, 229),
      records: fc.array(
        fc.record({ seconds: fc.nat({ max: 0xffff_ffff }), fraction: fc.nat({ max: 999_999_999 }), data: fc.uint8Array({ maxLength: 40 }) }),
        { maxLength: 5 },
      ),
    })
    // Valid means a fraction below one second in the file's unit.
    .map((f) => classicFile({ ...f, records: f.records.map((r) => ({ ...r, fraction: f.nanoseconds ? r.fraction : r.fraction % 1_000_000 })) })),
  fc
    .record({
      sections: fc.array(
        fc.record({
          le: fc.boolean(),
          interfaces: fc.array(
            fc.record({
              linkType: fc.constantFrom(...LINK_TYPES, 147),
              snaplen: fc.nat({ max: 100 }),
              tsresol: fc.option(fc.nat({ max: 255 }), { nil: undefined }),
              tsoffsetSeconds: fc.option(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { nil: undefined }),
            }),
            { minLength: 1, maxLength: 3 },
          ),
          blocks: fc.array(
            fc.record({
              kind: fc.constantFrom("epb", "opb", "spb", "other"),
              interfaceId: fc.nat({ max: 3 }),
              ticks: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
              data: fc.uint8Array({ maxLength: 40 }),
            }),
            { maxLength: 5 },
          ),
        }),
        { minLength: 1, maxLength: 2 },
      ),
    })
    .map(({ sections }) =>
      concat(
        ...sections.flatMap(({ le, interfaces, blocks }) => [
          shb(le),
          ...interfaces.map((i) => idb(le, i.linkType, i)),
          ...blocks.map((b) => {
            switch (b.kind) {
              case "epb":
                return epb(le, b.interfaceId, b.ticks, b.data);
              case "opb":
                return opb(le, b.interfaceId, b.ticks & 0xffff_ffff_ffff_ffffn, b.data);
              case "spb":
                return spb(le, b.data.length, b.data);
              default:
                return block(le, 0x100 + b.interfaceId, b.data);
            }
          }),
        ]),
      ),
    ),
);

/** Byte flips and an optional cut, positions taken modulo the input length. */
const mutationArb = fc.record({
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 0, maxLength: 8 }),
  cut: fc.option(fc.nat(), { nil: undefined }),
});

function mutate(bytes: Uint8Array, mutation: { flips: [number, number][]; cut: number | undefined }): Uint8Array {
  const copy = bytes.slice();
  if (copy.length > 0) for (const [position, xor] of mutation.flips) copy[position % copy.length]! ^= xor;
  return mutation.cut === undefined ? copy : copy.subarray(0, mutation.cut % (copy.length + 1));
}

const MAGIC_PREFIXES = [
  [0xd4, 0xc3, 0xb2, 0xa1],
  [0xa1, 0xb2, 0xc3, 0xd4],
  [0x4d, 0x3c, 0xb2, 0xa1],
  [0xa1, 0xb2, 0x3c, 0x4d],
  [0x0a, 0x0d, 0x0d, 0x0a],
].map((bytes) => Uint8Array.from(bytes));

describe("reader properties", () => {
  it("throws only CaptureError for arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => checkReaderContract(embedUnaligned(bytes))),
      { numRuns: RUNS },
    );
  });

  it("throws only CaptureError for arbitrary bytes behind a valid magic number", () => {
    fc.assert(
      fc.property(fc.constantFrom(...MAGIC_PREFIXES), fc.uint8Array({ maxLength: 300 }), (magic, rest) =>
        checkReaderContract(embedUnaligned(concat(magic, rest))),
      ),
      { numRuns: RUNS },
    );
  });

  it("throws only CaptureError for valid captures with flipped bytes or cut short", () => {
    fc.assert(
      fc.property(validCaptureArb, mutationArb, (bytes, mutation) =>
        checkReaderContract(embedUnaligned(mutate(bytes, mutation))),
      ),
      { numRuns: RUNS },
    );
  });

  it("round-trips arbitrary packets through PcapWriter", () => {
    fc.assert(
      fc.property(fc.constantFrom(...LINK_TYPES), fc.array(packetArb, { maxLength: 10 }), (linkType, packets) => {
        const capture = readCapture(writeCapture(linkType as LinkType, packets));
        expect(capture.packets.map((p) => [p.index, p.timestampNs, p.linkType, p.originalLength, Array.from(p.data)])).toEqual(
          packets.map((p, i) => [i, p.timestampNs, linkType, p.data.length, Array.from(p.data)]),
        );
      }),
      { numRuns: Math.max(1, RUNS / 4) },
    );
  });

  it("iterateCapture and readCapture agree on every input", () => {
    fc.assert(
      fc.property(validCaptureArb, mutationArb, (bytes, mutation) => {
        const input = mutate(bytes, mutation);
        const outcome = (f: () => unknown) => {
          try {
            return { value: f() };
          } catch (error) {
            return { error: error instanceof CaptureError ? [error.code, error.offset, error.record] : error };
          }
        };
        const eager = outcome(() => readCapture(input).packets);
        const lazy = outcome(() => Array.from(iterateCapture(input)));
        expect(lazy).toEqual(eager);
      }),
      { numRuns: Math.max(1, RUNS / 4) },
    );
  });
});
