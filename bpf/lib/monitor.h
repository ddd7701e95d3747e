/* Monitor events from the kernel programs: drops, sampled traces and new
 * flows' policy verdicts into a BPF ring buffer that host/kernel reads, with
 * the settings in an array map the host writes (mode 0: off, which costs a
 * lookup and a branch per packet). The rate cap is the host reader's; a full
 * ring refuses the event and counts it in `lost`. */
#pragma once
#include "common.h"
#include "../include/types/monitor.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} monitor_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct monitor_config);
	__uint(max_entries, 1);
} monitor_config SEC(".maps");

static __always_inline void monitor_emit(struct __sk_buff *skb, struct monitor_config *cfg, __u8 type, __u8 reason, __u8 dir, __u8 result, __u32 identity)
{
	struct monitor_event *e = bpf_ringbuf_reserve(&monitor_events, sizeof(*e), 0);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u16 cap = 0;

	if (!e) {
		__sync_fetch_and_add(&cfg->lost, 1);
		return;
	}
	e->type = type;
	e->reason = reason;
	e->dir = dir;
	e->ct_result = result;
	e->link = LINK_ETHERNET;
	e->pad = 0;
	e->len = skb->len;
	e->identity = identity;
	/* The headers, byte by byte from the linear part: a variable-length
	 * bpf_skb_load_bytes would need bounds the verifier loses between
	 * registers. */
#pragma unroll
	for (int i = 0; i < MONITOR_CAP_BYTES; i++) {
		if (data + i + 1 > data_end)
			break;
		e->data[i] = *(__u8 *)(data + i);
		cap = i + 1;
	}
	e->cap_len = cap;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline struct monitor_config *monitor_settings(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&monitor_config, &zero);
}

/* A packet's decision (from finish()): a drop event, or a sampled trace event. */
static __always_inline void monitor_packet(struct __sk_buff *skb, __u8 verdict, __u8 reason, __u8 dir, __u8 result)
{
	struct monitor_config *cfg = monitor_settings();
	__u8 type = MONITOR_DROP;

	if (!cfg || cfg->mode == 0)
		return;
	if (verdict == VERDICT_PASS) {
		__u32 seen;

		if (!(cfg->mode & MONITOR_F_TRACE))
			return;
		/* Not atomic: a sampling counter may skip or repeat under concurrency (and fetch-add's result needs -mcpu=v3). */
		seen = ++cfg->seen;
		if (cfg->sample > 1 && seen % cfg->sample != 0)
			return;
		type = MONITOR_TRACE;
	} else if (!(cfg->mode & MONITOR_F_DROP)) {
		return;
	}
	monitor_emit(skb, cfg, type, reason, dir, result, 0);
}

/* A new flow's policy decision, when a local endpoint was on its side. */
static __always_inline void monitor_policy_verdict(struct __sk_buff *skb, __u8 policed, int reason, __u8 dir, __u8 result, __u32 identity)
{
	struct monitor_config *cfg;

	if (!policed)
		return;
	cfg = monitor_settings();
	if (!cfg || !(cfg->mode & MONITOR_F_POLICY))
		return;
	monitor_emit(skb, cfg, MONITOR_POLICY_VERDICT, (__u8)reason, dir, result, identity);
}
