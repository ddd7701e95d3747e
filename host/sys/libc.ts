/**
 * The few libc calls the BPF layer makes directly (through koffi), for things
 * libbpf does not do: mounting bpffs, entering a scratch network namespace for
 * feature probes, closing fds we own, formatting libbpf's printf-style log
 * lines, and resolving interface names.
 */
import { NotSupportedError } from "../errors.js";
import type { LibraryHandle } from "koffi";
import { koffi, type NativeFunction } from "./ffi.js";

export interface Libc {
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): number;
  umount2(target: string, flags: number): number;
  unshare(flags: number): number;
  setns(fd: number, nstype: number): number;
  open(path: string, flags: number): number;
  close(fd: number): number;
  /** vsnprintf with a va_list received in a callback (an opaque pointer on x86-64 and arm64). */
  vsnprintf(buf: Buffer, size: number, fmt: bigint, ap: bigint): number;
  if_nametoindex(name: string): number;
  /** errno of the last call made through koffi on this thread. */
  errno(): number;
}

export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
export const MNT_DETACH = 2;

let cached: Libc | undefined;
let library: LibraryHandle | undefined;

/** The one koffi handle on libc.so.6; the TUN layer binds its calls on it too. */
export function libcLibrary(): LibraryHandle {
  if (library) return library;
  try {
    library = koffi().load("libc.so.6");
  } catch (err) {
    throw new NotSupportedError(`libc.so.6 cannot be loaded (glibc is required): ${(err as Error).message}`, {
      cause: err,
    });
  }
  return library;
}

export function libc(): Libc {
  if (cached) return cached;
  const k = koffi();
  const lib = libcLibrary();
  const fn = (name: string, ret: string, args: string[]): NativeFunction => lib.func(name, ret, args);
  const mount = fn("mount", "int", ["const char *", "const char *", "const char *", "unsigned long", "const char *"]);
  const umount2 = fn("umount2", "int", ["const char *", "int"]);
  const unshare = fn("unshare", "int", ["int"]);
  const setns = fn("setns", "int", ["int", "int"]);
  const open = fn("open", "int", ["const char *", "int"]);
  const close = fn("close", "int", ["int"]);
  const vsnprintf = fn("vsnprintf", "int", ["void *", "size_t", "void *", "void *"]);
  const ifNameToIndex = fn("if_nametoindex", "unsigned int", ["const char *"]);
  cached = {
    mount: (s, t, f, flags, d) => mount(s, t, f, flags, d) as number,
    umount2: (t, f) => umount2(t, f) as number,
    unshare: (f) => unshare(f) as number,
    setns: (fd, t) => setns(fd, t) as number,
    open: (p, f) => open(p, f) as number,
    close: (fd) => close(fd) as number,
    vsnprintf: (b, n, f, ap) => vsnprintf(b, n, f, ap) as number,
    if_nametoindex: (n) => ifNameToIndex(n) as number,
    errno: () => k.errno(),
  };
  return cached;
}
