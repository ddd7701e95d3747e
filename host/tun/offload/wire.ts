/**
 * Big-endian field access for the header rewrites of split and coalesce.
 * Plain index arithmetic rather than a DataView: the buffers are views into
 * Wasm memory or pooled arrays, and a DataView per packet would be garbage
 * on the hot path for four-byte reads.
 */

export function get16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

export function get32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** True when bytes a[aStart, aEnd) and b[bStart, bEnd) share memory. */
export function overlaps(a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array, bStart: number, bEnd: number): boolean {
  if (a.buffer !== b.buffer) return false;
  const a0 = a.byteOffset + aStart;
  const b0 = b.byteOffset + bStart;
  return a0 < b.byteOffset + bEnd && b0 < a.byteOffset + aEnd;
}
