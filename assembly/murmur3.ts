// murmur3_32's block step, for the seeded flow hashes both datapaths must
// compute bit for bit (LB slot choice, NAT port candidates); as murmur3_mix in
// bpf/lib/murmur3.h.

/** Mixes the 32-bit block `k` into the hash state `h`. */
// @ts-ignore: decorator
@inline export function murmur3Mix(h: u32, k: u32): u32 {
  k *= 0xCC9E2D51;
  k = rotl<u32>(k, 15);
  k *= 0x1B873593;
  h ^= k;
  h = rotl<u32>(h, 13);
  return h * 5 + 0xE6546B64;
}
