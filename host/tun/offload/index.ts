/**
 * TUN offloads (IFF_VNET_HDR), pure byte work with no fds: split() turns what
 * the kernel hands over (checksum-partial packets, TSO/USO super-packets)
 * into the plain packets the datapath decides; coalesce() turns a decided
 * batch back into super-packets for the kernel to segment. The device in
 * ../linux-tun.ts moves the bytes; this layer only rewrites them.
 */
export { coalesce, UDP_MAX_SEGMENTS, type CoalescedPacket, type CoalesceOptions } from "./coalesce.js";
export { OffloadError } from "./errors.js";
export { gsoLayout, type GsoLayout } from "./gso-layout.js";
export { checkPartialChecksum, completePartialChecksum } from "./partial-checksum.js";
export { split } from "./split.js";
export * from "./virtio-net-hdr.js";
