// Shared helpers of the offload suites: segment runs built with the packet
// builders (so every input has correct lengths and checksums by construction),
// super-packets as the kernel hands them over (partial pseudo-header sum in
// the L4 checksum field), and batch buffers with headroom.
import { expect } from "vitest";
import { pseudoHeaderSum4, pseudoHeaderSum6, verifyChecksums } from "../../../host/packet/checksum.js";
import { packet4, packet6, type TcpFlags } from "../../../host/packet/build.js";
import { locateIp } from "../../../host/packet/decode.js";
import { MembraneError } from "../../../host/errors.js";
import { coalesce, type CoalesceOptions } from "../../../host/tun/offload/coalesce.js";
import { split } from "../../../host/tun/offload/split.js";
import { readVirtioNetHdr, VIRTIO_NET_HDR_LEN } from "../../../host/tun/offload/virtio-net-hdr.js";

export const OFFSET = 32;

/** Deterministic, non-repeating-looking payload bytes: a mix-up of segments shows. */
export function payloadBytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export interface TcpRunSpec {
  family: 4 | 6;
  /** Payload length of each segment. */
  lengths: number[];
  seq?: number;
  ack?: number;
  id?: number;
  sport?: number;
  dport?: number;
  window?: number;
  options?: Uint8Array;
  /** Flags of every segment, besides `first` and `last` extras. */
  flags?: TcpFlags;
  firstFlags?: TcpFlags;
  lastFlags?: TcpFlags;
  df?: boolean;
  tos?: number;
  seed?: number;
}

/** Consecutive segments of one TCP flow, as a sender's stack would emit them. */
export function tcpRun(s: TcpRunSpec): Uint8Array[] {
  const out: Uint8Array[] = [];
  let seq = s.seq ?? 1000;
  s.lengths.forEach((n, i) => {
    const flags = {
      ack: true,
      ...s.flags,
      ...(i === 0 ? s.firstFlags : {}),
      ...(i === s.lengths.length - 1 ? s.lastFlags : {}),
    };
    const tcp = {
      sport: s.sport ?? 40000,
      dport: s.dport ?? 80,
      seq: seq >>> 0,
      ack: s.ack ?? 777,
      window: s.window ?? 512,
      flags,
      options: s.options,
      payload: payloadBytes(n, (s.seed ?? 1) * 1000 + i),
    };
    out.push(
      s.family === 4
        ? packet4({ src: "10.1.0.1", dst: "10.2.0.2", id: ((s.id ?? 100) + i) & 0xffff, flags: { df: s.df ?? true }, tos: s.tos }).tcp(tcp)
        : packet6({ src: "fd00::1", dst: "fd00::2", flowLabel: 0x12345 }).tcp(tcp),
    );
    seq = (seq + n) % 0x1_0000_0000;
  });
  return out;
}

export interface UdpRunSpec {
  family: 4 | 6;
  lengths: number[];
  id?: number;
  sport?: number;
  dport?: number;
  seed?: number;
}

export function udpRun(s: UdpRunSpec): Uint8Array[] {
  return s.lengths.map((n, i) => {
    const udp = { sport: s.sport ?? 4433, dport: s.dport ?? 443, payload: payloadBytes(n, (s.seed ?? 7) * 1000 + i) };
    return s.family === 4
      ? packet4({ src: "10.1.0.1", dst: "10.2.0.2", id: ((s.id ?? 500) + i) & 0xffff }).udp(udp)
      : packet6({ src: "fd00::1", dst: "fd00::2" }).udp(udp);
  });
}

/**
 * A TSO/USO super-packet as the kernel hands it to a TUN reader: the whole
 * payload behind one set of headers, IP lengths covering all of it, and the
 * L4 checksum field holding the pseudo-header sum (CHECKSUM_PARTIAL).
 */
export function asKernelSuperPacket(pkt: Uint8Array): Uint8Array {
  const p = pkt.slice();
  const loc = locateIp(p, 0);
  if (loc.family === undefined || loc.error) throw new Error("asKernelSuperPacket: bad packet");
  const l4Len = loc.end - loc.l4Offset;
  const field = loc.proto === 6 ? 16 : 6;
  const sum = loc.family === 4 ? pseudoHeaderSum4(loc.src, loc.dst, loc.proto, l4Len) : pseudoHeaderSum6(loc.src, loc.dst, loc.proto, l4Len);
  p[loc.l4Offset + field] = sum >> 8;
  p[loc.l4Offset + field + 1] = sum & 0xff;
  return p;
}

