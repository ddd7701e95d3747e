/* One packet through the datapath, as assembly/datapath.ts processOne: parse,
 * fragments, conntrack lookup, new-flow decisions,
 * conntrack creation, counters. The decision goes to skb->cb[0] (verdict,
 * drop reason, ct result, direction) and cb[1] (ct table) so test runs can read
 * it back, and the return value is the tc action. */
#pragma once
#include "shape.h"
#include "parse.h"
#include "frag.h"
#include "conntrack.h"
#include "lb.h"
#include "metrics.h"
#include "policy.h"
#include "nat.h"

static __always_inline int finish(struct __sk_buff *skb, __u8 verdict, __u8 reason, __u8 dir, __u8 result, __u8 table, __u32 len)
{
	skb->cb[0] = (__u32)verdict | ((__u32)reason << 8) | ((__u32)result << 16) | ((__u32)dir << 24);
	skb->cb[1] = table;
	metrics_count(reason, dir, len);
	return verdict == VERDICT_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

/* The parsed packet lives here rather than on the stack: the stages that are
 * global functions (lb.h) add their stack to this function's, 512 bytes in all. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pkt);
	__uint(max_entries, 1);
} pkt_scratch SEC(".maps");

static __always_inline int datapath_process(struct __sk_buff *skb, __u8 dir_in)
{
	__u32 zero = 0;
	struct pkt *p = bpf_map_lookup_elem(&pkt_scratch, &zero);
	struct ct_out out = {};
	struct policy_out pol = {};
	struct lb_state lb = {};
	struct dp_config *cfg = datapath_config();
	__u8 fallback = dir_in == DIR_AUTO ? CT_EGRESS : dir_in;
	__u32 now = datapath_now();
	int reason;

	if (!cfg || !p)
		return TC_ACT_SHOT;
	__builtin_memset(p, 0, sizeof(*p));
	reason = parse_frame(skb, p);
	if (reason == PARSE_UNTRACKED)
		return finish(skb, VERDICT_PASS, DROP_NONE, fallback, CT_NONE, 0, skb->len);
	if (reason == 0)
		reason = frag_process(p, now, cfg);
	if (reason != 0)
		return finish(skb, VERDICT_DROP, reason, fallback, CT_NONE, 0, skb->len);
	if (ENABLE_LB)
		reason = lb_forward(skb, p, now, cfg, &lb);
	if (reason != 0)
		return finish(skb, VERDICT_DROP, reason, fallback, CT_NONE, 0, skb->len);
	reason = ct_lookup(p, dir_in, now, cfg, &out);
	/* A new flow is decided here, before its entry exists. Policy comes first:
	 * it judges the packet as the endpoint sent it, and a refused flow takes
	 * no NAT port. */
	if (ENABLE_POLICY && reason == 0 && out.result == CT_NEW)
		reason = policy_new_flow(p, out.dir, &pol);
	if (ENABLE_POLICY && reason == 0 && out.result == CT_NEW && dir_in == DIR_AUTO && out.dir == CT_EGRESS)
		reason = policy_peer_ingress(p, &pol);
	/* SNAT may translate a reply back and look it up again (then no longer CT_NEW). */
	if (ENABLE_NAT)
		reason = nat_stage(skb, p, reason, dir_in, now, cfg, &out);
	if (reason == 0 && out.result == CT_NEW)
		reason = ct_create(p, now, cfg, &out);
	if (ENABLE_POLICY && reason == 0 && out.result == CT_NEW)
		policy_store_identity(&pol, out.entry);
	if (ENABLE_LB && reason == 0 && out.entry)
		reason = lb_after_ct(skb, p, out.entry, out.result, &lb);
	if (reason != 0)
		return finish(skb, VERDICT_DROP, reason, out.dir, out.result, out.table, skb->len);
	return finish(skb, VERDICT_PASS, DROP_NONE, out.dir, out.result, out.table, skb->len);
}
