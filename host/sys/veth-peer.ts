/**
 * The other end of a veth, from rtnetlink: the host-side device's
 * IFLA_LINK is the peer's ifindex and IFLA_LINK_NETNSID the peer's
 * namespace (as an id this namespace assigned it); the peer itself is then
 * read with RTM_GETLINK and IFLA_TARGET_NETNSID (Linux 4.20), so the pod's
 * MAC is read without entering the pod's namespace. The kernel agent puts
 * that MAC in the endpoint's record and program (a pod's MAC, not zero).
 */
import { InvalidInputError, MembraneError } from "../errors.js";
import { NetlinkSocket } from "./netlink-socket.js";

const NETLINK_ROUTE = 0;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_LINK = 5;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_LINK_NETNSID = 37;
const IFLA_TARGET_NETNSID = 46;

export interface LinkInfo {
  ifindex: number;
  name: string;
  /** "aa:bb:cc:dd:ee:ff", or undefined for a device without a link-layer address. */
  mac?: string;
  /** IFLA_INFO_KIND ("veth", "dummy", ...), undefined for a plain device. */
  kind?: string;
  /** IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace). */
  link?: number;
  /** IFLA_LINK_NETNSID: the peer's namespace as this namespace numbers it (absent: the same namespace). */
  linkNetnsId?: number;
}

export interface VethPeer {
  /** The host-side device. */
  host: LinkInfo;
  /** Its peer (the pod's eth0). */
  peer: LinkInfo;
}

function attr(type: number, value: Uint8Array): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  b.set(value, 4);
  return b;
}

function attrs(buf: Buffer, start: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let off = start; off + 4 <= buf.length; ) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff; // without NLA_F_NESTED / NET_BYTEORDER
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

const macText = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");

/** One device by ifindex or name, in this namespace or (targetNetnsId) in one this namespace has an id for. */
export function getLink(which: { ifindex?: number; name?: string; targetNetnsId?: number }): LinkInfo {
  const what = which.name !== undefined ? `interface ${which.name}` : `ifindex ${which.ifindex}${which.targetNetnsId !== undefined ? ` in netns id ${which.targetNetnsId}` : ""}`;
  if (which.name === undefined && !(Number.isInteger(which.ifindex) && which.ifindex! > 0)) throw new InvalidInputError(`${what}: expected a positive ifindex or a name`);
  const msg = Buffer.alloc(16);
  msg.writeInt32LE(which.ifindex ?? 0, 4);
  const parts: Uint8Array[] = [msg];
  if (which.name !== undefined) parts.push(attr(IFLA_IFNAME, Buffer.from(`${which.name}\0`)));
  if (which.targetNetnsId !== undefined) {
    const v = Buffer.alloc(4);
    v.writeInt32LE(which.targetNetnsId);
    parts.push(attr(IFLA_TARGET_NETNSID, v));
  }
  const sock = NetlinkSocket.open(NETLINK_ROUTE);
  try {
    const replies = sock.request(RTM_GETLINK, 0, Buffer.concat(parts), `read ${what}`);
    const reply = replies.find((r) => r.type === RTM_NEWLINK);
    if (!reply) throw new MembraneError("NETLINK", `read ${what}: no link in the kernel's answer`);
    const a = attrs(reply.payload, 16);
    const info: LinkInfo = { ifindex: reply.payload.readInt32LE(4), name: a.get(IFLA_IFNAME)?.toString("utf8").replace(/\0.*$/s, "") ?? "" };
    const addr = a.get(IFLA_ADDRESS);
    if (addr && addr.length === 6) info.mac = macText(addr);
    const linkinfo = a.get(IFLA_LINKINFO);
    const kind = linkinfo ? attrs(linkinfo, 0).get(IFLA_INFO_KIND) : undefined;
    if (kind) info.kind = kind.toString("utf8").replace(/\0.*$/s, "");
    const link = a.get(IFLA_LINK);
    if (link && link.length >= 4) info.link = link.readInt32LE(0);
    const nsid = a.get(IFLA_LINK_NETNSID);
    if (nsid && nsid.length >= 4) info.linkNetnsId = nsid.readInt32LE(0);
    return info;
  } finally {
    sock.close();
  }
}

/** The veth `ifname` (in this namespace) and its peer, wherever the peer is. Not a veth: a clear error. */
export function vethPeer(ifname: string): VethPeer {
  const host = getLink({ name: ifname });
  if (host.kind !== "veth" || host.link === undefined || host.link <= 0) {
    throw new InvalidInputError(`interface ${ifname} is ${host.kind ? `a ${host.kind} device` : "not a veth"}: it has no peer to read the pod's MAC from`);
  }
  const peer = getLink({ ifindex: host.link, targetNetnsId: host.linkNetnsId });
  return { host, peer };
}
