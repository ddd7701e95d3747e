/* Enumerations shared by the kernel datapath, the Wasm core and the host.
 *
 * This directory is the single source of truth for every layout that crosses a
 * boundary. host/codegen reads it (a restricted C subset: enums with explicit or
 * implicit values, structs of fixed-width fields and arrays, _Static_assert on
 * sizes) and writes assembly/generated/layout.ts and host/generated/layout.ts.
 * The comment after an enum member is its human-readable text. */
#pragma once
#include <linux/types.h>

/* IP protocol numbers the datapaths handle (IANA). */
enum ip_proto {
	PROTO_ICMP = 1,    /* ICMP */
	PROTO_TCP = 6,     /* TCP */
	PROTO_UDP = 17,    /* UDP */
	PROTO_ICMPV6 = 58, /* ICMPv6 */
};

/* TCP header flag bits (byte 13 of the header). */
enum tcp_flags {
	TCP_FIN = 0x01, /* FIN */
	TCP_SYN = 0x02, /* SYN */
	TCP_RST = 0x04, /* RST */
	TCP_PSH = 0x08, /* PSH */
	TCP_ACK = 0x10, /* ACK */
	TCP_URG = 0x20, /* URG */
	TCP_ECE = 0x40, /* ECE */
	TCP_CWR = 0x80, /* CWR */
};

/* Where a packet sits in its IP datagram. */
enum frag_kind {
	FRAG_NONE = 0,  /* not fragmented */
	FRAG_FIRST = 1, /* offset 0, more fragments follow: carries the L4 header */
	FRAG_LATER = 2, /* offset > 0: no L4 header */
};

/* What the Wasm core's init exports (init, lb_init, nat_init) return. */
enum init_result {
	INIT_OK = 0,        /* tables created */
	INIT_AGAIN = 1,     /* already initialised: nothing done */
	INIT_NO_MEMORY = 2, /* the tables do not fit in linear memory */
};

/* What the datapath decided for a packet. */
enum verdict {
	VERDICT_PASS = 0, /* forwarded, possibly rewritten */
	VERDICT_DROP = 1, /* dropped; drop_reason says why */
};

/* Conntrack lookup outcome, as in Cilium. */
enum ct_result {
	CT_NEW = 0,         /* new flow, entry created */
	CT_ESTABLISHED = 1, /* packet in the flow's original direction */
	CT_REPLY = 2,       /* packet in the reply direction */
	CT_RELATED = 3,     /* ICMP error about a tracked flow */
	CT_NONE = 255,      /* not tracked (dropped before conntrack, or ARP/NDP) */
};

/* Direction of a packet relative to the endpoint, as in Cilium. DIR_AUTO asks the
 * datapath to decide: a packet answering an entry created on egress is ingress,
 * anything else is egress (for captures and middleboxes with no endpoint view). */
enum ct_dir {
	CT_EGRESS = 0,  /* egress */
	CT_INGRESS = 1, /* ingress */
	CT_SERVICE = 2, /* service */
	DIR_AUTO = 255, /* auto */
};

/* Tuple flags byte: which direction created the entry; keeps entries of the two
 * directions (and of services) apart when their 5-tuples coincide. */
enum tuple_flags {
	TUPLE_F_OUT = 0,     /* created by an egress packet */
	TUPLE_F_IN = 1,      /* created by an ingress packet */
	TUPLE_F_RELATED = 2, /* related */
	TUPLE_F_SERVICE = 4, /* service */
};

/* How packets arrive: TUN devices give bare IP packets, veths and captures
 * usually give Ethernet frames. */
enum link_type {
	LINK_RAW_IP = 0,   /* bare IPv4/IPv6 */
	LINK_ETHERNET = 1, /* Ethernet II, optionally one 802.1Q tag */
};

/* Limits both datapaths share. */
enum datapath_limits {
	IPV6_MAX_EXT_HEADERS = 4, /* extension headers walked before a packet is dropped (Cilium's bound) */
	METRICS_SLOTS = 512,      /* metrics entries: 256 drop reasons x 2 directions */
};

/* Slots of an endpoint template's prog array (lxc_calls, bpf/lib/lxc_calls.h):
 * the node-wide stages its per-endpoint programs tail-call into. */
enum lxc_call_slot {
	LXC_CALL_FROM_CONTAINER = 0, /* the datapath for what the pod sends (CT_EGRESS) */
	LXC_CALL_TO_CONTAINER = 1,   /* the datapath for what the pod receives (CT_INGRESS) */
	LXC_CALL_SLOTS = 2,
};

/* Drop reasons. Values are Cilium's (its codes are the negatives of these) where
 * Cilium has the same reason; membrane's own reasons start at 200. A reason fits
 * in a byte because the metrics key stores it in one. */
enum drop_reason {
	DROP_NONE = 0,                /* not dropped */
	DROP_POLICY = 133,            /* Policy denied */
	DROP_INVALID = 134,           /* Invalid packet (malformed or truncated IP header) */
	DROP_CT_INVALID_HDR = 135,    /* CT: invalid or truncated L4 header */
	DROP_CT_UNKNOWN_PROTO = 137,  /* CT: unknown L4 protocol */
	DROP_UNKNOWN_L3 = 139,        /* Unknown L3 protocol */
	DROP_CT_CREATE_FAILED = 155,  /* CT: table full of live entries, flow not created */
	DROP_MISSED_TAIL_CALL = 151,  /* Missed tail call (an endpoint program's shared stage is not installed) */
	DROP_INVALID_EXTHDR = 156,    /* Invalid or too many IPv6 extension headers */
	DROP_FRAG_NOSUPPORT = 157,    /* Fragment of a datagram whose first fragment was not seen */
	DROP_NO_SERVICE = 158,        /* Service has no backend */
	DROP_UNSUPPORTED_L2 = 166,    /* Unsupported L2 frame */
	DROP_NAT_NO_MAPPING = 167,    /* No mapping for NAT masquerade */
	DROP_ICMP_NO_FLOW = 200,      /* ICMP error quoting a packet of no tracked flow */
};
