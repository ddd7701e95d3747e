// The read side: super-packets as the kernel hands them over (TSO over IPv4
// and IPv6, USO), split into segments compared byte for byte with segments
// built independently by the packet builders, plus the exact fields (ids,
// sequence numbers, lengths, flags) and every way a header can contradict its
// packet.
import { describe, expect, it } from "vitest";
import { packet4, packet6, tcp, tcpOptions } from "../../../host/packet/build.js";
import { decodePacket } from "../../../host/packet/decode.js";
import { split } from "../../../host/tun/offload/split.js";
import {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  type VirtioNetHdr,
} from "../../../host/tun/offload/virtio-net-hdr.js";
import { asKernelSuperPacket, expectChecksumsOk, expectOffloadError, OFFSET, outBuffers, packetAt, payloadBytes } from "./fixtures.js";

const TS = tcpOptions({ timestamp: { value: 0x01020304, echo: 0x0a0b0c0d } });
/** NOP NOP timestamp: the 12 option bytes Linux puts on every data segment. */
const DATA_OPTIONS = Uint8Array.of(1, 1, ...TS);

function tso(gsoType: number, gsoSize: number, l4: number, hdrLen: number): VirtioNetHdr {
  return { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType, hdrLen, gsoSize, csumStart: l4, csumOffset: 16 };
}

function uso(gsoSize: number, l4: number): VirtioNetHdr {
  return { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, hdrLen: l4 + 8, gsoSize, csumStart: l4, csumOffset: 6 };
}

function runSplit(pkt: Uint8Array, hdr: VirtioNetHdr, nBufs = 8) {
  const bufs = outBuffers(nBufs);
  const sizes = new Array<number>(nBufs).fill(0);
  const n = split(pkt, hdr, bufs, sizes, OFFSET);
  const segs = Array.from({ length: n }, (_, i) => packetAt(bufs, sizes, i));
  // The headroom and the bytes behind each segment are the caller's: untouched.
  for (let i = 0; i < nBufs; i++) {
    expect(bufs[i]!.subarray(0, OFFSET).every((b) => b === 0xee)).toBe(true);
    expect(bufs[i]!.subarray(OFFSET + (i < n ? sizes[i]! : 0)).every((b) => b === 0xee)).toBe(true);
  }
  return { n, sizes: sizes.slice(0, n), segs };
}

