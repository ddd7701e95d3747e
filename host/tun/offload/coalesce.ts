/**
 * The write side of TUN offloads: before a batch of IP packets goes to the
 * kernel, consecutive segments of one TCP flow (and, if the kernel takes
 * USO, datagrams of one UDP flow) are merged into one super-packet with a
 * virtio_net_hdr asking the kernel to segment it again. One write and one
 * trip through the stack then carries up to 64 KiB instead of one MTU, which
 * is where most of a TUN forwarder's per-packet cost goes.
 *
 * The rule that decides what may merge is "the kernel's segmentation must
 * give back exactly the packets we had" (split.ts implements the same
 * segmentation, and the tests check split(coalesce(batch)) == batch byte for
 * byte). So a run continues only while the next packet:
 *   - has the same IP header apart from length, id and checksum, with the
 *     IPv4 id exactly one more than its predecessor's (GSO numbers segments
 *     that way), and no IPv6 extension headers or fragments;
 *   - for TCP: the same ports, ack, window, options and flags, the sequence
 *     number right after the data so far, no SYN/FIN/RST/URG, CWR only on
 *     the first packet (GSO keeps it there) and PSH only on the last;
 *   - for UDP: the same ports and a non-zero checksum (GSO always computes
 *     one, so an unchecksummed datagram would come back changed);
 *   - carries as much payload as the first (gso_size); one shorter packet
 *     may end the run;
 *   - keeps the super-packet within 64 KiB and within the first packet's
 *     buffer, and for UDP within the kernel's 64-datagram limit.
 * Only consecutive packets merge, so the order of packets on the wire is
 * the order of the batch.
 *
 * The super-packet is built in place in the buffer of its first packet (the
 * payload of the others is appended after it), its L4 checksum field holds
 * the pseudo-header sum over the whole super-packet (CHECKSUM_PARTIAL: what
 * the kernel's GSO adjusts per segment), and its virtio_net_hdr is written
 * in the headroom in front of it. Every other packet is left as it is, with
 * an all-zero virtio_net_hdr ("complete packet, checksum already correct").
 * Checksums of the input are not verified: the datapath produced them.
 */
import { internetChecksum, pseudoHeaderSum4, pseudoHeaderSum6 } from "../../packet/checksum.js";
import { IPPROTO } from "../../packet/decode.js";
import { MAX_GSO_PACKET, VIRTIO_NET_HDR_LEN } from "../device.js";
import { encodeVirtioNetHdr } from "../virtio-net-hdr.js";
import { OffloadError } from "./errors.js";
import { gsoLayout, type GsoLayout } from "./gso-layout.js";
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  ZERO_VIRTIO_NET_HDR,
} from "./virtio-net-hdr.js";
import { get16, get32, overlaps, put16 } from "./wire.js";

export interface CoalesceOptions {
  /** Merge TCP segments (GSO TCPV4/TCPV6). Every kernel with IFF_VNET_HDR accepts them. Default true. */
  tcp?: boolean;
  /**
   * Merge UDP datagrams (GSO UDP_L4). Only for kernels that accepted
   * TUN_F_USO4/6 (Linux >= 6.2); older ones reject the write. Default false.
   */
  udp?: boolean;
}

export interface CoalescedPacket {
  /** The buffer that holds it: the first packet of its run. */
  index: number;
  /** Bytes of the IP packet at `offset` (also stored in sizes[index]). */
  size: number;
  /** Input packets it carries; 1 means written as it was. */
  segments: number;
  /** virtio_net_hdr + packet: a view of bufs[index][offset - 10, offset + size), ready for write(2). */
  bytes: Uint8Array;
}

/**
 * Most datagrams per UDP super-packet: the kernel's UDP_MAX_SEGMENTS (1 << 6,
 * include/linux/udp.h), the most a UDP GSO send may carry. Staying within it
 * keeps a super-packet acceptable wherever the kernel applies that limit.
 */
export const UDP_MAX_SEGMENTS = 64;

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_URG = 0x20;
const TCP_CWR = 0x80;
const TCP_CSUM = 16;
const UDP_CSUM = 6;

/** A run being built: the super-packet grows in bufs[index]. */
interface Run {
  index: number;
  layout: GsoLayout;
  /** The super-packet as it stands: bufs[index][offset, offset + size). */
  size: number;
  /** Payload bytes of the first packet: every packet but the last carries this many. */
  gso: number;
  segments: number;
  /** False once a short or PSH packet was added: nothing may follow it. */
  open: boolean;
  /** The last packet had PSH; the super-packet carries it so GSO puts it on the last segment. */
  psh: boolean;
}

