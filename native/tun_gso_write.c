/*
 * Offload passthrough's write side for descriptor batches, in C: the same
 * rule as host/forwarder/passthrough-coalescer.ts + host/tun/offload/coalesce.ts
 * (the JavaScript path, and the reference test/tun/gso-write.test.ts holds
 * this file to, byte for byte), without a per-packet step in JavaScript.
 *
 * The records of a batch read from a TUN with a virtio_net_hdr (tun_io.c,
 * tun_read_descs with hdr = 10 and an `info` array) are written back:
 *   - consecutive passing packets of one flow that the kernel handed over as
 *     plain packets with a partial checksum (NEEDS_CSUM, GSO NONE, csum_start
 *     at the L4 header, csum_offset at the TCP/UDP checksum) go out as ONE
 *     TSO/USO super-packet: the first packet's headers are rewritten in place
 *     (lengths, IPv4 header checksum, PSH, the partial pseudo-header sum over
 *     the whole) with a new virtio_net_hdr before it, and writev(2) sends it
 *     followed by the other packets' payloads where they lie: nothing copied.
 *     A run continues only while the kernel's segmentation would give back
 *     exactly the packets we had (coalesce.ts says the rule in full);
 *   - every other passing packet goes out alone with its virtio_net_hdr as
 *     read, so the kernel finishes its checksum or segments it as it asked;
 *   - a packet the datapath moved or resized gets an all-zero header in front
 *     of its new start if its header asked for nothing, and is not written
 *     (counted unwritable) if it carried a GSO type or a partial checksum:
 *     that header describes the packet as it was read.
 * Dropped records (verdict not PASS) are skipped: runs join across them, as
 * the JavaScript path's list of passing packets does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include "../bpf/include/types/batch.h" /* struct pkt_desc, enum verdict */
#include "tun_io.h"

#define VNET_HDR_LEN 10
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5
#define VNET_GSO_ECN 0x80
#define MAX_GSO_PACKET 65535u
/* The kernel's UDP_MAX_SEGMENTS: the most datagrams one UDP GSO packet may carry. */
#define UDP_MAX_SEGMENTS 64
/* iovecs of one super-packet: its first packet, then one payload per packet it carries. */
#define MAX_RUN 256

