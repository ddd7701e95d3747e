/* SNAT / masquerading: the semantics of assembly/nat*.ts, in the same order.
 * One stage after the conntrack lookup, before a new flow's entry is created:
 * - egress, original direction of a flow from a cluster address to the
 *   outside: find or make the flow's mapping, rewrite the source;
 * - ingress to the masquerade address that conntrack did not know: a reverse
 *   mapping rewrites the destination back and conntrack looks again; without
 *   one, ports below 1024 and echo requests pass, the rest is dropped;
 * - ICMP errors quoting a translated packet are translated back.
 * A pair lives exactly while its conntrack entry lives (include/types/nat.h). */
#pragma once
#include "../include/types/nat.h"
#include "conntrack.h"
#include "csum.h"
#include "murmur3.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct nat_config);
	__uint(max_entries, 1);
} nat_config SEC(".maps");

/* Plain hash maps: an LRU map would evict one half of a live pair. The host
 * sizes them (nat.entries); full means DROP_NAT_NO_MAPPING, as in Wasm. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct nat_key4);
	__type(value, struct nat_entry4);
	__uint(max_entries, 1024);
} nat4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct nat_key6);
	__type(value, struct nat_entry6);
	__uint(max_entries, 1024);
} nat6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct nat_stats);
	__uint(max_entries, 2);
} nat_stats SEC(".maps");

/* Internal result: the packet was translated back; conntrack must look it up again. */
#define NAT_RERUN_CT 0x10000

/* Only the kernel runs packets in parallel: two CPUs may race for one port
 * (EEXIST on the reverse insert: try the next candidate) or for one flow
 * (EEXIST on the forward insert: the other CPU's mapping is used). */
#define EEXIST_ 17
#define NAT_ALLOC_RACED 3

union nat_key {
	struct nat_key4 k4;
	struct nat_key6 k6;
};

/* Both entry layouts start with the address; the port and creation time differ in place. */
union nat_entry {
	struct nat_entry4 e4;
	struct nat_entry6 e6;
};

/* ---- allocation state: one candidate per bpf_loop step (the verifier sees the body once) ---- */

struct nat_alloc {
	union nat_key fwd;      /* the flow's forward key */
	union addr remote;
	union addr masq;
	__be16 remote_port;
	__be16 orig_port;
	__u8 family;
	__u8 proto;
	__u8 done;              /* 1: mapped */
	__u8 pad;
	__u32 created;
	__u32 now;
	__u32 hash_state;
	__u32 first;
	__u32 min;
	__u32 range;
	__be16 port;            /* the port mapped */
};

/* What the stage needs besides the packet (one pointer: subprograms take five arguments). */
struct nat_args {
	__s32 reason;    /* the conntrack lookup's */
	__u32 now;
	__u32 created;   /* creation time of the flow's conntrack entry (ESTABLISHED) */
	__u8 dir_in;
	__u8 result;     /* conntrack result */
	__u8 dir;        /* conntrack direction */
	__u8 pad;
};

struct nat_quoted {
	__u32 quoted;           /* offset of the quoted IP header */
	__u32 csum_at;          /* of its L4 checksum */
	__u32 port_at;          /* of its source port or echo identifier */
	__u32 l4sum;
	__u32 ipsum;
	__u32 old_port;
	__u32 new_port;
	__u32 oa;
	__u32 na;
	__u8 proto;
	__u8 have_csum;
	__u8 udp_none;
	__u8 pad;
};

/* Keys and entry copies live here, not on the 512-byte stack. */
struct nat_work {
	struct nat_args args;   /* the stage's arguments (off the caller's stack, too) */
	struct nat_alloc a;
	union nat_key k;        /* the stage's key */
	union nat_entry e;      /* a copy of its entry */
	union nat_key rev;      /* allocation: the candidate's reverse key */
	union nat_entry ce;     /* allocation: its entry */
	union nat_key other;    /* remove_pair */
	union nat_key back;
	union nat_key self;
	union nat_entry oe;     /* remove_pair: the partner's entry */
	union nat_key fwd;      /* slot_live */
	union ct_key ck;        /* owner_live */
	__be32 old_words[4];    /* address rewrites */
	__be32 new_words[4];
	__be16 old16;           /* 16-bit rewrites */
	__be16 new16;
	struct nat_quoted q;    /* ICMP error rewrites */
	__u32 stat_idx;         /* key of nat_stats */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct nat_work);
	__uint(max_entries, 1);
} nat_work SEC(".maps");

enum nat_stat_field { NS_CREATED, NS_RETAINED, NS_COLLISIONS, NS_ALLOC_FAILED, NS_STALE_REMOVED };

