/*
 * Batched TUN I/O for membrane's forwarder (host/sys/tun-native.ts binds it
 * through koffi; host/tun/linux-tun.ts uses it). A TUN fd moves one packet
 * per read(2)/write(2) and has no recvmmsg, so from JavaScript every packet
 * paid one FFI crossing per syscall (~55-65 ns over C, docs/forwarder.md
 * "Cost per packet"). Here one FFI call moves a whole batch:
 *
 *   tun_read_batch / tun_write_batch: the same read(2)/write(2) per packet,
 *     looped in C (one crossing per batch, the syscalls unchanged);
 *   tun_uring_read_batch / tun_uring_write_batch: a batch of reads or writes
 *     submitted with ONE io_uring_enter(2) (raw syscalls, no liburing), so
 *     the per-packet user/kernel transition (expensive with page-table
 *     isolation) goes too.
 *
 * Buffers: packet i lives at base + offs[i] (base is one ArrayBuffer from
 * JavaScript: the Wasm memory holding a forwarder's batch, or a packet ring's
 * SharedArrayBuffer), so koffi marshals one pointer per call, never one per
 * packet. For reads caps[i] is the room there, lens[i] is set to the bytes
 * read (virtio_net_hdr included when the device has one); for writes lens[i]
 * is what to send.
 *
 * Descriptor batches (tun_*_descs): the packets are described by struct
 * pkt_desc records (bpf/include/types/batch.h, the Wasm core's batch) in
 * the same memory as their buffers, so a forwarder reads into and writes
 * out of a Wasm batch with no per-packet work in JavaScript: a read fills in
 * each record (off, len and the batch's link/dir/flags), a write sends the
 * records whose verdict is VERDICT_PASS from their (possibly moved) off.
 *
 * Results: the number of packets moved, in order. *err is 0 when a read
 * batch stopped because nothing more was ready (EAGAIN) or n was reached;
 * otherwise the errno that stopped the batch at packet `result` (EAGAIN for a
 * write the device pushed back). Packets after a failed one are not moved,
 * exactly as the per-packet loop in JavaScript behaves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>
#include <linux/fs.h> /* RWF_NOWAIT */
#include "../bpf/include/types/batch.h" /* struct pkt_desc, enum verdict */

#include "tun_io.h"

int tun_io_abi_version(void) { return 3; }

uint64_t tun_io_syscalls_made;
uint64_t tun_io_syscalls(void) { return __atomic_load_n(&tun_io_syscalls_made, __ATOMIC_RELAXED); }

int tun_read_batch(int fd, uint8_t *base, const uint32_t *offs, const uint32_t *caps, uint32_t *lens, int n, int32_t *err) {
  int i = 0;
  *err = 0;
  while (i < n) {
    COUNT_SYSCALL();
    ssize_t r = read(fd, base + offs[i], caps[i]);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) *err = errno;
      break;
    }
    lens[i++] = (uint32_t)r;
  }
  return i;
}

int tun_write_batch(int fd, uint8_t *base, const uint32_t *offs, const uint32_t *lens, int n, int32_t *err) {
  int i = 0;
  *err = 0;
  while (i < n) {
    COUNT_SYSCALL();
    ssize_t r = write(fd, base + offs[i], lens[i]);
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      break;
    }
    i++;
  }
  return i;
}

/* ---- io_uring, raw ---- */

typedef struct tun_uring {
  int ring_fd;
  unsigned entries;
  /* submission queue */
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
  struct io_uring_sqe *sqes;
  /* completion queue */
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_cqe *cqes;
  void *sq_map, *cq_map;
  size_t sq_map_len, cq_map_len, sqes_len;
  /* read slots that completed, by submission index (compaction of holes) */
  int32_t *res;
  /* descriptor writes: the record each submission index sends */
  uint32_t *slot;
  /* reads: the first round's size for the next batch (next_want) */
  unsigned want;
} tun_uring;

static int sys_setup(unsigned entries, struct io_uring_params *p) { return (int)syscall(__NR_io_uring_setup, entries, p); }
static int sys_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags) {
  COUNT_SYSCALL();
  return (int)syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, NULL, 0);
}

