/* Shared plumbing of membrane's kernel programs: helpers, the clock, config. */
#pragma once

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../include/types/common.h"
#include "../include/types/ct.h"
#include "../include/types/frag.h"
#include "../include/types/config.h"
#include "../include/types/metrics.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Protocol numbers (enum ip_proto), TCP flags (enum tcp_flags) and fragment
 * kinds (enum frag_kind) come from include/types/common.h, shared with the
 * Wasm core and the host. */

/* Returned by parsing for frames that pass untracked (ARP, neighbour discovery). */
#define PARSE_UNTRACKED (-1)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct dp_config);
	__uint(max_entries, 1);
} config SEC(".maps");

/* The datapath clock in seconds. Tests (and the differential suite) set it
 * through this map so both datapaths compute the same lifetimes; 0 means the
 * kernel's monotonic clock, which is what the host's GC must then use too. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} clock SEC(".maps");

static __always_inline __u32 datapath_now(void)
{
	__u32 zero = 0;
	__u32 *fixed = bpf_map_lookup_elem(&clock, &zero);

	if (fixed && *fixed)
		return *fixed;
	return (__u32)(bpf_ktime_get_ns() / 1000000000ULL);
}

static __always_inline struct dp_config *datapath_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}
