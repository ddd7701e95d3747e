/* Identity-based policy: local endpoints, the ipcache (address prefix ->
 * security identity) and the per-endpoint policy table.
 *
 * Policy is decided once per flow, for CT_NEW packets between the conntrack
 * lookup and the creation of the entry; replies and established packets pass
 * by conntrack. Ports are stored in network byte order, as the packet carries
 * them, so neither datapath swaps bytes on the packet path. */
#pragma once
#include "common.h"

/* Bits of endpoint_info.flags. An endpoint no rule selects enforces nothing
 * (Kubernetes: no policy, all allowed). */
enum endpoint_flags {
	ENDPOINT_F_ENFORCE_INGRESS = 1, /* ingress policy enforced */
	ENDPOINT_F_ENFORCE_EGRESS = 2,  /* egress policy enforced */
};

/* Reserved security identities, numbered as in Cilium. */
enum reserved_identity {
	IDENTITY_UNKNOWN = 0,   /* unknown; in a policy key: any identity */
	IDENTITY_HOST = 1,      /* the local node */
	IDENTITY_WORLD = 2,     /* outside the cluster: any address the ipcache does not know */
	IDENTITY_UNMANAGED = 3, /* a local endpoint membrane does not manage */
	IDENTITY_HEALTH = 4,    /* health checks */
	IDENTITY_INIT = 5,      /* an endpoint whose identity is not resolved yet */
};

/* The policy tables of the Wasm core, numbered for its exports. In the kernel
 * each is its own map: endpoints4, endpoints6, ipcache4, ipcache6, policy. */
enum policy_table {
	POLICY_TABLE_ENDPOINT4 = 0, /* endpoints4 */
	POLICY_TABLE_ENDPOINT6 = 1, /* endpoints6 */
	POLICY_TABLE_IPCACHE4 = 2,  /* ipcache4 */
	POLICY_TABLE_IPCACHE6 = 3,  /* ipcache6 */
	POLICY_TABLE_POLICY = 4,    /* policy */
};

/* Local endpoints, keyed by address. */
struct endpoint_key4 {
	__be32 addr;
};
_Static_assert(sizeof(struct endpoint_key4) == 4, "endpoint_key4 size");

struct endpoint_key6 {
	__u8 addr[16];
};
_Static_assert(sizeof(struct endpoint_key6) == 16, "endpoint_key6 size");

struct endpoint_info {
	__u32 sec_id;  /* the endpoint's security identity */
	__u32 ifindex; /* its interface (the host side of its veth) */
	__u16 id;      /* endpoint id: selects its entries in the policy table */
	__u8 mac[6];
	__u8 flags;    /* enum endpoint_flags */
	__u8 pad[3];
};
_Static_assert(sizeof(struct endpoint_info) == 20, "endpoint_info size");

/* The ipcache: the layout of a kernel LPM trie key, prefix length first
 * (bits), then the address with the bits past the prefix zeroed. */
struct ipcache_key4 {
	__u32 prefixlen;
	__be32 addr;
};
_Static_assert(sizeof(struct ipcache_key4) == 8, "ipcache_key4 size");

struct ipcache_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};
_Static_assert(sizeof(struct ipcache_key6) == 20, "ipcache_key6 size");

struct ipcache_value {
	__u32 sec_id; /* security identity of the addresses in the prefix */
};
_Static_assert(sizeof(struct ipcache_value) == 4, "ipcache_value size");

/* One table for every endpoint's policy, keyed additionally by endpoint id:
 * one O(1) hash lookup per candidate key, one map to load and pin (Cilium has
 * a map per endpoint, cilium_policy_NNNNN). Wildcards: sec_id 0 = any
 * identity, dport 0 = any port, proto 0 = any protocol. */
struct policy_key {
	__u32 sec_id;      /* remote identity */
	__u16 endpoint_id;
	__be16 dport;      /* destination port, network byte order */
	__u8 proto;        /* IANA protocol number */
	__u8 dir;          /* enum ct_dir: CT_EGRESS or CT_INGRESS */
	__u8 pad[2];
};
_Static_assert(sizeof(struct policy_key) == 12, "policy_key size");

struct policy_entry {
	__u64 hits;        /* new flows this entry decided */
	__be16 proxy_port; /* reserved for L7 redirection; 0 */
	__u8 deny;         /* 1: deny, and deny wins over any matching allow */
	__u8 pad[5];
};
_Static_assert(sizeof(struct policy_entry) == 16, "policy_entry size");

/* Capacities of the Wasm core's policy tables, set at init (the kernel maps
 * get the same numbers as max_entries at load time). */
struct policy_config {
	__u32 endpoint_max; /* endpoints per family */
	__u32 ipcache_max;  /* prefixes per family */
	__u32 policy_max;   /* policy entries, all endpoints together */
	__u32 pad;
};
_Static_assert(sizeof(struct policy_config) == 16, "policy_config size");
