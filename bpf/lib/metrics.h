/* Counters: packets and bytes per (drop reason, direction), reason 0 meaning
 * forwarded, indexed reason * 2 + direction like assembly/metrics.ts. */
#pragma once
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, METRICS_SLOTS);
} metrics SEC(".maps");

/* Per table (enum ct_table, then frag4, frag6). The kernel cannot see LRU
 * evictions, so only created and create_failed are counted here. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ct_stats);
	__uint(max_entries, 6);
} ct_stats SEC(".maps");

static __always_inline void metrics_count(__u8 reason, __u8 dir, __u32 bytes)
{
	__u32 slot = ((__u32)reason << 1) + (dir == CT_INGRESS ? 1 : 0);
	struct metrics_value *v = bpf_map_lookup_elem(&metrics, &slot);

	if (v) {
		v->packets++;
		v->bytes += bytes;
	}
}

static __always_inline void stats_created(__u32 table)
{
	struct ct_stats *s = bpf_map_lookup_elem(&ct_stats, &table);

	if (s)
		s->created++;
}

static __always_inline void stats_create_failed(__u32 table)
{
	struct ct_stats *s = bpf_map_lookup_elem(&ct_stats, &table);

	if (s)
		s->create_failed++;
}
