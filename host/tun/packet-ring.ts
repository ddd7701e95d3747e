/**
 * A single-producer / single-consumer ring of packet slots on a
 * SharedArrayBuffer: how a TUN queue's I/O thread (queue-io-worker.ts) and the
 * one deciding thread (ring-tun.ts) hand packets to each other without a
 * message per packet.
 *
 * Layout (all Int32, host byte order):
 *   header, one 64-byte line per writer so the two threads do not bounce one
 *   cache line between cores:
 *     line 0: head (next slot the consumer reads; written by the consumer only)
 *     line 1: tail (next slot the producer fills; written by the producer only)
 *     line 2: drops (packets lost: ring full, or too big for a slot), errors
 *             (the consumer's I/O failures, e.g. write(2) refused), slots,
 *             slot capacity, sleeping (the consumer is about to block; the
 *             producer must wake it)
 *   then `slots` slots of `stride` bytes: a 4-byte length, then the packet.
 *
 * head and tail count up forever and wrap as int32; (tail - head) | 0 is the
 * fill even across the wrap, and `& (slots - 1)` the slot index (slots is a
 * power of two). The producer writes a slot's bytes and length, then
 * publishes with Atomics.store(tail); the consumer reads tail with
 * Atomics.load before touching the slot (the store/load pair orders them).
 *
 * A full ring never blocks the producer: the packet is counted in `drops`
 * and lost, as a NIC drops on a full RX ring. Blocking the I/O thread would
 * only move the loss into the kernel's queue, uncounted.
 */
import { InvalidInputError } from "../errors.js";

const LINE = 16; // Int32s per 64-byte line
const HEAD = 0;
const TAIL = LINE;
const DROPS = 2 * LINE;
const ERRORS = 2 * LINE + 1;
const SLOTS = 2 * LINE + 2;
const CAPACITY = 2 * LINE + 3;
const SLEEPING = 2 * LINE + 4;
const HEADER_BYTES = 3 * 64;
const LENGTH_BYTES = 4;

export class PacketRing {
  readonly sab: SharedArrayBuffer;
  readonly slots: number;
  /** The largest packet (bytes) a slot holds. */
  readonly slotCapacity: number;
  readonly #i32: Int32Array;
  readonly #mask: number;
  readonly #stride: number;
  /** Per slot: a view of its packet area (full capacity), made once so the hot path allocates nothing. */
  readonly #data: Uint8Array[];

  /** A new ring; `slots` is rounded up to a power of two. */
  static create(slots: number, slotCapacity: number): PacketRing {
    if (!Number.isInteger(slots) || slots < 1 || slots > 1 << 20) throw new InvalidInputError(`packet ring slots must be an integer in 1..${1 << 20}, got ${slots}`);
    if (!Number.isInteger(slotCapacity) || slotCapacity < 1 || slotCapacity > 1 << 17) {
      throw new InvalidInputError(`packet ring slot capacity must be an integer in 1..${1 << 17} bytes, got ${slotCapacity}`);
    }
    let n = 1;
    while (n < slots) n <<= 1;
    const stride = (LENGTH_BYTES + slotCapacity + 7) & ~7;
    const sab = new SharedArrayBuffer(HEADER_BYTES + n * stride);
    const i32 = new Int32Array(sab, 0, HEADER_BYTES / 4);
    i32[SLOTS] = n;
    i32[CAPACITY] = slotCapacity;
    return new PacketRing(sab);
  }

  /** The same ring seen from another thread (the SharedArrayBuffer passed in workerData). */
  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.#i32 = new Int32Array(sab);
    this.slots = this.#i32[SLOTS]!;
    this.slotCapacity = this.#i32[CAPACITY]!;
    if (this.slots < 1 || (this.slots & (this.slots - 1)) !== 0 || this.slotCapacity < 1) {
      throw new InvalidInputError("packet ring: the buffer does not hold a ring made by PacketRing.create");
    }
    this.#mask = this.slots - 1;
    this.#stride = (LENGTH_BYTES + this.slotCapacity + 7) & ~7;
    this.#data = Array.from({ length: this.slots }, (_, k) => new Uint8Array(sab, HEADER_BYTES + k * this.#stride + LENGTH_BYTES, this.slotCapacity));
  }

  // ---- producer side ----

  /** Slots the producer may fill now. */
  free(): number {
    return this.slots - ((this.#i32[TAIL]! - Atomics.load(this.#i32, HEAD)) | 0);
  }

  /** The packet area of the k-th free slot (k < free()), to read(2) into directly; then setLength(k) and publish(). */
  freeSlot(k: number): Uint8Array {
    return this.#data[(this.#i32[TAIL]! + k) & this.#mask]!;
  }

  setLength(k: number, length: number): void {
    const at = (HEADER_BYTES + ((this.#i32[TAIL]! + k) & this.#mask) * this.#stride) >> 2;
    this.#i32[at] = length;
  }

  /** Makes the first n filled free slots visible to the consumer, in order. */
  publish(n: number): void {
    if (n > 0) Atomics.store(this.#i32, TAIL, (this.#i32[TAIL]! + n) | 0);
  }

  /**
   * Copies `src[start .. start + length)` into the next slot and publishes it.
   * False (and counted in drops) when the ring is full or the packet larger than a slot.
   */
  push(src: Uint8Array, start: number, length: number): boolean {
    if (length > this.slotCapacity || this.free() === 0) {
      this.countDrops(1);
      return false;
    }
    this.freeSlot(0).set(src.subarray(start, start + length));
    this.setLength(0, length);
    this.publish(1);
    return true;
  }

  /** Packets lost on the way into the ring (the producer counts them). */
  countDrops(n: number): void {
    Atomics.add(this.#i32, DROPS, n);
  }

  // ---- consumer side ----

  /** Packets ready to read. */
  available(): number {
    return (Atomics.load(this.#i32, TAIL) - this.#i32[HEAD]!) | 0;
  }

  /** The packet area of the k-th ready slot (k < available()), full capacity; its packet is the first length(k) bytes. */
  readySlot(k: number): Uint8Array {
    return this.#data[(this.#i32[HEAD]! + k) & this.#mask]!;
  }

  length(k: number): number {
    return this.#i32[(HEADER_BYTES + ((this.#i32[HEAD]! + k) & this.#mask) * this.#stride) >> 2]!;
  }

  /** Gives the first n ready slots back to the producer. */
  release(n: number): void {
    if (n > 0) Atomics.store(this.#i32, HEAD, (this.#i32[HEAD]! + n) | 0);
  }

  /** Packets the consumer could not pass on (write(2) refused them). */
  countErrors(n: number): void {
    Atomics.add(this.#i32, ERRORS, n);
  }

  // ---- either side ----

  get drops(): number {
    return Atomics.load(this.#i32, DROPS);
  }

  get errors(): number {
    return Atomics.load(this.#i32, ERRORS);
  }

  /** The consumer says it is about to block (1) or is awake (0); the producer checks it after publishing. */
  setSleeping(on: boolean): void {
    Atomics.store(this.#i32, SLEEPING, on ? 1 : 0);
  }

  get sleeping(): boolean {
    return Atomics.load(this.#i32, SLEEPING) === 1;
  }
}