/* The key lives in the work area: a stack slot for it would not fit the frame. */
static __always_inline void nat_bump(struct nat_work *w, __u8 family, int field)
{
	struct nat_stats *s;

	w->stat_idx = family == 4 ? 0 : 1;
	s = bpf_map_lookup_elem(&nat_stats, &w->stat_idx);

	if (!s)
		return;
	switch (field) {
	case NS_CREATED: s->created++; break;
	case NS_RETAINED: s->retained++; break;
	case NS_COLLISIONS: s->collisions++; break;
	case NS_ALLOC_FAILED: s->alloc_failed++; s->gc_requests++; break;
	default: s->stale_removed++; break;
	}
}

static __always_inline void *nat_map(__u8 family)
{
	return family == 4 ? (void *)&nat4 : (void *)&nat6;
}

static __always_inline int is_icmp_proto(__u8 proto)
{
	return proto == PROTO_ICMP || proto == PROTO_ICMPV6;
}

/* ---- configuration ---- */

static __always_inline int nat_enabled(struct nat_config *c, __u8 family)
{
	return (c->flags & (family == 4 ? NAT_F_ENABLE4 : NAT_F_ENABLE6)) != 0;
}

/* Both arguments are 4-byte aligned (union addr, struct nat_config). */
static __always_inline int addr_eq6(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline int is_masq(struct nat_config *c, const union addr *a, __u8 family)
{
	if (family == 4)
		return a->v4 == c->addr4;
	return addr_eq6(a->v6, c->addr6);
}

static __always_inline __u32 clamp_count(__u32 n)
{
	return n < NAT_MAX_CIDRS ? n : NAT_MAX_CIDRS;
}

static __always_inline int in_list4(const struct nat_cidr4 *list, __u32 count, __be32 a)
{
	__u32 n = clamp_count(count);
	int i;

#pragma unroll
	for (i = 0; i < NAT_MAX_CIDRS; i++) {
		if ((__u32)i < n && (a & list[i].mask) == list[i].addr)
			return 1;
	}
	return 0;
}

static __always_inline int in_list6(const struct nat_cidr6 *list, __u32 count, const __u8 *a)
{
	__u32 n = clamp_count(count);
	const __u32 *x = (const __u32 *)a;
	int i, k;

	for (i = 0; i < NAT_MAX_CIDRS; i++) {
		const __u32 *m = (const __u32 *)list[i].mask, *v = (const __u32 *)list[i].addr;
		int hit = 1;

		if ((__u32)i >= n)
			break;
#pragma unroll
		for (k = 0; k < 4; k++)
			hit &= (x[k] & m[k]) == v[k];
		if (hit)
			return 1;
	}
	return 0;
}

static __always_inline int should_masquerade(struct nat_config *c, struct pkt *p, __u8 family)
{
	if (is_masq(c, &p->saddr, family) || is_masq(c, &p->daddr, family))
		return 0;
	if (family == 4) {
		if (clamp_count(c->cluster4_count) && !in_list4(c->cluster4, c->cluster4_count, p->saddr.v4))
			return 0;
		if (in_list4(c->cluster4, c->cluster4_count, p->daddr.v4))
			return 0;
		return !in_list4(c->excluded4, c->excluded4_count, p->saddr.v4) &&
		       !in_list4(c->excluded4, c->excluded4_count, p->daddr.v4);
	}
	if (clamp_count(c->cluster6_count) && !in_list6(c->cluster6, c->cluster6_count, p->saddr.v6))
		return 0;
	if (in_list6(c->cluster6, c->cluster6_count, p->daddr.v6))
		return 0;
	return !in_list6(c->excluded6, c->excluded6_count, p->saddr.v6) &&
	       !in_list6(c->excluded6, c->excluded6_count, p->daddr.v6);
}

/* ---- keys and pairs ---- */

/* 16 bytes as 2-byte words: keys are only 2-aligned, and a byte-wise copy
 * would keep sixteen values alive (and on the stack). */
static __always_inline void copy_addr16(void *dst, const void *src)
{
	const __u16 *s = src;
	__u16 *d = dst;
	int i;

	for (i = 0; i < 8; i++)
		d[i] = s[i];
}

static __always_inline void nat_write_key(union nat_key *k, __u8 family, const void *s, const void *d,
					  __be16 sport, __be16 dport, __u8 proto, __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (family == 4) {
		__builtin_memcpy(&k->k4.saddr, s, 4);
		__builtin_memcpy(&k->k4.daddr, d, 4);
		k->k4.sport = sport;
		k->k4.dport = dport;
		k->k4.nexthdr = proto;
		k->k4.dir = dir;
	} else {
		copy_addr16(k->k6.saddr, s);
		copy_addr16(k->k6.daddr, d);
		k->k6.sport = sport;
		k->k6.dport = dport;
		k->k6.nexthdr = proto;
		k->k6.dir = dir;
	}
}

static __always_inline __be16 key_sport(const union nat_key *k, __u8 family) { return family == 4 ? k->k4.sport : k->k6.sport; }
static __always_inline __be16 key_dport(const union nat_key *k, __u8 family) { return family == 4 ? k->k4.dport : k->k6.dport; }
static __always_inline const void *key_saddr(const union nat_key *k, __u8 family) { return family == 4 ? (const void *)&k->k4.saddr : (const void *)k->k6.saddr; }
static __always_inline const void *key_daddr(const union nat_key *k, __u8 family) { return family == 4 ? (const void *)&k->k4.daddr : (const void *)k->k6.daddr; }
static __always_inline __be16 entry_port(const union nat_entry *e, __u8 family) { return family == 4 ? e->e4.port : e->e6.port; }
static __always_inline __u32 entry_created(const union nat_entry *e, __u8 family) { return family == 4 ? e->e4.created : e->e6.created; }

static __always_inline void entry_set(union nat_entry *e, __u8 family, const void *addr, __be16 port, __u32 created)
{
	__builtin_memset(e, 0, sizeof(*e));
	if (family == 4) {
		__builtin_memcpy(&e->e4.addr, addr, 4);
		e->e4.port = port;
		e->e4.created = created;
	} else {
		__builtin_memcpy(e->e6.addr, addr, 16);
		e->e6.port = port;
		e->e6.created = created;
	}
}

/* Copies the entry under k into *out (reads through the family's own map
 * type, so the verifier knows the value size). Returns whether it exists. */
static __always_inline int nat_get(__u8 family, const union nat_key *k, union nat_entry *out)
{
	if (family == 4) {
		struct nat_entry4 *e = bpf_map_lookup_elem(&nat4, k);

		if (!e)
			return 0;
		out->e4 = *e;
		return 1;
	}
	struct nat_entry6 *e6 = bpf_map_lookup_elem(&nat6, k);

	if (!e6)
		return 0;
	out->e6 = *e6;
	return 1;
}

/* The pairing rules take the protocol and the half as values held in registers,
 * not re-read from keys: the verifier then forks on them once, not at every use. */

/* Reverse key of the pair whose forward half is (fwd, e). */
static __always_inline void reverse_of(union nat_key *out, __u8 family, __u8 proto, const union nat_key *fwd, const union nat_entry *e)
{
	__be16 port = entry_port(e, family);

	if (is_icmp_proto(proto))
		nat_write_key(out, family, key_daddr(fwd, family), e, port, 0, proto, NAT_DIR_INGRESS);
	else
		nat_write_key(out, family, key_daddr(fwd, family), e, key_dport(fwd, family), port, proto, NAT_DIR_INGRESS);
}

/* Forward key (= conntrack tuple) of the pair whose reverse half is (rev, e). */
static __always_inline void forward_of(union nat_key *out, __u8 family, __u8 proto, const union nat_key *rev, const union nat_entry *e)
{
	__be16 port = entry_port(e, family);

	if (is_icmp_proto(proto))
		nat_write_key(out, family, e, key_saddr(rev, family), 0, port, proto, NAT_DIR_EGRESS);
	else
		nat_write_key(out, family, e, key_saddr(rev, family), port, key_sport(rev, family), proto, NAT_DIR_EGRESS);
}

/* Whether the conntrack entry of forward key fwd is live and was created at `created`. */
static __always_inline int owner_live(struct nat_work *w, const union nat_key *fwd, __u8 family, __u8 proto, __u32 created, __u32 now)
{
	union ct_key *ck = &w->ck;
	struct ct_entry *ce;

	__builtin_memset(ck, 0, sizeof(*ck));
	/* The forward key starts with the conntrack tuple; NAT_DIR_EGRESS is TUPLE_F_OUT. */
	if (family == 4)
		__builtin_memcpy(&ck->t4, &fwd->k4, sizeof(ck->t4));
	else
		__builtin_memcpy(&ck->t6, &fwd->k6, sizeof(ck->t6));
	if (proto == PROTO_TCP)
		ce = bpf_map_lookup_elem(family == 4 ? (void *)&ct_tcp4 : (void *)&ct_tcp6, ck);
	else
		ce = bpf_map_lookup_elem(family == 4 ? (void *)&ct_any4 : (void *)&ct_any6, ck);
	return ce && ce->lifetime >= now && ce->created == created;
}

static __always_inline int slot_live(struct nat_work *w, const union nat_key *k, const union nat_entry *e, __u8 family,
				     __u8 proto, __u8 dir, __u32 now)
{
	if (dir == NAT_DIR_EGRESS)
		return owner_live(w, k, family, proto, entry_created(e, family), now);
	forward_of(&w->fwd, family, proto, k, e);
	return owner_live(w, &w->fwd, family, proto, entry_created(e, family), now);
}

static __always_inline int key_eq(const union nat_key *a, const union nat_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*a) / 8); i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/* Removes (k, e) (e a copy, k of half `dir`) and its partner, if the partner points back at it. */
static __always_inline void remove_pair(struct nat_work *w, const union nat_key *k, const union nat_entry *e, __u8 family,
					__u8 proto, __u8 dir)
{
	void *map = nat_map(family);
	union nat_entry *oe = &w->oe;

	w->self = *k;
	if (dir == NAT_DIR_EGRESS)
		reverse_of(&w->other, family, proto, k, e);
	else
		forward_of(&w->other, family, proto, k, e);
	if (nat_get(family, &w->other, oe) && entry_created(oe, family) == entry_created(e, family)) {
		if (dir == NAT_DIR_EGRESS)
			forward_of(&w->back, family, proto, &w->other, oe);
		else
			reverse_of(&w->back, family, proto, &w->other, oe);
		if (key_eq(&w->back, &w->self))
			bpf_map_delete_elem(map, &w->other);
	}
	bpf_map_delete_elem(map, &w->self);
}

