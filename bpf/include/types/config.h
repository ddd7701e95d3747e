/* Datapath configuration: what the host sets before the first packet. The Wasm
 * core takes it at init; the kernel programs read it from a config map. */
#pragma once
#include "common.h"

struct dp_config {
	__u32 ct_max_tcp;              /* entries per TCP table (per family) */
	__u32 ct_max_any;              /* entries per non-TCP table (per family) */
	__u32 ct_timeout_tcp;          /* seconds, established TCP */
	__u32 ct_timeout_syn;          /* seconds, TCP until a non-SYN packet is seen */
	__u32 ct_timeout_close;        /* seconds, TCP after both sides closed */
	__u32 ct_timeout_any;          /* seconds, UDP, ICMP and other non-TCP */
	__u32 ct_full_policy;          /* enum ct_full_policy */
	__u32 hash_seed;               /* seeds table hashing; not compared across datapaths */
	__u32 frag_max;                /* entries in each fragment table */
	__u32 frag_timeout;            /* seconds a datagram's fragments are awaited */
};
_Static_assert(sizeof(struct dp_config) == 40, "dp_config size");
