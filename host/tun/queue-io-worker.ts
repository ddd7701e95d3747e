/**
 * One TUN queue's I/O thread (ring-tun.ts starts one per queue): it only
 * moves packets. read(2) on its queue's fd straight into the free slots of
 * the inbound ring, a batch at a time, then write(2) of every packet the
 * decider left in the outbound ring. No parsing, no decisions: the syscalls
 * of every queue run on their own threads, in parallel with the one thread
 * that decides (so with 2 cores the syscalls and the deciding overlap).
 *
 * Idle, it blocks in poll(2) on the queue's fd and an eventfd the decider
 * writes when it fills the outbound ring while this thread sleeps (the
 * outbound ring's `sleeping` flag), so neither side spins nor polls with a
 * timeout to see the other's work.
 *
 * With native TUN I/O (`io` "uring" or "batch", native-batch-io.ts) a batch
 * of reads into the free slots is one FFI call (and with io_uring one
 * syscall), and so is the outbound ring's batch of writes; with "koffi" each
 * packet is a koffi call of its own.
 *
 * Lost packets are counted, never blocked on: a full inbound ring (the
 * decider is behind) drops what is read (inbound.drops); a write the kernel
 * refuses is counted in outbound.errors, which the forwarder adds to
 * stats.writeErrors.
 */
import { workerData } from "node:worker_threads";
import { endianness } from "node:os";
import { libcTun } from "./libc-tun.js";
import { tunNative } from "../sys/tun-native.js";
import { NativeTunIo } from "./native-batch-io.js";
import type { TunIoMode } from "./tun-io-choice.js";
import { publishTuning } from "./io-mode-tuner.js";
import { PacketRing } from "./packet-ring.js";
import { POLLFD_SIZE, POLLIN } from "./tun-abi.js";

export interface QueueIoStart {
  /** The queue's TUN fd (owned by the decider's thread; fds are per process). */
  fd: number;
  /** eventfd the decider writes to wake this thread. */
  wakeFd: number;
  inbound: SharedArrayBuffer;
  outbound: SharedArrayBuffer;
  /** The decider's doorbell: Int32 [sequence, sleeping] (ring-tun.ts). */
  doorbell: SharedArrayBuffer;
  /** Int32 [stop (set by the decider), exited (set here, last)]. */
  control: SharedArrayBuffer;
  /** Packets read per batch before they are published and the outbound ring is drained. */
  batch: number;
  /** How this thread moves packets (the queue's LinuxTun.io); default "koffi". */
  io?: TunIoMode;
  /** TUNING_FIELDS Float64s: this thread's tuner, with io "adaptive" (io-mode-tuner.ts publishTuning). */
  tuning?: SharedArrayBuffer;
}

const EINTR = 4;
const EAGAIN = 11;
/** Idle poll(2) bound: how late a stop is seen if the wake-up were lost. */
const IDLE_POLL_MS = 200;
const LE = endianness() === "LE";