static __always_inline __u32 csum_field_offset(__u8 proto)
{
	return proto == PROTO_TCP ? 16 : proto == PROTO_UDP ? 6 : 2;
}

/* Replaces the address at packet offset `field` (old value in *old) with *new. */
static __always_inline int rewrite_addr(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u8 family, __u32 field,
					const void *old, const void *new)
{
	int with_l4 = p->frag != FRAG_LATER && p->proto != PROTO_ICMP;
	__u32 csum = p->l4 + csum_field_offset(p->proto);
	__u64 mm = p->proto == PROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 *o = w->old_words, *n = w->new_words;
	int i;

	if (family == 4) {
		__builtin_memcpy(o, old, 4);
		__builtin_memcpy(n, new, 4);
		if (bpf_l3_csum_replace(skb, p->l3 + 10, o[0], n[0], 4))
			return DROP_INVALID;
		if (with_l4 && bpf_l4_csum_replace(skb, csum, o[0], n[0], BPF_F_PSEUDO_HDR | mm | 4))
			return DROP_INVALID;
		return bpf_skb_store_bytes(skb, field, n, 4, 0) ? DROP_INVALID : 0;
	}
	__builtin_memcpy(o, old, 16);
	__builtin_memcpy(n, new, 16);
	for (i = 0; i < 4; i++) {
		if (with_l4 && bpf_l4_csum_replace(skb, csum, o[i], n[i], BPF_F_PSEUDO_HDR | mm | 4))
			return DROP_INVALID;
	}
	return bpf_skb_store_bytes(skb, field, n, 16, 0) ? DROP_INVALID : 0;
}

