/* Connection tracking: the semantics of assembly/conntrack.ts, line for line.
 * Lookup order: reversed tuple with the opposite direction's flag (reply),
 * then the packet's own tuple (established), else create (new). Entries whose
 * lifetime passed count as absent. ICMP errors are related to the flow of the
 * packet they quote. A SYN on a closing entry starts a new connection on a
 * reused 5-tuple and is NEW, so policy judges it again: in the original
 * direction ct_create replaces the entry, in the reply direction the old
 * entry is retired once the new one is created. */
#pragma once
#include "parse.h"
#include "maps.h"
#include "metrics.h"

union ct_key {
	struct ct_tuple4 t4;
	struct ct_tuple6 t6;
};

/* What ct_lookup found, and what ct_create needs: the forward tuple of the
 * packet with the flags of its direction already set. */
struct ct_out {
	__u8 result;            /* enum ct_result */
	__u8 dir;               /* enum ct_dir */
	__u8 table;             /* enum ct_table */
	__u8 retire;            /* a closing reply-direction entry the new flow replaces */
	__u8 retire_flags;      /* ... under the reversed tuple with these flags */
	struct ct_entry *entry; /* the live entry (0 until created for CT_NEW) */
	union ct_key fwd;
};


static __always_inline void *ct_map(__u8 table)
{
	switch (table) {
	case CT_TABLE_TCP4: return &ct_tcp4;
	case CT_TABLE_ANY4: return &ct_any4;
	case CT_TABLE_TCP6: return &ct_tcp6;
	default: return &ct_any6;
	}
}

static __always_inline __u8 ct_table_for(__u8 family, __u8 proto)
{
	if (family == 4)
		return proto == PROTO_TCP ? CT_TABLE_TCP4 : CT_TABLE_ANY4;
	return proto == PROTO_TCP ? CT_TABLE_TCP6 : CT_TABLE_ANY6;
}

static __always_inline void write_tuple(union ct_key *k, __u8 family, const union addr *s, const union addr *d,
					__be16 sport, __be16 dport, __u8 proto)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (family == 4) {
		k->t4.saddr = s->v4;
		k->t4.daddr = d->v4;
		k->t4.sport = sport;
		k->t4.dport = dport;
		k->t4.nexthdr = proto;
	} else {
		__builtin_memcpy(k->t6.saddr, s->v6, 16);
		__builtin_memcpy(k->t6.daddr, d->v6, 16);
		k->t6.sport = sport;
		k->t6.dport = dport;
		k->t6.nexthdr = proto;
	}
}

static __always_inline void set_flags(union ct_key *k, __u8 family, __u8 flags)
{
	if (family == 4)
		k->t4.flags = flags;
	else
		k->t6.flags = flags;
}

static __always_inline __u8 flag_for(__u8 dir)
{
	return dir == CT_INGRESS ? TUPLE_F_IN : TUPLE_F_OUT;
}

static __always_inline struct ct_entry *lookup_live(void *map, union ct_key *k, __u8 family, __u8 flags, __u32 now)
{
	struct ct_entry *e;

	set_flags(k, family, flags);
	e = bpf_map_lookup_elem(map, k);
	if (e && e->lifetime >= now)
		return e;
	return 0;
}

/* Whether the packet, a SYN on closing entry e, starts a new connection on a reused 5-tuple. */
static __always_inline int ct_starts_over(const struct ct_entry *e, const struct pkt *p)
{
	return p->proto == PROTO_TCP && (p->tcp_flags & TCP_SYN) &&
	       (e->flags & (CT_F_TX_CLOSING | CT_F_RX_CLOSING));
}

static __always_inline void refresh_lifetime(struct ct_entry *e, struct pkt *p, __u32 now, struct dp_config *cfg)
{
	__u32 timeout;

	if (p->proto == PROTO_TCP) {
		__u8 closing = CT_F_TX_CLOSING | CT_F_RX_CLOSING;

		if ((e->flags & closing) == closing)
			timeout = cfg->ct_timeout_close;
		else
			timeout = (e->flags & CT_F_SEEN_NON_SYN) ? cfg->ct_timeout_tcp : cfg->ct_timeout_syn;
	} else {
		timeout = cfg->ct_timeout_any;
	}
	e->lifetime = now + timeout;
}

static __always_inline void tcp_track(struct ct_entry *e, struct pkt *p, int is_reply)
{
	__u8 tcp = p->tcp_flags;
	__u8 f = e->flags;
	__u8 closing = CT_F_TX_CLOSING | CT_F_RX_CLOSING;

	/* Only service entries get here with a SYN on a closing entry (ct_lookup
	 * makes it NEW for flow entries): start over, keeping the backend. */
	if ((tcp & TCP_SYN) && (f & closing))
		f &= ~(closing | CT_F_SEEN_NON_SYN);
	if (tcp & TCP_RST)
		f |= closing;
	else if (tcp & TCP_FIN)
		f |= is_reply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
	if (!(tcp & TCP_SYN))
		f |= CT_F_SEEN_NON_SYN;
	e->flags = f;
}

static __always_inline void account(struct ct_entry *e, struct pkt *p, int is_reply)
{
	if (is_reply) {
		e->rx_packets++;
		e->rx_bytes += p->l3_len;
		e->rx_flags_seen |= p->tcp_flags;
	} else {
		e->tx_packets++;
		e->tx_bytes += p->l3_len;
		e->tx_flags_seen |= p->tcp_flags;
	}
}

