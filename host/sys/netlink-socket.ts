/**
 * A netlink socket of our own, through koffi: request, acknowledgement and
 * dump, with the kernel's extended ack (NETLINK_EXT_ACK) so an error says
 * what the kernel disliked ("Requested AEAD algorithm not found"), not just
 * an errno.
 *
 * Why not the `netlink` npm package: it cannot set socket options, so it
 * cannot ask for extended acks, and it exposes no fd to set them on. The
 * calls here are few (socket, bind, setsockopt, sendto, recv), koffi is
 * already how membrane reaches libc, and netlink replies to a request come
 * back at once, so a blocking recv with a receive timeout is fine for the
 * control-plane calls this serves (XFRM state and policy changes).
 */
import { socketCalls } from "./socket-calls.js";
import { koffi } from "./ffi.js";
import { errnoName } from "./errno.js";
import { MembraneError } from "../errors.js";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;

export const NETLINK_XFRM = 6;

export const NLM_F = { REQUEST: 1, MULTI: 2, ACK: 4, ROOT: 0x100, MATCH: 0x200, DUMP: 0x300, REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400 } as const;
const NLM_F_ACK_TLVS = 0x200;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLMSGERR_ATTR_MSG = 1;
const HEADER = 16;

/** A request the kernel refused: errno, its name, and the extended ack's message when it sent one. */
export class NetlinkError extends MembraneError {
  constructor(
    readonly errno: number,
    readonly errnoCode: string,
    readonly kernelMessage: string | undefined,
    action: string,
  ) {
    super("NETLINK", `${action}: ${errnoCode}${kernelMessage ? ` (kernel: ${kernelMessage})` : ""}`);
  }
}

function fail(action: string): never {
  const errno = koffi().errno();
  throw new NetlinkError(errno, errnoName(errno), undefined, action);
}

export class NetlinkSocket {
  private seq = 1;
  private readonly rx = Buffer.alloc(1 << 16);
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly protocol: number,
  ) {}

  static open(protocol: number, timeoutMs = 2000): NetlinkSocket {
    const c = socketCalls();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol) as number;
    if (fd < 0) fail(`open netlink socket (protocol ${protocol})`);
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    // Both are best effort: an old kernel without them still works, with plainer errors.
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
    tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
    c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    if ((c.bind(fd, addr, 12) as number) < 0) {
      c.close(fd);
      fail("bind netlink socket");
    }
    return new NetlinkSocket(fd, protocol);
  }

  /** The whole message (header + payload) as it goes on the wire. */
  static frame(type: number, flags: number, seq: number, payload: Uint8Array): Buffer {
    const msg = Buffer.alloc(HEADER + payload.length);
    msg.writeUInt32LE(msg.length, 0);
    msg.writeUInt16LE(type, 4);
    msg.writeUInt16LE(flags, 6);
    msg.writeUInt32LE(seq, 8);
    msg.writeUInt32LE(0, 12);
    msg.set(payload, HEADER);
    return msg;
  }

  /**
   * Sends one request and waits for its acknowledgement (flags get REQUEST
   * and ACK), or, with NLM_F.DUMP in `flags`, collects the dump's messages
   * until DONE. Returns the payloads of the messages the kernel sent back
   * (none for a plain acknowledgement). `action` starts error messages.
   */
  request(type: number, flags: number, payload: Uint8Array, action: string): { type: number; payload: Buffer }[] {
    if (this.closed) throw new MembraneError("NETLINK", `${action}: socket is closed`);
    const c = socketCalls();
    const seq = this.seq++;
    const dump = (flags & NLM_F.DUMP) === NLM_F.DUMP;
    const msg = NetlinkSocket.frame(type, flags | NLM_F.REQUEST | (dump ? 0 : NLM_F.ACK), seq, payload);
    const to = Buffer.alloc(12);
    to.writeUInt16LE(AF_NETLINK, 0);
    if (Number(c.sendto(this.fd, msg, msg.length, 0, to, 12)) < 0) fail(action);
    const replies: { type: number; payload: Buffer }[] = [];
    for (;;) {
      const n = Number(c.recv(this.fd, this.rx, this.rx.length, 0));
      if (n < 0) fail(`${action}: receive`);
      for (let off = 0; off + HEADER <= n; ) {
        const len = this.rx.readUInt32LE(off);
        const mtype = this.rx.readUInt16LE(off + 4);
        const mflags = this.rx.readUInt16LE(off + 6);
        const mseq = this.rx.readUInt32LE(off + 8);
        if (len < HEADER || off + len > n) break;
        const body = Buffer.from(this.rx.subarray(off + HEADER, off + len));
        off += (len + 3) & ~3;
        if (mseq !== seq) continue; // a stale reply to an earlier, timed-out request
        if (mtype === NLMSG_DONE) return replies;
        if (mtype === NLMSG_ERROR) {
          const error = -body.readInt32LE(0);
          if (error === 0) return replies;
          throw new NetlinkError(error, errnoName(error), extendedAck(body, mflags), action);
        }
        replies.push({ type: mtype, payload: body });
        if (!dump && (mflags & NLM_F.MULTI) === 0) return replies;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    socketCalls().close(this.fd);
  }
}

/** The NLMSGERR_ATTR_MSG string of an error message sent with NLM_F_ACK_TLVS (request capped: CAP_ACK). */
function extendedAck(body: Buffer, flags: number): string | undefined {
  if ((flags & NLM_F_ACK_TLVS) === 0) return undefined;
  let off = 4 + HEADER;
  while (off + 4 <= body.length) {
    const len = body.readUInt16LE(off);
    const type = body.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > body.length) break;
    if (type === NLMSGERR_ATTR_MSG) return body.subarray(off + 4, off + len).toString("utf8").replace(/\0+$/, "");
    off += (len + 3) & ~3;
  }
  return undefined;
}