#define PROTO_TCP 6
#define PROTO_UDP 17
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_URG 0x20
#define TCP_CWR 0x80

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
/* virtio_net_hdr fields are in host byte order (the legacy layout a TUN speaks). */
static inline uint16_t h16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void puth16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static uint32_t sum16(const uint8_t *p, uint32_t len, uint32_t sum) {
  uint32_t i = 0;
  for (; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (i < len) sum += (uint32_t)p[i] << 8;
  return sum;
}
static uint16_t fold(uint32_t sum) {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

/* A packet that may take part in a run (coalesce.ts candidate() with gso-layout.ts). */
struct layout {
  uint8_t family, proto;
  uint16_t l4, hdr_len;
};

static int candidate(const uint8_t *p, uint32_t len, int tcp, int udp, struct layout *l) {
  unsigned proto, l4;
  uint32_t declared;
  if (len == 0) return 0;
  if (p[0] >> 4 == 4) {
    if (len < 20) return 0;
    l4 = (p[0] & 0x0f) * 4u;
    declared = be16(p + 2);
    if (l4 < 20 || l4 > len || declared < l4) return 0;
    if (be16(p + 6) & 0x3fff) return 0; /* a fragment: MF or an offset */
    proto = p[9];
  } else if (p[0] >> 4 == 6) {
    if (len < 40) return 0;
    l4 = 40;
    declared = 40 + (uint32_t)be16(p + 4);
    proto = p[6]; /* an extension header here is neither TCP nor UDP: refused */
  } else {
    return 0;
  }
  if (declared != len) return 0;
  if (!((proto == PROTO_TCP && tcp) || (proto == PROTO_UDP && udp))) return 0;
  unsigned l4len = 8;
  if (proto == PROTO_TCP) {
    if (l4 + 20 > len) return 0;
    l4len = (p[l4 + 12] >> 4) * 4u;
    if (l4len < 20) return 0;
  }
  if (l4 + l4len >= len) return 0; /* truncated, or no payload to carry */
  if (proto == PROTO_TCP) {
    if (p[l4 + 13] & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG)) return 0;
  } else {
    if (be16(p + l4 + 6) == 0) return 0;       /* no checksum: GSO would add one */
    if (be16(p + l4 + 4) != len - l4) return 0; /* UDP length must be the datagram's */
  }
  l->family = (uint8_t)(p[0] >> 4);
  l->proto = (uint8_t)proto;
  l->l4 = (uint16_t)l4;
  l->hdr_len = (uint16_t)(l4 + l4len);
  return 1;
}

/* passthrough-coalescer.ts mergeable(): plain, partial, its checksum fields naming its TCP/UDP checksum. */
static int mergeable(const uint8_t *hdr, const uint8_t *p, uint32_t len, int tcp, int udp) {
  if (!(hdr[0] & VNET_F_NEEDS_CSUM) || hdr[1] != VNET_GSO_NONE || len == 0) return 0;
  unsigned l4, proto;
  if (p[0] >> 4 == 4 && len >= 20) {
    l4 = (p[0] & 0x0f) * 4u;
    proto = p[9];
  } else if (p[0] >> 4 == 6 && len >= 40) {
    l4 = 40;
    proto = p[6];
  } else {
    return 0;
  }
  unsigned csum_offset;
  if (proto == PROTO_TCP && tcp) csum_offset = 16;
  else if (proto == PROTO_UDP && udp) csum_offset = 6;
  else return 0;
  return h16(hdr + 6) == l4 && h16(hdr + 8) == csum_offset;
}

static int same(const uint8_t *a, const uint8_t *b, unsigned from, unsigned to) {
  return to <= from || memcmp(a + from, b + from, to - from) == 0;
}

/* A run being built on its first packet `head`: coalesce.ts's Run. */
struct run {
  uint8_t *head;
  struct layout l;
  uint32_t size;     /* the super-packet's bytes so far */
  uint32_t gso;      /* the first packet's payload: every packet but the last carries this much */
  unsigned segments;
  int open, psh;
};

/* coalesce.ts continues(): whether q (layout ql) follows the run. */
static int continues(const struct run *r, const uint8_t *q, const struct layout *ql) {
  const struct layout *hl = &r->l;
  const uint8_t *h = r->head;
  if (ql->proto != hl->proto || ql->family != hl->family || ql->hdr_len != hl->hdr_len || ql->l4 != hl->l4) return 0;
  unsigned l4 = hl->l4;
  if (hl->family == 4) {
    /* Skipped: total length (2-3), id (4-5, checked below), header checksum (10-11). */
    if (!same(h, q, 0, 2) || !same(h, q, 6, 10) || !same(h, q, 12, l4)) return 0;
    if (be16(q + 4) != (uint16_t)(be16(h + 4) + r->segments)) return 0;
  } else if (!same(h, q, 0, 4) || !same(h, q, 6, 40)) {
    return 0; /* Skipped: payload length (4-5). */
  }
  if (!same(h, q, l4, l4 + 4)) return 0; /* ports */
  if (hl->proto == PROTO_UDP) return 1;
  uint32_t so_far = r->size - hl->hdr_len;
  if (be32(q + l4 + 4) != (uint32_t)(be32(h + l4 + 4) + so_far)) return 0;
  /* ack and data offset; window; urgent pointer and options. Skipped: seq, flags, checksum. */
  if (!same(h, q, l4 + 8, l4 + 13) || !same(h, q, l4 + 14, l4 + 16) || !same(h, q, l4 + 18, hl->hdr_len)) return 0;
  /* q may add PSH and may not have CWR (masked out of the first's side only). */
  return (q[l4 + 13] & ~TCP_PSH & 0xff) == (h[l4 + 13] & ~(TCP_PSH | TCP_CWR) & 0xff);
}

/* coalesce.ts finish(): the first packet becomes the super-packet's headers; its virtio_net_hdr goes before it. */
static void finish(struct run *r) {
  uint8_t *p = r->head;
  unsigned l4 = r->l.l4;
  uint32_t l4len = r->size - l4;
  if (r->l.family == 4) {
    put16(p + 2, (uint16_t)r->size);
    put16(p + 10, 0);
    put16(p + 10, (uint16_t)~fold(sum16(p, l4, 0)));
  } else {
    put16(p + 4, (uint16_t)(r->size - 40));
  }
  uint8_t gso_type;
  uint16_t csum_offset;
  if (r->l.proto == PROTO_TCP) {
    if (r->psh) p[l4 + 13] |= TCP_PSH;
    gso_type = r->l.family == 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
    if (p[l4 + 13] & TCP_CWR) gso_type |= VNET_GSO_ECN;
    csum_offset = 16;
  } else {
    put16(p + l4 + 4, (uint16_t)l4len);
    gso_type = VNET_GSO_UDP_L4;
    csum_offset = 6;
  }
  /* CHECKSUM_PARTIAL: the folded, uncomplemented pseudo-header sum over the super-packet's L4 length. */
  uint32_t sum = r->l.proto;
  if (r->l.family == 4) sum = sum16(p + 12, 8, sum + l4len);
  else sum = sum16(p + 8, 32, sum + (l4len >> 16) + (l4len & 0xffff));
  put16(p + l4 + csum_offset, fold(sum));
  uint8_t *h = p - VNET_HDR_LEN;
  h[0] = VNET_F_NEEDS_CSUM;
  h[1] = gso_type;
  puth16(h + 2, r->l.hdr_len);
  puth16(h + 4, (uint16_t)r->gso);
  puth16(h + 6, (uint16_t)l4);
  puth16(h + 8, csum_offset);
}

/* Where a unit goes: a TUN fd (writev), or, for tests, a buffer the units are laid end to end in. */
struct sink {
  int fd;
  uint8_t *out;
  uint32_t cap, used;
  uint32_t *unit_lens;
  unsigned units;
};

/* 0, or the errno of the write. */
static int emit(struct sink *s, struct iovec *iov, int cnt) {
  if (s->out) {
    uint32_t total = 0;
    for (int k = 0; k < cnt; k++) total += (uint32_t)iov[k].iov_len;
    if (s->used + total > s->cap) return ENOSPC;
    for (int k = 0; k < cnt; k++) {
      memcpy(s->out + s->used, iov[k].iov_base, iov[k].iov_len);
      s->used += (uint32_t)iov[k].iov_len;
    }
    s->unit_lens[s->units++] = total;
    return 0;
  }
  for (;;) {
    COUNT_SYSCALL();
    ssize_t r = writev(s->fd, iov, cnt);
    if (r >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

enum { T_PASSING, T_BYTES, T_WRITTEN, T_WRITES, T_COALESCED_WRITES, T_COALESCED_PACKETS, T_UNWRITABLE, T_REFUSED };

/* The packet of record d, or 0 if it lies outside the memory or leaves no room for a header before it. */
static uint8_t *packet_at(uint8_t *base, uint32_t mem_len, const struct pkt_desc *d) {
  if (d->off < VNET_HDR_LEN || d->len == 0 || (uint64_t)d->buf + d->off + d->len > mem_len) return 0;
  return base + d->buf + d->off;
}

/* Whether the datapath moved or resized record d's packet since it was read at `start`. */
static int moved(const struct pkt_desc *d, uint32_t start, uint32_t info) {
  return d->off != start || d->len != (info & 0x7fffffff);
}

/*
 * A moved packet whose header carried a GSO type or a partial checksum (info's
 * top bit): that header describes the packet as read and cannot follow it; nor
 * can any header when no room is left for one before the packet's new start.
 * Such records are dropped and counted, and runs join across them, as across
 * dropped records (the JavaScript path leaves both out of its list).
 */
static int unwritable(const struct pkt_desc *d, uint32_t start, uint32_t info) {
  return moved(d, start, info) && ((info >> 31) || d->off < VNET_HDR_LEN);
}

static int gso_write(struct sink *s, uint8_t *base, uint32_t mem_len, uint32_t descs, int from, int n, uint32_t start, uint32_t gso, const uint32_t *info, uint32_t *totals, int32_t *err) {
  *err = 0;
  memset(totals, 0, 8 * sizeof(uint32_t));
  if (!info) { *err = EINVAL; return from; }
  if (from < 0 || n < from || (uint64_t)descs + (uint64_t)n * sizeof(struct pkt_desc) > mem_len || descs % 4 != 0) { *err = EFAULT; return from; }
  struct pkt_desc *d = (struct pkt_desc *)(base + descs);
  int tcp = gso & 1, udp = (gso >> 1) & 1;
  for (int i = from; i < n; i++) {
    if (d[i].verdict != VERDICT_PASS) continue;
    totals[T_PASSING]++;
    if (unwritable(&d[i], start, info[i])) totals[T_UNWRITABLE]++;
    else totals[T_BYTES] += d[i].len;
  }
  struct iovec iov[MAX_RUN];
  int i = from;
  while (i < n) {
    if (d[i].verdict != VERDICT_PASS) { i++; continue; }
    if (unwritable(&d[i], start, info[i])) { i++; continue; }
    uint8_t *p = packet_at(base, mem_len, &d[i]);
    if (!p) { *err = EFAULT; return i; }
    uint8_t *hdr = p - VNET_HDR_LEN;
    int unit_start = i;
    unsigned segments = 1;
    struct run r;
    if (moved(&d[i], start, info[i])) {
      /* A complete packet (unwritable() let it through): an all-zero header in front of where it is now. */
      memset(hdr, 0, VNET_HDR_LEN);
      iov[0].iov_base = hdr;
      iov[0].iov_len = VNET_HDR_LEN + d[i].len;
      i++;
    } else if (mergeable(hdr, p, d[i].len, tcp, udp) && candidate(p, d[i].len, tcp, udp, &r.l)) {
      r.head = p;
      r.size = d[i].len;
      r.gso = d[i].len - r.l.hdr_len;
      r.segments = 1;
      r.psh = r.l.proto == PROTO_TCP && (p[r.l.l4 + 13] & TCP_PSH);
      r.open = !r.psh;
      iov[0].iov_base = hdr;
      iov[0].iov_len = VNET_HDR_LEN + d[i].len;
      int j = i + 1;
      while (r.open && r.segments < MAX_RUN && j < n) {
        if (d[j].verdict != VERDICT_PASS) { j++; continue; }
        if (unwritable(&d[j], start, info[j])) { j++; continue; }
        uint8_t *q = packet_at(base, mem_len, &d[j]);
        uint32_t qlen = d[j].len;
        struct layout ql;
        if (!q || moved(&d[j], start, info[j])) break;
        if (!mergeable(q - VNET_HDR_LEN, q, qlen, tcp, udp) || !candidate(q, qlen, r.l.proto == PROTO_TCP, r.l.proto == PROTO_UDP, &ql)) break;
        if (!continues(&r, q, &ql)) break;
        uint32_t payload = qlen - ql.hdr_len;
        if (payload > r.gso) break;
        if (r.l.proto == PROTO_UDP && r.segments >= UDP_MAX_SEGMENTS) break;
        if (r.size + payload > MAX_GSO_PACKET) break;
        iov[r.segments].iov_base = q + ql.hdr_len;
        iov[r.segments].iov_len = payload;
        r.size += payload;
        r.segments++;
        int psh = ql.proto == PROTO_TCP && (q[ql.l4 + 13] & TCP_PSH);
        if (psh) r.psh = 1;
        if (psh || payload < r.gso) r.open = 0;
        j++;
      }
      segments = r.segments;
      if (segments > 1) finish(&r);
      i = j;
      /* Records skipped inside the run were dropped ones: the next unit starts at j. */
    } else {
      iov[0].iov_base = hdr;
      iov[0].iov_len = VNET_HDR_LEN + d[i].len;
      i++;
    }
    int e = emit(s, iov, (int)segments);
    if (e == EINVAL) {
      /* The kernel refused this one (a header it will not take): skip it, as a single write would be skipped. */
      totals[T_REFUSED] += segments;
      continue;
    }
    if (e != 0) { *err = e; return unit_start; }
    totals[T_WRITES]++;
    totals[T_WRITTEN] += segments;
    if (segments > 1) {
      totals[T_COALESCED_WRITES]++;
      totals[T_COALESCED_PACKETS] += segments;
    }
  }
  return n;
}

/*
 * Writes the passing records of from..n-1 of a batch read with a virtio_net_hdr
 * at `start` (info[i] = the bytes read | 1 << 31 if its header carried a GSO
 * type or a partial checksum, as tun_read_descs leaves it), coalescing as the
 * module comment says; gso: 1 = TCP may be merged (the device took TSO), 2 =
 * UDP (USO). totals (8): passing records in from..n-1, the bytes of those
 * that can be written, packets written, writes made, coalesced writes, the
 * packets in them, unwritable (moved, header could not follow: passing but
 * never written), refused by the kernel (EINVAL; skipped).
 * Returns n, or the first record of the write that failed with *err (EAGAIN:
 * the device pushed back; EFAULT: a record outside the memory).
 */
int tun_write_gso_descs(int fd, uint8_t *base, uint32_t mem_len, uint32_t descs, int from, int n, uint32_t start, uint32_t gso, const uint32_t *info, uint32_t *totals, int32_t *err) {
  struct sink s = { .fd = fd };
  return gso_write(&s, base, mem_len, descs, from, n, start, gso, info, totals, err);
}

/* The same into `out` instead of a TUN (tests): each write's bytes, virtio_net_hdr first, end to end; unit_lens[k] = write k's length. */
int tun_gso_plan_descs(uint8_t *base, uint32_t mem_len, uint32_t descs, int from, int n, uint32_t start, uint32_t gso, const uint32_t *info, uint8_t *out, uint32_t out_cap, uint32_t *unit_lens, uint32_t *totals, int32_t *err) {
  struct sink s = { .fd = -1, .out = out, .cap = out_cap, .unit_lens = unit_lens };
  return gso_write(&s, base, mem_len, descs, from, n, start, gso, info, totals, err);
}