describe("split: TSO over IPv4", () => {
  const payload = payloadBytes(3500, 3);
  const mss = 1448;
  // seq and id chosen to wrap during the split.
  const seq0 = 0xfffffd00;
  const id0 = 0xfffe;
  const flags = { ack: true, psh: true, fin: true, cwr: true, ece: true };
  const sport = 51000;
  const dport = 443;
  const header = { src: "192.168.7.1", dst: "192.168.7.2", ttl: 63, tos: 0x02, flags: { df: true } };
  const superPkt = asKernelSuperPacket(
    packet4({ ...header, id: id0 }).tcp({ sport, dport, seq: seq0, ack: 99, window: 1024, flags, options: DATA_OPTIONS, payload }),
  );
  const l4 = 20;
  const hdr = tso(VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, mss, l4, l4 + 32);

  it("gives back the segments a sender would have sent, byte for byte", () => {
    const { n, sizes, segs } = runSplit(superPkt, hdr);
    expect(n).toBe(3);
    expect(sizes).toEqual([52 + 1448, 52 + 1448, 52 + 604]);
    const expected = [0, 1, 2].map((i) =>
      packet4({ ...header, id: (id0 + i) & 0xffff }).tcp({
        sport,
        dport,
        seq: (seq0 + i * mss) % 2 ** 32,
        ack: 99,
        window: 1024,
        flags: { ack: true, ece: true, cwr: i === 0, psh: i === 2, fin: i === 2 },
        options: DATA_OPTIONS,
        payload: payload.subarray(i * mss, Math.min((i + 1) * mss, payload.length)),
      }),
    );
    segs.forEach((s, i) => expect(s).toEqual(expected[i]));
    segs.forEach(expectChecksumsOk);
  });

  it("sets ids, sequence numbers, lengths and flags per segment", () => {
    const { segs } = runSplit(superPkt, hdr);
    const d = segs.map((s) => decodePacket(s, "ip"));
    expect(d.map((x) => x.ipLength)).toEqual([1500, 1500, 656]);
    expect(d.map((x) => x.seq)).toEqual([0xfffffd00, (0xfffffd00 + 1448) % 2 ** 32, (0xfffffd00 + 2896) % 2 ** 32]);
    expect(d.map((x) => x.seq)).toEqual([4294966528, 680, 2128]);
    expect(segs.map((s) => (s[4]! << 8) | s[5]!)).toEqual([0xfffe, 0xffff, 0x0000]);
    expect(d.map((x) => x.tcpFlags)).toEqual(["AEC", "AE", "FPAE"]);
    expect(d.map((x) => x.payloadLength)).toEqual([1448, 1448, 604]);
    expect(d.every((x) => x.ack === 99 && x.window === 1024 && x.ttl === 63 && x.dontFragment)).toBe(true);
  });

  it("trusts the parsed headers, not hdr_len, which may cover payload", () => {
    // The kernel reports skb_headlen() there; on forwarded packets that includes payload.
    const { segs } = runSplit(superPkt, { ...hdr, hdrLen: 200 });
    expect(segs.map((s) => s.length)).toEqual([1500, 1500, 656]);
    const again = runSplit(superPkt, { ...hdr, hdrLen: 0 });
    expect(again.segs).toEqual(segs);
  });

  it("does the same without NEEDS_CSUM (the checksum is computed either way)", () => {
    const plain = runSplit(superPkt, { ...hdr, flags: 0, csumStart: 0, csumOffset: 0 });
    expect(plain.segs).toEqual(runSplit(superPkt, hdr).segs);
    const dataValid = runSplit(superPkt, { ...hdr, flags: VIRTIO_NET_HDR_F_DATA_VALID });
    expect(dataValid.segs).toEqual(plain.segs);
  });

  it("splits in place, from a packet that sits in the first output buffer", () => {
    const bufs = outBuffers(4, 4000);
    bufs[0]!.set(superPkt, OFFSET);
    const sizes = [0, 0, 0, 0];
    const n = split(bufs[0]!.subarray(OFFSET, OFFSET + superPkt.length), hdr, bufs, sizes, OFFSET);
    expect(n).toBe(3);
    const expected = runSplit(superPkt, hdr).segs;
    for (let i = 0; i < n; i++) expect(packetAt(bufs, sizes, i)).toEqual(expected[i]);
  });

  it("copies IPv4 options into every segment", () => {
    const opts = Uint8Array.of(0x94, 4, 0, 0); // router alert
    const p = asKernelSuperPacket(packet4({ ...header, id: 7, options: opts }).tcp({ sport, dport, seq: 1, flags: { ack: true }, payload: payload.subarray(0, 300) }));
    const { segs } = runSplit(p, tso(VIRTIO_NET_HDR_GSO_TCPV4, 100, 24, 44));
    expect(segs.length).toBe(3);
    for (const s of segs) {
      expect(s[0]).toBe(0x46);
      expect([...s.subarray(20, 24)]).toEqual([...opts]);
      expectChecksumsOk(s);
    }
  });

  it("emits a super-packet whose payload fits one segment as one packet", () => {
    const small = asKernelSuperPacket(packet4({ ...header, id: 5 }).tcp({ sport, dport, seq: 9, flags: { ack: true, psh: true }, payload: payload.subarray(0, 1000) }));
    const { n, segs } = runSplit(small, tso(VIRTIO_NET_HDR_GSO_TCPV4, 1448, 20, 40));
    expect(n).toBe(1);
    expect(decodePacket(segs[0]!, "ip").tcpFlags).toBe("PA");
    expectChecksumsOk(segs[0]!);
    // A payload of exactly gso_size is one segment too, and no payload at all is one header-only packet.
    expect(runSplit(small, tso(VIRTIO_NET_HDR_GSO_TCPV4, 1000, 20, 40)).n).toBe(1);
    const empty = asKernelSuperPacket(packet4({ ...header }).tcp({ sport, dport, flags: { ack: true } }));
    const e = runSplit(empty, tso(VIRTIO_NET_HDR_GSO_TCPV4, 1000, 20, 40));
    expect(e.sizes).toEqual([40]);
    expectChecksumsOk(e.segs[0]!);
  });
});

