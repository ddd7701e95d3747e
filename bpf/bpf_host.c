/* The node's external device: tc ingress sees traffic arriving at the node,
 * tc egress traffic leaving it. */
#include "lib/datapath.h"

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	return datapath_process(skb, CT_INGRESS);
}

SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	return datapath_process(skb, CT_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
