/**
 * MurmurHash3, x86 32-bit variant (Austin Appleby, public domain), written out
 * here so the Maglev table, whose every entry must be identical on every node,
 * depends on no package version. Keys are hashed as their UTF-8 bytes.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** The finalizer of MurmurHash3: a bijective 32-bit mix with full avalanche. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mixK(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/** MurmurHash3_x86_32 of `bytes` with `seed`, as an unsigned 32-bit number. */
export function murmur3(bytes: Uint8Array, seed: number): number {
  let h = seed | 0;
  const len = bytes.length;
  const whole = len & ~3;
  for (let i = 0; i < whole; i += 4) {
    h ^= mixK(bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail > 0) {
    let k = bytes[whole]!;
    if (tail > 1) k |= bytes[whole + 1]! << 8;
    if (tail > 2) k |= bytes[whole + 2]! << 16;
    h ^= mixK(k);
  }
  return fmix32(h ^ len);
}

const utf8 = new TextEncoder();

/** murmur3 of the UTF-8 encoding of `text`. */
export function murmur3String(text: string, seed: number): number {
  return murmur3(utf8.encode(text), seed);
}