void tun_uring_free(tun_uring *r) {
  if (!r) return;
  if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
  if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
  if (r->sq_map && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_map_len);
  if (r->ring_fd >= 0) close(r->ring_fd);
  free(r->res);
  free(r->slot);
  free(r);
}

/*
 * A ring of `entries` slots (a batch is at most that many packets), owned by
 * the calling thread. The flags the kernel may lack are dropped one by one:
 * SINGLE_ISSUER|DEFER_TASKRUN (6.1) let completions be reaped without
 * interrupting the thread. NULL with *err = errno when io_uring is refused
 * (io_uring_disabled, seccomp, an old kernel).
 */
tun_uring *tun_uring_new(unsigned entries, int32_t *err) {
  *err = 0;
  tun_uring *r = calloc(1, sizeof *r);
  if (!r) { *err = ENOMEM; return NULL; }
  r->ring_fd = -1;
  const unsigned tries[] = { IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_COOP_TASKRUN, 0 };
  struct io_uring_params p;
  for (unsigned t = 0; t < sizeof tries / sizeof tries[0]; t++) {
    memset(&p, 0, sizeof p);
    p.flags = tries[t];
    r->ring_fd = sys_setup(entries, &p);
    if (r->ring_fd >= 0 || errno != EINVAL) break;
  }
  if (r->ring_fd < 0) { *err = errno; tun_uring_free(r); return NULL; }
  r->entries = p.sq_entries;
  r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    if (r->cq_map_len > r->sq_map_len) r->sq_map_len = r->cq_map_len;
    r->cq_map_len = r->sq_map_len;
  }
  r->sq_map = mmap(0, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->ring_fd, IORING_OFF_SQ_RING);
  if (r->sq_map == MAP_FAILED) { *err = errno; tun_uring_free(r); return NULL; }
  r->cq_map = (p.features & IORING_FEAT_SINGLE_MMAP)
                  ? r->sq_map
                  : mmap(0, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->ring_fd, IORING_OFF_CQ_RING);
  if (r->cq_map == MAP_FAILED) { *err = errno; tun_uring_free(r); return NULL; }
  r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  r->sqes = mmap(0, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->ring_fd, IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) { *err = errno; tun_uring_free(r); return NULL; }
  uint8_t *sq = r->sq_map, *cq = r->cq_map;
  r->sq_head = (unsigned *)(sq + p.sq_off.head);
  r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
  r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned *)(sq + p.sq_off.array);
  r->cq_head = (unsigned *)(cq + p.cq_off.head);
  r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
  r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  r->res = calloc(p.sq_entries, sizeof *r->res);
  r->slot = calloc(p.sq_entries, sizeof *r->slot);
  if (!r->res || !r->slot) { *err = ENOMEM; tun_uring_free(r); return NULL; }
  return r;
}

unsigned tun_uring_entries(tun_uring *r) { return r->entries; }

static void prep(tun_uring *r, unsigned k, int op, int fd, void *addr, uint32_t len, uint8_t flags, uint32_t rw_flags) {
  unsigned tail = *r->sq_tail + k;
  unsigned idx = tail & *r->sq_mask;
  struct io_uring_sqe *sqe = &r->sqes[idx];
  memset(sqe, 0, sizeof *sqe);
  sqe->opcode = (uint8_t)op;
  sqe->flags = flags;
  sqe->fd = fd;
  sqe->addr = (uint64_t)(uintptr_t)addr;
  sqe->len = len;
  sqe->off = (uint64_t)-1; /* the file position: a TUN has none */
  sqe->user_data = k;
  sqe->rw_flags = rw_flags;
  r->sq_array[idx] = idx;
}

/*
 * Submits k prepared SQEs and waits for their k completions, which a TUN
 * (non-blocking fd) posts inline; res[] gets each result by submission index.
 * Returns 0, or -errno when io_uring_enter itself failed.
 */
