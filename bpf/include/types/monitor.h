/* Monitor events: what `membrane monitor` shows, from either datapath. The
 * Wasm core appends them to a ring in linear memory that the host drains once
 * per batch; the kernel programs write them to a BPF ring buffer. Both carry
 * the decision and the packet's first bytes, which the host decodes. */
#pragma once
#include "common.h"

/* Kinds of event, as Cilium's monitor names them. */
enum monitor_type {
	MONITOR_DROP = 1,           /* drop */
	MONITOR_TRACE = 2,          /* trace */
	MONITOR_POLICY_VERDICT = 3, /* policy-verdict */
};

/* Bits of monitor_config.mode: which kinds are produced (0: monitoring off). */
enum monitor_flags {
	MONITOR_F_DROP = 1,   /* drops */
	MONITOR_F_TRACE = 2,  /* forwarded packets */
	MONITOR_F_POLICY = 4, /* policy verdicts of new flows of local endpoints */
};

enum monitor_limits {
	MONITOR_CAP_BYTES = 64, /* bytes of the packet an event carries (link, IP and L4 headers) */
};

struct monitor_event {
	__u8 type;      /* enum monitor_type */
	__u8 reason;    /* enum drop_reason (DROP_NONE: forwarded / allowed) */
	__u8 dir;       /* enum ct_dir */
	__u8 ct_result; /* enum ct_result */
	__u8 link;      /* enum link_type of data[] */
	__u8 pad;
	__u16 cap_len;  /* bytes of data[] that hold the packet */
	__u32 len;      /* the packet's length */
	__u32 identity; /* policy verdicts: the remote peer's identity */
	__u8 data[64];  /* the packet's first MONITOR_CAP_BYTES bytes */
};
_Static_assert(sizeof(struct monitor_event) == 80, "monitor_event size");

/* The monitor's settings and its counters, written by the host. The Wasm core
 * keeps its ring right after it; the kernel keeps it in an array map. */
struct monitor_config {
	__u32 mode;     /* enum monitor_flags bits; 0: off */
	__u32 sample;   /* trace events: one in `sample` (0 and 1: every one) */
	__u32 budget;   /* Wasm: events still allowed until the next drain (the rate cap) */
	__u32 count;    /* Wasm: events in the ring */
	__u32 capacity; /* Wasm: events the ring holds */
	__u32 lost;     /* events not delivered: ring full or budget spent */
	__u32 seen;     /* trace candidates so far (the sampling counter) */
	__u32 pad;
};
_Static_assert(sizeof(struct monitor_config) == 32, "monitor_config size");
