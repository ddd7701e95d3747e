/* Queue steering for the forwarder's multi-queue TUN (TUNSETSTEERINGEBPF;
 * host/kernel/tun-steering.ts attaches it). The kernel sends each packet the
 * TUN transmits to queue (return value % queues).
 *
 * Why not the kernel's own steering: without a program a multi-queue TUN
 * computes a flow hash for every packet it transmits (the flow dissector) and
 * looks it up in a flow table that every packet written back updates, under a
 * lock, from the forwarder's CPU. Those are per-packet costs on both sides,
 * and the table's cache lines travel between the sending CPU and the
 * forwarder's; they buy "reply on the queue the flow was last written from",
 * which membrane does not need: every queue's packets are decided against one
 * conntrack view (docs/forwarder.md, "More than one queue").
 *
 * What this does instead: a symmetric hash of the addresses and, for TCP and
 * UDP (not fragments), the ports, so a flow and its reply land on the same
 * queue and flows spread over the queues. skb->data is the IP header here
 * (a TUN is a layer 3 device). A packet too short to read goes to queue 0.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

static __always_inline __u32 fold_ports(struct __sk_buff *skb, __u32 l4)
{
	__u32 ports;
	if (bpf_skb_load_bytes(skb, l4, &ports, 4) < 0)
		return 0;
	/* source ^ destination: the same both ways */
	return (ports >> 16) ^ (ports & 0xffff);
}

SEC("socket")
int tun_steering(struct __sk_buff *skb)
{
	__u8 first;
	__u32 h = 0;
	if (bpf_skb_load_bytes(skb, 0, &first, 1) < 0)
		return 0;
	if (first >> 4 == 4) {
		__u8 hdr[20];
		if (bpf_skb_load_bytes(skb, 0, hdr, 20) < 0)
			return 0;
		__u32 src = *(__u32 *)&hdr[12], dst = *(__u32 *)&hdr[16];
		h = src ^ dst;
		__u16 frag = bpf_ntohs(*(__u16 *)&hdr[6]) & 0x3fff;
		if ((hdr[9] == IPPROTO_TCP || hdr[9] == IPPROTO_UDP) && frag == 0)
			h ^= fold_ports(skb, (first & 0x0f) * 4);
	} else if (first >> 4 == 6) {
		__u32 hdr[10];
		if (bpf_skb_load_bytes(skb, 0, hdr, 40) < 0)
			return 0;
		for (int i = 2; i < 10; i++)
			h ^= hdr[i];
		__u8 next = ((__u8 *)hdr)[6];
		if (next == IPPROTO_TCP || next == IPPROTO_UDP)
			h ^= fold_ports(skb, 40);
	}
	/* mix, so that neighbouring addresses and ports reach every queue */
	h ^= h >> 16;
	h *= 0x45d9f3b;
	h ^= h >> 16;
	return h & 0x7fffffff;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
