/* The endpoint program, attached with tc to the host side of a pod's veth:
 * tc ingress there sees what the pod sends (egress from the endpoint's view),
 * tc egress what it receives. */
#include "lib/datapath.h"

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	return datapath_process(skb, CT_EGRESS);
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	return datapath_process(skb, CT_INGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
