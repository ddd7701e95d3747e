/**
 * errno numbers to names. libbpf and the bpf(2) syscall report failures as
 * negative errno values; people and programs both want the symbolic name
 * ("EPERM"), which is stable, rather than only the number or the libc text.
 */
import { constants } from "node:os";

/** libbpf's own error codes (libbpf.h, enum libbpf_errno), above the errno range. */
const LIBBPF_ERRNOS: Record<number, string> = {
  4000: "LIBBPF_ERRNO__LIBELF",
  4001: "LIBBPF_ERRNO__FORMAT",
  4002: "LIBBPF_ERRNO__KVERSION",
  4003: "LIBBPF_ERRNO__ENDIAN",
  4004: "LIBBPF_ERRNO__INTERNAL",
  4005: "LIBBPF_ERRNO__RELOC",
  4006: "LIBBPF_ERRNO__LOAD",
  4007: "LIBBPF_ERRNO__VERIFY",
  4008: "LIBBPF_ERRNO__PROG2BIG",
  4009: "LIBBPF_ERRNO__KVER",
  4010: "LIBBPF_ERRNO__PROGTYPE",
  4011: "LIBBPF_ERRNO__WRNGPID",
  4012: "LIBBPF_ERRNO__INVSEQ",
  4013: "LIBBPF_ERRNO__NLPARSE",
};

/**
 * Kernel-internal codes that leak out of bpf(2) (include/linux/errno.h); libc
 * has no name for them. ENOTSUPP (524) is common: "helper or map type not
 * supported here".
 */
const KERNEL_ERRNOS: Record<number, string> = {
  512: "ERESTARTSYS",
  524: "ENOTSUPP",
};

/** Where two names share a number, the one the kernel sources use. */
const PREFERRED = new Set(["EAGAIN", "EOPNOTSUPP", "EDEADLK"]);

let byNumber: Map<number, string> | undefined;

function table(): Map<number, string> {
  if (byNumber) return byNumber;
  byNumber = new Map();
  for (const [name, value] of Object.entries(constants.errno)) {
    const existing = byNumber.get(value);
    if (existing === undefined || PREFERRED.has(name)) byNumber.set(value, name);
  }
  for (const [value, name] of Object.entries({ ...KERNEL_ERRNOS, ...LIBBPF_ERRNOS })) {
    byNumber.set(Number(value), name);
  }
  return byNumber;
}

/** "ENOENT" for 2 or -2; "errno 9999" when unknown. */
export function errnoName(err: number): string {
  const n = Math.abs(err);
  return table().get(n) ?? `errno ${n}`;
}

/** The positive errno number for a name, or undefined. */
export function errnoNumber(name: string): number | undefined {
  for (const [n, v] of table()) if (v === name) return n;
  return undefined;
}