function checkBatch(bufs: Uint8Array[], sizes: number[], offset: number): void {
  if (!Number.isInteger(offset) || offset < VIRTIO_NET_HDR_LEN) {
    throw new OffloadError(`offset must be an integer >= ${VIRTIO_NET_HDR_LEN} (the virtio_net_hdr goes in the headroom), got ${offset}`);
  }
  if (sizes.length < bufs.length) throw new OffloadError(`sizes has ${sizes.length} entries for ${bufs.length} buffers`);
  for (let i = 0; i < bufs.length; i++) {
    const size = sizes[i]!;
    if (!Number.isInteger(size) || size <= 0) throw new OffloadError(`sizes[${i}] must be a positive integer, got ${size}`);
    if (offset + size > bufs[i]!.length) {
      throw new OffloadError(`packet ${i} (offset ${offset} + size ${size}) overruns its ${bufs[i]!.length}-byte buffer`);
    }
  }
}

/**
 * Coalesces the batch bufs[i][offset, offset + sizes[i]) in place (see the
 * module comment) and returns what to write, in order. Packets merged into
 * an earlier one are not in the result; their buffers are not modified.
 * Throws OffloadError, before touching anything, when the headroom is under
 * 10 bytes or a size does not fit its buffer.
 */
export function coalesce(bufs: Uint8Array[], sizes: number[], offset: number, options: CoalesceOptions = {}): CoalescedPacket[] {
  checkBatch(bufs, sizes, offset);
  const tcp = options.tcp ?? true;
  const udp = options.udp ?? false;
  const out: CoalescedPacket[] = [];
  let i = 0;
  while (i < bufs.length) {
    const run = start(bufs, sizes, offset, i, tcp, udp);
    let next = i + 1;
    if (run) {
      while (run.open && next < bufs.length && append(run, bufs, sizes, offset, next)) next++;
    }
    if (run && run.segments > 1) finish(run, bufs[i]!, offset);
    else encodeVirtioNetHdr(bufs[i]!, offset - VIRTIO_NET_HDR_LEN, ZERO_VIRTIO_NET_HDR);
    const size = run && run.segments > 1 ? run.size : sizes[i]!;
    sizes[i] = size;
    out.push({
      index: i,
      size,
      segments: run?.segments ?? 1,
      bytes: bufs[i]!.subarray(offset - VIRTIO_NET_HDR_LEN, offset + size),
    });
    i = next;
  }
  return out;
}

/** The layout of a packet that may take part in a run, or undefined. */
function candidate(pkt: Uint8Array, tcp: boolean, udp: boolean): GsoLayout | undefined {
  const version = pkt[0]! >> 4;
  const proto = version === 4 && pkt.length >= 20 ? pkt[9] : version === 6 && pkt.length >= 40 ? pkt[6] : undefined;
  let layout: GsoLayout | string;
  if (proto === IPPROTO.TCP && tcp) layout = gsoLayout(pkt, IPPROTO.TCP);
  else if (proto === IPPROTO.UDP && udp) layout = gsoLayout(pkt, IPPROTO.UDP);
  else return undefined;
  if (typeof layout === "string" || layout.headerLength === pkt.length) return undefined;
  const l4 = layout.l4Offset;
  if (layout.proto === IPPROTO.TCP) {
    if (pkt[l4 + 13]! & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG)) return undefined;
  } else {
    if (get16(pkt, l4 + UDP_CSUM) === 0) return undefined;
    if (get16(pkt, l4 + 4) !== pkt.length - l4) return undefined;
  }
  return layout;
}

function start(bufs: Uint8Array[], sizes: number[], offset: number, i: number, tcp: boolean, udp: boolean): Run | undefined {
  const pkt = bufs[i]!.subarray(offset, offset + sizes[i]!);
  const layout = candidate(pkt, tcp, udp);
  if (!layout) return undefined;
  const psh = layout.proto === IPPROTO.TCP && (pkt[layout.l4Offset + 13]! & TCP_PSH) !== 0;
  return { index: i, layout, size: pkt.length, gso: pkt.length - layout.headerLength, segments: 1, open: !psh, psh };
}

