/* Service load-balancing, as assembly/lb.ts step for step: lb_forward before
 * conntrack DNATs a packet to a service frontend to the backend its SERVICE
 * conntrack entry holds (selecting one for a new flow or when that backend is
 * gone); lb_after_ct records the service in the client -> backend entry and
 * reverse-NATs replies and ICMP errors quoting the client's packet. */
#pragma once
#include "parse.h"
#include "conntrack.h"
#include "csum.h"
#include "murmur3.h"
#include "../include/types/lb.h"

#define LB_SERVICES_MAP(name, key_t)                   \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_HASH);       \
		__type(key, key_t);                    \
		__type(value, struct lb_service);      \
		__uint(max_entries, 65536);            \
	} name SEC(".maps")

LB_SERVICES_MAP(lb4_services, struct lb4_key);
LB_SERVICES_MAP(lb6_services, struct lb6_key);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, 65536);
} lb4_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb6_backend);
	__uint(max_entries, 65536);
} lb6_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, 65536);
} lb4_reverse_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb6_reverse_nat);
	__uint(max_entries, 65536);
} lb6_reverse_nat SEC(".maps");

/* Rows of lb_config.maglev_m backend ids; the host sizes it to maglev_rows * maglev_m. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(max_entries, 1);
} lb_config SEC(".maps");

/* Big locals of the LB stages live here, not on the stack: the stages are
 * global functions, and a callee's stack adds to its caller's (512 bytes in all). */
union lb_key {
	struct lb4_key k4;
	struct lb6_key k6;
};

struct lb_target {
	union addr addr;
	__be16 port;
};

struct lb_scratch {
	union ct_key ct;        /* the SERVICE conntrack key */
	struct ct_entry entry;  /* a new SERVICE entry */
	union lb_key key;       /* services map key */
	struct lb_target backend;
	struct lb_target vip;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_scratch);
	__uint(max_entries, 1);
} lb_scratch SEC(".maps");

/* What lb_forward leaves for lb_after_ct. */
struct lb_state {
	__u32 backend_id;
	__u16 rev_nat_index;
	__u8 translated;
};

/* ---- flow hash: murmur3_32 over 32-bit words, as flowHash in assembly/lb.ts ---- */

static __always_inline __u32 lb_flow_hash(struct pkt *p, __u32 seed)
{
	__u32 h = seed, words = p->family == 4 ? 1 : 4;
	const __u32 *s = (const __u32 *)p->saddr.v6, *d = (const __u32 *)p->daddr.v6;
	int i;

	if (p->family == 4) {
		h = murmur3_mix(h, p->saddr.v4);
		h = murmur3_mix(h, p->daddr.v4);
	} else {
#pragma unroll
		for (i = 0; i < 4; i++)
			h = murmur3_mix(h, s[i]);
#pragma unroll
		for (i = 0; i < 4; i++)
			h = murmur3_mix(h, d[i]);
	}
	h = murmur3_mix(h, (__u32)p->sport | ((__u32)p->dport << 16));
	h = murmur3_mix(h, p->proto);
	h ^= (words * 2 + 2) << 2;
	h ^= h >> 16;
	h *= 0x85EBCA6B;
	h ^= h >> 13;
	h *= 0xC2B2AE35;
	h ^= h >> 16;
	return h;
}

/* ---- lookups ---- */

static __always_inline struct lb_service *lb_slot(struct pkt *p, union lb_key *key, __u16 slot)
{
	__builtin_memset(key, 0, sizeof(*key));
	if (p->family == 4) {
		key->k4.address = p->daddr.v4;
		key->k4.dport = p->dport;
		key->k4.slot = slot;
		key->k4.proto = p->proto;
		return bpf_map_lookup_elem(&lb4_services, &key->k4);
	}
	__builtin_memcpy(key->k6.address, p->daddr.v6, 16);
	key->k6.dport = p->dport;
	key->k6.slot = slot;
	key->k6.proto = p->proto;
	return bpf_map_lookup_elem(&lb6_services, &key->k6);
}

