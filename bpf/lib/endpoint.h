/* The endpoint's own values as load-time constants (BPF templating).
 *
 * An endpoint program is compiled once per configuration (the -D flags below
 * and in shape.h) and specialised per endpoint by writing these constants into
 * the object's .rodata before load (host/kernel/templates). The map is frozen,
 * so the verifier knows each value and prunes the branches that do not apply;
 * the packet path then takes the endpoint's id and policy flags from here
 * instead of looking its own address up in endpoints4/endpoints6.
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

/* 1 when `a` (4-byte aligned, as union addr is) is the templated endpoint's
 * own address. Reads the address in place: no copy on the stack, which the
 * datapath has none of to spare (512 bytes across its stages). */
static __always_inline int endpoint_is_self(__u8 family, const __u32 *a)
{
	if (!LXC_ID)
		return 0;
	if (family == 4)
		return LXC_IPV4 != 0 && a[0] == LXC_IPV4;
	if (!(LXC_IPV6[0] | LXC_IPV6[1] | LXC_IPV6[2] | LXC_IPV6[3]))
		return 0;
	return a[0] == LXC_IPV6[0] && a[1] == LXC_IPV6[1] && a[2] == LXC_IPV6[2] && a[3] == LXC_IPV6[3];
}
