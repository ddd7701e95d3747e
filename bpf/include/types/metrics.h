/* Datapath counters. Cilium's metrics map: (reason, direction) -> packets, bytes;
 * reason 0 counts forwarded packets. */
#pragma once
#include "common.h"

struct metrics_key {
	__u8 reason; /* enum drop_reason; DROP_NONE = forwarded */
	__u8 dir;    /* enum ct_dir (egress or ingress) */
	__u8 pad[6];
};
_Static_assert(sizeof(struct metrics_key) == 8, "metrics_key size");

struct metrics_value {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct metrics_value) == 16, "metrics_value size");

/* Per conntrack table. */
struct ct_stats {
	__u64 entries;       /* live right now (gauge) */
	__u64 created;
	__u64 evicted;       /* live entries pushed out by a new flow (LRU policy) */
	__u64 create_failed; /* new flows dropped because the table was full (drop policy) */
	__u64 gc_deleted;    /* expired entries removed by GC */
	__u64 gc_runs;
};
_Static_assert(sizeof(struct ct_stats) == 48, "ct_stats size");
