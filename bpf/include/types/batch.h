/* One packet of a batch handed to the Wasm core, after wireguard-go's tun.Device:
 * a buffer with headroom before the packet so headers can be prepended in place. */
#pragma once
#include "common.h"

struct pkt_desc {
	__u32 buf;        /* linear-memory address of the buffer */
	__u32 buf_size;   /* capacity of the buffer */
	__u32 off;        /* where the packet starts in the buffer (headroom) */
	__u32 len;        /* packet length; the datapath may change off and len */
	__u8 link;        /* enum link_type */
	__u8 dir;         /* in: enum ct_dir or DIR_AUTO; out: the direction used */
	__u8 verdict;     /* out: enum verdict */
	__u8 ct_result;   /* out: enum ct_result */
	__u8 drop_reason; /* out: enum drop_reason */
	__u8 ct_table;    /* out: enum ct_table of the flow (when ct_result != CT_NONE) */
	__u8 flags;       /* in: enum pkt_flags */
	__u8 pad;
};

/* Bits of pkt_desc.flags. */
enum pkt_flags {
	/* The L4 checksum is not computed yet (virtio NEEDS_CSUM, the kernel's
	 * CHECKSUM_PARTIAL): its field holds the folded pseudo-header sum, not
	 * inverted. Rewrites keep it so: address changes update it, port changes
	 * do not touch it (assembly/checksum.ts l4Replace*). */
	PKT_F_CSUM_PARTIAL = 1,
};
_Static_assert(sizeof(struct pkt_desc) == 24, "pkt_desc size");
