/* The split endpoint program (Cilium's cilium_calls, one array per template).
 *
 * An endpoint's own program is small: it copies the endpoint's load-time
 * constants (endpoint.h) into the per-CPU handover slot and tail-calls the
 * node-wide stage for its direction, which runs the whole datapath
 * (datapath_process). The stages do not depend on any endpoint's values, so
 * the host loads them once per node and template into this array
 * (host/kernel/templates/stages.ts) and every endpoint of the template shares
 * them: the kernel verifies the datapath once per template instead of twice
 * per endpoint. Replacing a stage is one atomic slot update.
 *
 * A missing stage (nothing installed in the slot) drops the packet with
 * DROP_MISSED_TAIL_CALL, counted and reported like any drop. */
#pragma once
#include "datapath.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, LXC_CALL_SLOTS);
} lxc_calls SEC(".maps");

/* The per-endpoint part: hand over the constants, then continue in the stage `slot`. */
static __always_inline int lxc_enter(struct __sk_buff *skb, __u32 slot, __u8 dir)
{
	struct endpoint_self *self = endpoint_handover();

	if (!self)
		return TC_ACT_SHOT;
	self->id = LXC_ID;
	self->flags = ENDPOINT_POLICY_ENFORCE;
	self->ipv4 = LXC_IPV4;
	self->ipv6[0] = LXC_IPV6[0];
	self->ipv6[1] = LXC_IPV6[1];
	self->ipv6[2] = LXC_IPV6[2];
	self->ipv6[3] = LXC_IPV6[3];
	bpf_tail_call(skb, &lxc_calls, slot);
	return finish(skb, VERDICT_DROP, DROP_MISSED_TAIL_CALL, dir, CT_NONE, 0, skb->len);
}
