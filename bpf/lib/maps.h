/* The datapath tables, the same shapes as the Wasm core's (assembly/tables.ts).
 * The host sets the conntrack sizes at load time and picks LRU_HASH (evict on
 * full) or HASH (fail on full) to match the configured full-table policy. */
#pragma once
#include "common.h"

#define CT_MAP(name, key_t)                            \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);   \
		__type(key, key_t);                    \
		__type(value, struct ct_entry);        \
		__uint(max_entries, 65536);            \
	} name SEC(".maps")

CT_MAP(ct_tcp4, struct ct_tuple4);
CT_MAP(ct_any4, struct ct_tuple4);
CT_MAP(ct_tcp6, struct ct_tuple6);
CT_MAP(ct_any6, struct ct_tuple6);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag_key4);
	__type(value, struct frag_entry);
	__uint(max_entries, 8192);
} frag4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag_key6);
	__type(value, struct frag_entry);
	__uint(max_entries, 8192);
} frag6 SEC(".maps");