/* Replaces the port (offset 0 or 2 of the L4 header) or echo identifier (offset 4). */
static __always_inline int rewrite_port(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u32 offset, __be16 old, __be16 new)
{
	__u64 mm = p->proto == PROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (p->frag == FRAG_LATER)
		return 0;
	if (bpf_l4_csum_replace(skb, p->l4 + csum_field_offset(p->proto), old, new, mm | 2))
		return DROP_INVALID;
	w->new16 = new;
	return bpf_skb_store_bytes(skb, p->l4 + offset, &w->new16, 2, 0) ? DROP_INVALID : 0;
}

/* A 16-bit word of the ICMP payload (host-order value), keeping the ICMP checksum right. */
static __always_inline int payload_write16(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u32 at, __u32 value)
{
	w->new16 = bpf_htons((__u16)value);
	if (bpf_skb_load_bytes(skb, at, &w->old16, 2) < 0)
		return DROP_INVALID;
	if (bpf_l4_csum_replace(skb, p->l4 + 2, w->old16, w->new16, 2))
		return DROP_INVALID;
	return bpf_skb_store_bytes(skb, at, &w->new16, 2, 0) ? DROP_INVALID : 0;
}

static __always_inline __u32 load_be16(struct __sk_buff *skb, struct nat_work *w, __u32 at, int *err)
{
	w->old16 = 0;
	if (bpf_skb_load_bytes(skb, at, &w->old16, 2) < 0)
		*err = 1;
	return bpf_ntohs(w->old16);
}

/* The quoted packet's source address and port/identifier go back to (addr, port),
 * as assembly/nat-rewrite.ts rewriteQuotedSource. */
/* The quoted packet's source address and port/identifier go back to (addr, port),
 * as assembly/nat-rewrite.ts rewriteQuotedSource. Its state lives in w->q: kept in
 * locals it would be spilled around every helper call. */