describe("split: TSO over IPv6", () => {
  const payload = payloadBytes(4000, 6);
  const header = { src: "fd00:1::1", dst: "fd00:2::2", hopLimit: 62, flowLabel: 0xabcde, trafficClass: 0x20 };
  const superPkt = asKernelSuperPacket(
    packet6(header).tcp({ sport: 22, dport: 60000, seq: 5000, ack: 1, window: 300, flags: { ack: true, psh: true }, payload }),
  );
  const hdr = tso(VIRTIO_NET_HDR_GSO_TCPV6, 1440, 40, 60);

  it("gives back the segments byte for byte, with payload lengths and sequence numbers", () => {
    const { n, sizes, segs } = runSplit(superPkt, hdr);
    expect(n).toBe(3);
    expect(sizes).toEqual([1500, 1500, 60 + 1120]);
    segs.forEach((s, i) => {
      const expected = packet6(header).tcp({
        sport: 22,
        dport: 60000,
        seq: 5000 + i * 1440,
        ack: 1,
        window: 300,
        flags: { ack: true, psh: i === 2 },
        payload: payload.subarray(i * 1440, (i + 1) * 1440),
      });
      expect(s).toEqual(expected);
      expectChecksumsOk(s);
    });
    expect(segs.map((s) => (s[4]! << 8) | s[5]!)).toEqual([1460, 1460, 1140]);
    expect(segs.map((s) => decodePacket(s, "ip").seq)).toEqual([5000, 6440, 7880]);
  });
});

describe("split: USO", () => {
  for (const family of [4, 6] as const) {
    it(`cuts an IPv${family} UDP super-packet into gso_size datagrams`, () => {
      const payload = payloadBytes(2500, family);
      const udp = { sport: 4433, dport: 443 };
      const build = (p: Uint8Array, id: number) =>
        family === 4
          ? packet4({ src: "10.0.0.1", dst: "10.0.0.2", id }).udp({ ...udp, payload: p })
          : packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ ...udp, payload: p });
      const superPkt = asKernelSuperPacket(build(payload, 0xffff));
      const l4 = family === 4 ? 20 : 40;
      const { n, sizes, segs } = runSplit(superPkt, uso(1200, l4));
      expect(n).toBe(3);
      expect(sizes).toEqual([l4 + 1208, l4 + 1208, l4 + 108]);
      segs.forEach((s, i) => {
        expect(s).toEqual(build(payload.subarray(i * 1200, (i + 1) * 1200), (0xffff + i) & 0xffff));
        expectChecksumsOk(s);
      });
      // UDP length per datagram; IPv4 ids count on from the super-packet's.
      expect(segs.map((s) => (s[l4 + 4]! << 8) | s[l4 + 5]!)).toEqual([1208, 1208, 108]);
      if (family === 4) expect(segs.map((s) => (s[4]! << 8) | s[5]!)).toEqual([0xffff, 0, 1]);
    });
  }
});

