/* The endpoint program, attached with tc to the host side of a pod's veth:
 * tc ingress there sees what the pod sends (egress from the endpoint's view),
 * tc egress what it receives.
 *
 * Split in two (bpf/lib/lxc_calls.h): from_container and to_container are
 * the per-endpoint programs, loaded for each endpoint with its constants and
 * small enough that their verification is cheap; lxc_stage_* are the
 * node-wide stages they tail-call, loaded once per node and template. */
#define LXC_HANDOVER 1
#include "lib/lxc_calls.h"

SEC("tc")
int lxc_stage_from_container(struct __sk_buff *skb)
{
	return datapath_process(skb, CT_EGRESS);
}

SEC("tc")
int lxc_stage_to_container(struct __sk_buff *skb)
{
	return datapath_process(skb, CT_INGRESS);
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	return lxc_enter(skb, LXC_CALL_FROM_CONTAINER, CT_EGRESS);
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	return lxc_enter(skb, LXC_CALL_TO_CONTAINER, CT_INGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
