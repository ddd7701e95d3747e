/* The endpoint's own values as load-time constants (BPF templating).
 *
 * An endpoint program is compiled once per configuration (the -D flags below
 * and in shape.h) and specialised per endpoint by writing these constants into
 * the object's .rodata before load (host/kernel/templates). The map is frozen,
 * so the verifier knows each value and prunes the branches that do not apply;
 * the packet path then takes the endpoint's id and policy flags from here
 * instead of looking its own address up in endpoints4/endpoints6.
 *
 * Only the small per-endpoint programs (from_container, to_container in
 * bpf_lxc.c) read these constants: they copy them into `struct endpoint_self`
 * and tail-call the node-wide stage, which is verified once per node and
 * template, not once per endpoint (bpf/lib/lxc_calls.h).
 *
 * LXC_ID 0 is the sentinel "not templated": the generic object (replay, the
 * differential suite, bpf_test) keeps every constant 0 and looks every
 * endpoint up in the maps, exactly as before templating. Endpoint ids are
 * 1..65535, so 0 is never a real endpoint. */
#pragma once
#include "common.h"
#include "../include/types/policy.h"

volatile const __u32 LXC_ID = 0;         /* endpoint id, 1..65535; 0 = not templated */
volatile const __u32 LXC_SECID = 0;      /* the endpoint's security identity */
volatile const __be32 LXC_IPV4 = 0;      /* network byte order; 0 = no IPv4 address */
volatile const __u32 LXC_IPV6[4] = {};   /* network byte order words; all 0 = no IPv6 address */
volatile const __u8 LXC_MAC[8] = {};     /* 6 bytes used; 8 keep the next constant aligned */
volatile const __u32 LXC_IFINDEX = 0;    /* host side of the endpoint's veth */

/* Policy enforcement of a templated endpoint (enum endpoint_flags): compile
 * time, because it decides which code the endpoint needs (it is part of the
 * template key). The generic object takes it from endpoint_info.flags. */
#ifndef ENDPOINT_POLICY_ENFORCE
#define ENDPOINT_POLICY_ENFORCE (ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS)
#endif

/* What a per-endpoint program hands to the node-wide stage it tail-calls
 * (bpf/lib/lxc_calls.h): its constants, copied per packet into a per-CPU slot.
 * The stage is shared by every endpoint of a template, so it cannot read any
 * one endpoint's .rodata; a tail call keeps the CPU (the program runs with
 * migration and bottom halves off, like the rest of the datapath's per-CPU
 * scratch), so the slot holds this packet's values when the stage reads it.
 * id 0: not templated (the generic bpf_lxc), every endpoint looked up. */
struct endpoint_self {
	__u32 id;      /* LXC_ID */
	__u32 flags;   /* ENDPOINT_POLICY_ENFORCE (enum endpoint_flags) */
	__be32 ipv4;   /* LXC_IPV4 */
	__u32 ipv6[4]; /* LXC_IPV6 */
};

#ifdef LXC_HANDOVER
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct endpoint_self);
	__uint(max_entries, 1);
} lxc_self SEC(".maps");

static __always_inline struct endpoint_self *endpoint_handover(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&lxc_self, &zero);
}
#else
/* bpf_test and bpf_host run no endpoint of their own: every endpoint is looked up. */
static __always_inline struct endpoint_self *endpoint_handover(void)
{
	return 0;
}
#endif

/* 1 when `a` (4-byte aligned, as union addr is) is the handed-over endpoint's
 * own address. Reads the address in place: no copy on the stack, which the
 * datapath has none of to spare (512 bytes across its stages). */
static __always_inline int endpoint_is_self(const struct endpoint_self *self, __u8 family, const __u32 *a)
{
	if (!self || !self->id)
		return 0;
	if (family == 4)
		return self->ipv4 != 0 && a[0] == self->ipv4;
	if (!(self->ipv6[0] | self->ipv6[1] | self->ipv6[2] | self->ipv6[3]))
		return 0;
	return a[0] == self->ipv6[0] && a[1] == self->ipv6[1] && a[2] == self->ipv6[2] && a[3] == self->ipv6[3];
}
