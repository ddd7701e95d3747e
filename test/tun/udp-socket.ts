// A plain UDP socket through libc, for the TUN tests. Node's dgram sockets
// are created asynchronously (at bind, after a lookup tick), so they cannot be
// placed in a namespace by a synchronous setns; a socket made with socket(2)
// inside withNetns() can. Non-blocking, with a bounded poll for receives.
import { endianness } from "node:os";
import { libc } from "../../host/sys/libc.js";
import { libcTun } from "../../host/tun/libc-tun.js";
import { libcLibrary } from "../../host/sys/libc.js";
import { AF_INET, POLLFD_SIZE, POLLIN, SOCK_CLOEXEC, SOCK_DGRAM } from "../../host/tun/tun-abi.js";
import type { NativeFunction } from "../../host/sys/ffi.js";

/** int and short fields of the C structs are in host byte order. */
const LE = endianness() === "LE";
const SOCK_NONBLOCK = 0o4000;
const SOL_UDP = 17;
/** linux/udp.h: send one buffer, let the stack (or a USO device) cut it into datagrams of this size. */
const UDP_SEGMENT = 103;
const MSG_DONTWAIT = 0x40;

interface Fns {
  bind: NativeFunction;
  sendto: NativeFunction;
  recvfrom: NativeFunction;
  setsockopt: NativeFunction;
}
let fns: Fns | undefined;

function bound(): Fns {
  if (fns) return fns;
  const lib = libcLibrary();
  fns = {
    bind: lib.func("bind", "int", ["int", "void *", "uint32_t"]),
    sendto: lib.func("sendto", "long", ["int", "void *", "size_t", "int", "void *", "uint32_t"]),
    recvfrom: lib.func("recvfrom", "long", ["int", "void *", "size_t", "int", "void *", "void *"]),
    setsockopt: lib.func("setsockopt", "int", ["int", "int", "int", "void *", "uint32_t"]),
  };
  return fns;
}

/** struct sockaddr_in: family (host order), port and address (network order), 8 bytes of zero. */
function sockaddrIn(addr: string, port: number): Uint8Array {
  const sa = new Uint8Array(16);
  const v = new DataView(sa.buffer);
  v.setUint16(0, AF_INET, LE);
  v.setUint16(2, port, false);
  sa.set(addr.split(".").map(Number), 4);
  return sa;
}

export interface Datagram {
  data: Uint8Array;
  from: string;
  port: number;
}

export class UdpSocket {
  private constructor(readonly fd: number) {}

  /** A socket in the calling thread's namespace, bound to addr:port. */
  static bind(addr: string, port: number): UdpSocket {
    const c = libcTun();
    const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw new Error(`socket: errno ${c.errno()}`);
    const sa = sockaddrIn(addr, port);
    if (bound().bind(fd, sa, sa.length) !== 0) {
      const errno = c.errno();
      libc().close(fd);
      throw new Error(`bind ${addr}:${port}: errno ${errno}`);
    }
    return new UdpSocket(fd);
  }

  sendTo(addr: string, port: number, data: Uint8Array): void {
    const sa = sockaddrIn(addr, port);
    const n = bound().sendto(this.fd, data, data.length, 0, sa, sa.length) as number;
    if (n !== data.length) throw new Error(`sendto ${addr}:${port}: returned ${n}, errno ${libcTun().errno()}`);
  }

  /** UDP_SEGMENT: later sends of more than `size` bytes go out as one GSO super-packet. */
  setGsoSize(size: number): void {
    const v = new Uint8Array(4);
    new DataView(v.buffer).setInt32(0, size, LE);
    if (bound().setsockopt(this.fd, SOL_UDP, UDP_SEGMENT, v, 4) !== 0) throw new Error(`setsockopt UDP_SEGMENT: errno ${libcTun().errno()}`);
  }

  /** The next datagram, waiting at most timeoutMs; undefined if none came. */
  recv(timeoutMs: number): Datagram | undefined {
    const c = libcTun();
    const pfd = new Uint8Array(POLLFD_SIZE);
    const pv = new DataView(pfd.buffer);
    pv.setInt32(0, this.fd, LE);
    pv.setInt16(4, POLLIN, LE);
    if (c.poll(pfd, 1, timeoutMs) <= 0) return undefined;
    const buf = new Uint8Array(65536);
    const sa = new Uint8Array(16);
    const salen = new Uint8Array(4);
    new DataView(salen.buffer).setUint32(0, 16, LE);
    const n = bound().recvfrom(this.fd, buf, buf.length, MSG_DONTWAIT, sa, salen) as number;
    if (n < 0) throw new Error(`recvfrom: errno ${c.errno()}`);
    return { data: buf.slice(0, n), from: [...sa.subarray(4, 8)].join("."), port: new DataView(sa.buffer).getUint16(2, false) };
  }

  close(): void {
    libc().close(this.fd);
  }
}