static __always_inline int lb_backend(__u8 family, __u32 id, struct lb_target *t)
{
	if (id == 0)
		return 0;
	if (family == 4) {
		struct lb4_backend *b = bpf_map_lookup_elem(&lb4_backends, &id);

		if (!b)
			return 0;
		__builtin_memset(&t->addr, 0, sizeof(t->addr));
		t->addr.v4 = b->address;
		t->port = b->port;
		return 1;
	}
	struct lb6_backend *b6 = bpf_map_lookup_elem(&lb6_backends, &id);

	if (!b6)
		return 0;
	__builtin_memcpy(t->addr.v6, b6->address, 16);
	t->port = b6->port;
	return 1;
}

static __always_inline int lb_rev_nat(__u8 family, __u16 index, struct lb_target *t)
{
	if (index == 0)
		return 0;
	if (family == 4) {
		struct lb4_reverse_nat *n = bpf_map_lookup_elem(&lb4_reverse_nat, &index);

		if (!n)
			return 0;
		__builtin_memset(&t->addr, 0, sizeof(t->addr));
		t->addr.v4 = n->address;
		t->port = n->port;
		return 1;
	}
	struct lb6_reverse_nat *n6 = bpf_map_lookup_elem(&lb6_reverse_nat, &index);

	if (!n6)
		return 0;
	__builtin_memcpy(t->addr.v6, n6->address, 16);
	t->port = n6->port;
	return 1;
}

static __always_inline __u32 lb_select(struct pkt *p, union lb_key *key, struct lb_service *master, __u16 count, struct lb_config *cfg)
{
	__u32 h = lb_flow_hash(p, cfg->hash_seed);
	struct lb_service *slot;

	if (master->algorithm == LB_ALG_MAGLEV) {
		__u32 row = master->maglev_index, m = cfg->maglev_m, idx, *id;

		if (m == 0 || row >= cfg->maglev_rows)
			return 0;
		idx = row * m + h % m;
		id = bpf_map_lookup_elem(&lb_maglev, &idx);
		return id ? *id : 0;
	}
	slot = lb_slot(p, key, (__u16)(h % count + 1));
	return slot ? slot->backend_id : 0;
}

/* ---- rewriting ---- */

static __always_inline __u32 l4_csum_off(__u8 proto, __u32 l4)
{
	return l4 + (proto == PROTO_TCP ? 16 : 6);
}

/* Replaces the address at `off` (the packet's source or destination, now `cur`) with `next`. */
static __always_inline void lb_rewrite_addr(struct __sk_buff *skb, struct pkt *p, __u32 off, union addr *cur, const union addr *next)
{
	__u32 csum = l4_csum_off(p->proto, p->l4);
	__u64 l4flags = BPF_F_PSEUDO_HDR | (p->proto == PROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0) | 4;
	__u32 *o = (__u32 *)cur->v6;
	const __u32 *n = (const __u32 *)next->v6;
	int i, words = p->family == 4 ? 1 : 4;

#pragma unroll
	for (i = 0; i < 4; i++) {
		if (i >= words || o[i] == n[i])
			continue;
		if (p->family == 4)
			bpf_l3_csum_replace(skb, p->l3 + 10, o[i], n[i], 4);
		if (p->frag != FRAG_LATER)
			bpf_l4_csum_replace(skb, csum, o[i], n[i], l4flags);
		bpf_skb_store_bytes(skb, off + i * 4, &n[i], 4, 0);
		o[i] = n[i];
	}
}

static __always_inline void lb_rewrite_port(struct __sk_buff *skb, struct pkt *p, __u32 off, __be16 old, __be16 port)
{
	__u64 flags = (p->proto == PROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0) | 2;

	if (p->frag == FRAG_LATER || old == port)
		return;
	bpf_l4_csum_replace(skb, l4_csum_off(p->proto, p->l4), old, port, flags);
	bpf_skb_store_bytes(skb, off, &port, 2, 0);
}

/* ---- the stages ---- */

/* Before conntrack: 0 (translated, or not a service packet) or a drop reason.
 * A global function: the verifier checks it once on its own instead of once
 * per path through the caller, which kept the whole program within its limit. */
