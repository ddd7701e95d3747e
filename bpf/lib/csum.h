/* Incremental checksum arithmetic (RFC 1624: HC' = ~(~HC + ~m + m')) on
 * host-order values, as csumReplace16/32 in assembly/checksum.ts. */
#pragma once
#include "common.h"

static __always_inline __u32 csum_fold32(__u32 s)
{
	s = (s & 0xFFFF) + (s >> 16);
	s = (s & 0xFFFF) + (s >> 16);
	return s;
}

static __always_inline __u32 csum_replace16(__u32 check, __u32 old, __u32 next)
{
	return ~csum_fold32((~check & 0xFFFF) + (~old & 0xFFFF) + next) & 0xFFFF;
}

static __always_inline __u32 csum_replace32(__u32 check, __u32 old, __u32 next)
{
	__u32 s = (~check & 0xFFFF) + (~(old >> 16) & 0xFFFF) + (~old & 0xFFFF) + (next >> 16) + (next & 0xFFFF);

	return ~csum_fold32(s) & 0xFFFF;
}
