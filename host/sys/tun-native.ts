/**
 * The koffi binding of build/native/libtun_io.so (native/tun_io.c): batched
 * TUN reads and writes, one FFI crossing per batch instead of per packet,
 * with read(2)/write(2) looped in C or a batch submitted to io_uring with one
 * io_uring_enter(2). The library is optional: tunNative() returns undefined
 * when it was not built (no C compiler) or cannot be loaded, after a
 * one-line notice, and the TUN device keeps its per-packet koffi path
 * (host/tun/linux-tun.ts: the same bytes, slower). MEMBRANE_TUN_NATIVE=0
 * turns it off on purpose (benchmarks, tests of the fallback).
 */
import { OptionalNative } from "./optional-native.js";

export const TUN_NATIVE_LIBRARY = "build/native/libtun_io.so";
const ABI_VERSION = 3;

/**
 * Packet i of a call is at base[offs[i]]; for reads caps[i] is its room and
 * lens[i] is set, for writes lens[i] is what is sent. Each returns how many
 * packets moved (slots 0..result-1) and leaves in err[0] the errno that
 * stopped the batch early (0: a read found nothing more ready, or all moved).
 */
export interface TunNative {
  readBatch(fd: number, base: Uint8Array, offs: Uint32Array, caps: Uint32Array, lens: Uint32Array, n: number, err: Int32Array): number;
  writeBatch(fd: number, base: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number, err: Int32Array): number;
  /** An io_uring of `entries` slots for the calling thread (its address), or 0 with err[0] = errno. */
  uringNew(entries: number, err: Int32Array): number;
  uringFree(ring: number): void;
  uringReadBatch(ring: number, fd: number, base: Uint8Array, offs: Uint32Array, caps: Uint32Array, lens: Uint32Array, n: number, err: Int32Array): number;
  uringWriteBatch(ring: number, fd: number, base: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number, err: Int32Array): number;
  /**
   * Descriptor batches (struct pkt_desc records at byte `descs` of `base`, whose buffers are in `base` too;
   * native/tun_io.c): reads fill records 0..result-1 in (off = start, len, link/dir/flags from `meta`), totals[0] = bytes;
   * totals[1] = the wire packets read (a super-packet its segments); `info` (or null) gets, per record, the length read
   * with the top bit set when its virtio_net_hdr carries a GSO type or a partial checksum (and NEEDS_CSUM sets the
   * record's PKT_F_CSUM_PARTIAL); `ring` 0 loops read(2) instead of the io_uring.
   */
  readDescs(ring: number, fd: number, base: Uint8Array, descs: number, n: number, start: number, hdr: number, need: number, meta: number, info: Uint32Array | null, totals: Uint32Array, err: Int32Array): number;
  /**
   * Writes the passing records of from..n-1; returns the record it stopped at (n: all went); totals = [passing records
   * in from..n-1, their bytes, packets written]; `ring` 0 loops write(2).
   */
  writeDescs(ring: number, fd: number, base: Uint8Array, descs: number, from: number, n: number, hdr: number, totals: Uint32Array, err: Int32Array): number;
  /**
   * Offload passthrough's write (native/tun_gso_write.c): the passing records of from..n-1, read with a virtio_net_hdr at
   * `start` (`info` as readDescs left it), runs of one flow merged into TSO (gso & 1) / USO (gso & 2) super-packets and
   * sent with writev(2); totals (8) = [passing, their bytes, packets written, writes, coalesced writes, packets in them,
   * unwritable, refused]. Returns the record it stopped at (n: all went).
   */
  writeGsoDescs(fd: number, base: Uint8Array, descs: number, from: number, n: number, start: number, gso: number, info: Uint32Array, totals: Uint32Array, err: Int32Array): number;
  /** writeGsoDescs into `out` instead of a TUN (tests): the writes end to end, unitLens[k] = write k's bytes. */
  gsoPlanDescs(base: Uint8Array, descs: number, from: number, n: number, start: number, gso: number, info: Uint32Array, out: Uint8Array, unitLens: Uint32Array, totals: Uint32Array, err: Int32Array): number;
  /** Syscalls the library made so far, all threads (read, write, writev, io_uring_enter). */
  syscalls(): number;
}