static __always_inline int rewrite_quoted_source(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u8 family,
						 const void *addr, __be16 port)
{
	struct nat_quoted *q = &w->q;
	int err = 0, i;

	q->quoted = p->l4 + 8;
	q->proto = p->iproto;
	q->csum_at = p->il4 + csum_field_offset(q->proto);
	q->port_at = p->il4 + (q->proto == PROTO_TCP || q->proto == PROTO_UDP ? 0 : 4);
	q->have_csum = q->csum_at + 2 <= p->end;
	q->l4sum = q->have_csum ? load_be16(skb, w, q->csum_at, &err) : 0;
	q->udp_none = q->proto == PROTO_UDP && q->l4sum == 0;
	q->old_port = load_be16(skb, w, q->port_at, &err);
	q->new_port = bpf_ntohs(port);
	if (err)
		return DROP_INVALID;
	if (family == 4) {
		__builtin_memcpy(w->new_words, addr, 4);
		q->oa = bpf_ntohl(p->isaddr.v4);
		q->na = bpf_ntohl(w->new_words[0]);
		if (q->proto != PROTO_ICMP)
			q->l4sum = csum_replace32(q->l4sum, q->oa, q->na);
		q->ipsum = csum_replace32(load_be16(skb, w, q->quoted + 10, &err), q->oa, q->na);
		if (err)
			return DROP_INVALID;
		if (payload_write16(skb, p, w, q->quoted + 12, q->na >> 16) ||
		    payload_write16(skb, p, w, q->quoted + 14, q->na & 0xFFFF) ||
		    payload_write16(skb, p, w, q->quoted + 10, q->ipsum))
			return DROP_INVALID;
	} else {
		__builtin_memcpy(w->old_words, p->isaddr.v6, 16);
		__builtin_memcpy(w->new_words, addr, 16);
		for (i = 0; i < 4; i++) {
			q->oa = bpf_ntohl(w->old_words[i & 3]);
			q->na = bpf_ntohl(w->new_words[i & 3]);
			q->l4sum = csum_replace32(q->l4sum, q->oa, q->na);
			if (payload_write16(skb, p, w, q->quoted + 8 + i * 4, q->na >> 16) ||
			    payload_write16(skb, p, w, q->quoted + 10 + i * 4, q->na & 0xFFFF))
				return DROP_INVALID;
		}
	}
	q->l4sum = csum_replace16(q->l4sum, q->old_port, q->new_port);
	if (payload_write16(skb, p, w, q->port_at, q->new_port))
		return DROP_INVALID;
	if (q->have_csum && !q->udp_none)
		return payload_write16(skb, p, w, q->csum_at, q->proto == PROTO_UDP && q->l4sum == 0 ? 0xFFFF : q->l4sum)
			? DROP_INVALID : 0;
	return 0;
}

/* ---- port candidates: murmur3's mixing, as assembly/nat.ts ---- */

static __always_inline __u32 mix_addr(__u32 h, const union addr *a, __u8 family)
{
	const __u32 *w = (const __u32 *)a->v6;
	int i;

	if (family == 4)
		return murmur3_mix(h, bpf_ntohl(a->v4));
#pragma clang loop unroll(disable)
	for (i = 0; i < 4; i++)
		h = murmur3_mix(h, bpf_ntohl(w[i]));
	return h;
}

/* What the candidates depend on besides the attempt: the flow, hashed once. */
static __always_inline __u32 flow_hash_state(struct nat_config *c, struct pkt *p, __u8 family)
{
	__u32 h = c->seed;

	h = mix_addr(h, &p->saddr, family);
	h = mix_addr(h, &p->daddr, family);
	h = murmur3_mix(h, ((__u32)bpf_ntohs(p->sport) << 16) | bpf_ntohs(p->dport));
	return murmur3_mix(h, p->proto);
}

static __always_inline __u32 candidate(__u32 state, __u32 attempt, __u32 min, __u32 range)
{
	__u32 h = murmur3_mix(state, attempt);

	h ^= h >> 16;
	h *= 0x85EBCA6B;
	h ^= h >> 13;
	h *= 0xC2B2AE35;
	h ^= h >> 16;
	return min + h % range;
}

static __always_inline struct nat_work *nat_work_area(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&nat_work, &zero);
}

static __always_inline long try_candidate(__u64 attempt, __u8 family)
{
	struct nat_work *w = nat_work_area();
	struct nat_alloc *a;
	__u8 proto;
	void *map;
	__u32 port;
	__be16 pbe;
	long err;

	if (!w)
		return 1;
	a = &w->a;
	proto = a->proto;
	map = nat_map(family);
	port = attempt == 0 ? a->first : candidate(a->hash_state, (__u32)attempt, a->min, a->range);
	pbe = bpf_htons((__u16)port);
	if (is_icmp_proto(proto))
		nat_write_key(&w->rev, family, &a->remote, &a->masq, pbe, 0, proto, NAT_DIR_INGRESS);
	else
		nat_write_key(&w->rev, family, &a->remote, &a->masq, a->remote_port, pbe, proto, NAT_DIR_INGRESS);
	if (nat_get(family, &w->rev, &w->ce)) {
		if (slot_live(w, &w->rev, &w->ce, family, proto, NAT_DIR_INGRESS, a->now)) {
			nat_bump(w, family, NS_COLLISIONS);
			return 0;
		}
		remove_pair(w, &w->rev, &w->ce, family, proto, NAT_DIR_INGRESS);
		nat_bump(w, family, NS_STALE_REMOVED);
	}
	/* The reverse entry restores the pod's address: the forward key's source. */
	entry_set(&w->ce, family, &a->fwd, a->orig_port, a->created);
	err = bpf_map_update_elem(map, &w->rev, &w->ce, BPF_NOEXIST);
	if (err == -EEXIST_) {
		/* Another CPU took this port between the lookup and now: a collision like any other. */
		nat_bump(w, family, NS_COLLISIONS);
		return 0;
	}
	if (err)
		return 1; /* table full: no other port would fit either */
	entry_set(&w->ce, family, &a->masq, pbe, a->created);
	err = bpf_map_update_elem(map, &a->fwd, &w->ce, BPF_NOEXIST);
	if (err) {
		bpf_map_delete_elem(map, &w->rev);
		/* Another CPU mapped this very flow meanwhile: use its mapping. */
		if (err == -EEXIST_)
			a->done = NAT_ALLOC_RACED;
		return 1;
	}
	nat_bump(w, family, NS_CREATED);
	if (port == bpf_ntohs(a->orig_port))
		nat_bump(w, family, NS_RETAINED);
	a->port = pbe;
	a->done = 1;
	return 1;
}

