// The write side: which packets merge into a super-packet, what its bytes and
// virtio_net_hdr look like, that splitting it gives back the batch byte for
// byte, and the batch shapes it refuses.
import { describe, expect, it } from "vitest";
import { packet4, packet6, tcpOptions } from "../../../host/packet/build.js";
import { fragment4 } from "../../../host/packet/build.js";
import { decodePacket } from "../../../host/packet/decode.js";
import { coalesce, UDP_MAX_SEGMENTS, type CoalesceOptions } from "../../../host/tun/offload/coalesce.js";
import { completePartialChecksum } from "../../../host/tun/offload/partial-checksum.js";
import {
  readVirtioNetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  ZERO_VIRTIO_NET_HDR,
} from "../../../host/tun/offload/virtio-net-hdr.js";
import {
  asKernelSuperPacket,
  batch,
  concatBytes,
  expectChecksumsOk,
  expectOffloadError,
  expectSamePackets,
  OFFSET,
  packetAt,
  payloadBytes,
  roundTrip,
  tcpRun,
  udpRun,
} from "./fixtures.js";

const TS = Uint8Array.of(1, 1, ...tcpOptions({ timestamp: { value: 11, echo: 22 } }));

/** Segment counts of what coalesce wrote, in order. */
function shape(pkts: Uint8Array[], options?: CoalesceOptions): number[] {
  const { out, written } = roundTrip(pkts, options);
  expectSamePackets(out, pkts);
  return written.map((w) => w.segments);
}

