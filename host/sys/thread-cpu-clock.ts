/**
 * The calling thread's own CPU time (clock_gettime(CLOCK_THREAD_CPUTIME_ID)),
 * in nanoseconds. Wall-clock stage timings mean little on a shared machine:
 * a thread that is preempted mid-stage charges the other tenants' time to
 * that stage. CPU time counts only what this thread ran (kernel time in its
 * syscalls included). Costs one syscall through the FFI per reading (a few
 * hundred ns), so callers read it per batch, not per packet.
 */
import { libcLibrary } from "./libc.js";

/** linux/time.h */
const CLOCK_THREAD_CPUTIME_ID = 3;

/** A reader of this thread's CPU time, ns; each call site keeps its own (the timespec is reused). */
export function threadCpuClock(): () => number {
  const clockGettime = libcLibrary().func("clock_gettime", "int", ["int", "void *"]);
  // struct timespec on 64-bit Linux: two int64 (seconds, nanoseconds).
  const ts = new BigInt64Array(2);
  const bytes = new Uint8Array(ts.buffer);
  return () => {
    clockGettime(CLOCK_THREAD_CPUTIME_ID, bytes);
    return Number(ts[0]) * 1e9 + Number(ts[1]);
  };
}
