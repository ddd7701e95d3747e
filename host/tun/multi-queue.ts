/**
 * Several queues of one TUN device (IFF_MULTI_QUEUE, openTunQueues) as one
 * TunDevice, for a forwarder that decides the packets of every queue with one
 * datapath, so both directions of a flow meet the same conntrack entry
 * whichever queue each packet arrives on.
 *
 * A read takes what is ready on each queue in turn (the queue read first
 * rotates, so a busy queue cannot starve the others) into the one batch.
 * A packet that passes is written back on the queue it was read from: the
 * kernel steers a flow to the queue a packet of it was last written on, so
 * writing everything on one queue would pull every flow onto that queue.
 * A buffer the caller passes to write that was not one of the read's buffers
 * (a datapath that moved the packet) goes out on queue 0.
 */
import type { TunIoTuning } from "./io-mode-tuner.js";
import { InvalidInputError } from "../errors.js";
import { checkReadBatch, checkWriteBatch, type DescriptorIo, type TunDevice } from "./device.js";
import { MultiQueueDescriptorIo } from "./multi-queue-descriptors.js";
import { TunIoError } from "./errors.js";

/** A queue that can be waited on together with its siblings (LinuxTun: poll(2) over all fds). */
export interface WaitableQueues {
  waitAny(queues: readonly TunDevice[], timeoutMs: number): boolean;
}

export class MultiQueueTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly vnetHdr: boolean;
  readonly readCapacity: number;
  /** The queues' TUN io mode (tun-io-choice.ts), when they are Linux TUNs. */
  readonly io: string | undefined;
  /** The queues' offloads (every queue of a device has the same), when they report them: what the forwarder may write as super-packets. */
  readonly offloads: { readonly tso: boolean; readonly uso: boolean } | undefined;
  /** Queue read first by the next read(). */
  #first = 0;
  /** The read buffers from index k on, per k, for the caller's current buffer array (no slice per call). */
  #tails = new Map<number, Uint8Array[]>();
  #tailsOf?: Uint8Array[];
  #sizes: number[] = [];
  /** Which queue each read buffer's packet came from; by buffer, so write() finds it. */
  readonly #queueOf = new Map<Uint8Array, number>();

  constructor(readonly queues: readonly TunDevice[], private readonly waiter?: WaitableQueues) {
    if (queues.length === 0) throw new InvalidInputError("a multi-queue TUN needs at least one queue");
    const q = queues[0]!;
    this.name = q.name;
    this.mtu = q.mtu;
    this.vnetHdr = q.vnetHdr;
    this.readCapacity = q.readCapacity;
    this.io = "io" in q && typeof q.io === "string" ? q.io : undefined;
    this.offloads = "offloads" in q ? (q as { offloads?: { tso: boolean; uso: boolean } }).offloads : undefined;
  }

  read(bufs: Uint8Array[], sizes: number[], offset: number): number {
    checkReadBatch(this, bufs, sizes, offset);
    if (this.#tailsOf !== bufs) {
      this.#tailsOf = bufs;
      this.#tails.clear();
      this.#queueOf.clear();
    }
    const n = this.queues.length;
    let got = 0;
    for (let k = 0; k < n && got < bufs.length; k++) {
      const q = (this.#first + k) % n;
      let tail = this.#tails.get(got);
      if (tail === undefined) {
        tail = bufs.slice(got);
        this.#tails.set(got, tail);
      }
      if (this.#sizes.length < tail.length) this.#sizes = new Array<number>(tail.length).fill(0);
      let r: number;
      try {
        r = this.queues[q]!.read(tail, this.#sizes, offset);
      } catch (err) {
        // Packets read before the failure are in place: say how many, as a single device would.
        if (err instanceof TunIoError) throw new TunIoError(`${err.message} [queue ${q}]`, err.errno, got + err.done, { cause: err });
        throw err;
      }
      for (let i = 0; i < r; i++) {
        sizes[got + i] = this.#sizes[i]!;
        this.#queueOf.set(bufs[got + i]!, q);
      }
      got += r;
    }
    this.#first = (this.#first + 1) % n;
    return got;
  }

  write(bufs: Uint8Array[], sizes: number[], offset: number): number {
    checkWriteBatch(this, bufs, sizes, offset);
    // Consecutive packets of one queue go in one call (one FFI crossing with native TUN I/O):
    // a batch is read queue by queue, so its packets come in a few runs.
    let i = 0;
    while (i < bufs.length) {
      const q = this.#queueOf.get(bufs[i]!) ?? 0;
      let end = i + 1;
      while (end < bufs.length && (this.#queueOf.get(bufs[end]!) ?? 0) === q) end++;
      const whole = i === 0 && end === bufs.length;
      const run = whole ? bufs : bufs.slice(i, end);
      let done: number;
      try {
        done = this.queues[q]!.write(run, whole ? sizes : sizes.slice(i, end), offset);
      } catch (err) {
        if (err instanceof TunIoError) throw new TunIoError(`${err.message} [queue ${q}]`, err.errno, i + err.done, { cause: err });
        throw err;
      }
      // The queue pushed back (EAGAIN): report what went out, as a single device would.
      if (done < run.length) return i + done;
      i = end;
    }
    return bufs.length;
  }

  /** Descriptor-batch I/O over every queue (multi-queue-descriptors.ts), when each queue has it. */
  descriptorIo(): DescriptorIo | undefined {
    if (this.#descriptorIo === undefined) {
      const each = this.queues.map((q) => q.descriptorIo?.());
      this.#descriptorIo = each.every((d) => d !== undefined) ? new MultiQueueDescriptorIo(each as DescriptorIo[]) : null;
    }
    return this.#descriptorIo ?? undefined;
  }

  #descriptorIo: DescriptorIo | null | undefined;

  wait(timeoutMs: number): boolean {
    if (this.waiter) return this.waiter.waitAny(this.queues, timeoutMs);
    // Devices that cannot be polled together (the in-memory one): any ready now, else the first for the timeout.
    for (const q of this.queues) if (q.wait(0)) return true;
    return this.queues[0]!.wait(timeoutMs) || this.queues.some((q) => q.wait(0));
  }

  /** The queues are read and written on this one thread, so they share its tuner: each one once. */
  ioTuning(): TunIoTuning[] {
    return [...new Set(this.queues.flatMap((q) => q.ioTuning?.() ?? []))];
  }

  close(): void {
    for (const q of this.queues) q.close();
  }
}
