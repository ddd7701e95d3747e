/* Packet parsing, the same checks in the same order as assembly/parse.ts:
 * Ethernet (one 802.1Q tag), IPv4 (options, fragments), IPv6 (bounded
 * extension-header walk), TCP, UDP, ICMP, ICMPv6 and the packet quoted by an
 * ICMP error. Every bound is checked against the end of the IP datagram
 * before bytes are loaded; failures return a drop reason. */
#pragma once
#include "common.h"

union addr {
	__be32 v4;
	__u8 v6[16];
};

struct pkt {
	__u32 len;      /* frame length (metrics bytes) */
	__u32 l3;       /* offset of the IP header */
	__u32 end;      /* end of the IP datagram */
	__u32 l3_len;   /* IP datagram length (conntrack bytes) */
	__u32 l4;       /* offset of the L4 header (unused for later fragments) */
	__u32 frag_id;  /* raw: IPv4 16-bit id, IPv6 32-bit id */
	__u8 frag_proto; /* keys the fragment table: IPv4 protocol, IPv6 fragment header's Next Header */
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 family;
	__u8 proto;
	__u8 tcp_flags;
	__u8 frag;      /* enum frag_kind */
	__u8 icmp_error;
	/* the packet an ICMP error quotes */
	__u8 iproto;
	__be16 isport;
	__be16 idport;
	__u32 il4;      /* offset of the quoted L4 header (its first 8 bytes are inside the packet) */
	union addr isaddr;
	union addr idaddr;
};

struct ext_walk {
	__u32 l4;
	__u32 frag_id;
	__u8 proto;
	__u8 frag;
	__u8 frag_nh;
};

static __always_inline int is_ext_header(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 60 || nh == 51;
}

/* Walks IPv6 extension headers after the fixed header at l3, within end. */
static __always_inline int walk_ipv6(struct __sk_buff *skb, __u32 l3, __u32 end, struct ext_walk *w)
{
	__u8 nh;
	__u32 cur = l3 + 40;
	int i;

	if (bpf_skb_load_bytes(skb, l3 + 6, &nh, 1) < 0)
		return DROP_INVALID;
	w->frag = FRAG_NONE;
	w->frag_id = 0;
#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		if (is_ext_header(nh)) {
			__u8 hdr[2];
			__u32 len;

			if (cur + 8 > end)
				return DROP_INVALID_EXTHDR;
			if (bpf_skb_load_bytes(skb, cur, hdr, 2) < 0)
				return DROP_INVALID_EXTHDR;
			len = nh == 51 ? ((__u32)hdr[1] + 2) << 2 : ((__u32)hdr[1] + 1) << 3;
			if (cur + len > end)
				return DROP_INVALID_EXTHDR;
			nh = hdr[0];
			cur += len;
		} else if (nh == 44) {
			__u8 fh[8];
			__u16 off_more;

			if (cur + 8 > end)
				return DROP_INVALID_EXTHDR;
			if (bpf_skb_load_bytes(skb, cur, fh, 8) < 0)
				return DROP_INVALID_EXTHDR;
			off_more = ((__u16)fh[2] << 8) | fh[3];
			__builtin_memcpy(&w->frag_id, &fh[4], 4);
			w->frag = (off_more & 0xFFF8) ? FRAG_LATER : (off_more & 1) ? FRAG_FIRST : FRAG_NONE;
			nh = fh[0];
			w->frag_nh = nh;
			cur += 8;
			if (w->frag == FRAG_LATER) {
				/* What follows is a slice of the datagram, not headers. */
				w->proto = nh;
				w->l4 = cur;
				return 0;
			}
		} else {
			w->proto = nh;
			w->l4 = cur;
			return 0;
		}
	}
	if (is_ext_header(nh) || nh == 44)
		return DROP_INVALID_EXTHDR;
	w->proto = nh;
	w->l4 = cur;
	return 0;
}

/* ICMP echo by identifier, as Cilium: request sport 0 / dport id, reply sport id / dport 0. */
static __always_inline int echo_ports(struct __sk_buff *skb, __u32 l4, int is_v6, __be16 *sport, __be16 *dport)
{
	__u8 h[8];

	if (bpf_skb_load_bytes(skb, l4, h, 8) < 0)
		return DROP_CT_INVALID_HDR;
	__be16 id;
	__builtin_memcpy(&id, &h[4], 2);
	if (h[0] == (is_v6 ? 128 : 8)) {
		*sport = 0;
		*dport = id;
	} else if (h[0] == (is_v6 ? 129 : 0)) {
		*sport = id;
		*dport = 0;
	} else {
		*sport = 0;
		*dport = 0;
	}
	return 0;
}