__attribute__((noinline)) int lb_forward(struct __sk_buff *skb, struct pkt *p, __u32 now, struct dp_config *cfg, struct lb_state *st)
{
	__u32 zero = 0;
	struct lb_config *lbc = bpf_map_lookup_elem(&lb_config, &zero);
	struct lb_scratch *x = bpf_map_lookup_elem(&lb_scratch, &zero);
	struct lb_service *master;
	struct ct_entry *e;
	__u32 backend_id = 0;
	__u16 count, rev_nat;
	__u8 table;
	void *map;
	int found = 0;

	if (!p || !cfg || !st)
		return 0;
	st->translated = 0;
	if (!lbc || !x || p->icmp_error || (p->proto != PROTO_TCP && p->proto != PROTO_UDP))
		return 0;
	master = lb_slot(p, &x->key, 0);
	if (!master)
		return 0;
	count = master->count;
	rev_nat = master->rev_nat_index;

	table = ct_table_for(p->family, p->proto);
	map = ct_map(table);
	write_tuple(&x->ct, p->family, &p->saddr, &p->daddr, p->sport, p->dport, p->proto);
	e = lookup_live(map, &x->ct, p->family, TUPLE_F_SERVICE, now);
	if (e) {
		backend_id = e->backend_id;
		found = lb_backend(p->family, backend_id, &x->backend);
	}
	if (!found) {
		/* A new flow, or its backend is gone: select (again). No backend to select is a named drop. */
		if (count == 0)
			return DROP_NO_SERVICE;
		backend_id = lb_select(p, &x->key, master, count, lbc);
		if (!lb_backend(p->family, backend_id, &x->backend))
			return DROP_NO_SERVICE;
	}
	if (e) {
		ct_update(e, p, 0, now, cfg);
		e->backend_id = backend_id;
		e->rev_nat_index = rev_nat;
	} else {
		/* ct_create's steps, with the entry built in scratch memory. */
		__builtin_memset(&x->entry, 0, sizeof(x->entry));
		x->entry.created = now;
		ct_update(&x->entry, p, 0, now, cfg);
		x->entry.backend_id = backend_id;
		x->entry.rev_nat_index = rev_nat;
		if (bpf_map_update_elem(map, &x->ct, &x->entry, BPF_ANY) != 0) {
			stats_create_failed(table);
			return DROP_CT_CREATE_FAILED;
		}
		stats_created(table);
	}

	lb_rewrite_addr(skb, p, p->l3 + (p->family == 4 ? 16 : 24), &p->daddr, &x->backend.addr);
	lb_rewrite_port(skb, p, p->l4 + 2, p->dport, x->backend.port);
	p->dport = x->backend.port;
	st->translated = 1;
	st->backend_id = backend_id;
	st->rev_nat_index = rev_nat;
	return 0;
}

/* ---- ICMP errors about a service flow ---- */

static __always_inline __u16 load16(struct __sk_buff *skb, __u32 off)
{
	__u16 v = 0;

	bpf_skb_load_bytes(skb, off, &v, 2);
	return v;
}

/* Sets the 16-bit word at `off` inside the ICMP message to `value` (host order), keeping the ICMP checksum. */
static __always_inline void icmp_put16(struct __sk_buff *skb, struct pkt *p, __u32 off, __u32 value)
{
	__u16 old = load16(skb, off);
	__u16 next = bpf_htons((__u16)value);

	if (old == next)
		return;
	bpf_l4_csum_replace(skb, p->l4 + 2, old, next, 2);
	bpf_skb_store_bytes(skb, off, &next, 2, 0);
}

static __always_inline void quoted_l4_csum(struct __sk_buff *skb, struct pkt *p, __u32 off, __u32 old, __u32 next, int is32)
{
	__u32 check, res;
	int udp = p->iproto == PROTO_UDP;

	if (off == 0)
		return;
	check = bpf_ntohs(load16(skb, off));
	if (udp && check == 0)
		return;
	res = is32 ? csum_replace32(check, old, next) : csum_replace16(check, old, next);
	if (udp && res == 0)
		res = 0xFFFF;
	icmp_put16(skb, p, off, res);
}

