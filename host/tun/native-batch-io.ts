/**
 * A TUN fd's batch of reads or writes in ONE FFI call (native/tun_io.c
 * through host/sys/tun-native.ts) instead of one koffi call per packet: the
 * cost that dominated the forwarder's per-packet CPU beyond the syscalls
 * (docs/forwarder.md, "Cost per packet").
 *
 * Modes:
 * - "batch": read(2)/write(2) per packet, looped in C;
 * - "uring": the batch submitted to an io_uring with one io_uring_enter(2)
 *   per round (reads) or per batch (writes): one syscall per batch;
 * - "adaptive": whichever of the two costs this thread less CPU per packet,
 *   measured under the traffic by the thread's IoModeTuner (io-mode-tuner.ts).
 *
 * The C side takes one base pointer and a byte offset per packet, so koffi
 * marshals one pointer per call, not one per packet. That needs the
 * packets' buffers to share one ArrayBuffer, which is the forwarder's case
 * (every batch buffer is a view of the Wasm memory) and the packet rings'
 * (one SharedArrayBuffer). Buffers on different ArrayBuffers are moved in
 * runs, one call per run of buffers sharing one. A slot's offset is worked
 * out when the buffer in that slot changes, so a forwarder that passes the
 * same buffers batch after batch pays one comparison per packet.
 *
 * Memory safety: the base pointer is taken by koffi at each call from a live
 * view of the buffer, never cached. A detached buffer (a Wasm memory that
 * grew) has length 0 and is refused by checkReadBatch/checkWriteBatch before
 * it gets here; its replacement is a new object, so its slot is worked out
 * again.
 */
import type { TunNative } from "../sys/tun-native.js";
import type { DescriptorBatch } from "./device.js";
import { threadIoTuner, type IoModeTuner, type NativeIoMode, type TunIoTuning } from "./io-mode-tuner.js";

export type NativeTunIoMode = NativeIoMode | "adaptive";

/** io_uring slots per ring: the forwarder's batch (128) and an I/O thread's (64) fit in one round. */
const URING_ENTRIES = 256;

export class NativeTunIo {
  /** The errno that stopped the last call early (0: none; EAGAIN on a write the device pushed back). */
  errno = 0;
  readonly #lib: TunNative;
  #ring = 0;
  readonly #read = new Slots();
  readonly #write = new Slots();
  readonly #err = new Int32Array(1);
  #wholeOf: ArrayBufferLike | undefined;
  #whole: Uint8Array<ArrayBufferLike> = new Uint8Array(0);

  readonly #fixed: NativeIoMode | undefined;
  /** "adaptive": the tuner of the thread that does the I/O, taken at its first call (a device may be opened on another thread). */
  #tuner: IoModeTuner | undefined;

  constructor(lib: TunNative, mode: NativeTunIoMode) {
    this.#lib = lib;
    if (mode !== "adaptive") this.#fixed = mode;
  }

  /** The mode the next call uses. */
  get mode(): NativeIoMode {
    return this.#fixed ?? (this.#tuner ??= threadIoTuner()).mode;
  }

  /** What the adaptive mode has measured (undefined for a fixed mode, or before the first call). */
  tuning(): TunIoTuning | undefined {
    return this.#tuner?.tuning;
  }

  /**
   * Reads up to `count` packets from `fd` into bufs[i] from byte `start` to
   * its end; sets lens[i] to the bytes read. Returns how many were read.
   */
  read(fd: number, bufs: readonly Uint8Array[], count: number, start: number, lens: number[]): number {
    const s = this.#read;
    s.prepare(bufs, count, start);
    this.errno = 0;
    let got = 0;
    while (got < count) {
      const end = s.runEnd(got, count);
      const k = end - got;
      const offs = got === 0 ? s.offs : s.offs.subarray(got);
      const caps = got === 0 ? s.caps : s.caps.subarray(got);
      const out = got === 0 ? s.lens : s.lens.subarray(got);
      const base = this.#base(s.abs[got]!);
      const r = this.mode === "uring"
        ? this.#lib.uringReadBatch(this.#uring(), fd, base, offs, caps, out, k, this.#err)
        : this.#lib.readBatch(fd, base, offs, caps, out, k, this.#err);
      for (let j = 0; j < r; j++) lens[got + j] = out[j]!;
      got += r;
      if (this.#err[0] !== 0) {
        this.errno = this.#err[0]!;
        break;
      }
      if (r < k) break;
    }
    this.#tuner?.observe(got);
    return got;
  }

