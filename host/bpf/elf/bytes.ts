/**
 * Bounds-checked little-endian reads over an untrusted byte buffer.
 *
 * ELF and BTF readers only ever read through this class, so a truncated or
 * corrupt object can never produce a RangeError or a silent `undefined`: every
 * out-of-range read becomes a MembraneError with the reader's code, what was
 * being read and the absolute byte offset.
 */
import { MembraneError } from "../../errors.js";

const utf8 = new TextDecoder("utf-8", { fatal: false });

export class ByteReader {
  readonly bytes: Uint8Array;
  /** Offset of `bytes[0]` in the whole file, so messages name file offsets. */
  readonly base: number;
  private readonly view: DataView;
  private readonly code: string;
  /** Starts every message, e.g. "invalid BTF: ". */
  private readonly prefix: string;

  constructor(bytes: Uint8Array, code: string, prefix: string, base = 0) {
    this.bytes = bytes;
    this.code = code;
    this.prefix = prefix;
    this.base = base;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.length;
  }

  /** An error of this reader's code; `offset` is relative to this reader. */
  fail(message: string, offset: number): MembraneError {
    return new MembraneError(this.code, `${this.prefix}${message} (at byte ${this.base + offset})`);
  }

  /** Throws unless [offset, offset+size) lies inside the buffer. */
  check(offset: number, size: number, what: string): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(size) ||
      offset < 0 ||
      size < 0 ||
      offset + size > this.bytes.length
    ) {
      throw this.fail(`${what}: ${size} bytes at offset ${offset} run past the end (${this.bytes.length} bytes)`, offset);
    }
  }

  u8(offset: number, what: string): number {
    this.check(offset, 1, what);
    return this.view.getUint8(offset);
  }

  u16(offset: number, what: string): number {
    this.check(offset, 2, what);
    return this.view.getUint16(offset, true);
  }

  u32(offset: number, what: string): number {
    this.check(offset, 4, what);
    return this.view.getUint32(offset, true);
  }

  i32(offset: number, what: string): number {
    this.check(offset, 4, what);
    return this.view.getInt32(offset, true);
  }

  u64big(offset: number, what: string): bigint {
    this.check(offset, 8, what);
    return this.view.getBigUint64(offset, true);
  }

  /**
   * A 64-bit field used as an offset, size or address. BPF objects are small,
   * so anything past 2^53 is corruption, not a value to round.
   */
  u64(offset: number, what: string): number {
    const v = this.u64big(offset, what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw this.fail(`${what}: value 0x${v.toString(16)} is too large`, offset);
    }
    return Number(v);
  }

  /** A sub-reader over [offset, offset+size), keeping file offsets in messages. */
  slice(offset: number, size: number, what: string): ByteReader {
    this.check(offset, size, what);
    return new ByteReader(this.bytes.subarray(offset, offset + size), this.code, this.prefix, this.base + offset);
  }

  /** The NUL-terminated string at `offset`; a missing terminator is corruption. */
  cstring(offset: number, what: string): string {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.bytes.length) {
      throw this.fail(`${what}: string offset ${offset} is outside the string table (${this.bytes.length} bytes)`, offset);
    }
    const end = this.bytes.indexOf(0, offset);
    if (end < 0) throw this.fail(`${what}: string at offset ${offset} has no terminating NUL`, offset);
    return utf8.decode(this.bytes.subarray(offset, end));
  }
}
