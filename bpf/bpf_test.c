/* Entry point for BPF_PROG_TEST_RUN: the direction comes in skb->cb[0]
 * (enum ct_dir, DIR_AUTO included), as the Wasm core takes it per packet. */
#include "lib/datapath.h"

SEC("tc")
int test_process(struct __sk_buff *skb)
{
	return datapath_process(skb, (__u8)skb->cb[0]);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
