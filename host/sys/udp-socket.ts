/**
 * A non-blocking IPv4 UDP socket through koffi, for the forwarder's ESP path.
 * Why not node:dgram: the forwarder's worker runs a synchronous loop (read a
 * batch, decide, write, poll), so it never returns to the event loop where
 * dgram delivers datagrams; and one event per datagram would cost more than
 * the datagram's crypto. Here a batch is received with recvfrom until
 * EAGAIN, sent with one sendto each, and waited for with poll(2) together
 * with the TUN fd.
 */
import { socketCalls } from "./socket-calls.js";
import { koffi } from "./ffi.js";
import { errnoName } from "./errno.js";
import { MembraneError } from "../errors.js";
import { parseIp } from "../packet/address.js";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_RCVBUF = 8;
const SO_SNDBUF = 7;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const EINTR = 4;
const POLLIN = 1;
const SOCKADDR_IN = 16;

export class UdpSocketError extends MembraneError {
  constructor(action: string, readonly errno: number) {
    super("UDP_SOCKET", `${action}: ${errnoName(errno)}`);
  }
}

/** struct sockaddr_in for `address:port` (IPv4 only). */
export function sockaddrIn(address: string, port: number): Buffer {
  const ip = parseIp(address);
  if (ip.family !== 4) throw new MembraneError("UDP_SOCKET", `the ESP path carries IPv4 outer headers only, got ${address}`);
  const sa = Buffer.alloc(SOCKADDR_IN);
  sa.writeUInt16LE(AF_INET, 0);
  sa.writeUInt16BE(port, 2);
  sa.set(ip.bytes, 4);
  return sa;
}

export class UdpSocket {
  #fd: number;
  readonly #from = Buffer.alloc(SOCKADDR_IN);
  readonly #fromLen = Buffer.alloc(4);
  readonly #pollfds = Buffer.alloc(16);

  private constructor(fd: number, readonly address: string, readonly port: number) {
    this.#fd = fd;
  }

  /** Binds `address:port`; buffers of `bufferBytes` each way so a batch is not dropped by the socket. */
  static bind(address: string, port: number, bufferBytes = 4 << 20): UdpSocket {
    const c = socketCalls();
    const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
    if (fd < 0) throw new UdpSocketError("socket(AF_INET, SOCK_DGRAM)", koffi().errno());
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    const size = Buffer.alloc(4);
    size.writeInt32LE(bufferBytes);
    c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4);
    c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
    c.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, size, 4);
    const sa = sockaddrIn(address, port);
    if ((c.bind(fd, sa, SOCKADDR_IN) as number) < 0) {
      const errno = koffi().errno();
      c.close(fd);
      throw new UdpSocketError(`bind UDP ${address}:${port}`, errno);
    }
    return new UdpSocket(fd, address, port);
  }

  get fd(): number {
    return this.#fd;
  }

  /** Sends `data` to the address in `to` (a sockaddrIn()); false when the socket pushed back (EAGAIN). */
  send(data: Uint8Array, length: number, to: Buffer): boolean {
    const c = socketCalls();
    for (;;) {
      const n = c.sendto(this.#open(), data, length, MSG_DONTWAIT, to, SOCKADDR_IN) as number;
      if (n >= 0) return true;
      const errno = koffi().errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return false;
      throw new UdpSocketError(`sendto ${to.readUInt8(4)}.${to.readUInt8(5)}.${to.readUInt8(6)}.${to.readUInt8(7)}:${to.readUInt16BE(2)}`, errno);
    }
  }

  /**
   * Receives one datagram into `buf` without blocking: its length and the
   * sender's IPv4 address as a 32-bit number, or undefined when none is waiting.
   */
  receive(buf: Uint8Array): { length: number; from: number } | undefined {
    const c = socketCalls();
    for (;;) {
      this.#fromLen.writeUInt32LE(SOCKADDR_IN);
      const n = c.recvfrom(this.#open(), buf, buf.length, MSG_DONTWAIT, this.#from, this.#fromLen) as number;
      if (n >= 0) return { length: n, from: this.#from.readUInt32BE(4) };
      const errno = koffi().errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return undefined;
      throw new UdpSocketError(`recvfrom on ${this.address}:${this.port}`, errno);
    }
  }

  /** poll(2) on this socket and `otherFd` (the TUN): true when either is readable before the timeout. */
  waitWith(otherFd: number, timeoutMs: number): boolean {
    const c = socketCalls();
    const p = this.#pollfds;
    p.writeInt32LE(this.#open(), 0);
    p.writeInt16LE(POLLIN, 4);
    p.writeInt16LE(0, 6);
    p.writeInt32LE(otherFd, 8);
    p.writeInt16LE(POLLIN, 12);
    p.writeInt16LE(0, 14);
    const r = c.poll(p, otherFd >= 0 ? 2 : 1, Math.max(0, Math.ceil(timeoutMs))) as number;
    if (r < 0) {
      const errno = koffi().errno();
      if (errno === EINTR) return false;
      throw new UdpSocketError(`poll ${this.address}:${this.port}`, errno);
    }
    return r > 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    socketCalls().close(this.#fd);
    this.#fd = -1;
  }

  #open(): number {
    if (this.#fd < 0) throw new MembraneError("UDP_SOCKET", `UDP socket ${this.address}:${this.port} is closed`);
    return this.#fd;
  }
}