function run(start: QueueIoStart): void {
  const c = libcTun();
  const inbound = new PacketRing(start.inbound);
  const outbound = new PacketRing(start.outbound);
  const doorbell = new Int32Array(start.doorbell);
  const control = new Int32Array(start.control);
  const { fd, wakeFd, batch } = start;
  const cap = inbound.slotCapacity;
  const scratch = new Uint8Array(cap);
  const eventBuf = new Uint8Array(8);
  const pollfds = new Uint8Array(2 * POLLFD_SIZE);
  const pv = new DataView(pollfds.buffer);
  pv.setInt32(0, fd, LE);
  pv.setInt16(4, POLLIN, LE);
  pv.setInt32(POLLFD_SIZE, wakeFd, LE);
  pv.setInt16(POLLFD_SIZE + 4, POLLIN, LE);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const lib = start.io === "uring" || start.io === "batch" || start.io === "adaptive" ? tunNative() : undefined;
  const native = lib ? new NativeTunIo(lib, start.io as "uring" | "batch" | "adaptive") : undefined;
  const tuning = start.tuning ? new Float64Array(start.tuning) : undefined;
  // The slots of one native call and their lengths (reused; a slot's view is the ring's own, made once).
  const inSlots: Uint8Array[] = [];
  const inLens: number[] = [];
  const outSlots: Uint8Array[] = [];
  const outLens: number[] = [];

  while (Atomics.load(control, 0) === 0) {
    // Inbound: up to a batch, into the ring's free slots in place; beyond them into scratch, counted as drops.
    let free = inbound.free();
    let filled = 0;
    let dropped = 0;
    let failed = false;
    let tries = batch;
    if (native && free > 0) {
      const want = Math.min(batch, free);
      for (let k = 0; k < want; k++) inSlots[k] = inbound.freeSlot(k);
      filled = native.read(fd, inSlots, want, 0, inLens);
      // Before the packets are published: a decider that has them can read what the tuner found.
      const tuned = tuning && native.tuning();
      if (tuned) publishTuning(tuned, tuning!);
      for (let k = 0; k < filled; k++) inbound.setLength(k, inLens[k]!);
      if (native.errno !== 0) failed = true;
      // Only a full ring leaves the rest of the batch to the loop below, which reads into scratch and counts drops.
      tries = failed || filled < want || filled < free ? 0 : batch - filled;
    }
    for (let i = 0; i < tries; i++) {
      const into = filled < free ? inbound.freeSlot(filled) : scratch;
      const n = c.read(fd, into, cap);
      if (n < 0) {
        const errno = c.errno();
        if (errno === EINTR) continue;
        if (errno !== EAGAIN) failed = true;
        break;
      }
      if (filled < free) inbound.setLength(filled++, n);
      else dropped++;
    }
    if (dropped) inbound.countDrops(dropped);
    if (filled) {
      inbound.publish(filled);
      Atomics.add(doorbell, 0, 1);
      if (Atomics.load(doorbell, 1) === 1) Atomics.notify(doorbell, 0);
    }
    // Outbound: everything the decider has left, in order.
    const ready = outbound.available();
    let errors = 0;
    if (native && ready > 0) {
      for (let k = 0; k < ready; k++) {
        outSlots[k] = outbound.readySlot(k);
        outLens[k] = outbound.length(k);
      }
      let from = 0;
      while (from < ready) {
        const bufs = from === 0 ? outSlots : outSlots.slice(from);
        const lens = from === 0 ? outLens : outLens.slice(from);
        const done = native.write(fd, bufs, ready - from, 0, lens);
        from += done;
        // A packet the kernel refused (or pushed back) is counted and skipped, as below.
        if (from < ready) {
          errors++;
          from++;
        }
      }
    }
    for (let k = native ? ready : 0; k < ready; k++) {
      for (;;) {
        if (c.write(fd, outbound.readySlot(k), outbound.length(k)) >= 0) break;
        if (c.errno() !== EINTR) { errors++; break; }
      }
    }
    if (errors) outbound.countErrors(errors);
    outbound.release(ready);
    if (failed) {
      // A read error (device going away, detached queue): do not spin on it; the next loop sees a stop.
      inbound.countErrors(1);
      Atomics.wait(nap, 0, 0, 10);
      continue;
    }
    if (filled + dropped + ready > 0) continue;
    // Idle: say so before the last look at the outbound ring, so a decider that fills it after that look writes the eventfd.
    outbound.setSleeping(true);
    if (outbound.available() === 0 && Atomics.load(control, 0) === 0) {
      pv.setInt16(6, 0, LE);
      pv.setInt16(POLLFD_SIZE + 6, 0, LE);
      const r = c.poll(pollfds, 2, IDLE_POLL_MS);
      if (r > 0 && (pv.getInt16(POLLFD_SIZE + 6, LE) & POLLIN) !== 0) c.read(wakeFd, eventBuf, 8);
    }
    outbound.setSleeping(false);
  }
  native?.close();
  Atomics.store(control, 1, 1);
  Atomics.notify(control, 1);
}

run(workerData as QueueIoStart);
