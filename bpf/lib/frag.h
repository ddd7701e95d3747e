/* Fragment tracking, as assembly/frag.ts: the first fragment records the ports
 * under (addresses, id, protocol); later fragments take them from there. */
#pragma once
#include "parse.h"
#include "maps.h"
#include "metrics.h"

static __always_inline int frag_process(struct pkt *p, __u32 now, struct dp_config *cfg)
{
	struct frag_entry *e;
	struct frag_entry fresh = {};
	void *map;
	__u32 table;
	union {
		struct frag_key4 k4;
		struct frag_key6 k6;
	} key;

	if (p->frag == FRAG_NONE || p->icmp_error)
		return 0;
	__builtin_memset(&key, 0, sizeof(key));
	if (p->family == 4) {
		key.k4.saddr = p->saddr.v4;
		key.k4.daddr = p->daddr.v4;
		__builtin_memcpy(&key.k4.id, &p->frag_id, 2);
		key.k4.proto = p->frag_proto;
		map = &frag4;
		table = TABLE_FRAG4;
	} else {
		__builtin_memcpy(key.k6.saddr, p->saddr.v6, 16);
		__builtin_memcpy(key.k6.daddr, p->daddr.v6, 16);
		key.k6.id = p->frag_id;
		key.k6.proto = p->frag_proto;
		map = &frag6;
		table = TABLE_FRAG6;
	}
	e = bpf_map_lookup_elem(map, &key);
	if (p->frag == FRAG_LATER) {
		if (!e || e->lifetime < now)
			return DROP_FRAG_NOSUPPORT;
		p->proto = e->proto;
		p->sport = e->sport;
		p->dport = e->dport;
		return 0;
	}
	if (e) {
		e->sport = p->sport;
		e->dport = p->dport;
		e->proto = p->proto;
		e->lifetime = now + cfg->frag_timeout;
		return 0;
	}
	fresh.sport = p->sport;
	fresh.dport = p->dport;
	fresh.lifetime = now + cfg->frag_timeout;
	fresh.proto = p->proto;
	if (bpf_map_update_elem(map, &key, &fresh, BPF_NOEXIST) == 0)
		stats_created(table);
	return 0;
}