static __always_inline void ct_update(struct ct_entry *e, struct pkt *p, int is_reply, __u32 now, struct dp_config *cfg)
{
	account(e, p, is_reply);
	if (p->proto == PROTO_TCP)
		tcp_track(e, p, is_reply);
	refresh_lifetime(e, p, now, cfg);
}

/* Creates the entry for a CT_NEW packet from out->fwd (set by ct_lookup), so
 * stages between lookup and creation (policy) can still refuse the flow. */
static __always_inline int ct_create(struct pkt *p, __u32 now, struct dp_config *cfg, struct ct_out *out)
{
	struct ct_entry e = {};
	void *map = ct_map(out->table);

	e.created = now;
	account(&e, p, 0);
	if (p->proto == PROTO_TCP)
		tcp_track(&e, p, 0);
	refresh_lifetime(&e, p, now, cfg);
	if (bpf_map_update_elem(map, &out->fwd, &e, BPF_ANY) != 0) {
		stats_create_failed(out->table);
		return DROP_CT_CREATE_FAILED;
	}
	stats_created(out->table);
	out->entry = bpf_map_lookup_elem(map, &out->fwd);
	if (out->retire) {
		union ct_key rev;

		write_tuple(&rev, p->family, &p->daddr, &p->saddr, p->dport, p->sport, p->proto);
		set_flags(&rev, p->family, out->retire_flags);
		bpf_map_delete_elem(map, &rev);
		out->retire = 0;
	}
	return 0;
}

static __always_inline int ct_related(struct pkt *p, __u8 dir_in, __u32 now, struct ct_out *out)
{
	union ct_key fwd, rev;
	struct ct_entry *e = 0;
	__u8 family = p->family;
	void *map;

	out->table = ct_table_for(family, p->iproto);
	map = ct_map(out->table);
	write_tuple(&fwd, family, &p->isaddr, &p->idaddr, p->isport, p->idport, p->iproto);
	write_tuple(&rev, family, &p->idaddr, &p->isaddr, p->idport, p->isport, p->iproto);
	if (dir_in == DIR_AUTO) {
		if ((e = lookup_live(map, &fwd, family, TUPLE_F_OUT, now)))
			out->dir = CT_INGRESS;
		else if ((e = lookup_live(map, &rev, family, TUPLE_F_OUT, now)))
			out->dir = CT_EGRESS;
		else if ((e = lookup_live(map, &fwd, family, TUPLE_F_IN, now)))
			out->dir = CT_EGRESS;
		else if ((e = lookup_live(map, &rev, family, TUPLE_F_IN, now)))
			out->dir = CT_INGRESS;
	} else {
		out->dir = dir_in;
		e = lookup_live(map, &fwd, family, flag_for(dir_in) ^ 1, now);
		if (!e)
			e = lookup_live(map, &rev, family, flag_for(dir_in), now);
	}
	if (!e) {
		if (dir_in == DIR_AUTO)
			out->dir = CT_EGRESS;
		return DROP_ICMP_NO_FLOW;
	}
	out->result = CT_RELATED;
	out->entry = e;
	return 0;
}

/* Looks the parsed packet up; dir_in is CT_EGRESS, CT_INGRESS or DIR_AUTO.
 * A reply or established packet updates its entry; a miss leaves
 * out->result = CT_NEW and creates nothing (see ct_create). */
static __always_inline int ct_lookup(struct pkt *p, __u8 dir_in, __u32 now, struct dp_config *cfg, struct ct_out *out)
{
	union ct_key rev;
	struct ct_entry *e;
	__u8 family = p->family;
	__u8 dir = dir_in;
	void *map;

	out->result = CT_NONE;
	out->table = 0;
	out->entry = 0;
	out->retire = 0;
	if (dir_in != CT_EGRESS && dir_in != CT_INGRESS && dir_in != DIR_AUTO) {
		out->dir = CT_EGRESS;
		return DROP_CT_INVALID_HDR;
	}
	if (p->icmp_error)
		return ct_related(p, dir_in, now, out);
	out->table = ct_table_for(family, p->proto);
	map = ct_map(out->table);
	write_tuple(&out->fwd, family, &p->saddr, &p->daddr, p->sport, p->dport, p->proto);
	write_tuple(&rev, family, &p->daddr, &p->saddr, p->dport, p->sport, p->proto);
	if (dir == DIR_AUTO) {
		e = lookup_live(map, &rev, family, TUPLE_F_OUT, now);
		dir = e ? CT_INGRESS : CT_EGRESS;
		if (!e)
			e = lookup_live(map, &rev, family, TUPLE_F_IN, now);
	} else {
		e = lookup_live(map, &rev, family, flag_for(dir) ^ 1, now);
	}
	if (e && ct_starts_over(e, p)) {
		/* A SYN answering a closed connection opens a new one the other way round. */
		out->retire = 1;
		out->retire_flags = family == 4 ? rev.t4.flags : rev.t6.flags;
		e = 0;
		if (dir_in == DIR_AUTO)
			dir = CT_EGRESS;
	}
	out->dir = dir;
	if (e) {
		out->result = CT_REPLY;
		out->entry = e;
		ct_update(e, p, 1, now, cfg);
		return 0;
	}
	e = lookup_live(map, &out->fwd, family, flag_for(dir), now);
	if (e && !ct_starts_over(e, p)) {
		out->retire = 0; /* the packet continues a flow: nothing is replaced */
		out->result = CT_ESTABLISHED;
		out->entry = e;
		ct_update(e, p, 0, now, cfg);
		return 0;
	}
	out->result = CT_NEW;
	return 0;
}
