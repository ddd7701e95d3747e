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

int tun_io_abi_version(void) { return 1; }

int tun_read_batch(int fd, uint8_t *base, const uint32_t *offs, const uint32_t *caps, uint32_t *lens, int n, int32_t *err) {
  int i = 0;
  *err = 0;
  while (i < n) {
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
} tun_uring;

static int sys_setup(unsigned entries, struct io_uring_params *p) { return (int)syscall(__NR_io_uring_setup, entries, p); }
static int sys_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, NULL, 0);
}

void tun_uring_free(tun_uring *r) {
  if (!r) return;
  if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
  if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
  if (r->sq_map && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_map_len);
  if (r->ring_fd >= 0) close(r->ring_fd);
  free(r->res);
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
  if (!r->res) { *err = ENOMEM; tun_uring_free(r); return NULL; }
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
 * Reads carry RWF_NOWAIT: io_uring ignores the fd's O_NONBLOCK and would
 * otherwise park a read of an empty queue until a packet comes (the batch
 * would never return); with it an empty queue is -EAGAIN at once.
 *
 * Reads, in rounds of one io_uring_enter each: a round submits as many reads
 * as the last round got plus room to grow (a read that finds the queue empty
 * costs its SQE and an -EAGAIN), and another round follows only when every
 * read of this one got a packet. A packet that landed after an empty read (it
 * arrived mid-round) is moved down into the empty slot, so the packets are
 * always slots 0..result-1, in the order the kernel gave them.
 */
int tun_uring_read_batch(tun_uring *r, int fd, uint8_t *base, const uint32_t *offs, const uint32_t *caps, uint32_t *lens, int n, int32_t *err) {
  *err = 0;
  int got = 0;
  unsigned want = 8;
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