static __always_inline void lb_rev_nat_icmp_error(struct __sk_buff *skb, struct pkt *p, struct ct_entry *e, struct lb_target *vip, struct lb_target *b)
{
	__u32 q = p->l4 + 8, idaddr_off, l4csum, l4field;
	const __u32 *o = (const __u32 *)p->idaddr.v6, *n = (const __u32 *)vip->addr.v6;
	const __u32 *s = (const __u32 *)p->saddr.v6, *bw;
	int i, words = p->family == 4 ? 1 : 4, from_backend = 1;

	if (p->iproto != PROTO_TCP && p->iproto != PROTO_UDP)
		return;
	if (!lb_backend(p->family, e->backend_id, b))
		return;
	bw = (const __u32 *)b->addr.v6;
	if (p->idport != b->port)
		return;
#pragma unroll
	for (i = 0; i < 4; i++) {
		if (i < words && o[i] != bw[i])
			return; /* quotes a reply: travels to the backend */
		if (i < words && s[i] != bw[i])
			from_backend = 0;
	}
	idaddr_off = q + (p->family == 4 ? 16 : 24);
	l4csum = p->il4 + (p->iproto == PROTO_TCP ? 16 : 6);
	l4field = l4csum + 2 <= p->end ? l4csum : 0;
#pragma unroll
	for (i = 0; i < 4; i++) {
		__u32 ow = bpf_ntohl(o[i]), nw = bpf_ntohl(n[i]);

		if (i >= words || ow == nw)
			continue;
		if (p->family == 4)
			icmp_put16(skb, p, q + 10, csum_replace32(bpf_ntohs(load16(skb, q + 10)), ow, nw));
		quoted_l4_csum(skb, p, l4field, ow, nw, 1);
		icmp_put16(skb, p, idaddr_off + i * 4, nw >> 16);
		icmp_put16(skb, p, idaddr_off + i * 4 + 2, nw & 0xFFFF);
	}
	if (p->idport != vip->port) {
		quoted_l4_csum(skb, p, l4field, bpf_ntohs(p->idport), bpf_ntohs(vip->port), 0);
		icmp_put16(skb, p, p->il4 + 2, bpf_ntohs(vip->port));
	}
	if (from_backend) {
#pragma unroll
		for (i = 0; i < 4; i++) {
			if (i >= words || s[i] == n[i])
				continue;
			if (p->family == 4)
				bpf_l3_csum_replace(skb, p->l3 + 10, s[i], n[i], 4);
			else
				bpf_l4_csum_replace(skb, p->l4 + 2, s[i], n[i], BPF_F_PSEUDO_HDR | 4);
			bpf_skb_store_bytes(skb, p->l3 + (p->family == 4 ? 12 : 8) + i * 4, &n[i], 4, 0);
		}
	}
}

/* After conntrack: records the service in a translated flow's entry `e`
 * (conntrack's result `result`); reverse-NATs replies and related ICMP errors.
 * A global function, as lb_forward. */
__attribute__((noinline)) int lb_after_ct(struct __sk_buff *skb, struct pkt *p, struct ct_entry *e, __u32 result, struct lb_state *st)
{
	__u32 zero = 0;
	struct lb_scratch *x = bpf_map_lookup_elem(&lb_scratch, &zero);
	struct ct_entry *svc;

	if (!p || !e || !st || !x)
		return 0;
	if (st->translated) {
		if (result == CT_NEW || result == CT_ESTABLISHED) {
			e->backend_id = st->backend_id;
			e->rev_nat_index = st->rev_nat_index;
			/* The SERVICE entry sees only the client's packets, so it cannot tell when the
			 * connection closes: it lives as long as the flow's own entry, which sees both
			 * sides. x->ct still holds its key from lb_forward (same CPU, same run). */
			svc = bpf_map_lookup_elem(ct_map(ct_table_for(p->family, p->proto)), &x->ct);
			if (svc)
				svc->lifetime = e->lifetime;
		}
		return 0;
	}
	/* No reverse-NAT entry (the service is gone): the packet passes as it is, as in Cilium. */
	if (!lb_rev_nat(p->family, e->rev_nat_index, &x->vip))
		return 0;
	if (result == CT_REPLY) {
		lb_rewrite_addr(skb, p, p->l3 + (p->family == 4 ? 12 : 8), &p->saddr, &x->vip.addr);
		lb_rewrite_port(skb, p, p->l4, p->sport, x->vip.port);
		p->sport = x->vip.port;
	} else if (result == CT_RELATED) {
		lb_rev_nat_icmp_error(skb, p, e, &x->vip, &x->backend);
	}
	return 0;
}