static long nat_try_candidate4(__u64 attempt, void *ctx)
{
	return try_candidate(attempt, 4);
}

static long nat_try_candidate6(__u64 attempt, void *ctx)
{
	return try_candidate(attempt, 6);
}

static __always_inline int nat_allocate(struct nat_config *c, struct pkt *p, struct nat_work *w, __u8 family)
{
	__u32 min = c->port_min, max = c->port_max;
	__u32 range = max >= min ? max - min + 1 : 1;
	__u32 retries = c->retries < NAT_MAX_RETRIES ? c->retries : NAT_MAX_RETRIES;
	struct nat_alloc *a = &w->a;
	__u32 orig = bpf_ntohs(a->orig_port);

	a->min = min;
	a->range = range;
	a->first = orig - min < range ? orig : min + orig % range;
	a->hash_state = flow_hash_state(c, p, family);
	if (family == 4)
		bpf_loop(retries + 1, nat_try_candidate4, 0, 0);
	else
		bpf_loop(retries + 1, nat_try_candidate6, 0, 0);
	if (a->done == 1)
		return 0;
	if (a->done == NAT_ALLOC_RACED)
		return NAT_ALLOC_RACED;
	nat_bump(w, family, NS_ALLOC_FAILED);
	return DROP_NAT_NO_MAPPING;
}

/* The masquerade address as a union addr. */
static __always_inline void masq_addr(struct nat_config *c, __u8 family, union addr *out)
{
	__builtin_memset(out, 0, sizeof(*out));
	if (family == 4)
		out->v4 = c->addr4;
	else
		__builtin_memcpy(out->v6, c->addr6, 16);
}

static __always_inline __u32 saddr_off(struct pkt *p, __u8 family) { return p->l3 + (family == 4 ? 12 : 8); }
static __always_inline __u32 daddr_off(struct pkt *p, __u8 family) { return p->l3 + (family == 4 ? 16 : 24); }

/* Internal result of the mapping step: the mapping to apply is in w->e. */
#define NAT_MAPPED 0x20000

/* Reads its arguments from w->args rather than registers: values kept across
 * the helper calls would be spilled, and this frame has no room to spare. */
static __always_inline int nat_egress_map(struct __sk_buff *skb, struct pkt *p, struct nat_config *c, struct nat_work *w, __u8 family)
{
	struct nat_alloc *a = &w->a;
	int found, r;

	if (p->frag != FRAG_LATER && is_icmp_proto(p->proto)) {
		if (bpf_skb_load_bytes(skb, p->l4, &w->old16, 1) < 0)
			return DROP_INVALID;
		if (*(__u8 *)&w->old16 != (family == 4 ? 8 : 128))
			return 0; /* only echo requests open ICMP flows */
	}
	/* The owner: the entry found, or the one ct_create makes right after this stage. */
	if (w->args.result != CT_ESTABLISHED)
		w->args.created = w->args.now;
	__builtin_memset(a, 0, sizeof(*a));
	nat_write_key(&a->fwd, family, &p->saddr, &p->daddr, p->sport, p->dport, p->proto, NAT_DIR_EGRESS);
	found = nat_get(family, &a->fwd, &w->e);
	if (found && (w->args.result != CT_ESTABLISHED || entry_created(&w->e, family) != w->args.created)) {
		remove_pair(w, &a->fwd, &w->e, family, p->proto, NAT_DIR_EGRESS);
		nat_bump(w, family, NS_STALE_REMOVED);
		found = 0;
	}
	if (found)
		return NAT_MAPPED;
	/* A later fragment has no header to rewrite the port in: without its first fragment's mapping it cannot pass. */
	if (p->frag == FRAG_LATER)
		return DROP_NAT_NO_MAPPING;
	a->family = family;
	a->proto = p->proto;
	a->remote = p->daddr;
	masq_addr(c, family, &a->masq);
	a->remote_port = p->dport;
	a->orig_port = is_icmp_proto(p->proto) ? p->dport : p->sport;
	a->created = w->args.created;
	a->now = w->args.now;
	r = nat_allocate(c, p, w, family);
	if (r == NAT_ALLOC_RACED)
		return nat_get(family, &a->fwd, &w->e) ? NAT_MAPPED : DROP_NAT_NO_MAPPING;
	if (r)
		return r;
	entry_set(&w->e, family, &a->masq, a->port, a->created);
	return NAT_MAPPED;
}