/* ICMPv6 neighbour discovery (133..137) and multicast listener discovery (130..132, 143). */
static __always_inline int is_link_plumbing(__u8 type)
{
	return (type >= 130 && type <= 137) || type == 143;
}

static __always_inline int is_icmp_error(__u8 type, int is_v6)
{
	if (is_v6)
		return type >= 1 && type <= 4;
	return type == 3 || type == 11 || type == 12;
}

static __always_inline int parse_quoted(struct __sk_buff *skb, struct pkt *p, __u32 q)
{
	__u32 end = p->end;
	__u32 l4;
	__u8 proto;

	if (p->family == 4) {
		__u8 h[20];
		__u32 ihl;

		if (q + 20 > end)
			return DROP_CT_INVALID_HDR;
		if (bpf_skb_load_bytes(skb, q, h, 20) < 0)
			return DROP_CT_INVALID_HDR;
		ihl = (__u32)(h[0] & 0xF) << 2;
		if ((h[0] >> 4) != 4 || ihl < 20)
			return DROP_CT_INVALID_HDR;
		if ((((__u16)h[6] << 8 | h[7]) & 0x1FFF) != 0)
			return DROP_CT_INVALID_HDR;
		proto = h[9];
		__builtin_memcpy(&p->isaddr.v4, &h[12], 4);
		__builtin_memcpy(&p->idaddr.v4, &h[16], 4);
		l4 = q + ihl;
	} else {
		struct ext_walk w = {};
		__u8 v;

		if (q + 40 > end)
			return DROP_CT_INVALID_HDR;
		if (bpf_skb_load_bytes(skb, q, &v, 1) < 0 || (v >> 4) != 6)
			return DROP_CT_INVALID_HDR;
		if (walk_ipv6(skb, q, end, &w) != 0)
			return DROP_CT_INVALID_HDR;
		if (w.frag == FRAG_LATER)
			return DROP_CT_INVALID_HDR;
		proto = w.proto;
		if (bpf_skb_load_bytes(skb, q + 8, p->isaddr.v6, 16) < 0 ||
		    bpf_skb_load_bytes(skb, q + 24, p->idaddr.v6, 16) < 0)
			return DROP_CT_INVALID_HDR;
		l4 = w.l4;
	}
	if (l4 + 8 > end)
		return DROP_CT_INVALID_HDR;
	p->il4 = l4;
	p->iproto = proto;
	if (proto == PROTO_TCP || proto == PROTO_UDP) {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, l4, ports, 4) < 0)
			return DROP_CT_INVALID_HDR;
		p->isport = ports[0];
		p->idport = ports[1];
		return 0;
	}
	if (proto == (p->family == 4 ? PROTO_ICMP : PROTO_ICMPV6))
		return echo_ports(skb, l4, p->family == 6, &p->isport, &p->idport);
	return DROP_CT_UNKNOWN_PROTO;
}

