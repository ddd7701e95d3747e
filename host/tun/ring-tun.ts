/**
 * Several queues of one TUN device (IFF_MULTI_QUEUE) as one TunDevice for
 * the ONE thread that decides, with the syscalls moved off it: each queue
 * gets an I/O thread (queue-io-worker.ts) that reads its fd into an inbound
 * PacketRing and writes what the decider puts in its outbound ring. The
 * decider's read() copies from the inbound rings, its write() into the
 * outbound ones; neither makes a syscall while packets flow.
 *
 * Why one decider and not a datapath per queue: every flow keeps one
 * conntrack (and NAT) view. Both directions of a flow are decided against the
 * same entry whichever queue each arrives on, with no sharding of tables by a
 * symmetric hash and no locks. What the second core buys is the read(2) and
 * write(2) of every queue, which is most of a packet's cost (docs/forwarder.md).
 *
 * Which queue a reply leaves on: the queue its packet came in on (queue 0
 * only for a buffer write() cannot match to a read, i.e. one the caller made
 * itself). The kernel steers a flow to the queue a packet of it was last
 * written on (tun_flow_update), so writing everything on queue 0 would pull
 * every flow onto queue 0 and its I/O thread, leaving the other idle; writing
 * back where it came from keeps each flow where the kernel's hash put it,
 * spread over all queues.
 *
 * The decider waits (wait()) on a shared doorbell with Atomics.wait; an I/O
 * thread rings it only when the decider said it sleeps. Lost packets are
 * counted: ringDrops() (an inbound ring was full: the decider is behind) and
 * deferredWriteErrors() (an outbound ring was full, or write(2) refused a
 * packet), which the forwarder adds to stats.writeErrors.
 */
import { readTuning, TUNING_FIELDS, type TunIoTuning } from "./io-mode-tuner.js";
import { Worker } from "node:worker_threads";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import { libc } from "../sys/libc.js";
import { InvalidInputError } from "../errors.js";
import { checkReadBatch, checkWriteBatch, type TunDevice } from "./device.js";
import { TunClosedError, TunIoError } from "./errors.js";
import { libcTun } from "./libc-tun.js";
import type { LinuxTun } from "./linux-tun.js";
import { PacketRing } from "./packet-ring.js";
import type { QueueIoStart } from "./queue-io-worker.js";

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
/** How long close() waits for an I/O thread to leave its loop before closing the fds under it. */
const STOP_WAIT_MS = 2000;

export interface RingTunOptions {
  /** Slots per ring (each direction of each queue); default 1024. */
  slots?: number;
  /** Packets an I/O thread reads before publishing them; default 64. */
  ioBatch?: number;
}

interface Queue {
  tun: LinuxTun;
  inbound: PacketRing;
  outbound: PacketRing;
  wakeFd: number;
  control: Int32Array;
  /** What the thread's I/O mode tuner found (io-mode-tuner.ts publishTuning). */
  tuning: Float64Array;
  worker: Worker;
}

