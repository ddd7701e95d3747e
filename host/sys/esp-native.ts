/**
 * The koffi binding of build/native/libesp_gcm.so (native/esp_gcm.c): batch
 * ESP seal/open over libcrypto with one EVP context per SA, and
 * sendmmsg/recvmmsg. The library is optional: espNative() returns undefined
 * when it was not built (no compiler or no libssl-dev) or cannot be loaded,
 * after a one-line notice, and the ESP path seals with node:crypto instead
 * (host/encrypt/esp.ts: the same bytes, slower). MEMBRANE_ESP_NATIVE=0 turns
 * it off on purpose (benchmarks, tests of the fallback).
 */
import { OptionalNative } from "./optional-native.js";

export const NATIVE_LIBRARY = "build/native/libesp_gcm.so";
const ABI_VERSION = 1;

/** Negative results of openBatch, by the drop they are (the names of host/encrypt/esp.ts EspDrop). */
export const NATIVE_DROPS: Record<number, "truncated" | "bad-icv" | "bad-padding" | "bad-next-header"> = {
  [-1]: "truncated",
  [-2]: "bad-icv",
  [-3]: "bad-padding",
  [-4]: "bad-next-header",
  [-5]: "bad-icv",
};

/** Where a slot's inner packet starts: UDP (8) + SPI (4) + sequence (4) + IV (8). */
export const SLOT_BODY = 24;

export interface EspNative {
  /** A native SA (its address; 0 on failure) for a 16-byte key, 4-byte salt and ICV of 8, 12 or 16 bytes. */
  saNew(key: Uint8Array, salt: Uint8Array, icvBytes: number): number;
  saFree(sa: number): void;
  /** Seals n slots in place (see esp_gcm.c); lengths in: inner, out: datagram (0: not sealed). */
  sealBatch(sas: BigUint64Array, spi: Uint32Array, seq: Uint32Array, buf: Uint8Array, stride: number, lengths: Uint32Array, n: number, sport: number, dport: number): number;
  /** Opens n slots in place; results: inner length at SLOT_BODY, or a negative drop code (NATIVE_DROPS). */
  openBatch(sas: BigUint64Array, buf: Uint8Array, stride: number, lengths: Uint32Array, results: Int32Array, n: number): number;
  /** Datagrams sent (the rest pushed back), or -errno. */
  sendmmsg(fd: number, buf: Uint8Array, stride: number, skip: number, lengths: Uint32Array, addrs: Uint8Array, n: number): number;
  /** Datagrams received (0: none waiting), or -errno. */
  recvmmsg(fd: number, buf: Uint8Array, stride: number, skip: number, lengths: Uint32Array, from: Uint32Array, n: number): number;
}

const library = new OptionalNative<EspNative>({
  library: NATIVE_LIBRARY,
  envVar: "MEMBRANE_ESP_NATIVE",
  abiSymbol: "esp_abi_version",
  abiVersion: ABI_VERSION,
  buildHint: "npm run build:native; Debian: apt-get install libssl-dev",
  fallback: "ESP crypto on node:crypto (slower)",
  bind: (fn) => {
    const saNew = fn("esp_sa_new", "uintptr_t", ["void *", "int", "void *", "int"]);
    const saFree = fn("esp_sa_free", "void", ["uintptr_t"]);
    const seal = fn("esp_seal_batch", "int", ["void *", "void *", "void *", "void *", "uint32_t", "void *", "int", "uint32_t", "uint32_t"]);
    const open = fn("esp_open_batch", "int", ["void *", "void *", "uint32_t", "void *", "void *", "int"]);
    const send = fn("esp_sendmmsg", "int", ["int", "void *", "uint32_t", "uint32_t", "void *", "void *", "int"]);
    const recv = fn("esp_recvmmsg", "int", ["int", "void *", "uint32_t", "uint32_t", "void *", "void *", "int"]);
    return {
      saNew: (key, salt, icv) => Number(saNew(key, key.length, salt, icv)),
      saFree: (sa) => saFree(sa),
      sealBatch: (sas, spi, seq, buf, stride, lengths, n, sport, dport) => seal(sas, spi, seq, buf, stride, lengths, n, sport, dport) as number,
      openBatch: (sas, buf, stride, lengths, results, n) => open(sas, buf, stride, lengths, results, n) as number,
      sendmmsg: (fd, buf, stride, skip, lengths, addrs, n) => send(fd, buf, stride, skip, lengths, addrs, n) as number,
      recvmmsg: (fd, buf, stride, skip, lengths, from, n) => recv(fd, buf, stride, skip, lengths, from, n) as number,
    };
  },
});

export function nativeLibraryPath(): string {
  return library.path();
}

/** The binding, or undefined (after a one-line notice on stderr) when the library is not there. */
export function espNative(): EspNative | undefined {
  return library.get();
}

/** Why the native library is not used, or undefined when it is (after espNative()). */
export function espNativeUnavailable(): string | undefined {
  return library.unavailable;
}
