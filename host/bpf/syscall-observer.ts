/**
 * Who wants to know about bpf(2) calls: one observer per process (the
 * metrics registry when `--metrics` is on), told each call's operation,
 * duration and outcome, and each map operation by map name. With no
 * observer a call costs one extra branch; nothing is buffered.
 */

export interface BpfSyscallObserver {
  /** One bpf(2) call (Cilium's operation names: lookup, update, delete, getNextKey, ...). */
  syscall(operation: string, seconds: number, ok: boolean): void;
  /** One operation on a named map. */
  mapOp(mapName: string, operation: string, ok: boolean): void;
}

let observer: BpfSyscallObserver | undefined;

/** Installs `o` (replacing any other); the returned function removes it again. */
export function observeBpfSyscalls(o: BpfSyscallObserver): () => void {
  observer = o;
  return () => {
    if (observer === o) observer = undefined;
  };
}

/** Tells the observer about a map operation; `ret` is the call's return (negative errno: failed). */
export function noteMapOp(mapName: string, operation: string, ret: number): void {
  observer?.mapOp(mapName, operation, ret >= 0);
}

/**
 * Wraps the named int-returning functions of `lib` (libbpf bindings) so each
 * call is timed for the observer under its operation name. A negative return
 * is a failure (libbpf returns -errno).
 */
export function instrumentSyscalls<T extends object>(lib: T, operations: Partial<Record<keyof T, string>>): T {
  const out = { ...lib } as Record<string, unknown>;
  for (const [name, operation] of Object.entries(operations) as [string, string][]) {
    const fn = out[name] as (...args: unknown[]) => number;
    out[name] = (...args: unknown[]): number => {
      const o = observer;
      if (!o) return fn(...args);
      const t0 = process.hrtime.bigint();
      const ret = fn(...args);
      o.syscall(operation, Number(process.hrtime.bigint() - t0) / 1e9, !(typeof ret === "number" && ret < 0));
      return ret;
    };
  }
  return out as T;
}