function same(a: Uint8Array, b: Uint8Array, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** Whether q continues the run whose first packet is head (see the module comment). */
function continues(run: Run, head: Uint8Array, q: Uint8Array, ql: GsoLayout): boolean {
  const hl = run.layout;
  if (ql.proto !== hl.proto || ql.family !== hl.family || ql.headerLength !== hl.headerLength || ql.l4Offset !== hl.l4Offset) return false;
  const l4 = hl.l4Offset;
  if (hl.family === 4) {
    // Skipped: total length (2-3), id (4-5, checked below), header checksum (10-11).
    if (!same(head, q, 0, 2) || !same(head, q, 6, 10) || !same(head, q, 12, l4)) return false;
    if (get16(q, 4) !== ((get16(head, 4) + run.segments) & 0xffff)) return false;
  } else if (!same(head, q, 0, 4) || !same(head, q, 6, 40)) {
    return false; // Skipped: payload length (4-5).
  }
  if (!same(head, q, l4, l4 + 4)) return false; // ports
  if (hl.proto === IPPROTO.UDP) return true;
  const payloadSoFar = run.size - hl.headerLength;
  if (get32(q, l4 + 4) !== (get32(head, l4 + 4) + payloadSoFar) % 0x1_0000_0000) return false;
  // ack and data offset; window; urgent pointer and options. Skipped: seq, flags, checksum.
  if (!same(head, q, l4 + 8, l4 + 13) || !same(head, q, l4 + 14, l4 + 16) || !same(head, q, l4 + 18, hl.headerLength)) return false;
  // Flags equal to the first packet's, except that q may add PSH and may not
  // have CWR (masked out of the first's side only, so a CWR on q mismatches).
  return (q[l4 + 13]! & ~TCP_PSH) === (head[l4 + 13]! & ~(TCP_PSH | TCP_CWR));
}

/** Appends packet j to the run if it continues it and fits; false leaves everything unchanged. */
function append(run: Run, bufs: Uint8Array[], sizes: number[], offset: number, j: number): boolean {
  const headBuf = bufs[run.index]!;
  const head = headBuf.subarray(offset, offset + run.size);
  const q = bufs[j]!.subarray(offset, offset + sizes[j]!);
  const ql = candidate(q, run.layout.proto === IPPROTO.TCP, run.layout.proto === IPPROTO.UDP);
  if (!ql || !continues(run, head, q, ql)) return false;
  const payload = q.length - ql.headerLength;
  if (payload > run.gso) return false;
  if (run.layout.proto === IPPROTO.UDP && run.segments >= UDP_MAX_SEGMENTS) return false;
  const size = run.size + payload;
  if (size > MAX_GSO_PACKET || offset + size > headBuf.length) return false;
  // Buffers that share memory could have q's bytes overwritten mid-copy; such a batch just does not merge.
  if (overlaps(headBuf, offset + run.size, offset + size, q, 0, q.length)) return false;
  headBuf.set(q.subarray(ql.headerLength), offset + run.size);
  run.size = size;
  run.segments++;
  const psh = ql.proto === IPPROTO.TCP && (q[ql.l4Offset + 13]! & TCP_PSH) !== 0;
  if (psh) run.psh = true;
  if (psh || payload < run.gso) run.open = false;
  return true;
}

/** Turns bufs[index] into the super-packet: lengths, IPv4 header checksum, partial L4 sum, virtio_net_hdr. */
function finish(run: Run, buf: Uint8Array, offset: number): void {
  const p = buf.subarray(offset, offset + run.size);
  const { family, proto, l4Offset: l4, headerLength } = run.layout;
  const l4Len = run.size - l4;
  if (family === 4) {
    put16(p, 2, run.size);
    put16(p, 10, 0);
    put16(p, 10, internetChecksum(p, 0, l4));
  } else {
    put16(p, 4, run.size - 40);
  }
  let gsoType: number;
  let csumOffset: number;
  if (proto === IPPROTO.TCP) {
    if (run.psh) p[l4 + 13]! |= TCP_PSH;
    gsoType = family === 4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
    // The virtio way of saying "CWR is set: keep it on the first segment only".
    if (p[l4 + 13]! & TCP_CWR) gsoType |= VIRTIO_NET_HDR_GSO_ECN;
    csumOffset = TCP_CSUM;
  } else {
    put16(p, l4 + 4, l4Len);
    gsoType = VIRTIO_NET_HDR_GSO_UDP_L4;
    csumOffset = UDP_CSUM;
  }
  // CHECKSUM_PARTIAL: the folded, uncomplemented pseudo-header sum over the
  // super-packet's L4 length; GSO swaps that length for each segment's.
  const { src, dst } = run.layout;
  put16(p, l4 + csumOffset, family === 4 ? pseudoHeaderSum4(src, dst, proto, l4Len) : pseudoHeaderSum6(src, dst, proto, l4Len));
  encodeVirtioNetHdr(buf, offset - VIRTIO_NET_HDR_LEN, {
    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
    gsoType,
    hdrLen: headerLength,
    gsoSize: run.gso,
    csumStart: l4,
    csumOffset,
  });
}