static int submit_and_reap(tun_uring *r, unsigned k) {
  __atomic_store_n(r->sq_tail, *r->sq_tail + k, __ATOMIC_RELEASE);
  unsigned done = 0;
  unsigned submit = k;
  while (done < k) {
    int e = sys_enter(r->ring_fd, submit, k - done, IORING_ENTER_GETEVENTS);
    if (e < 0) {
      if (errno == EINTR) continue;
      if (submit == 0 || errno != EAGAIN) return -errno;
    } else {
      submit -= (unsigned)e < submit ? (unsigned)e : submit;
    }
    unsigned head = *r->cq_head;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    while (head != tail) {
      struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
      if (c->user_data < k) r->res[c->user_data] = c->res;
      head++;
      done++;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
  }
  return 0;
}

/*
 * The first round of the next read batch: the whole batch when this one
 * came back full (the reader is behind: the queue holds at least that many,
 * so it is read in one io_uring_enter instead of five rounds), else 8. Not
 * "what this one got": a read round bigger than the queue pays an -EAGAIN
 * read per empty slot, which costs more than the rounds it saves.
 */
static unsigned next_want(int got, int n) { return got == n && n > 8 ? (unsigned)n : 8; }

/*
 * Reads carry RWF_NOWAIT: io_uring ignores the fd's O_NONBLOCK and would
 * otherwise park a read of an empty queue until a packet comes (the batch
 * would never return); with it an empty queue is -EAGAIN at once.
 *
 * Reads, in rounds of one io_uring_enter each: the first round submits 8
 * reads (the whole batch when the last batch came back full: next_want),
 * each next one twice the last (a read that finds the queue empty costs its SQE and an -EAGAIN),
 * and another round follows only when every read of this one got a packet. A packet that landed after an empty read (it
 * arrived mid-round) is moved down into the empty slot, so the packets are
 * always slots 0..result-1, in the order the kernel gave them.
 */
int tun_uring_read_batch(tun_uring *r, int fd, uint8_t *base, const uint32_t *offs, const uint32_t *caps, uint32_t *lens, int n, int32_t *err) {
  *err = 0;
  int got = 0;
  unsigned want = r->want ? r->want : 8;
  while (got < n) {
    unsigned k = (unsigned)(n - got);
    if (k > want) k = want;
    if (k > r->entries) k = r->entries;
    int start = got;
    for (unsigned j = 0; j < k; j++) prep(r, j, IORING_OP_READ, fd, base + offs[start + j], caps[start + j], 0, RWF_NOWAIT);
    int e = submit_and_reap(r, k);
    if (e < 0) { *err = -e; return got; }
    int full = 1;
    for (unsigned j = 0; j < k; j++) {
      int32_t res = r->res[j];
      if (res < 0) {
        full = 0;
        /* A real error ends the batch there, as the read(2) loop would (packets read after it in this round are lost). */
        if (res != -EAGAIN && res != -EINTR) { *err = -res; break; }
        continue;
      }
      int src = start + (int)j;
      if (src != got) {
        if ((uint32_t)res > caps[got]) { full = 0; break; } /* slots of unequal room: never with the forwarder's buffers */
        memmove(base + offs[got], base + offs[src], (size_t)res);
      }
      lens[got++] = (uint32_t)res;
    }
    if (*err || !full) break;
    want = want * 2 > r->entries ? r->entries : want * 2;
  }
  r->want = next_want(got, n);
  return got;
}

/*
 * Writes n packets with one io_uring_enter per ring-full, the writes linked
 * (IOSQE_IO_LINK) so that, as with the write(2) loop, a packet the kernel
 * refuses stops the batch there: the writes after it are cancelled, not
 * sent, and the caller decides what to do with them (docs/forwarder.md).
 */
int tun_uring_write_batch(tun_uring *r, int fd, uint8_t *base, const uint32_t *offs, const uint32_t *lens, int n, int32_t *err) {
  *err = 0;
  int done = 0;
  while (done < n) {
    unsigned k = (unsigned)(n - done);
    if (k > r->entries) k = r->entries;
    for (unsigned j = 0; j < k; j++) {
      prep(r, j, IORING_OP_WRITE, fd, base + offs[done + j], lens[done + j], j + 1 < k ? IOSQE_IO_LINK : 0, 0);
    }
    int e = submit_and_reap(r, k);
    if (e < 0) { *err = -e; return done; }
    for (unsigned j = 0; j < k; j++) {
      int32_t res = r->res[j];
      if (res < 0) { *err = -res; return done; }
      if ((uint32_t)res != lens[done]) { *err = EIO; return done; } /* a short write: never from a TUN */
      done++;
    }
  }
  return done;
}

/* ---- descriptor batches ---- */

/*
 * The arguments every descriptor call shares: `base` is the memory (mem_len
 * bytes) holding both the records (n of them from byte `descs`) and the
 * buffers they point at. Nothing outside it is ever touched: a record whose
 * buffer does not lie inside (a datapath bug, never input) stops the batch
 * with EFAULT.
 */
static int descs_fit(uint32_t mem_len, uint32_t descs, int n) {
  return n >= 0 && (uint64_t)descs + (uint64_t)n * sizeof(struct pkt_desc) <= mem_len && descs % 4 == 0;
}

/*
 * Where record d's read lands: `hdr` bytes (the virtio_net_hdr, 0 without)
 * before byte `start` of its buffer, with room to the buffer's end; 0 when
 * that is outside the memory or smaller than `need`.
 */
static uint8_t *read_at(uint8_t *base, uint32_t mem_len, const struct pkt_desc *d, uint32_t start, uint32_t hdr, uint32_t need, uint32_t *cap) {
  *cap = need; /* outside the memory is EFAULT, not a room problem */
  if (start < hdr || start > d->buf_size || (uint64_t)d->buf + d->buf_size > mem_len) return 0;
  *cap = d->buf_size - start + hdr;
  if (*cap < need) return 0;
  return base + d->buf + start - hdr;
}

#define VNET_HDR_LEN 10
#define VNET_F_NEEDS_CSUM 1

#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_ECN 0x80

/*
 * The wire packets a packet read with virtio_net_hdr h stands for: a
 * super-packet its segments, else 1. The repeated headers come from
 * csum_start and the L4 header, not from hdr_len, which the kernel fills with
 * the skb's linear length (host/tun/virtio-net-hdr.ts segmentsOf, the same).
 */
static uint32_t segments_of(const uint8_t *h, const uint8_t *p, uint32_t len) {
  uint16_t hdr_len, gso_size, csum_start;
  memcpy(&hdr_len, h + 2, 2);
  memcpy(&gso_size, h + 4, 2);
  memcpy(&csum_start, h + 6, 2);
  unsigned type = h[1] & ~VNET_GSO_ECN & 0xff;
  if (type == 0 || gso_size == 0) return 1;
  uint32_t headers;
  if (!(h[0] & VNET_F_NEEDS_CSUM) || csum_start >= len) headers = hdr_len;
  else if (type == VNET_GSO_TCPV4 || type == VNET_GSO_TCPV6) headers = csum_start + 12u < len ? csum_start + (p[csum_start + 12] >> 4) * 4u : len;
  else headers = csum_start + 8u;
  return len > headers ? (len - headers + gso_size - 1) / gso_size : 1;
}

/*
 * Fills in record d for a packet of `len` bytes read at `start`, its `hdr`-byte
 * header at `h`; returns the wire packets it stands for. With a virtio_net_hdr:
 * NEEDS_CSUM marks it PKT_F_CSUM_PARTIAL (rewrites keep the partial sum), a
 * super-packet counts its segments, and *info gets the length with the top bit
 * set when the header carries a GSO type or a partial checksum (what
 * tun_write_gso_descs needs to know once the datapath has moved the packet).
 */
static uint32_t admit(struct pkt_desc *d, uint32_t start, uint32_t len, uint32_t meta, uint32_t hdr, const uint8_t *h, uint32_t *info) {
  d->off = start;
  d->len = len;
  d->link = (uint8_t)meta;
  d->dir = (uint8_t)(meta >> 8);
  d->flags = (uint8_t)(meta >> 16);
  uint32_t wire = 1, offloaded = 0;
  if (hdr == VNET_HDR_LEN) {
    if (h[0] & VNET_F_NEEDS_CSUM) d->flags |= PKT_F_CSUM_PARTIAL;
    offloaded = h[0] & VNET_F_NEEDS_CSUM || h[1] != 0;
    wire = segments_of(h, h + VNET_HDR_LEN, len);
  }
  if (info) *info = len | offloaded << 31;
  return wire;
}

/*
 * Reads up to n packets into the buffers of records 0..n-1, each at `start`
 * with its `hdr`-byte virtio_net_hdr just before; fills in each record read
 * (off = start, len without the header, link/dir/flags from `meta`: link |
 * dir << 8 | flags << 16). totals[0] = the bytes read (headers excluded),
 * totals[1] = the wire packets they stand for (a super-packet its segments);
 * info, if not NULL, gets admit()'s word per record. Returns how many were read; *err as the other reads, plus EFAULT (a record
 * outside the memory), EINVAL (a buffer with less than `need` bytes of room,
 * or a read shorter than the header).
 */
int tun_read_descs(int fd, uint8_t *base, uint32_t mem_len, uint32_t descs, int n, uint32_t start, uint32_t hdr, uint32_t need, uint32_t meta, uint32_t *info, uint32_t *totals, int32_t *err) {
  *err = 0;
  totals[0] = totals[1] = 0;
  if (!descs_fit(mem_len, descs, n)) { *err = EFAULT; return 0; }
  struct pkt_desc *d = (struct pkt_desc *)(base + descs);
  int i = 0;
  while (i < n) {
    uint32_t cap;
    uint8_t *at = read_at(base, mem_len, &d[i], start, hdr, need, &cap);
    if (!at) { *err = cap < need ? EINVAL : EFAULT; break; }
    COUNT_SYSCALL();
    ssize_t r = read(fd, at, cap);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) *err = errno;
      break;
    }
    if ((uint32_t)r < hdr) { *err = EINVAL; break; }
    totals[1] += admit(&d[i], start, (uint32_t)r - hdr, meta, hdr, at, info ? &info[i] : 0);
    totals[0] += (uint32_t)r - hdr;
    i++;
  }
  return i;
}