static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p)
{
	__u32 l4 = p->l4;
	__s64 avail = (__s64)p->end - (__s64)l4;
	int is_v6 = p->family == 6;

	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_error = 0;
	/* No L4 header in a later fragment: the fragment table supplies protocol and ports. */
	if (p->frag == FRAG_LATER)
		return 0;
	if (p->proto == PROTO_TCP) {
		__u8 h[14];
		__s64 doff;

		if (avail < 20)
			return DROP_CT_INVALID_HDR;
		if (bpf_skb_load_bytes(skb, l4, h, 14) < 0)
			return DROP_CT_INVALID_HDR;
		doff = (__s64)(h[12] >> 4) << 2;
		if (doff < 20 || doff > avail)
			return DROP_CT_INVALID_HDR;
		__builtin_memcpy(&p->sport, &h[0], 2);
		__builtin_memcpy(&p->dport, &h[2], 2);
		p->tcp_flags = h[13];
		return 0;
	}
	if (p->proto == PROTO_UDP) {
		__be16 ports[2];

		if (avail < 8)
			return DROP_CT_INVALID_HDR;
		if (bpf_skb_load_bytes(skb, l4, ports, 4) < 0)
			return DROP_CT_INVALID_HDR;
		p->sport = ports[0];
		p->dport = ports[1];
		return 0;
	}
	if ((p->proto == PROTO_ICMP && !is_v6) || (p->proto == PROTO_ICMPV6 && is_v6)) {
		__u8 type;

		if (avail < 8)
			return DROP_CT_INVALID_HDR;
		if (bpf_skb_load_bytes(skb, l4, &type, 1) < 0)
			return DROP_CT_INVALID_HDR;
		if (is_v6 && is_link_plumbing(type))
			return PARSE_UNTRACKED;
		if (is_icmp_error(type, is_v6)) {
			if (p->frag != FRAG_NONE)
				return DROP_CT_INVALID_HDR;
			p->icmp_error = 1;
			return parse_quoted(skb, p, l4 + 8);
		}
		return echo_ports(skb, l4, is_v6, &p->sport, &p->dport);
	}
	return DROP_CT_UNKNOWN_PROTO;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct pkt *p, __u32 l3)
{
	__u8 h[20];
	__u32 ihl, total;
	__u16 frag;

	if (l3 + 20 > p->len)
		return DROP_INVALID;
	if (bpf_skb_load_bytes(skb, l3, h, 20) < 0)
		return DROP_INVALID;
	ihl = (__u32)(h[0] & 0xF) << 2;
	if ((h[0] >> 4) != 4 || ihl < 20)
		return DROP_INVALID;
	total = ((__u32)h[2] << 8) | h[3];
	if (total < ihl || l3 + total > p->len)
		return DROP_INVALID;
	p->family = 4;
	p->l3 = l3;
	p->end = l3 + total;
	p->l3_len = total;
	__builtin_memcpy(&p->saddr.v4, &h[12], 4);
	__builtin_memcpy(&p->daddr.v4, &h[16], 4);
	p->proto = h[9];
	p->l4 = l3 + ihl;
	frag = ((__u16)h[6] << 8) | h[7];
	p->frag = (frag & 0x1FFF) ? FRAG_LATER : (frag & 0x2000) ? FRAG_FIRST : FRAG_NONE;
	p->frag_id = 0;
	__builtin_memcpy(&p->frag_id, &h[4], 2);
	p->frag_proto = p->proto;
	return parse_l4(skb, p);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct pkt *p, __u32 l3)
{
	__u8 h[8];
	__u32 plen;
	struct ext_walk w = {};
	int r;

	if (l3 + 40 > p->len)
		return DROP_INVALID;
	if (bpf_skb_load_bytes(skb, l3, h, 8) < 0)
		return DROP_INVALID;
	if ((h[0] >> 4) != 6)
		return DROP_INVALID;
	plen = ((__u32)h[4] << 8) | h[5];
	if (plen == 0 && h[6] != 59)
		return DROP_INVALID;
	if (l3 + 40 + plen > p->len)
		return DROP_INVALID;
	p->family = 6;
	p->l3 = l3;
	p->end = l3 + 40 + plen;
	p->l3_len = 40 + plen;
	if (bpf_skb_load_bytes(skb, l3 + 8, p->saddr.v6, 16) < 0 ||
	    bpf_skb_load_bytes(skb, l3 + 24, p->daddr.v6, 16) < 0)
		return DROP_INVALID;
	r = walk_ipv6(skb, l3, p->end, &w);
	if (r != 0)
		return r;
	p->proto = w.proto;
	p->l4 = w.l4;
	p->frag = w.frag;
	p->frag_id = w.frag_id;
	p->frag_proto = w.frag_nh;
	return parse_l4(skb, p);
}

/* Parses an Ethernet frame (tc programs always see one). 0: track it;
 * PARSE_UNTRACKED: pass untouched; else a drop reason. */
static __always_inline int parse_frame(struct __sk_buff *skb, struct pkt *p)
{
	__u8 eth[18];
	__u16 ether_type;
	__u32 l3 = 14;

	p->len = skb->len;
	if (p->len < 14)
		return DROP_UNSUPPORTED_L2;
	if (bpf_skb_load_bytes(skb, 0, eth, 14) < 0)
		return DROP_UNSUPPORTED_L2;
	ether_type = ((__u16)eth[12] << 8) | eth[13];
	if (ether_type == 0x8100) {
		if (p->len < 18)
			return DROP_UNSUPPORTED_L2;
		if (bpf_skb_load_bytes(skb, 14, &eth[14], 4) < 0)
			return DROP_UNSUPPORTED_L2;
		ether_type = ((__u16)eth[16] << 8) | eth[17];
		l3 = 18;
	}
	if (ether_type == 0x0800)
		return parse_ipv4(skb, p, l3);
	if (ether_type == 0x86DD)
		return parse_ipv6(skb, p, l3);
	if (ether_type == 0x0806)
		return PARSE_UNTRACKED;
	if (ether_type == 0x8100 || ether_type == 0x88A8)
		return DROP_UNSUPPORTED_L2;
	return DROP_UNKNOWN_L3;
}