const library = new OptionalNative<TunNative>({
  library: TUN_NATIVE_LIBRARY,
  envVar: "MEMBRANE_TUN_NATIVE",
  abiSymbol: "tun_io_abi_version",
  abiVersion: ABI_VERSION,
  buildHint: "npm run build:native; needs a C compiler",
  fallback: "TUN I/O one packet per FFI call (slower)",
  bind: (fn) => {
    // Every array is `void *`: koffi passes the typed array's memory in place, copying nothing either way.
    const read = fn("tun_read_batch", "int", ["int", "void *", "void *", "void *", "void *", "int", "void *"]);
    const write = fn("tun_write_batch", "int", ["int", "void *", "void *", "void *", "int", "void *"]);
    const uringNew = fn("tun_uring_new", "uintptr_t", ["unsigned int", "void *"]);
    const uringFree = fn("tun_uring_free", "void", ["uintptr_t"]);
    const uringRead = fn("tun_uring_read_batch", "int", ["uintptr_t", "int", "void *", "void *", "void *", "void *", "int", "void *"]);
    const uringWrite = fn("tun_uring_write_batch", "int", ["uintptr_t", "int", "void *", "void *", "void *", "int", "void *"]);
    const readDescs = fn("tun_read_descs", "int", ["int", "void *", "uint32_t", "uint32_t", "int", "uint32_t", "uint32_t", "uint32_t", "uint32_t", "void *", "void *", "void *"]);
    const uringReadDescs = fn("tun_uring_read_descs", "int", ["uintptr_t", "int", "void *", "uint32_t", "uint32_t", "int", "uint32_t", "uint32_t", "uint32_t", "uint32_t", "void *", "void *", "void *"]);
    const writeGsoDescs = fn("tun_write_gso_descs", "int", ["int", "void *", "uint32_t", "uint32_t", "int", "int", "uint32_t", "uint32_t", "void *", "void *", "void *"]);
    const gsoPlanDescs = fn("tun_gso_plan_descs", "int", ["void *", "uint32_t", "uint32_t", "int", "int", "uint32_t", "uint32_t", "void *", "void *", "uint32_t", "void *", "void *", "void *"]);
    const writeDescs = fn("tun_write_descs", "int", ["int", "void *", "uint32_t", "uint32_t", "int", "int", "uint32_t", "void *", "void *"]);
    const uringWriteDescs = fn("tun_uring_write_descs", "int", ["uintptr_t", "int", "void *", "uint32_t", "uint32_t", "int", "int", "uint32_t", "void *", "void *"]);
    const syscalls = fn("tun_io_syscalls", "uint64_t", []);
    return {
      readBatch: (fd, base, offs, caps, lens, n, err) => read(fd, base, offs, caps, lens, n, err) as number,
      writeBatch: (fd, base, offs, lens, n, err) => write(fd, base, offs, lens, n, err) as number,
      uringNew: (entries, err) => Number(uringNew(entries, err)),
      uringFree: (ring) => uringFree(ring),
      uringReadBatch: (ring, fd, base, offs, caps, lens, n, err) => uringRead(ring, fd, base, offs, caps, lens, n, err) as number,
      uringWriteBatch: (ring, fd, base, offs, lens, n, err) => uringWrite(ring, fd, base, offs, lens, n, err) as number,
      readDescs: (ring, fd, base, descs, n, start, hdr, need, meta, info, totals, err) => (ring !== 0
        ? uringReadDescs(ring, fd, base, base.byteLength, descs, n, start, hdr, need, meta, info, totals, err)
        : readDescs(fd, base, base.byteLength, descs, n, start, hdr, need, meta, info, totals, err)) as number,
      writeDescs: (ring, fd, base, descs, from, n, hdr, totals, err) => (ring !== 0
        ? uringWriteDescs(ring, fd, base, base.byteLength, descs, from, n, hdr, totals, err)
        : writeDescs(fd, base, base.byteLength, descs, from, n, hdr, totals, err)) as number,
      writeGsoDescs: (fd, base, descs, from, n, start, gso, info, totals, err) => writeGsoDescs(fd, base, base.byteLength, descs, from, n, start, gso, info, totals, err) as number,
      gsoPlanDescs: (base, descs, from, n, start, gso, info, out, unitLens, totals, err) =>
        gsoPlanDescs(base, base.byteLength, descs, from, n, start, gso, info, out, out.byteLength, unitLens, totals, err) as number,
      syscalls: () => Number(syscalls()),
    };
  },
});

export function tunNativeLibraryPath(): string {
  return library.path();
}

/** The binding, or undefined (after a one-line notice on stderr) when the library is not there. */
export function tunNative(): TunNative | undefined {
  return library.get();
}

/** Why the native library is not used, or undefined when it is (after tunNative()). */
export function tunNativeUnavailable(): string | undefined {
  return library.unavailable;
}