/* tun_read_descs through the io_uring, in rounds as tun_uring_read_batch. */
int tun_uring_read_descs(tun_uring *r, int fd, uint8_t *base, uint32_t mem_len, uint32_t descs, int n, uint32_t start, uint32_t hdr, uint32_t need, uint32_t meta, uint32_t *info, uint32_t *totals, int32_t *err) {
  *err = 0;
  totals[0] = totals[1] = 0;
  if (!descs_fit(mem_len, descs, n)) { *err = EFAULT; return 0; }
  struct pkt_desc *d = (struct pkt_desc *)(base + descs);
  int got = 0;
  unsigned want = r->want ? r->want : 8;
  while (got < n) {
    unsigned k = (unsigned)(n - got);
    if (k > want) k = want;
    if (k > r->entries) k = r->entries;
    int first = got;
    for (unsigned j = 0; j < k; j++) {
      uint32_t cap;
      uint8_t *at = read_at(base, mem_len, &d[first + j], start, hdr, need, &cap);
      if (!at) { *err = cap < need ? EINVAL : EFAULT; return got; }
      prep(r, j, IORING_OP_READ, fd, at, cap, 0, RWF_NOWAIT);
    }
    int e = submit_and_reap(r, k);
    if (e < 0) { *err = -e; return got; }
    int full = 1;
    for (unsigned j = 0; j < k; j++) {
      int32_t res = r->res[j];
      if (res < 0) {
        full = 0;
        if (res != -EAGAIN && res != -EINTR) { *err = -res; break; }
        continue;
      }
      if ((uint32_t)res < hdr) { *err = EINVAL; full = 0; break; }
      int src = first + (int)j;
      if (src != got) {
        /* A packet that landed after an empty read moves down into the empty slot (same-sized buffers: checked by read_at). */
        uint32_t cap;
        uint8_t *to = read_at(base, mem_len, &d[got], start, hdr, need, &cap);
        if (!to || (uint32_t)res > cap) { full = 0; break; }
        memmove(to, base + d[src].buf + start - hdr, (size_t)res);
      }
      totals[1] += admit(&d[got], start, (uint32_t)res - hdr, meta, hdr, base + d[got].buf + start - hdr, info ? &info[got] : 0);
      totals[0] += (uint32_t)res - hdr;
      got++;
    }
    if (*err || !full) break;
    want = want * 2 > r->entries ? r->entries : want * 2;
  }
  r->want = next_want(got, n);
  return got;
}

