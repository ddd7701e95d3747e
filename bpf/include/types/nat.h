/* SNAT / masquerading: configuration, table keys and entries, counters.
 *
 * One table per family holds mappings in pairs (as Cilium's SNAT maps):
 * - forward (dir NAT_DIR_EGRESS): key = the flow as the pod sent it, which is
 *   exactly its conntrack tuple; value = the source address/port to write;
 * - reverse (dir NAT_DIR_INGRESS): key = a reply as it arrives (remote ->
 *   masquerade address/port); value = the pod's address/port to restore.
 * For ICMP echo the identifier plays the port: requests carry it in dport,
 * replies in sport (the conntrack convention), so a reverse key of an echo
 * flow is (remote, masq, id, 0).
 *
 * Lifetime: a pair belongs to the conntrack entry of its forward key (flags
 * TUPLE_F_OUT) and carries that entry's creation time. It is live exactly while
 * that entry is live and has the same creation time; both datapaths treat any
 * other pair as absent on the packet path, and GC / flush remove it. So an
 * expired, evicted, deleted or recreated conntrack entry never keeps a port. */
#pragma once
#include "common.h"

enum nat_limits {
	NAT_MAX_CIDRS = 8,     /* entries per CIDR list and family */
	NAT_MAX_RETRIES = 128, /* bound of nat_config.retries (later Cilium's bound) */
};

/* Which half of a pair a key is (the key's dir byte). */
enum nat_dir {
	NAT_DIR_EGRESS = 0,  /* forward: pod -> remote */
	NAT_DIR_INGRESS = 1, /* reverse: remote -> masquerade address */
};

/* Bits of nat_config.flags. */
enum nat_config_flags {
	NAT_F_ENABLE4 = 1, /* masquerade IPv4 */
	NAT_F_ENABLE6 = 2, /* masquerade IPv6 */
};

struct nat_cidr4 {
	__be32 addr; /* already masked */
	__be32 mask;
};
_Static_assert(sizeof(struct nat_cidr4) == 8, "nat_cidr4 size");

struct nat_cidr6 {
	__u8 addr[16]; /* already masked */
	__u8 mask[16];
};
_Static_assert(sizeof(struct nat_cidr6) == 32, "nat_cidr6 size");

/* Egress traffic is masqueraded when its source lies in a cluster CIDR (any
 * source when the list is empty), its destination lies in none, neither end
 * lies in an excluded CIDR, and neither end is the masquerade address. */
struct nat_config {
	__u32 flags;            /* enum nat_config_flags */
	__be32 addr4;           /* IPv4 masquerade address */
	__u8 addr6[16];         /* IPv6 masquerade address */
	__u16 port_min;         /* first port (and ICMP identifier) handed out (1024) */
	__u16 port_max;         /* last one (65535) */
	__u32 retries;          /* candidates tried after the original port (16, as Cilium 1.5) */
	__u32 max_entries4;     /* entries of the IPv4 table (two per mapping) */
	__u32 max_entries6;     /* entries of the IPv6 table */
	__u32 seed;             /* seeds the port candidates: both datapaths pick the same ports */
	__u32 cluster4_count;
	__u32 excluded4_count;
	__u32 cluster6_count;
	__u32 excluded6_count;
	struct nat_cidr4 cluster4[8];
	struct nat_cidr4 excluded4[8];
	struct nat_cidr6 cluster6[8];
	struct nat_cidr6 excluded6[8];
};
_Static_assert(sizeof(struct nat_config) == 700, "nat_config size");

struct nat_key4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 dir; /* enum nat_dir */
	__u8 pad[2];
};
_Static_assert(sizeof(struct nat_key4) == 16, "nat_key4 size");

struct nat_key6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 dir; /* enum nat_dir */
	__u8 pad[2];
};
_Static_assert(sizeof(struct nat_key6) == 40, "nat_key6 size");

struct nat_entry4 {
	__be32 addr;   /* forward: new source; reverse: original source, restored as destination */
	__be16 port;   /* the same for the port or ICMP identifier */
	__u16 pad;
	__u32 created; /* creation time of the owning conntrack entry */
};
_Static_assert(sizeof(struct nat_entry4) == 12, "nat_entry4 size");

struct nat_entry6 {
	__u8 addr[16]; /* forward: new source; reverse: original source, restored as destination */
	__be16 port;   /* the same for the port or ICMP identifier */
	__u16 pad;
	__u32 created; /* creation time of the owning conntrack entry */
};
_Static_assert(sizeof(struct nat_entry6) == 24, "nat_entry6 size");

/* Per family (index 0 IPv4, 1 IPv6). */
struct nat_stats {
	__u64 created;       /* mappings (pairs) made */
	__u64 retained;      /* of which kept the original port */
	__u64 collisions;    /* candidates found taken by a live mapping */
	__u64 alloc_failed;  /* new flows dropped: no free port, or the table full */
	__u64 stale_removed; /* pairs of dead conntrack entries removed on the packet path */
	__u64 gc_deleted;    /* entries removed by GC */
	__u64 gc_requests;   /* exhaustion signals: the host runs conntrack GC early when this moves */
};
_Static_assert(sizeof(struct nat_stats) == 56, "nat_stats size");
