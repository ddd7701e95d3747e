/* Service load-balancing (services v2): services, backends, reverse NAT and
 * Maglev lookup tables, the same records in the Wasm tables and the kernel maps.
 *
 * A service is a frontend (VIP, port, protocol). Its slot 0 (the master) holds
 * the backend count, the rev-NAT index and the selection algorithm; slots
 * 1..count hold one backend id each. Backends map id -> (address, port,
 * protocol); reverse NAT maps the rev-NAT index -> (VIP, port), which replies
 * get as their source. Addresses and ports are in network byte order. */
#pragma once
#include "common.h"

/* How a new flow picks its backend. */
enum lb_algorithm {
	LB_ALG_RANDOM = 0, /* seeded hash of the flow over dense slots 1..count (services v2) */
	LB_ALG_LEGACY = 1, /* the same over slots that may hold duplicates (pre-v2 slot filling) */
	LB_ALG_MAGLEV = 2, /* Maglev lookup table: consistent hashing */
};

/* Table ids of the Wasm core's LB tables (the kernel has one map per table). */
enum lb_table {
	LB_TABLE_SERVICES4 = 0, /* lb4_services */
	LB_TABLE_SERVICES6 = 1, /* lb6_services */
	LB_TABLE_BACKENDS4 = 2, /* lb4_backends */
	LB_TABLE_BACKENDS6 = 3, /* lb6_backends */
	LB_TABLE_REVNAT4 = 4,   /* lb4_reverse_nat */
	LB_TABLE_REVNAT6 = 5,   /* lb6_reverse_nat */
};

struct lb4_key {
	__be32 address; /* VIP */
	__be16 dport;   /* service port */
	__u16 slot;     /* 0: master entry; 1..count: backend slots */
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];
};
_Static_assert(sizeof(struct lb4_key) == 12, "lb4_key size");

struct lb6_key {
	__u8 address[16]; /* VIP */
	__be16 dport;     /* service port */
	__u16 slot;       /* 0: master entry; 1..count: backend slots */
	__u8 proto;       /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];
};
_Static_assert(sizeof(struct lb6_key) == 24, "lb6_key size");

/* The value of every slot, both families. */
struct lb_service {
	__u32 backend_id;    /* slots 1..count: the backend; master: 0 */
	__u16 count;         /* master: backends (slots 1..count) */
	__u16 rev_nat_index; /* master: reverse-NAT entry of the service */
	__u8 algorithm;      /* master: enum lb_algorithm */
	__u8 pad[3];
	__u32 maglev_index;  /* master, maglev: the service's row of the Maglev table */
};
_Static_assert(sizeof(struct lb_service) == 16, "lb_service size");

/* Backends table: key __u32 backend id (never 0). */
struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 pad;
};
_Static_assert(sizeof(struct lb4_backend) == 8, "lb4_backend size");

struct lb6_backend {
	__u8 address[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
};
_Static_assert(sizeof(struct lb6_backend) == 20, "lb6_backend size");

/* Reverse-NAT table: key __u16 rev-NAT index (never 0). */
struct lb4_reverse_nat {
	__be32 address; /* VIP */
	__be16 port;    /* service port */
	__u16 pad;
};
_Static_assert(sizeof(struct lb4_reverse_nat) == 8, "lb4_reverse_nat size");

struct lb6_reverse_nat {
	__u8 address[16]; /* VIP */
	__be16 port;      /* service port */
	__u16 pad;
};
_Static_assert(sizeof(struct lb6_reverse_nat) == 20, "lb6_reverse_nat size");

/* LB configuration: the Wasm core takes it through lb_config_ptr/lb_init, the
 * kernel programs read it from the lb_config map. The Maglev table is one flat
 * array of backend ids: row k (a service's maglev_index) is entries
 * k*maglev_m .. k*maglev_m + maglev_m - 1. */
struct lb_config {
	__u32 max_services;  /* entries per services table (per family), slots included */
	__u32 max_backends;  /* entries per backends table (per family) */
	__u32 max_rev_nat;   /* entries per reverse-NAT table (per family) */
	__u32 maglev_m;      /* Maglev table size per service (a prime) */
	__u32 maglev_rows;   /* Maglev rows: how many services may use maglev */
	__u32 hash_seed;     /* seeds backend selection; the same in both datapaths and on every node */
};
_Static_assert(sizeof(struct lb_config) == 24, "lb_config size");