/*
 * Where record d's packet is to be written from (its virtio_net_hdr `hdr`
 * bytes before off), or 0 when that is outside the memory.
 */
static uint8_t *write_at(uint8_t *base, uint32_t mem_len, const struct pkt_desc *d, uint32_t hdr) {
  if (d->off < hdr || d->len == 0 || (uint64_t)d->buf + d->off + d->len > mem_len) return 0;
  return base + d->buf + d->off - hdr;
}

/* Passing records in [from, n) and their bytes: totals[0], totals[1]. */
static void count_passing(const struct pkt_desc *d, int from, int n, uint32_t *totals) {
  uint32_t pass = 0, bytes = 0;
  for (int i = from; i < n; i++) {
    if (d[i].verdict != VERDICT_PASS) continue;
    pass++;
    bytes += d[i].len;
  }
  totals[0] = pass;
  totals[1] = bytes;
}

/*
 * Writes the packets of records from..n-1 whose verdict is VERDICT_PASS,
 * each from its off (the datapath may have moved it to prepend) with its
 * `hdr`-byte virtio_net_hdr before. totals[0], totals[1] = the passing
 * records in [from, n) and their bytes (all of them, written or not);
 * totals[2] = the packets written. Returns the record index it stopped at:
 * n when all went, else the passing record whose write failed with *err
 * (EAGAIN: the device pushed back; EFAULT: a record outside the memory);
 * records after it are not written.
 */