export class RingTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly vnetHdr: boolean;
  readonly readCapacity: number;
  readonly offloads: LinuxTun["offloads"];
  /** How the I/O threads move packets (the queues' TUN io mode, tun-io-choice.ts). */
  readonly io: LinuxTun["io"];
  readonly #queues: Queue[];
  readonly #hdr: number;
  /** Int32 [sequence, sleeping]: bumped by an I/O thread after it publishes; the decider Atomics.waits on it. */
  readonly #doorbell: Int32Array;
  /** Queue read first by the next read() (rotates: a busy queue cannot starve the others). */
  #first = 0;
  /** The last read's buffers and the queue each packet came from, so write() sends it back there. */
  #readBufs: Uint8Array[] = [];
  #readCount = 0;
  #queueOf = new Uint8Array(0);
  /** Outbound rings written since the last wake check. */
  readonly #touched: Uint8Array;
  #closed = false;
  /** Packets the decider took from each queue's inbound ring. */
  readonly #perQueue: number[];

  constructor(queues: readonly LinuxTun[], opts: RingTunOptions = {}) {
    if (queues.length === 0) throw new InvalidInputError("a ring TUN needs at least one queue");
    if (queues.length > 255) throw new InvalidInputError(`a ring TUN takes at most 255 queues, got ${queues.length}`);
    const slots = opts.slots ?? 1024;
    const ioBatch = opts.ioBatch ?? 64;
    if (!Number.isInteger(ioBatch) || ioBatch < 1) throw new InvalidInputError(`ioBatch must be a positive integer, got ${ioBatch}`);
    const q0 = queues[0]!;
    this.name = q0.name;
    this.mtu = q0.mtu;
    this.vnetHdr = q0.vnetHdr;
    this.readCapacity = q0.readCapacity;
    this.offloads = q0.offloads;
    this.io = q0.io;
    this.#hdr = q0.vnetHdr ? 10 : 0;
    this.#doorbell = new Int32Array(new SharedArrayBuffer(8));
    this.#touched = new Uint8Array(queues.length);
    this.#perQueue = new Array<number>(queues.length).fill(0);
    const file = join(packageRoot(), "dist/host/tun/queue-io-worker.js");
    const c = libcTun();
    this.#queues = [];
    try {
      for (const tun of queues) {
        // A slot holds what one read(2) returns: the virtio_net_hdr (if any) and the largest packet.
        const inbound = PacketRing.create(slots, this.#hdr + this.readCapacity);
        const outbound = PacketRing.create(slots, this.#hdr + this.readCapacity);
        const wakeFd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wakeFd < 0) throw new TunIoError(`eventfd for ${this.name}`, c.errno());
        const control = new Int32Array(new SharedArrayBuffer(8));
        const tuning = new Float64Array(new SharedArrayBuffer(TUNING_FIELDS * 8));
        const start: QueueIoStart = {
          fd: tun.fd, wakeFd, inbound: inbound.sab, outbound: outbound.sab, doorbell: this.#doorbell.buffer as SharedArrayBuffer,
          control: control.buffer as SharedArrayBuffer, batch: ioBatch, io: tun.io, tuning: tuning.buffer as SharedArrayBuffer,
        };
        const worker = new Worker(file, { workerData: start });
        // The I/O threads live and die with this device, never with the event loop.
        worker.unref();
        this.#queues.push({ tun, inbound, outbound, wakeFd, control, tuning, worker });
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** How many queues (and I/O threads). */
  get queueCount(): number {
    return this.#queues.length;
  }

  read(bufs: Uint8Array[], sizes: number[], offset: number): number {
    this.#open();
    checkReadBatch(this, bufs, sizes, offset);
    if (this.#queueOf.length < bufs.length) this.#queueOf = new Uint8Array(bufs.length);
    const n = this.#queues.length;
    const hdr = this.#hdr;
    let got = 0;
    for (let k = 0; k < n && got < bufs.length; k++) {
      const q = (this.#first + k) % n;
      const ring = this.#queues[q]!.inbound;
      const ready = Math.min(ring.available(), bufs.length - got);
      for (let j = 0; j < ready; j++) {
        const len = ring.length(j);
        bufs[got]!.set(ring.readySlot(j).subarray(0, len), offset - hdr);
        sizes[got] = len - hdr;
        this.#queueOf[got++] = q;
      }
      ring.release(ready);
      this.#perQueue[q] += ready;
    }
    this.#first = (this.#first + 1) % n;
    this.#readBufs = bufs;
    this.#readCount = got;
    return got;
  }

  write(bufs: Uint8Array[], sizes: number[], offset: number): number {
    this.#open();
    checkWriteBatch(this, bufs, sizes, offset);
    const hdr = this.#hdr;
    // Writes come in read order (the forwarder keeps it): a cursor over the read's buffers finds each one's queue.
    let cursor = 0;
    for (let i = 0; i < bufs.length; i++) {
      const buf = bufs[i]!;
      let q = 0;
      let at = cursor;
      while (at < this.#readCount && this.#readBufs[at] !== buf) at++;
      if (at < this.#readCount) {
        q = this.#queueOf[at]!;
        cursor = at + 1;
      }
      // A full outbound ring counts the packet in its drops (deferredWriteErrors), as a full NIC queue would lose it.
      this.#queues[q]!.outbound.push(buf, offset - hdr, hdr + sizes[i]!);
      this.#touched[q] = 1;
    }
    this.#wake();
    return bufs.length;
  }

  /** Writes each touched queue's eventfd when its I/O thread said it sleeps (one syscall per idle queue, none under load). */
  #wake(): void {
    for (let q = 0; q < this.#touched.length; q++) {
      if (!this.#touched[q]) continue;
      this.#touched[q] = 0;
      const queue = this.#queues[q]!;
      if (queue.outbound.sleeping) libc_writeEventfd(queue.wakeFd);
    }
  }

  wait(timeoutMs: number): boolean {
    this.#open();
    if (!Number.isFinite(timeoutMs)) throw new InvalidInputError(`wait timeout must be a finite number of milliseconds, got ${timeoutMs}`);
    if (this.#anyReady()) return true;
    const seq = Atomics.load(this.#doorbell, 0);
    Atomics.store(this.#doorbell, 1, 1);
    // Look once more after saying so: an I/O thread that published before the flag was up did not ring.
    if (!this.#anyReady()) Atomics.wait(this.#doorbell, 0, seq, Math.max(0, timeoutMs));
    Atomics.store(this.#doorbell, 1, 0);
    return this.#anyReady();
  }

  #anyReady(): boolean {
    for (const q of this.#queues) if (q.inbound.available() > 0) return true;
    return false;
  }

  /** Packets read from each queue so far (which queue the kernel put them on). */
  queueReads(): number[] {
    return [...this.#perQueue];
  }

  /** Each I/O thread's I/O mode tuner, as it last published it (adaptive io only). */
  ioTuning(): TunIoTuning[] {
    return this.#queues.flatMap((q) => readTuning(q.tuning) ?? []);
  }

  /** Packets lost because an inbound ring was full (the decider fell behind its I/O threads). */
  ringDrops(): number {
    let n = 0;
    for (const q of this.#queues) n += q.inbound.drops;
    return n;
  }

  /** Packets the forwarder handed to write() that never reached the kernel: an outbound ring was full, or write(2) refused them. */
  deferredWriteErrors(): number {
    let n = 0;
    for (const q of this.#queues) n += q.outbound.drops + q.outbound.errors;
    return n;
  }

  /** Stops the I/O threads (waiting for each to leave its loop), then closes the eventfds and the queues; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const q of this.#queues) {
      Atomics.store(q.control, 0, 1);
      libc_writeEventfd(q.wakeFd);
    }
    for (const q of this.#queues) {
      // The thread may still be starting (loading its module): then it sees stop at its first look.
      Atomics.wait(q.control, 1, 0, STOP_WAIT_MS);
      void q.worker.terminate();
      libc().close(q.wakeFd);
      q.tun.close();
    }
  }

  #open(): void {
    if (this.#closed) throw new TunClosedError(this.name);
  }
}

const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

function libc_writeEventfd(fd: number): void {
  libcTun().write(fd, ONE, 8);
}