  /** Writes bufs[i][start .. start + lens[i]) for i < count. Returns how many were written. */
  write(fd: number, bufs: readonly Uint8Array[], count: number, start: number, lens: readonly number[]): number {
    const s = this.#write;
    s.prepare(bufs, count, start);
    for (let i = 0; i < count; i++) s.lens[i] = lens[i]!;
    this.errno = 0;
    let done = 0;
    while (done < count) {
      const end = s.runEnd(done, count);
      const k = end - done;
      const offs = done === 0 ? s.offs : s.offs.subarray(done);
      const out = done === 0 ? s.lens : s.lens.subarray(done);
      const base = this.#base(s.abs[done]!);
      const r = this.mode === "uring"
        ? this.#lib.uringWriteBatch(this.#uring(), fd, base, offs, out, k, this.#err)
        : this.#lib.writeBatch(fd, base, offs, out, k, this.#err);
      done += r;
      if (this.#err[0] !== 0) {
        this.errno = this.#err[0]!;
        break;
      }
      if (r < k) break;
    }
    return done;
  }

  /**
   * Reads up to `batch.count` packets into a descriptor batch (device.ts
   * DescriptorBatch), each `hdr` bytes before batch.headroom, filling in
   * their records; `need`: the least room a buffer must have from there.
   * totals[0] = bytes read. Returns how many were read; errno as read().
   */
  readDescs(fd: number, batch: DescriptorBatch, hdr: number, need: number, totals: Uint32Array): number {
    const ring = this.mode === "uring" ? this.#uring() : 0;
    const n = this.#lib.readDescs(ring, fd, batch.memory, batch.descs, batch.count, batch.headroom, hdr, need, batch.meta, batch.readInfo ?? null, totals, this.#err);
    this.errno = this.#err[0]!;
    this.#tuner?.observe(n);
    return n;
  }

  /**
   * Writes the passing packets of records from..batch.count-1; returns the
   * record it stopped at (batch.count: all went, else errno says why).
   * totals = [passing records in the range, their bytes, packets written].
   */
  writeDescs(fd: number, batch: DescriptorBatch, from: number, hdr: number, totals: Uint32Array): number {
    const ring = this.mode === "uring" ? this.#uring() : 0;
    const stop = this.#lib.writeDescs(ring, fd, batch.memory, batch.descs, from, batch.count, hdr, totals, this.#err);
    this.errno = this.#err[0]!;
    return stop;
  }

  /**
   * Offload passthrough's write of records from..batch.count-1 (DescriptorIo.writeDescs on a virtio_net_hdr device):
   * writev(2) per super-packet or packet in either mode, so the io_uring is not used for it. totals: 8 entries.
   */
  writeGsoDescs(fd: number, batch: DescriptorBatch, from: number, info: Uint32Array, totals: Uint32Array): number {
    const stop = this.#lib.writeGsoDescs(fd, batch.memory, batch.descs, from, batch.count, batch.headroom, batch.gso ?? 0, info, totals, this.#err);
    this.errno = this.#err[0]!;
    return stop;
  }

  /** Frees the io_uring (if one was made); the object must not be used after. */
  close(): void {
    if (this.#ring !== 0) this.#lib.uringFree(this.#ring);
    this.#ring = 0;
  }

  /** The ring is made by the thread that first does I/O (SINGLE_ISSUER binds it to that thread). */
  #uring(): number {
    if (this.#ring !== 0) return this.#ring;
    const ring = this.#lib.uringNew(URING_ENTRIES, this.#err);
    if (ring === 0) throw new Error(`io_uring_setup failed (errno ${this.#err[0]})`);
    this.#ring = ring;
    return ring;
  }

  /** A view of the whole buffer, made again only when the buffer changes. */
  #base(ab: ArrayBufferLike): Uint8Array {
    if (ab !== this.#wholeOf || this.#whole.byteLength === 0) {
      this.#wholeOf = ab;
      this.#whole = new Uint8Array(ab);
    }
    return this.#whole;
  }
}

/** Per batch slot: the buffer last seen there, its ArrayBuffer and its byte offset/room from `start`. */
class Slots {
  offs = new Uint32Array(0);
  caps = new Uint32Array(0);
  lens = new Uint32Array(0);
  bufs: (Uint8Array | undefined)[] = [];
  abs: ArrayBufferLike[] = [];
  start = -1;

  prepare(bufs: readonly Uint8Array[], count: number, start: number): void {
    if (this.offs.length < count) this.#grow(count);
    if (start !== this.start) {
      this.bufs.length = 0;
      this.start = start;
    }
    for (let i = 0; i < count; i++) {
      const buf = bufs[i]!;
      if (this.bufs[i] === buf) continue;
      // .buffer also moves a small on-heap typed array's bytes off the heap for good, so its address stays put.
      this.abs[i] = buf.buffer;
      this.offs[i] = buf.byteOffset + start;
      this.caps[i] = buf.byteLength - start;
      this.bufs[i] = buf;
    }
  }

  /** The end of the run of slots from `from` whose buffers share one ArrayBuffer. */
  runEnd(from: number, count: number): number {
    const ab = this.abs[from];
    let end = from + 1;
    while (end < count && this.abs[end] === ab) end++;
    return end;
  }

  #grow(count: number): void {
    const n = Math.max(count, 2 * this.offs.length, 16);
    this.offs = new Uint32Array(n);
    this.caps = new Uint32Array(n);
    this.lens = new Uint32Array(n);
    this.bufs.length = 0;
  }
}