describe("coalesce: TCP", () => {
  for (const family of [4, 6] as const) {
    it(`merges a run of IPv${family} segments into one TSO super-packet`, () => {
      const pkts = tcpRun({ family, lengths: [1388, 1388, 1388, 1388, 500], options: TS, lastFlags: { psh: true } });
      const { bufs, sizes } = batch(pkts);
      const written = coalesce(bufs, sizes, OFFSET);
      expect(written.length).toBe(1);
      const w = written[0]!;
      const l4 = family === 4 ? 20 : 40;
      const total = l4 + 32 + 4 * 1388 + 500;
      expect(w).toMatchObject({ index: 0, size: total, segments: 5 });
      expect(sizes[0]).toBe(total);
      expect(w.bytes.length).toBe(10 + total);
      expect(w.bytes.buffer).toBe(bufs[0]!.buffer);
      expect(w.bytes.byteOffset).toBe(OFFSET - 10);
      expect(readVirtioNetHdr(w.bytes, 0)).toEqual({
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gsoType: family === 4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6,
        hdrLen: l4 + 32,
        gsoSize: 1388,
        csumStart: l4,
        csumOffset: 16,
      });
      const sp = packetAt(bufs, sizes, 0);
      const d = decodePacket(sp, "ip");
      expect(d.ipLength).toBe(total);
      expect(d.seq).toBe(1000);
      // The last segment's PSH is carried so GSO can put it back on the last segment.
      expect(d.tcpFlags).toBe("PA");
      expect(sp.subarray(l4 + 32)).toEqual(concatBytes(pkts.map((p) => p.subarray(l4 + 32))));
      // The checksum field holds the pseudo-header sum over the whole super-packet, as the kernel's own.
      expect(sp).toEqual(asKernelSuperPacket(sp));
      // ... so finishing it as a NIC would gives a valid (oversized) packet, IPv4 header checksum included.
      const finished = sp.slice();
      completePartialChecksum(finished, l4, 16);
      expectChecksumsOk(finished);
      // Packets merged into the first are left alone.
      for (let i = 1; i < pkts.length; i++) expect(packetAt(bufs, sizes, i)).toEqual(pkts[i]);
    });
  }

  it("splits back to the original segments byte for byte", () => {
    for (const family of [4, 6] as const) {
      const pkts = tcpRun({ family, lengths: [1000, 1000, 1000, 7], seq: 0xffffff00, id: 0xfffe, firstFlags: { cwr: true }, flags: { ece: true } });
      const { out, written } = roundTrip(pkts);
      expect(written.map((w) => w.segments)).toEqual([4]);
      expectSamePackets(out, pkts);
      out.forEach(expectChecksumsOk);
    }
  });

  it("sets the ECN bit when the first segment carries CWR", () => {
    const pkts = tcpRun({ family: 4, lengths: [100, 100], firstFlags: { cwr: true } });
    const { written } = roundTrip(pkts);
    expect(readVirtioNetHdr(written[0]!.bytes, 0).gsoType).toBe(VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN);
  });

  it("writes packets it does not merge unchanged, behind a zero virtio_net_hdr", () => {
    const single = tcpRun({ family: 4, lengths: [100] });
    const udp = udpRun({ family: 6, lengths: [50, 50] });
    const pkts = [...single, ...udp];
    const { bufs, sizes } = batch(pkts);
    const written = coalesce(bufs, sizes, OFFSET);
    expect(written.map((w) => [w.index, w.segments, w.size])).toEqual(pkts.map((p, i) => [i, 1, p.length]));
    for (const w of written) {
      expect(readVirtioNetHdr(w.bytes, 0)).toEqual(ZERO_VIRTIO_NET_HDR);
      expect(w.bytes.subarray(10)).toEqual(pkts[w.index]);
    }
  });

  describe("ends a run where GSO could not reproduce the next packet", () => {
    const base = (lengths: number[], more: Partial<Parameters<typeof tcpRun>[0]> = {}) => tcpRun({ family: 4, lengths, ...more });
    const cases: [string, () => Uint8Array[], number[]][] = [
      ["another flow in between", () => { const a = base([100, 100, 100]); const b = base([100], { sport: 1 }); return [a[0]!, a[1]!, b[0]!, a[2]!]; }, [2, 1, 1]],
      ["a sequence gap", () => { const a = base([100, 100, 100]); const b = base([100], { seq: 1000 + 300 + 1, id: 102 }); return [a[0]!, a[1]!, b[0]!]; }, [2, 1]],
      ["a different ack", () => { const a = base([100, 100]); const b = base([100], { seq: 1200, id: 102, ack: 1 }); return [...a, b[0]!]; }, [2, 1]],
      ["a different window", () => { const a = base([100, 100]); const b = base([100], { seq: 1200, id: 102, window: 7 }); return [...a, b[0]!]; }, [2, 1]],
      ["different TCP options", () => { const a = base([100, 100], { options: TS }); const b = base([100], { seq: 1200, id: 102, options: Uint8Array.of(1, 1, ...tcpOptions({ timestamp: { value: 12, echo: 22 } })) }); return [...a, b[0]!]; }, [2, 1]],
      ["a different TOS", () => { const a = base([100, 100]); const b = base([100], { seq: 1200, id: 102, tos: 4 }); return [...a, b[0]!]; }, [2, 1]],
      ["a different DF bit", () => { const a = base([100, 100]); const b = base([100], { seq: 1200, id: 102, df: false }); return [...a, b[0]!]; }, [2, 1]],
      ["an IPv4 id that does not count on", () => { const a = base([100, 100]); const b = base([100], { seq: 1200, id: 105 }); return [...a, b[0]!]; }, [2, 1]],
      ["a longer segment", () => base([100, 100, 101]), [2, 1]],
      ["a shorter segment (which may end the run)", () => base([100, 99, 100, 100]), [2, 2]],
      ["PSH (which may end the run)", () => base([100, 100, 100, 100], { flags: {}, firstFlags: {}, lastFlags: {} }).map((p, i) => (i === 1 ? withFlags(p, 0x18) : p)), [2, 2]],
      ["PSH on the first segment", () => base([100, 100], { firstFlags: { psh: true } }), [1, 1]],
      ["CWR after the first segment", () => base([100, 100, 100]).map((p, i) => (i === 1 ? withFlags(p, 0x90) : p)), [1, 2]],
      ["a different ECE", () => base([100, 100]).map((p, i) => (i === 1 ? withFlags(p, 0x50) : p)), [1, 1]],
      ["SYN", () => base([100, 100], { firstFlags: { syn: true } }), [1, 1]],
      ["FIN", () => base([100, 100], { lastFlags: { fin: true } }), [1, 1]],
      ["RST", () => base([100, 100], { lastFlags: { rst: true } }), [1, 1]],
      ["URG", () => base([100, 100], { lastFlags: { urg: true } }), [1, 1]],
      ["no payload (pure ACKs)", () => base([0, 0, 0]), [1, 1, 1]],
      ["an IPv4 family change", () => [...base([100]), ...tcpRun({ family: 6, lengths: [100], seq: 1100 })], [1, 1]],
    ];
    for (const [what, make, expected] of cases) {
      it(what, () => expect(shape(make())).toEqual(expected));
    }

    it("64 KiB: the run continues in a new super-packet", () => {
      const pkts = tcpRun({ family: 4, lengths: new Array(60).fill(1448) });
      // 40 + 45 * 1448 = 65200 fits in 65535; a 46th segment would not.
      expect(shape(pkts)).toEqual([45, 15]);
    });

    it("room in the first packet's buffer", () => {
      const pkts = tcpRun({ family: 6, lengths: [1000, 1000, 1000, 1000] });
      const { bufs, sizes } = batch(pkts, 60 + 2500);
      expect(coalesce(bufs, sizes, OFFSET).map((w) => w.segments)).toEqual([2, 2]);
    });

    it("buffers that share memory with the growing super-packet", () => {
      const pkts = tcpRun({ family: 4, lengths: [100, 100] });
      const mem = new Uint8Array(4096);
      // Packet 1's buffer starts right after packet 0's bytes: appending would overwrite it.
      const b0 = mem.subarray(0, 2048);
      const b1 = mem.subarray(OFFSET + pkts[0]!.length - OFFSET, 4096);
      b0.set(pkts[0]!, OFFSET);
      b1.set(pkts[1]!, OFFSET);
      const sizes = pkts.map((p) => p.length);
      expect(coalesce([b0, b1], sizes, OFFSET).map((w) => w.segments)).toEqual([1, 1]);
      expect(b1.subarray(OFFSET, OFFSET + sizes[1]!)).toEqual(pkts[1]);
    });

    it("IPv6 extension headers and fragments", () => {
      const ext = [0, 1].map((i) => packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: [{ type: 60 }] }).tcp({ sport: 1, dport: 2, seq: 100 * i, flags: { ack: true }, payload: payloadBytes(100) }));
      expect(shape(ext)).toEqual([1, 1]);
      const frags = fragment4(tcpRun({ family: 4, lengths: [1000], df: false })[0]!, 400);
      expect(shape(frags)).toEqual([1, 1, 1]);
    });

    it("tcp: false", () => {
      expect(shape(tcpRun({ family: 4, lengths: [100, 100] }), { tcp: false })).toEqual([1, 1]);
    });

    it("garbage and truncated packets", () => {
      const good = tcpRun({ family: 4, lengths: [100, 100] });
      const pkts = [Uint8Array.of(0x45), good[0]!.subarray(0, 30), new Uint8Array(60).fill(0x60), Uint8Array.of(0), ...good];
      expect(shape(pkts)).toEqual([1, 1, 1, 1, 2]);
    });
  });
});

