/**
 * The libc calls the TUN device needs beyond host/bpf/libc.ts (which gives
 * open, close and errno): read/write for packets, eventfd for waking a queue's I/O thread, ioctl for TUNSETIFF and
 * friends, socket for the interface ioctls, poll for wait().
 *
 * Packet buffers are declared `void *`: koffi then passes a pointer straight
 * into the Uint8Array's memory (byteOffset included) and copies nothing in
 * either direction, so read(2) fills the caller's buffer in place and write(2)
 * sends from it. (Only typed pointers such as `uint16_t *` to a mismatched
 * array, or `_Out_`/`_Inout_` parameters, make koffi copy.)
 * The calls are bound on host/bpf/libc.ts's one handle on libc.so.6.
 */
import { koffi, type NativeFunction } from "../sys/ffi.js";
import { libcLibrary } from "../sys/libc.js";

export interface LibcTun {
  /** read(2); -1 with errno on failure. */
  read(fd: number, buf: Uint8Array, count: number): number;
  /** write(2); -1 with errno on failure. */
  write(fd: number, buf: Uint8Array, count: number): number;
  /** ioctl(2) whose argument is a pointer to `arg` (struct ifreq, int). */
  ioctlPtr(fd: number, request: number, arg: Uint8Array): number;
  /** ioctl(2) whose argument is an integer passed by value (TUNSETOFFLOAD). */
  ioctlInt(fd: number, request: number, arg: number): number;
  socket(domain: number, type: number, protocol: number): number;
  /** poll(2) over `fds`, an array of struct pollfd (8 bytes each). */
  poll(fds: Uint8Array, nfds: number, timeoutMs: number): number;
  /** eventfd(2): how a decider wakes a queue's I/O thread blocked in poll(2) (ring-tun.ts). */
  eventfd(initval: number, flags: number): number;
  /** errno of the last call made through koffi on this thread. */
  errno(): number;
}

let cached: LibcTun | undefined;

/** libc.so.6 as a koffi library, for binding more functions (test helpers use it too). */
export function libcTun(): LibcTun {
  if (cached) return cached;
  const k = koffi();
  const lib = libcLibrary();
  const fn = (name: string, ret: string, args: string[]): NativeFunction => lib.func(name, ret, args);
  const read = fn("read", "long", ["int", "void *", "size_t"]);
  const write = fn("write", "long", ["int", "void *", "size_t"]);
  // ioctl is variadic in glibc; declaring it so makes koffi follow the
  // variadic calling convention. Each call names the type of its third argument.
  const ioctl: NativeFunction = lib.func("int ioctl(int fd, unsigned long request, ...)");
  const socket = fn("socket", "int", ["int", "int", "int"]);
  const poll = fn("poll", "int", ["void *", "unsigned long", "int"]);
  const eventfd = fn("eventfd", "int", ["unsigned int", "int"]);
  cached = {
    read: (fd, buf, count) => read(fd, buf, count) as number,
    write: (fd, buf, count) => write(fd, buf, count) as number,
    ioctlPtr: (fd, request, arg) => ioctl(fd, request, "void *", arg) as number,
    ioctlInt: (fd, request, arg) => ioctl(fd, request, "unsigned long", arg) as number,
    socket: (d, t, p) => socket(d, t, p) as number,
    poll: (fds, nfds, timeout) => poll(fds, nfds, timeout) as number,
    eventfd: (initval, flags) => eventfd(initval, flags) as number,
    errno: () => k.errno(),
  };
  return cached;
}