/** Batch buffers of `capacity` bytes after OFFSET, each holding one packet at OFFSET; the rest is 0xee. */
export function batch(pkts: Uint8Array[], capacity = 65535, offset = OFFSET): { bufs: Uint8Array[]; sizes: number[] } {
  const bufs = pkts.map((p) => {
    const b = new Uint8Array(offset + capacity).fill(0xee);
    b.set(p, offset);
    return b;
  });
  return { bufs, sizes: pkts.map((p) => p.length) };
}

export function outBuffers(n: number, capacity = 2048, offset = OFFSET): Uint8Array[] {
  return Array.from({ length: n }, () => new Uint8Array(offset + capacity).fill(0xee));
}

/** Packet i of a batch: bufs[i][offset, offset + sizes[i]). */
export function packetAt(bufs: Uint8Array[], sizes: number[], i: number, offset = OFFSET): Uint8Array {
  return bufs[i]!.subarray(offset, offset + sizes[i]!);
}

export function expectChecksumsOk(pkt: Uint8Array): void {
  const r = verifyChecksums(pkt, 0);
  expect(r.problems).toEqual([]);
  expect(r.checked.length).toBeGreaterThanOrEqual(1);
}

/** Runs f, expecting an OffloadError (MembraneError code OFFLOAD_INVALID) whose message matches. */
export function expectOffloadError(f: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught, "expected an error").toBeInstanceOf(MembraneError);
  expect((caught as MembraneError).code).toBe("OFFLOAD_INVALID");
  expect((caught as MembraneError).message).toMatch(message);
}

export const HDR_AT = OFFSET - VIRTIO_NET_HDR_LEN;

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Writes `pkts` through coalesce, then reads every result back through split
 * with the virtio_net_hdr coalesce put in front of it: what a TUN written by
 * us and read by a peer doing GSO in software would see. Returns the
 * packets that come out, and the coalesce results for inspection.
 */
export function roundTrip(pkts: Uint8Array[], options: CoalesceOptions = {}, capacity?: number) {
  // Room for the largest super-packet these packets could make, and no more: filling 64 KiB per buffer is what slows a property down.
  const { bufs, sizes } = batch(pkts, capacity ?? Math.min(65535, pkts.reduce((n, p) => n + p.length, 0)));
  const written = coalesce(bufs, sizes, OFFSET, options);
  const out: Uint8Array[] = [];
  for (const w of written) {
    const hdr = readVirtioNetHdr(w.bytes, 0);
    const pkt = w.bytes.subarray(VIRTIO_NET_HDR_LEN);
    // Every segment fits headers + gso_size (coalesce's hdr_len is the real header length).
    const room = hdr.gsoType === 0 ? pkt.length : hdr.hdrLen + hdr.gsoSize;
    const obufs = outBuffers(Math.max(1, w.segments), room, 0);
    const osizes = new Array<number>(obufs.length).fill(0);
    const n = split(pkt, hdr, obufs, osizes, 0);
    expect(n).toBe(w.segments);
    for (let i = 0; i < n; i++) out.push(obufs[i]!.slice(0, osizes[i]!));
  }
  return { out, written, bufs, sizes };
}

/**
 * expect(actual).toEqual(expected) for packet lists, without vitest's
 * element-by-element deep equality (seconds per thousand MTU-sized packets).
 * A mismatch names the packet and the first differing byte.
 */
export function expectSamePackets(actual: Uint8Array[], expected: Uint8Array[]): void {
  expect(actual.length, "packet count").toBe(expected.length);
  actual.forEach((a, i) => {
    const e = expected[i]!;
    if (Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(e.buffer, e.byteOffset, e.length)) === 0) return;
    let at = 0;
    while (at < a.length && at < e.length && a[at] === e[at]) at++;
    expect.fail(`packet ${i} differs at byte ${at} (lengths ${a.length} / ${e.length}): got ${a[at]}, expected ${e[at]}`);
  });
}