int tun_write_descs(int fd, uint8_t *base, uint32_t mem_len, uint32_t descs, int from, int n, uint32_t hdr, uint32_t *totals, int32_t *err) {
  *err = 0;
  totals[0] = totals[1] = totals[2] = 0;
  if (from < 0 || !descs_fit(mem_len, descs, n)) { *err = EFAULT; return from; }
  const struct pkt_desc *d = (const struct pkt_desc *)(base + descs);
  count_passing(d, from, n, totals);
  int i = from;
  while (i < n) {
    if (d[i].verdict != VERDICT_PASS) { i++; continue; }
    uint8_t *at = write_at(base, mem_len, &d[i], hdr);
    if (!at) { *err = EFAULT; return i; }
    COUNT_SYSCALL();
    ssize_t r = write(fd, at, d[i].len + hdr);
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return i;
    }
    totals[2]++;
    i++;
  }
  return i;
}

/* tun_write_descs through the io_uring: one io_uring_enter per ring-full, the writes linked as tun_uring_write_batch. */
int tun_uring_write_descs(tun_uring *r, int fd, uint8_t *base, uint32_t mem_len, uint32_t descs, int from, int n, uint32_t hdr, uint32_t *totals, int32_t *err) {
  *err = 0;
  totals[0] = totals[1] = totals[2] = 0;
  if (from < 0 || !descs_fit(mem_len, descs, n)) { *err = EFAULT; return from; }
  const struct pkt_desc *d = (const struct pkt_desc *)(base + descs);
  count_passing(d, from, n, totals);
  int i = from;
  while (i < n) {
    /* The next ring-full of passing records; a record outside the memory ends the batch before it. */
    unsigned k = 0;
    int bad = -1;
    for (; i < n && k < r->entries; i++) {
      if (d[i].verdict != VERDICT_PASS) continue;
      if (!write_at(base, mem_len, &d[i], hdr)) { bad = i; break; }
      r->slot[k++] = (uint32_t)i;
    }
    for (unsigned j = 0; j < k; j++) {
      const struct pkt_desc *w = &d[r->slot[j]];
      prep(r, j, IORING_OP_WRITE, fd, write_at(base, mem_len, w, hdr), w->len + hdr, j + 1 < k ? IOSQE_IO_LINK : 0, 0);
    }
    if (k > 0) {
      int e = submit_and_reap(r, k);
      if (e < 0) { *err = -e; return (int)r->slot[0]; }
      for (unsigned j = 0; j < k; j++) {
        int32_t res = r->res[j];
        const struct pkt_desc *w = &d[r->slot[j]];
        if (res < 0) { *err = -res; return (int)r->slot[j]; }
        if ((uint32_t)res != w->len + hdr) { *err = EIO; return (int)r->slot[j]; } /* a short write: never from a TUN */
        totals[2]++;
      }
    }
    if (bad >= 0) { *err = EFAULT; return bad; }
  }
  return n;
}
