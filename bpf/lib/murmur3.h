/* murmur3_32's block step, for the seeded flow hashes both datapaths must
 * compute bit for bit (LB slot choice, NAT port candidates); as murmur3Mix in
 * assembly/murmur3.ts. */
#pragma once
#include "common.h"

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* Mixes the 32-bit block `k` into the hash state `h`. */
static __always_inline __u32 murmur3_mix(__u32 h, __u32 k)
{
	k *= 0xCC9E2D51;
	k = rotl32(k, 15);
	k *= 0x1B873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xE6546B64;
}