static __always_inline int nat_egress_rewrite(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u8 family)
{
	int icmp = is_icmp_proto(p->proto);
	int r = rewrite_addr(skb, p, w, family, saddr_off(p, family), &p->saddr, &w->e);

	if (r)
		return r;
	return rewrite_port(skb, p, w, icmp ? 4 : 0, icmp ? p->dport : p->sport, entry_port(&w->e, family));
}

static __always_inline int passes_unmapped(struct pkt *p)
{
	if (is_icmp_proto(p->proto))
		return p->sport == 0 && p->dport != 0; /* an echo request */
	return (p->proto == PROTO_TCP || p->proto == PROTO_UDP) && bpf_ntohs(p->dport) < 1024;
}

static __always_inline int nat_ingress_map(struct pkt *p, __u32 now, struct nat_work *w, __u8 family)
{
	union nat_entry *e = &w->e;
	int found;

	nat_write_key(&w->k, family, &p->saddr, &p->daddr, p->sport, p->dport, p->proto, NAT_DIR_INGRESS);
	found = nat_get(family, &w->k, e);
	if (found && !slot_live(w, &w->k, e, family, p->proto, NAT_DIR_INGRESS, now)) {
		remove_pair(w, &w->k, e, family, p->proto, NAT_DIR_INGRESS);
		nat_bump(w, family, NS_STALE_REMOVED);
		found = 0;
	}
	if (found)
		return NAT_MAPPED;
	return passes_unmapped(p) ? 0 : DROP_NAT_NO_MAPPING;
}

static __always_inline int nat_ingress_rewrite(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u8 family)
{
	union nat_entry *e = &w->e;
	__be16 port = entry_port(e, family);
	int r = rewrite_addr(skb, p, w, family, daddr_off(p, family), &p->daddr, e);

	if (r)
		return r;
	if (family == 4)
		__builtin_memcpy(&p->daddr.v4, e, 4);
	else
		__builtin_memcpy(p->daddr.v6, e, 16);
	if (is_icmp_proto(p->proto)) {
		r = rewrite_port(skb, p, w, 4, p->sport, port);
		p->sport = port;
	} else {
		r = rewrite_port(skb, p, w, 2, p->dport, port);
		p->dport = port;
	}
	return r ? r : NAT_RERUN_CT;
}

static __always_inline int nat_icmp_map(struct pkt *p, __u32 now, struct nat_config *c, struct nat_work *w, __u8 family)
{
	if (!is_masq(c, &p->isaddr, family) || !is_masq(c, &p->daddr, family))
		return DROP_ICMP_NO_FLOW;
	/* The reply the quoted packet would have drawn: that is the reverse key. */
	nat_write_key(&w->k, family, &p->idaddr, &p->isaddr, p->idport, p->isport, p->iproto, NAT_DIR_INGRESS);
	if (!nat_get(family, &w->k, &w->e))
		return DROP_ICMP_NO_FLOW;
	if (!slot_live(w, &w->k, &w->e, family, p->iproto, NAT_DIR_INGRESS, now))
		return DROP_ICMP_NO_FLOW;
	return NAT_MAPPED;
}

static __always_inline int nat_icmp_rewrite(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u8 family)
{
	union nat_entry *e = &w->e;
	__be16 port = entry_port(e, family);
	int r = rewrite_quoted_source(skb, p, w, family, e, port);

	if (r)
		return r;
	if (is_icmp_proto(p->iproto))
		p->idport = port;
	else
		p->isport = port;
	if (family == 4)
		__builtin_memcpy(&p->isaddr.v4, e, 4);
	else
		__builtin_memcpy(p->isaddr.v6, e, 16);
	r = rewrite_addr(skb, p, w, family, daddr_off(p, family), &p->daddr, e);
	return r ? r : NAT_RERUN_CT;
}

enum nat_action { NAT_ACT_NONE, NAT_ACT_EGRESS, NAT_ACT_INGRESS, NAT_ACT_ICMP_ERROR };