function withFlags(p: Uint8Array, flags: number): Uint8Array {
  const l4 = p[0]! >> 4 === 4 ? 20 : 40;
  const d = decodePacket(p, "ip");
  const payload = p.subarray(l4 + (p[l4 + 12]! >> 4) * 4);
  const spec = {
    sport: d.sport!,
    dport: d.dport!,
    seq: d.seq!,
    ack: d.ack!,
    window: d.window!,
    payload,
    flags: { fin: !!(flags & 1), syn: !!(flags & 2), rst: !!(flags & 4), psh: !!(flags & 8), ack: !!(flags & 16), urg: !!(flags & 32), ece: !!(flags & 64), cwr: !!(flags & 128) },
  };
  return l4 === 20
    ? packet4({ src: "10.1.0.1", dst: "10.2.0.2", id: (p[4]! << 8) | p[5]!, flags: { df: true } }).tcp(spec)
    : packet6({ src: "fd00::1", dst: "fd00::2", flowLabel: 0x12345 }).tcp(spec);
}

describe("coalesce: UDP (USO)", () => {
  for (const family of [4, 6] as const) {
    it(`merges equal IPv${family} datagrams of one flow into UDP_L4 when enabled`, () => {
      const pkts = udpRun({ family, lengths: [1200, 1200, 1200, 10] });
      const { bufs, sizes } = batch(pkts);
      const written = coalesce(bufs, sizes, OFFSET, { udp: true });
      expect(written.map((w) => w.segments)).toEqual([4]);
      const l4 = family === 4 ? 20 : 40;
      expect(readVirtioNetHdr(written[0]!.bytes, 0)).toEqual({
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gsoType: VIRTIO_NET_HDR_GSO_UDP_L4,
        hdrLen: l4 + 8,
        gsoSize: 1200,
        csumStart: l4,
        csumOffset: 6,
      });
      const sp = packetAt(bufs, sizes, 0);
      // The UDP length covers the whole super-packet, and the pseudo-header sum uses the same length.
      expect((sp[l4 + 4]! << 8) | sp[l4 + 5]!).toBe(8 + 3610);
      expect(sp).toEqual(asKernelSuperPacket(sp));
      const finished = sp.slice();
      completePartialChecksum(finished, l4, 6);
      expectChecksumsOk(finished);
      expect(shape(pkts, { udp: true })).toEqual([4]);
    });
  }

  it("is off by default (older kernels reject UDP_L4 writes)", () => {
    expect(shape(udpRun({ family: 4, lengths: [100, 100] }))).toEqual([1, 1]);
  });

  it(`stops at ${UDP_MAX_SEGMENTS} datagrams`, () => {
    expect(shape(udpRun({ family: 4, lengths: new Array(70).fill(100) }), { udp: true })).toEqual([64, 6]);
  });

  it("leaves alone datagrams without a checksum, other ports, other sizes and broken UDP lengths", () => {
    const a = udpRun({ family: 4, lengths: [100, 100, 100, 100] });
    const noSum = a[1]!.slice();
    noSum[26] = 0;
    noSum[27] = 0;
    expect(shape([a[0]!, noSum, a[2]!, a[3]!], { udp: true })).toEqual([1, 1, 2]);
    const other = udpRun({ family: 4, lengths: [100], sport: 9, id: 501 });
    expect(shape([a[0]!, other[0]!], { udp: true })).toEqual([1, 1]);
    expect(shape(udpRun({ family: 6, lengths: [100, 200] }), { udp: true })).toEqual([1, 1]);
    const badLen = a[1]!.slice();
    badLen[25] -= 1;
    expect(shape([a[0]!, badLen], { udp: true })).toEqual([1, 1]);
  });

  it("never mixes TCP and UDP", () => {
    const t = tcpRun({ family: 4, lengths: [100, 100], id: 500 });
    const u = udpRun({ family: 4, lengths: [100, 100], id: 502 });
    expect(shape([...t, ...u], { udp: true })).toEqual([2, 2]);
  });
});

