// Table hashing over zero-padded 64-bit key words. The seed comes from the
// configuration and may be random: bucket placement is internal to the Wasm
// tables and never compared with the kernel (whose hash maps use their own).

// @ts-ignore: decorator
@inline const K1: u64 = 0x9E3779B97F4A7C15;
// @ts-ignore: decorator
@inline const K2: u64 = 0xBF58476D1CE4E5B9;

export function hashWords(ptr: usize, words: i32, seed: u64): u64 {
  let h = seed ^ K2;
  for (let i = 0; i < words; i++) {
    h = (h ^ load<u64>(ptr + (<usize>i << 3))) * K1;
    h ^= h >> 32;
  }
  h ^= h >> 29;
  h *= K2;
  h ^= h >> 32;
  return h;
}
