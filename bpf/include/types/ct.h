/* Conntrack tables: key and value.
 *
 * Convention (the same in assembly/ and bpf/): a tuple is stored as the packet
 * that created the entry saw it: saddr/sport are that packet's source. A reply
 * is found by swapping the addresses and ports of the packet and looking up the
 * opposite direction's flags. (Cilium stores addresses in reply order; membrane
 * does not copy that quirk.) Addresses and ports are in network byte order. */
#pragma once
#include "common.h"

struct ct_tuple4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 flags; /* enum tuple_flags */
} __attribute__((packed));
_Static_assert(sizeof(struct ct_tuple4) == 14, "ct_tuple4 size");

struct ct_tuple6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 flags; /* enum tuple_flags */
} __attribute__((packed));
_Static_assert(sizeof(struct ct_tuple6) == 38, "ct_tuple6 size");

/* Bits of ct_entry.flags. */
enum ct_entry_flags {
	CT_F_TX_CLOSING = 1,   /* FIN seen in the original direction (or RST either way) */
	CT_F_RX_CLOSING = 2,   /* FIN seen in the reply direction (or RST either way) */
	CT_F_SEEN_NON_SYN = 4, /* a packet without SYN was seen: established timeout applies */
};

/* tx = the original direction (the packet that created the entry), rx = replies. */
struct ct_entry {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u32 lifetime;      /* absolute expiry, seconds of the datapath clock */
	__u32 backend_id;    /* service backend chosen for this flow (0 = none) */
	__u32 src_sec_id;    /* security identity of the remote end (policy; 0 = none) */
	__u16 rev_nat_index; /* service to restore on replies (0 = none) */
	__u8 tx_flags_seen;  /* OR of TCP flags seen in the original direction */
	__u8 rx_flags_seen;  /* OR of TCP flags seen in the reply direction */
	__u8 flags;          /* enum ct_entry_flags */
	__u8 pad[3];
	__u32 created;       /* datapath clock when the entry was created */
};
_Static_assert(sizeof(struct ct_entry) == 56, "ct_entry size");

/* The four conntrack tables, as in Cilium: TCP apart from the rest so UDP/ICMP
 * churn cannot evict long-lived TCP connections. */
enum ct_table {
	CT_TABLE_TCP4 = 0, /* tcp4 */
	CT_TABLE_ANY4 = 1, /* any4 */
	CT_TABLE_TCP6 = 2, /* tcp6 */
	CT_TABLE_ANY6 = 3, /* any6 */
};

/* Tables after the conntrack ones, numbered on for stats and dumps. */
enum frag_table {
	TABLE_FRAG4 = 4, /* frag4 */
	TABLE_FRAG6 = 5, /* frag6 */
};

/* What a full table does on a new flow. */
enum ct_full_policy {
	CT_FULL_EVICT_LRU = 0, /* evict an entry not used lately (CLOCK; like an LRU map) */
	CT_FULL_DROP = 1,      /* drop the new flow with DROP_CT_CREATE_FAILED (like a hash map) */
};