describe("split: GSO NONE", () => {
  it("copies a complete packet unchanged, bad checksum and all, without NEEDS_CSUM", () => {
    const p = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).tcp({ sport: 1, dport: 2, payload: payloadBytes(10) });
    p[p.length - 1]! ^= 0xff;
    const { n, segs } = runSplit(p, { flags: 0, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
    expect(n).toBe(1);
    expect(segs[0]).toEqual(p);
  });

  it("leaves the input untouched when completing a checksum", () => {
    const p = asKernelSuperPacket(packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 1, dport: 2, payload: payloadBytes(33) }));
    const before = p.slice();
    runSplit(p, { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 40, csumOffset: 6 });
    expect(p).toEqual(before);
  });
});

describe("split: rejects with OFFLOAD_INVALID", () => {
  const p4 = asKernelSuperPacket(packet4({ src: "10.0.0.1", dst: "10.0.0.2", id: 1 }).tcp({ sport: 1, dport: 2, flags: { ack: true }, payload: payloadBytes(3000) }));
  const p6 = asKernelSuperPacket(packet6({ src: "fd00::1", dst: "fd00::2" }).tcp({ sport: 1, dport: 2, flags: { ack: true }, payload: payloadBytes(3000) }));
  const u4 = asKernelSuperPacket(packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2, payload: payloadBytes(3000) }));
  const none: VirtioNetHdr = { flags: 0, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  const csum: VirtioNetHdr = { ...none, flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: 16 };
  const t4 = tso(VIRTIO_NET_HDR_GSO_TCPV4, 1000, 20, 40);
  const t6 = tso(VIRTIO_NET_HDR_GSO_TCPV6, 1000, 40, 60);

  const cases: [string, Uint8Array, VirtioNetHdr, RegExp, number?][] = [
    ["hdr_len beyond the packet", p4, { ...t4, hdrLen: p4.length + 1 }, /hdr_len 3041 is beyond the 3040-byte packet/],
    ["hdr_len beyond the packet (GSO NONE)", p4, { ...none, hdrLen: 5000 }, /hdr_len 5000 is beyond/],
    ["csum_start beyond the packet", p4, { ...csum, csumStart: 3040 }, /csum_start 3040 is beyond the 3040-byte packet/],
    ["csum_start + csum_offset past the end", p4, { ...csum, csumStart: 3000, csumOffset: 39 }, /csum_start 3000 \+ csum_offset 39 puts the 2-byte checksum past the end/],
    ["gso_size 0 with TCPV4", p4, { ...t4, gsoSize: 0 }, /gso_size 0 with gso_type TCPV4/],
    ["gso_size 0 with UDP_L4", u4, { ...uso(1, 20), gsoSize: 0 }, /gso_size 0 with gso_type UDP_L4/],
    ["too few output buffers for the segments", p4, t4, /GSO TCPV4 with gso_size 1000 and 3000 payload bytes makes 3 packets but only 2 output buffers were given/, 2],
    ["no output buffer at all", p4, none, /GSO NONE makes 1 packet but only 0 output buffers were given/, 0],
    ["IPv6 hop-by-hop header with TCPV6", packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: [{ type: 0 }] }).tcp({ sport: 1, dport: 2, payload: payloadBytes(3000) }), { ...t6, csumStart: 48 }, /IPv6 extension header 0 before the TCP header: segmentation offload with IPv6 extension headers is not supported/],
    ["IPv6 routing header with USO", packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: [{ type: 43 }] }).udp({ sport: 1, dport: 2, payload: payloadBytes(3000) }), uso(1000, 48), /IPv6 extension header 43 before the UDP header: segmentation offload with IPv6 extension headers is not supported/],
    ["TCPV4 on an IPv6 packet", p6, t4, /GSO TCPV4 on a packet with IP version 6/],
    ["TCPV6 on an IPv4 packet", p4, t6, /GSO TCPV6 on a packet with IP version 4/],
    ["USO on something that is not IP", Uint8Array.of(0x10, 0, 0, 0), { ...uso(1, 0), hdrLen: 0, csumStart: 0, csumOffset: 0, flags: 0 }, /GSO UDP_L4 on a packet with IP version 1/],
    ["TCP GSO on an empty packet", new Uint8Array(0), { ...t4, flags: 0, hdrLen: 0 }, /GSO TCPV4 on a packet with IP version \(empty packet\)/],
    ["UFO", u4, { ...uso(1000, 20), gsoType: VIRTIO_NET_HDR_GSO_UDP }, /gso_type UDP \(UFO\) is not supported/],
    ["TSO on a UDP packet", u4, { ...t4, csumOffset: 6 }, /GSO TCPV4: IP protocol is 17, not TCP \(6\)/],
    ["USO on a TCP packet", p4, uso(1000, 20), /GSO UDP_L4: IP protocol is 6, not UDP \(17\)/],
    ["an IPv4 fragment", packet4({ src: "10.0.0.1", dst: "10.0.0.2", flags: { mf: true } }).tcp({ sport: 1, dport: 2, payload: payloadBytes(3000) }), t4, /IPv4 fragment \(offset 0, more=true\) cannot be segmented/],
    ["an IP length that leaves trailing bytes", Uint8Array.of(...p4, 0, 0), t4, /IP length field says 3040 bytes but the packet has 3042/],
    ["a truncated IP length", p4.subarray(0, 2000), t4, /IP length field says 3040 bytes but the packet has 2000/],
    ["a bad TCP data offset", (() => { const x = p4.slice(); x[32] = 0x40; return x; })(), t4, /bad TCP data offset 4 \(< 5\)/],
    ["a truncated TCP header", packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).raw(6, new Uint8Array(10)), { ...t4, hdrLen: 0, flags: 0 }, /truncated TCP header: 10 of 20 bytes/],
    ["TCP options past the end", (() => { const x = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).raw(6, tcp({ sport: 1, dport: 2 })); x[32] = 0xf0; return x; })(), { ...t4, hdrLen: 0, flags: 0 }, /truncated TCP header: 20 of 60 bytes/],
    ["csum_start that is not the TCP header", p4, { ...t4, csumStart: 24 }, /csum_start 24 \/ csum_offset 16 do not name the TCP checksum \(expected 20 \/ 16\)/],
    ["csum_offset that is not the TCP checksum field", p4, { ...t4, csumOffset: 6 }, /do not name the TCP checksum/],
    ["unknown flags", p4, { ...t4, flags: 0x80 }, /unknown bits 0x80/],
    ["a bad IPv4 header length", (() => { const x = p4.slice(); x[0] = 0x44; return x; })(), t4, /bad IPv4 header length 16/],
  ];
  for (const [what, pkt, hdr, msg, nBufs] of cases) {
    it(what, () => {
      const bufs = outBuffers(nBufs ?? 4);
      const sizes = new Array<number>(bufs.length).fill(-1);
      expectOffloadError(() => split(pkt, hdr, bufs, sizes, OFFSET), msg);
      // Validate, then write: nothing was touched.
      expect(bufs.every((b) => b.every((x) => x === 0xee))).toBe(true);
      expect(sizes.every((s) => s === -1)).toBe(true);
    });
  }

  it("an output buffer too small for its segment", () => {
    const bufs = [...outBuffers(2, 1040), ...outBuffers(1, 1039)];
    expectOffloadError(() => split(p4, t4, bufs, [0, 0, 0], OFFSET), /output buffer 2 has 1039 bytes after offset 32; packet 2 needs 1040/);
    expectOffloadError(() => split(p4, none, outBuffers(1, 100), [0], OFFSET), /output buffer 0 has 100 bytes after offset 32; packet 0 needs 3040/);
  });

  it("a bad offset", () => {
    expectOffloadError(() => split(p4, none, outBuffers(1, 4000), [0], -1), /offset must be a non-negative integer, got -1/);
    expectOffloadError(() => split(p4, none, outBuffers(1, 4000), [0], 0.5), /offset must be a non-negative integer/);
    expectOffloadError(() => split(p4, none, outBuffers(1, 10), [0], 100), /output buffer 0 has 0 bytes after offset 100/);
  });
});
