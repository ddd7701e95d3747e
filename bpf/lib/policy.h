/* Identity-based policy on the new-flow path, as assembly/policy.ts: the
 * local endpoint (source on egress, destination on ingress), the remote
 * identity from the ipcache (LPM trie; a miss is world), and the policy table
 * probed most specific key first, then with any protocol: the first deny drops
 * (deny wins), else the first allow passes, nothing found drops. Only TCP and
 * UDP have ports: ICMP flows match entries with port 0 only. */
#pragma once
#include "parse.h"
#include "../include/types/policy.h"
#include "endpoint.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key4);
	__type(value, struct endpoint_info);
	__uint(max_entries, 1024);
} endpoints4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key6);
	__type(value, struct endpoint_info);
	__uint(max_entries, 1024);
} endpoints6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key4);
	__type(value, struct ipcache_value);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key6);
	__type(value, struct ipcache_value);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache6 SEC(".maps");

/* Every endpoint's entries, keyed by endpoint id among the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, 16384);
} policy SEC(".maps");

/* What policy_new_flow learnt, for policy_store_identity after ct_create. */
struct policy_out {
	__u32 identity; /* the remote peer's identity */
	__u8 policed;   /* a local endpoint was on the packet's side */
};

static __always_inline __u32 policy_identity_of(__u8 family, const union addr *a)
{
	struct ipcache_value *v;

	if (family == 4) {
		struct ipcache_key4 k = { .prefixlen = 32, .addr = a->v4 };

		v = bpf_map_lookup_elem(&ipcache4, &k);
	} else {
		struct ipcache_key6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, a->v6, 16);
		v = bpf_map_lookup_elem(&ipcache6, &k);
	}
	return v ? v->sec_id : IDENTITY_WORLD;
}

static __always_inline struct endpoint_info *policy_endpoint_at(__u8 family, const union addr *a)
{
	if (family == 4) {
		struct endpoint_key4 k = { .addr = a->v4 };

		return bpf_map_lookup_elem(&endpoints4, &k);
	} else {
		struct endpoint_key6 k;

		__builtin_memcpy(k.addr, a->v6, 16);
		return bpf_map_lookup_elem(&endpoints6, &k);
	}
}

/* The search state: the deciding entry so far, and whether it denies. */
struct policy_search {
	struct policy_key key;
	struct policy_entry *entry;
	__u8 deny;
};

/* Tries one candidate key; 1 when the search is over (a deny). */
static __always_inline int policy_consider(struct policy_search *s, __u32 identity, __be16 port, __u8 proto)
{
	struct policy_entry *e;

	s->key.sec_id = identity;
	s->key.dport = port;
	s->key.proto = proto;
	e = bpf_map_lookup_elem(&policy, &s->key);
	if (!e)
		return 0;
	if (e->deny) {
		s->entry = e;
		s->deny = 1;
		return 1;
	}
	if (!s->entry)
		s->entry = e;
	return 0;
}

static __always_inline int policy_consider_proto(struct policy_search *s, __u32 identity, __be16 port, __u8 proto)
{
	if (port && policy_consider(s, identity, port, proto))
		return 1;
	if (policy_consider(s, identity, 0, proto))
		return 1;
	if (port && policy_consider(s, 0, port, proto))
		return 1;
	return policy_consider(s, 0, 0, proto);
}

/* 0 or DROP_POLICY for a flow of endpoint `endpoint_id` with the remote `identity`. */
static __always_inline int policy_decide(__u16 endpoint_id, __u32 identity, __be16 port, __u8 proto, __u8 dir)
{
	struct policy_search s;

	__builtin_memset(&s, 0, sizeof(s));
	s.key.endpoint_id = endpoint_id;
	s.key.dir = dir;
	if (!policy_consider_proto(&s, identity, port, proto))
		policy_consider_proto(&s, identity, port, 0);
	if (!s.entry)
		return DROP_POLICY;
	__sync_fetch_and_add(&s.entry->hits, 1);
	return s.deny ? DROP_POLICY : 0;
}

/* Policy for a CT_NEW packet (after ct_lookup, before ct_create). */
static __always_inline int policy_new_flow(struct pkt *p, __u8 dir, struct policy_out *out)
{
	struct endpoint_info *ep;
	struct endpoint_self *self;
	int egress = dir == CT_EGRESS;
	__u8 enforce = egress ? ENDPOINT_F_ENFORCE_EGRESS : ENDPOINT_F_ENFORCE_INGRESS;
	__be16 port;
	__u16 id;
	__u8 flags;

	out->policed = 0;
	if (dir != CT_EGRESS && dir != CT_INGRESS)
		return 0;
	/* A templated endpoint knows itself: no lookup of its own address. */
	self = endpoint_handover();
	if (endpoint_is_self(self, p->family, (const __u32 *)(egress ? &p->saddr : &p->daddr))) {
		id = self->id;
		flags = self->flags;
	} else {
		ep = policy_endpoint_at(p->family, egress ? &p->saddr : &p->daddr);
		if (!ep)
			return 0;
		id = ep->id;
		flags = ep->flags;
	}
	out->policed = 1;
	out->identity = policy_identity_of(p->family, egress ? &p->daddr : &p->saddr);
	if (!(flags & enforce))
		return 0;
	port = (p->proto == PROTO_TCP || p->proto == PROTO_UDP) ? p->dport : 0;
	return policy_decide(id, out->identity, port, p->proto, dir);
}

/* With DIR_AUTO the datapath sits between both ends of a flow (the TUN
 * forwarder routes for every endpoint of its node, and for packets arriving
 * from other nodes): a new flow classified egress was judged above by its
 * source's egress policy only, and that source may be on another node. Its
 * destination, when local, judges it too, by its ingress policy against the
 * source's identity from the ipcache (the identity recorded in the entry
 * when the source was not local). */
static __always_inline int policy_peer_ingress(struct pkt *p, struct policy_out *out)
{
	struct endpoint_info *ep = policy_endpoint_at(p->family, &p->daddr);
	__u32 identity;
	__be16 port;

	if (!ep)
		return 0;
	identity = policy_identity_of(p->family, &p->saddr);
	if (!out->policed) {
		out->policed = 1;
		out->identity = identity;
	}
	if (!(ep->flags & ENDPOINT_F_ENFORCE_INGRESS))
		return 0;
	port = (p->proto == PROTO_TCP || p->proto == PROTO_UDP) ? p->dport : 0;
	return policy_decide(ep->id, identity, port, p->proto, CT_INGRESS);
}

/* Records the remote identity in the entry ct_create just made. */
static __always_inline void policy_store_identity(struct policy_out *pol, struct ct_entry *entry)
{
	if (pol->policed && entry)
		entry->src_sec_id = pol->identity;
}