static __always_inline int nat_decide(struct pkt *p, struct nat_args *args, __u8 family)
{
	__u32 zero = 0;
	struct nat_config *c = bpf_map_lookup_elem(&nat_config, &zero);
	int reason = args->reason;
	__u8 dir_in = args->dir_in;

	if (!c || !nat_enabled(c, family))
		return NAT_ACT_NONE;
	if (p->icmp_error)
		return reason == DROP_ICMP_NO_FLOW && dir_in != CT_EGRESS ? NAT_ACT_ICMP_ERROR : NAT_ACT_NONE;
	if (reason != 0)
		return NAT_ACT_NONE;
	if (args->result == CT_NEW && dir_in != CT_EGRESS && is_masq(c, &p->daddr, family))
		return NAT_ACT_INGRESS;
	if ((args->result == CT_NEW || args->result == CT_ESTABLISHED) && args->dir == CT_EGRESS &&
	    (dir_in == CT_EGRESS || dir_in == DIR_AUTO) && should_masquerade(c, p, family))
		return NAT_ACT_EGRESS;
	return NAT_ACT_NONE;
}

static __always_inline int nat_map_flow(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, __u8 family, int act)
{
	struct nat_args *args = &w->args;
	struct nat_config *c;

	w->stat_idx = 0;
	c = bpf_map_lookup_elem(&nat_config, &w->stat_idx);
	if (!c)
		return DROP_INVALID;
	if (act == NAT_ACT_EGRESS)
		return nat_egress_map(skb, p, c, w, family);
	if (act == NAT_ACT_INGRESS)
		return nat_ingress_map(p, args->now, w, family);
	return nat_icmp_map(p, args->now, c, w, family);
}

/* Global functions: the verifier checks each once, on its own, instead of again
 * for every path of the caller that reaches it; one per family, so it walks one
 * family's branches; and deciding apart from acting keeps their stack frames
 * apart (the caller's frame leaves little of the 512 bytes). */
#define NAT_REWRITE(fam, what)                                                                             \
	__attribute__((noinline)) int nat_rewrite_##what##fam(struct __sk_buff *skb, struct pkt *p)         \
	{                                                                                                  \
		struct nat_work *w = nat_work_area();                                                      \
		if (!skb || !p || !w)                                                                      \
			return DROP_INVALID;                                                               \
		return nat_##what##_rewrite(skb, p, w, fam);                                               \
	}
#define NAT_GLOBALS(fam)                                                                                   \
	__attribute__((noinline)) int nat_decide##fam(struct pkt *p, struct nat_args *args)                 \
	{                                                                                                  \
		if (!p || !args)                                                                           \
			return NAT_ACT_NONE;                                                               \
		return nat_decide(p, args, fam);                                                           \
	}                                                                                                  \
	__attribute__((noinline)) int nat_map##fam(struct __sk_buff *skb, struct pkt *p, struct nat_work *w, int act) \
	{                                                                                                  \
		if (!skb || !p || !w)                                                                      \
			return DROP_INVALID;                                                               \
		return nat_map_flow(skb, p, w, fam, act);                                                  \
	}                                                                                                  \
	NAT_REWRITE(fam, egress)                                                                           \
	NAT_REWRITE(fam, ingress)                                                                          \
	NAT_REWRITE(fam, icmp)
NAT_GLOBALS(4)
NAT_GLOBALS(6)

/* The SNAT stage: `reason` is the conntrack lookup's; returns the packet's reason after NAT.
 * A packet translated back (ingress) is looked up in conntrack again, here in the
 * caller, where the entry pointer conntrack hands out may be kept. */
static __always_inline int nat_stage(struct __sk_buff *skb, struct pkt *p, int reason, __u8 dir_in, __u32 now,
				     struct dp_config *cfg, struct ct_out *out)
{
	struct nat_work *w = nat_work_area();
	struct nat_args *args;
	int v4 = p->family == 4;
	int act, r;

	if (!w)
		return reason;
	args = &w->args;
	args->reason = reason;
	args->now = now;
	args->dir_in = dir_in;
	args->result = out->result;
	args->dir = out->dir;
	args->created = out->result == CT_ESTABLISHED && out->entry ? out->entry->created : now;
	act = v4 ? nat_decide4(p, args) : nat_decide6(p, args);
	if (act == NAT_ACT_NONE)
		return reason;
	r = v4 ? nat_map4(skb, p, w, act) : nat_map6(skb, p, w, act);
	if (r != NAT_MAPPED)
		return r;
	if (act == NAT_ACT_EGRESS)
		r = v4 ? nat_rewrite_egress4(skb, p) : nat_rewrite_egress6(skb, p);
	else if (act == NAT_ACT_INGRESS)
		r = v4 ? nat_rewrite_ingress4(skb, p) : nat_rewrite_ingress6(skb, p);
	else
		r = v4 ? nat_rewrite_icmp4(skb, p) : nat_rewrite_icmp6(skb, p);
	if (r == NAT_RERUN_CT)
		r = ct_lookup(p, dir_in, now, cfg, out);
	return r;
}