describe("coalesce: rejects with OFFLOAD_INVALID before touching anything", () => {
  const pkts = tcpRun({ family: 4, lengths: [100, 100] });
  const cases: [string, (b: Uint8Array[], s: number[]) => unknown, RegExp][] = [
    ["headroom under 10 bytes", (b, s) => coalesce(b, s, 9), /offset must be an integer >= 10 \(the virtio_net_hdr goes in the headroom\), got 9/],
    ["a fractional offset", (b, s) => coalesce(b, s, 10.5), /offset must be an integer >= 10/],
    ["sizes shorter than bufs", (b) => coalesce(b, [140], OFFSET), /sizes has 1 entries for 2 buffers/],
    ["a zero size", (b) => coalesce(b, [140, 0], OFFSET), /sizes\[1\] must be a positive integer, got 0/],
    ["a size past the buffer", (b) => coalesce(b, [140, 2001], OFFSET), /packet 1 \(offset 32 \+ size 2001\) overruns its 2032-byte buffer/],
  ];
  for (const [what, f, msg] of cases) {
    it(what, () => {
      const { bufs, sizes } = batch(pkts, 2000);
      const before = bufs.map((b) => b.slice());
      expectOffloadError(() => f(bufs, sizes), msg);
      expect(bufs).toEqual(before);
    });
  }

  it("an empty batch is fine", () => {
    expect(coalesce([], [], OFFSET)).toEqual([]);
  });
});
