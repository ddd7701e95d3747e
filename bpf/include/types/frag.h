/* Fragment tracking: the first fragment of a datagram records its ports so the
 * later fragments (which carry no L4 header) join the same flow. */
#pragma once
#include "common.h"

struct frag_key4 {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};
_Static_assert(sizeof(struct frag_key4) == 12, "frag_key4 size");

/* proto is the fragment header's Next Header: the one value every fragment of
 * an IPv6 datagram shares (the first fragment may carry more extension headers
 * before its L4 header; later fragments carry only data). */
struct frag_key6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct frag_key6) == 40, "frag_key6 size");

struct frag_entry {
	__be16 sport;
	__be16 dport;
	__u32 lifetime; /* absolute expiry, seconds of the datapath clock */
	__u8 proto;     /* the datagram's L4 protocol, for later fragments */
	__u8 pad[3];
};
_Static_assert(sizeof(struct frag_entry) == 12, "frag_entry size");
