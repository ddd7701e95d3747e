/**
 * The libc socket calls membrane's own sockets use (netlink-socket.ts,
 * udp-socket.ts), bound once through koffi on the shared libc handle.
 */
import { libcLibrary } from "./libc.js";
import type { NativeFunction } from "./ffi.js";

export interface SocketCalls {
  socket: NativeFunction;
  bind: NativeFunction;
  setsockopt: NativeFunction;
  sendto: NativeFunction;
  recv: NativeFunction;
  recvfrom: NativeFunction;
  poll: NativeFunction;
  close: NativeFunction;
}

let calls: SocketCalls | undefined;

export function socketCalls(): SocketCalls {
  if (calls) return calls;
  const lib = libcLibrary();
  calls = {
    socket: lib.func("socket", "int", ["int", "int", "int"]),
    bind: lib.func("bind", "int", ["int", "void *", "uint32_t"]),
    setsockopt: lib.func("setsockopt", "int", ["int", "int", "int", "void *", "uint32_t"]),
    sendto: lib.func("sendto", "intptr_t", ["int", "void *", "size_t", "int", "void *", "uint32_t"]),
    recv: lib.func("recv", "intptr_t", ["int", "void *", "size_t", "int"]),
    recvfrom: lib.func("recvfrom", "intptr_t", ["int", "void *", "size_t", "int", "void *", "void *"]),
    poll: lib.func("poll", "int", ["void *", "unsigned long", "int"]),
    close: lib.func("close", "int", ["int"]),
  };
  return calls;
}
