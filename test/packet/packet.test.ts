import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  decodePacket,
  describePacket,
  ethernet,
  fillChecksums,
  formatIp,
  formatMac,
  fragment4,
  fragment6,
  icmp6Echo,
  internetChecksum,
  ipv4,
  ipv6,
  locateIp,
  neighborSolicitation,
  onesComplementSum,
  packet4,
  packet6,
  parseIp,
  parseMac,
  pseudoHeaderSum6,
  quoteForIcmpError,
  routingBody,
  solicitedNodeMulticast,
  tcp,
  tcpOptions,
  udp,
  verifyChecksums,
} from "../../host/packet/index.js";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const u16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const ascii = (s: string) => new TextEncoder().encode(s);

// One of everything the builders make, used by the "every builder" tests below.
function samples(): { name: string; pkt: Uint8Array; l3: number; link: "ip" | "ethernet" }[] {
  const p4 = packet4({ src: "10.0.0.1", dst: "10.0.0.2" });
  const p6 = packet6({ src: "fd00::1", dst: "fd00::2" });
  const big4 = p4.udp({ sport: 1000, dport: 2000, payload: bytes(3000) });
  const big6 = p6.udp({ sport: 1000, dport: 2000, payload: bytes(3000) });
  const list = [
    { name: "tcp4 syn", pkt: p4.tcp({ sport: 1234, dport: 80, flags: { syn: true }, options: tcpOptions({ mss: 1460 }) }) },
    { name: "tcp4 data", pkt: p4.tcp({ sport: 1234, dport: 80, flags: { ack: true, psh: true }, payload: bytes(33) }) },
    { name: "udp4", pkt: p4.udp({ sport: 53, dport: 5353, payload: ascii("hello") }) },
    { name: "udp4 empty", pkt: p4.udp({ sport: 1, dport: 2 }) },
    { name: "icmp echo", pkt: p4.icmpEcho({ request: true, id: 7, seq: 1, payload: bytes(56) }) },
    { name: "icmp echo reply", pkt: p4.icmpEcho({ request: false, id: 7, seq: 1 }) },
    {
      name: "icmp frag-needed",
      pkt: packet4({ src: "10.0.0.254", dst: "10.0.0.1" }).icmpError({ type: 3, code: 4, mtu: 1400, quoted: quoteForIcmpError(big4) }),
    },
    {
      name: "ipv4 with options",
      pkt: packet4({ src: "10.0.0.1", dst: "10.0.0.2", options: Uint8Array.of(0x94, 4, 0, 0, 1) }).udp({ sport: 9, dport: 9, payload: bytes(11) }),
    },
    ...fragment4(big4, 1480).map((f, i) => ({ name: `ipv4 fragment ${i}`, pkt: f })),
    { name: "tcp6", pkt: p6.tcp({ sport: 40000, dport: 443, seq: 0xfffffff0, ack: 5, flags: { ack: true, fin: true, psh: true }, payload: bytes(7) }) },
    { name: "udp6", pkt: p6.udp({ sport: 5353, dport: 53, payload: ascii("hello") }) },
    { name: "icmp6 echo", pkt: p6.icmp6Echo({ request: true, id: 7, seq: 9 }) },
    { name: "icmp6 packet-too-big", pkt: packet6({ src: "fd00::fe", dst: "fd00::1" }).icmp6Error({ type: 2, code: 0, mtu: 1280, quoted: quoteForIcmpError(big6) }) },
    { name: "icmp6 ndp", pkt: neighborSolicitation({ src: "fd00::1", target: "fd00::2", srcMac: "02:00:00:00:00:01" }) },
    {
      name: "ipv6 ext chain",
      pkt: packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: [{ type: 0 }, { type: 43 }, { type: 60, body: bytes(10) }] }).tcp({ sport: 1, dport: 2, flags: { rst: true } }),
    },
    {
      name: "ipv6 srh",
      pkt: packet6({
        src: "fd00::1",
        dst: "fd00::a",
        extHeaders: [{ type: 43, body: routingBody({ type: 4, segmentsLeft: 1, addresses: ["fd00::2", "fd00::a"] }) }],
      }).udp({ sport: 7, dport: 8, payload: bytes(20) }),
    },
    ...fragment6(big6, 1232, 0xabcdef).map((f, i) => ({ name: `ipv6 fragment ${i}`, pkt: f })),
  ];
  const out: { name: string; pkt: Uint8Array; l3: number; link: "ip" | "ethernet" }[] = list.map((s) => ({ ...s, l3: 0, link: "ip" }));
  out.push({ name: "ethernet tcp4", pkt: ethernet({}, list[0]!.pkt), l3: 14, link: "ethernet" });
  out.push({ name: "ethernet vlan udp6", pkt: ethernet({ vlan: { id: 100, pcp: 5 } }, list.find((s) => s.name === "udp6")!.pkt), l3: 18, link: "ethernet" });
  return out;
}

describe("address", () => {
  it("parses and formats IPv4", () => {
    expect(parseIp("192.168.0.199")).toEqual({ family: 4, bytes: Uint8Array.of(192, 168, 0, 199) });
    expect(formatIp(Uint8Array.of(0, 0, 0, 0))).toBe("0.0.0.0");
    expect(formatIp(Uint8Array.of(255, 255, 255, 255))).toBe("255.255.255.255");
  });

  it("parses IPv6 with :: compression and embedded IPv4", () => {
    expect(toHex(parseIp("fd00::1").bytes)).toBe("fd000000000000000000000000000001");
    expect(toHex(parseIp("::").bytes)).toBe("0".repeat(32));
    expect(toHex(parseIp("::1").bytes)).toBe("0".repeat(31) + "1");
    expect(toHex(parseIp("1::").bytes)).toBe("0001" + "0".repeat(28));
    expect(toHex(parseIp("2001:DB8:0:0:1:0:0:1").bytes)).toBe("20010db8000000000001000000000001");
    expect(toHex(parseIp("::ffff:10.0.0.1").bytes)).toBe("00000000000000000000ffff0a000001");
    expect(toHex(parseIp("64:ff9b::192.0.2.33").bytes)).toBe("0064ff9b0000000000000000c0000221");
    expect(parseIp("fe80::1:2").family).toBe(6);
  });

  it("formats IPv6 canonically (RFC 5952)", () => {
    const canon = (s: string) => formatIp(parseIp(s).bytes);
    expect(canon("2001:0db8:0000:0000:0001:0000:0000:0001")).toBe("2001:db8::1:0:0:1"); // leftmost of equal runs
    expect(canon("2001:db8:0:1:1:1:1:1")).toBe("2001:db8:0:1:1:1:1:1"); // a single zero group is not compressed
    expect(canon("2001:db8:0:0:1:0:0:0")).toBe("2001:db8:0:0:1::"); // longest run wins
    expect(canon("0:0:0:0:0:0:0:0")).toBe("::");
    expect(canon("::ffff:0a00:0001")).toBe("::ffff:10.0.0.1");
    expect(canon("FD00::A")).toBe("fd00::a");
  });

  it("round-trips random addresses", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
        expect(parseIp(formatIp(b)).bytes).toEqual(b);
      }),
      { numRuns: 500 },
    );
  });

  it("rejects invalid strings with a message saying why", () => {
    expect(() => parseIp("10.0.0.256")).toThrow(/Invalid IPv4 address "10.0.0.256": part 4 \(256\) is greater than 255/);
    expect(() => parseIp("10.0.0")).toThrow(/expected 4 dot-separated parts, got 3/);
    expect(() => parseIp("10.0.0.01")).toThrow(/leading zero/);
    expect(() => parseIp("10.0.0.x")).toThrow(/not a decimal number/);
    expect(() => parseIp("")).toThrow(/Invalid IPv4 address/);
    expect(() => parseIp("1::2::3")).toThrow(/Invalid IPv6 address "1::2::3": "::" may appear only once/);
    expect(() => parseIp("1:2:3:4:5:6:7")).toThrow(/expected 8 groups, got 7/);
    expect(() => parseIp("1:2:3:4:5:6:7::8")).toThrow(/too many groups/);
    expect(() => parseIp("12345::")).toThrow(/group "12345" is not 1-4 hex digits/);
    expect(() => parseIp(":1::")).toThrow(/empty group/);
    expect(() => parseIp("fe80::1%eth0")).toThrow(/zone ids/);
    expect(() => parseIp("::1.2.3.999")).toThrow(/embedded IPv4 part/);
    expect(() => formatIp(new Uint8Array(5))).toThrow(/expected 4 or 16 bytes, got 5/);
  });

  it("handles MACs and solicited-node groups", () => {
    expect(formatMac(parseMac("02:00:5E:10:00:FF"))).toBe("02:00:5e:10:00:ff");
    expect(() => parseMac("02:00:5e:10:00")).toThrow(/Invalid MAC address/);
    expect(formatIp(solicitedNodeMulticast("fd00::12:3456:789a"))).toBe("ff02::1:ff56:789a");
  });
});

describe("checksum", () => {
  it("matches the classic IPv4 header example (0xb861)", () => {
    const h = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
    expect(internetChecksum(h, 0, 20)).toBe(0xb861);
    h[10] = 0xb8;
    h[11] = 0x61;
    expect(internetChecksum(h, 0, 20)).toBe(0);
  });

  it("matches the RFC 1071 worked example and pads odd lengths", () => {
    const b = hex("0001 f203 f4f5 f6f7");
    expect(onesComplementSum(b, 0, 8)).toBe(0xddf2);
    expect(internetChecksum(b, 0, 8)).toBe(0x220d);
    expect(internetChecksum(Uint8Array.of(0x12, 0x34, 0x56), 0, 3)).toBe(~(0x1234 + 0x5600) & 0xffff);
    expect(internetChecksum(Uint8Array.of(), 0, 0)).toBe(0xffff);
  });

  it("pseudo-header sum folds a 32-bit IPv6 length", () => {
    const z = new Uint8Array(16);
    expect(pseudoHeaderSum6(z, z, 17, 0x10005)).toBe(17 + 1 + 5);
  });
});

describe("builders: exact bytes", () => {
  it("ipv4 reproduces the classic header, checksum 0xb861", () => {
    const p = ipv4({ src: "192.168.0.1", dst: "192.168.0.199", proto: 17, flags: { df: true }, payload: new Uint8Array(95), l4Checksum: false });
    expect(toHex(p.subarray(0, 20))).toBe("45000073" + "00004000" + "4011b861" + "c0a80001" + "c0a800c7");
  });

  it("IPv4 TCP SYN matches independently computed bytes", () => {
    const p = packet4({ src: "10.0.0.1", dst: "10.0.0.2", id: 0x1234, flags: { df: true } }).tcp({
      sport: 1234,
      dport: 80,
      seq: 1000,
      flags: { syn: true },
      window: 64240,
      options: tcpOptions({ mss: 1460 }),
    });
    expect(toHex(p)).toBe("4500002c12344000400614960a0000010a00000204d20050000003e8000000006002faf080290000020405b4");
    expect(u16(p, 10)).toBe(0x1496); // IPv4 header checksum
    expect(u16(p, 36)).toBe(0x8029); // TCP checksum at 20 + 16
  });

  it("IPv6 UDP matches independently computed bytes", () => {
    const p = packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 5353, dport: 53, payload: ascii("hello") });
    expect(toHex(p)).toBe(
      "60000000000d1140fd000000000000000000000000000001fd00000000000000000000000000000214e90035000dacdf68656c6c6f",
    );
  });

  it("ICMP echo checksums match independently computed values", () => {
    const e4 = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).icmpEcho({ request: true, id: 0x1234, seq: 1, payload: ascii("abcd") });
    expect(toHex(e4.subarray(20))).toBe("080021041234000161626364");
    const e6 = packet6({ src: "fd00::1", dst: "fd00::2" }).icmp6Echo({ request: true, id: 7, seq: 9 });
    expect(toHex(e6.subarray(40))).toBe("800085a800070009");
    expect(e6[6]).toBe(58);
  });

  it("ipv4 fields land at their offsets", () => {
    const p = ipv4({ src: "1.2.3.4", dst: "5.6.7.8", proto: 99, ttl: 3, id: 0xbeef, tos: 0xb8, flags: { mf: true }, fragOffset: 0x1abc, payload: bytes(5) });
    expect(p.length).toBe(25);
    expect(p[0]).toBe(0x45);
    expect(p[1]).toBe(0xb8);
    expect(u16(p, 2)).toBe(25);
    expect(u16(p, 4)).toBe(0xbeef);
    expect(u16(p, 6)).toBe(0x2000 | 0x1abc);
    expect(p[8]).toBe(3);
    expect(p[9]).toBe(99);
    expect(internetChecksum(p, 0, 20)).toBe(0);
  });

  it("ipv4 options are padded to 4 bytes and counted in IHL", () => {
    const p = ipv4({ src: "1.2.3.4", dst: "5.6.7.8", proto: 17, options: Uint8Array.of(0x94, 4, 0, 0, 1), payload: udp({ sport: 1, dport: 2 }) });
    expect(p[0]).toBe(0x47);
    expect(toHex(p.subarray(20, 28))).toBe("9404000001000000");
    expect(u16(p, 2)).toBe(28 + 8);
    expect(verifyChecksums(p, 0)).toMatchObject({ ok: true, checked: ["IPv4 header", "UDP"] });
    expect(() => ipv4({ src: "1.2.3.4", dst: "5.6.7.8", proto: 17, options: new Uint8Array(41), payload: new Uint8Array() })).toThrow(/at most 40/);
  });

  it("tcp header fields, flags and options", () => {
    const s = tcp({ sport: 1, dport: 2, seq: 0xdeadbeef, ack: 0x01020304, window: 512, urgent: 9, flags: { fin: true, syn: true, rst: true, psh: true, ack: true, urg: true, ece: true, cwr: true }, options: Uint8Array.of(1, 1, 1), payload: bytes(3) });
    expect(s.length).toBe(24 + 3);
    expect(toHex(s.subarray(0, 24))).toBe("00010002deadbeef0102030460ff020000000009" + "01010100");
    const opts = tcpOptions({ mss: 1460, sackPermitted: true, timestamp: { value: 1, echo: 2 }, windowScale: 7 });
    expect(toHex(opts)).toBe("020405b4" + "0402" + "080a0000000100000002" + "01030307");
  });

  it("udp and icmp builders leave the checksum for the IP layer", () => {
    expect(toHex(udp({ sport: 0x1234, dport: 0x5678, payload: Uint8Array.of(0xaa) }))).toBe("1234567800090000aa");
    expect(toHex(icmp6Echo({ request: false, id: 1, seq: 2 }))).toBe("8100000000010002");
    // The composed and the low-level forms agree.
    const a = ipv4({ src: "10.0.0.1", dst: "10.0.0.2", proto: 17, payload: udp({ sport: 1, dport: 2 }) });
    expect(a).toEqual(packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2 }));
  });

  it("UDP sends a computed checksum of 0 as 0xffff", () => {
    // Search for a payload whose checksum comes out as zero: adjust its last word.
    const base = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2, payload: new Uint8Array(2) });
    const c = u16(base, 26);
    // Adding `c` to the data lowers the complement by `c` (ones' complement), making it zero.
    const payload = Uint8Array.of(c >> 8, c & 0xff);
    const p = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2, payload });
    expect(u16(p, 26)).toBe(0xffff);
    expect(verifyChecksums(p, 0).ok).toBe(true);
  });

  it("ipv6 header fields", () => {
    const p = ipv6({ src: "fd00::1", dst: "fd00::2", nextHeader: 59, hopLimit: 7, flowLabel: 0xabcde, trafficClass: 0x12, payload: bytes(3) });
    expect(toHex(p.subarray(0, 8))).toBe("612abcde00033b07");
    expect(formatIp(p.subarray(8, 24))).toBe("fd00::1");
    expect(formatIp(p.subarray(24, 40))).toBe("fd00::2");
  });

  it("ethernet with and without an 802.1Q tag", () => {
    const ip = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2 });
    const f = ethernet({ src: "02:00:00:00:00:aa", dst: "ff:ff:ff:ff:ff:ff" }, ip);
    expect(toHex(f.subarray(0, 14))).toBe("ffffffffffff" + "0200000000aa" + "0800");
    const t = ethernet({ src: "02:00:00:00:00:aa", dst: "ff:ff:ff:ff:ff:ff", vlan: { id: 0x123, pcp: 5, dei: true } }, ip);
    expect(toHex(t.subarray(12, 18))).toBe("8100b1230800");
    expect(t.subarray(18)).toEqual(ip);
    expect(toHex(ethernet({ etherType: 0x0806 }, new Uint8Array(28)).subarray(12, 14))).toBe("0806");
    expect(() => ethernet({}, new Uint8Array(28))).toThrow(/etherType not given/);
  });

  it("rejects nonsense input with clear errors", () => {
    expect(() => packet4({ src: "fd00::1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2 })).toThrow(/IPv4 source "fd00::1": expected an IPv4 address, got IPv6/);
    expect(() => packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 70000, dport: 2 })).toThrow(/UDP sport must be an integer in 0..65535, got 70000/);
    expect(() => packet6({ src: "fd00::1", dst: "fd00::2" }).raw(59, new Uint8Array(70000))).toThrow(/jumbograms/);
  });
});

describe("IPv6 extension headers", () => {
  it("chains next-header values and lengths", () => {
    const p = packet6({
      src: "fd00::1",
      dst: "fd00::2",
      extHeaders: [{ type: 0 }, { type: 43 }, { type: 60, body: bytes(10) }, { type: 44, id: 0x01020304 }],
    }).udp({ sport: 1, dport: 2 });
    expect(p[6]).toBe(0); // IPv6 -> hop-by-hop
    // hop-by-hop: 8 bytes, next = routing, 6 bytes of PadN
    expect(toHex(p.subarray(40, 48))).toBe("2b00" + "0104" + "00000000");
    // routing: 8 bytes, next = dest-opts, type 0, segments left 0
    expect(toHex(p.subarray(48, 56))).toBe("3c00000000000000");
    // dest-opts: 2 + 10 body = 12 -> 16 bytes (length field 1), next = fragment, padded with PadN(2)
    expect(p[56]).toBe(44);
    expect(p[57]).toBe(1);
    expect(p.subarray(58, 68)).toEqual(bytes(10));
    expect(toHex(p.subarray(68, 72))).toBe("01020000");
    // fragment: next = UDP, atomic (offset 0, M=0)
    expect(toHex(p.subarray(72, 80))).toBe("1100000001020304");
    expect(u16(p, 4)).toBe(40 + 8);
    expect(p.length).toBe(40 + 40 + 8);
    const loc = locateIp(p, 0);
    expect(loc.family === 6 && [loc.proto, loc.l4Offset, loc.extHeaders.map((h) => h.type)]).toEqual([17, 80, [0, 43, 60, 44]]);
    // An atomic fragment is a whole datagram, so its UDP checksum is verified.
    expect(verifyChecksums(p, 0)).toMatchObject({ ok: true, checked: ["UDP"] });
    expect(decodePacket(p, "ip")).toMatchObject({ extHeaders: ["hop-by-hop", "routing", "dest-opts", "fragment"], sport: 1, dport: 2, fragment: { id: 0x01020304, offset: 0, more: false } });
  });

  it("uses the final destination of a routing header in the pseudo-header", () => {
    const mk = (segmentsLeft: number) =>
      packet6({ src: "fd00::1", dst: "fd00::a", extHeaders: [{ type: 43, body: routingBody({ type: 4, segmentsLeft, addresses: ["fd00::2", "fd00::a"] }) }] }).udp({ sport: 7, dport: 8 });
    const inFlight = mk(1);
    const arrived = mk(0);
    expect(inFlight[40 + 1]).toBe(4); // 8 + 32 bytes -> length field 4
    const loc = locateIp(inFlight, 0);
    expect(loc.family === 6 && formatIp(loc.pseudoDst)).toBe("fd00::2");
    expect(verifyChecksums(inFlight, 0).ok).toBe(true);
    // Same bytes except segments-left: the UDP checksum must differ, since the final destination differs.
    expect(u16(inFlight, 80 + 6)).not.toBe(u16(arrived, 80 + 6));
    expect(verifyChecksums(arrived, 0).ok).toBe(true);
  });

  it("refuses more than 8 extension headers", () => {
    const p = packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: Array.from({ length: 9 }, () => ({ type: 60 as const })) }).udp({ sport: 1, dport: 2 });
    const r = verifyChecksums(p, 0);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual(["more than 8 IPv6 extension headers"]);
    expect(decodePacket(p, "ip").error).toBe("more than 8 IPv6 extension headers");
    const eight = packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: Array.from({ length: 8 }, () => ({ type: 60 as const })) }).udp({ sport: 1, dport: 2 });
    expect(verifyChecksums(eight, 0).ok).toBe(true);
  });
});

describe("fragments", () => {
  it("fragment4 splits on 8-byte boundaries and reassembles", () => {
    const whole = packet4({ src: "10.0.0.1", dst: "10.0.0.2", id: 77 }).udp({ sport: 1000, dport: 2000, payload: bytes(3000) });
    const frags = fragment4(whole, 1480);
    expect(frags.map((f) => f.length)).toEqual([1500, 1500, 20 + 3008 - 2960]);
    expect(frags.map((f) => u16(f, 6))).toEqual([0x2000 | 0, 0x2000 | 185, 370]);
    expect(frags.every((f) => u16(f, 4) === 77)).toBe(true);
    const reassembled = new Uint8Array(3008);
    for (const f of frags) reassembled.set(f.subarray(20), (u16(f, 6) & 0x1fff) * 8);
    expect(reassembled).toEqual(whole.subarray(20));
    for (const f of frags) {
      const r = verifyChecksums(f, 0);
      expect(r.ok).toBe(true);
      expect(r.checked).toEqual(["IPv4 header"]);
      expect(r.skipped[0]).toMatch(/^UDP: fragment/);
    }
    expect(decodePacket(frags[0]!, "ip")).toMatchObject({ sport: 1000, dport: 2000, fragment: { id: 77, offset: 0, more: true } });
    expect(describePacket(frags[1]!, "ip")).toBe("10.0.0.1 -> 10.0.0.2 UDP frag id=0x4d off=1480 MF len=1500");
    expect(describePacket(frags[2]!, "ip")).toBe("10.0.0.1 -> 10.0.0.2 UDP frag id=0x4d off=2960 len=68");
  });

  it("fragment4 copies only options with the copied bit to later fragments", () => {
    const whole = packet4({ src: "10.0.0.1", dst: "10.0.0.2", options: Uint8Array.of(0x07, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0) }).udp({ sport: 1, dport: 2, payload: bytes(40) });
    const [a, b] = fragment4(whole, 24);
    expect(a![0]).toBe(0x48);
    expect(b![0]).toBe(0x46);
    expect(toHex(b!.subarray(20, 24))).toBe("94040000");
  });

  it("ipv4 builder produces a hand-made fragment without touching the payload", () => {
    const payload = bytes(16);
    const f = ipv4({ src: "10.0.0.1", dst: "10.0.0.2", proto: 6, flags: { mf: true }, fragOffset: 0, payload });
    expect(f.subarray(20)).toEqual(payload); // no checksum written into what looks like a TCP header
    expect(verifyChecksums(f, 0).skipped[0]).toMatch(/^TCP: fragment \(offset 0, more=true\)/);
  });

  it("fragment6 keeps hop-by-hop unfragmentable and chains the fragment header", () => {
    const whole = packet6({ src: "fd00::1", dst: "fd00::2", extHeaders: [{ type: 0 }, { type: 60 }] }).udp({ sport: 1, dport: 2, payload: bytes(2000) });
    const frags = fragment6(whole, 1232, 0xabcdef);
    expect(frags.length).toBe(2);
    const [a, b] = frags as [Uint8Array, Uint8Array];
    expect(a[6]).toBe(0);
    expect(a[40]).toBe(44); // hop-by-hop -> fragment
    expect(toHex(a.subarray(48, 56))).toBe("3c00" + "0001" + "00abcdef"); // fragment -> dest-opts, offset 0, M
    expect(toHex(b.subarray(48, 56))).toBe("3c00" + (((1232 / 8) << 3) | 0).toString(16).padStart(4, "0") + "00abcdef");
    expect(u16(a, 4)).toBe(a.length - 40);
    const fragmentable = whole.subarray(48);
    expect(new Uint8Array([...a.subarray(56), ...b.subarray(56)])).toEqual(fragmentable);
    for (const f of frags) {
      const r = verifyChecksums(f, 0);
      expect(r.ok).toBe(true);
      expect(r.skipped[0]).toMatch(/fragment/);
    }
    // The L4 header of a non-first fragment is not there to decode.
    expect(decodePacket(b, "ip")).toMatchObject({ family: 6, proto: 60, fragment: { id: 0xabcdef, offset: 1232, more: false } });
    expect(decodePacket(b, "ip").sport).toBeUndefined();
    expect(decodePacket(a, "ip")).toMatchObject({ proto: 17, sport: 1, dport: 2, extHeaders: ["hop-by-hop", "fragment", "dest-opts"] });
  });
});

describe("ICMP errors", () => {
  const orig4 = packet4({ src: "10.0.0.1", dst: "192.0.2.9", id: 5 }).tcp({ sport: 40000, dport: 443, flags: { syn: true }, payload: bytes(100) });
  const orig6 = packet6({ src: "fd00::1", dst: "2001:db8::9" }).udp({ sport: 5000, dport: 53, payload: bytes(1400) });

  it("quotes the IPv4 header plus 8 bytes", () => {
    expect(quoteForIcmpError(orig4)).toEqual(orig4.subarray(0, 28));
    const withOpts = packet4({ src: "10.0.0.1", dst: "10.0.0.2", options: new Uint8Array(4).fill(1) }).udp({ sport: 1, dport: 2, payload: bytes(30) });
    expect(quoteForIcmpError(withOpts).length).toBe(32);
    const tiny = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).raw(253, bytes(3));
    expect(quoteForIcmpError(ethernet({}, tiny).subarray(14)).length).toBe(23);
  });

  it("quotes IPv6 up to the 1280-byte minimum MTU", () => {
    const q = quoteForIcmpError(orig6);
    expect(q.length).toBe(1232);
    const err = packet6({ src: "fd00::fe", dst: "fd00::1" }).icmp6Error({ type: 2, code: 0, mtu: 1280, quoted: q });
    expect(err.length).toBe(1280);
    expect([err[40], err[41]]).toEqual([2, 0]);
    expect(toHex(err.subarray(44, 48))).toBe("00000500"); // 32-bit MTU
    expect(quoteForIcmpError(packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 1, dport: 2 })).length).toBe(48);
  });

  it("verifies the ICMP checksum and the quoted IPv4 header checksum", () => {
    const err = packet4({ src: "10.0.0.254", dst: "10.0.0.1" }).icmpError({ type: 3, code: 4, mtu: 1400, quoted: quoteForIcmpError(orig4) });
    expect(err.length).toBe(20 + 8 + 28);
    expect([err[20], err[21]]).toEqual([3, 4]);
    expect(u16(err, 26)).toBe(1400);
    const r = verifyChecksums(err, 0);
    expect(r).toMatchObject({ ok: true, checked: ["IPv4 header", "ICMP", "inner IPv4 header"] });
    expect(r.skipped.some((s) => s.startsWith("inner L4"))).toBe(true);

    // Break the quoted header and fix the outer checksum: only the inner problem remains.
    const bad = err.slice();
    bad[28 + 8] ^= 0x01; // quoted TTL
    fillChecksums(bad, 0);
    const rb = verifyChecksums(bad, 0);
    expect(rb.ok).toBe(false);
    expect(rb.problems).toHaveLength(1);
    expect(rb.problems[0]).toMatch(/^inner IPv4 header checksum wrong: expected 0x[0-9a-f]{4}, found 0x[0-9a-f]{4}$/);
  });

  it("decodes the quoted inner tuple", () => {
    const err = packet4({ src: "10.0.0.254", dst: "10.0.0.1" }).icmpError({ type: 11, code: 0, quoted: quoteForIcmpError(orig4) });
    const s = decodePacket(err, "ip");
    expect(s).toMatchObject({ icmpType: 11, icmpCode: 0, icmpName: "time-exceeded" });
    expect(s.error).toBeUndefined();
    expect(s.inner).toMatchObject({ family: 4, src: "10.0.0.1", dst: "192.0.2.9", protoName: "TCP", sport: 40000, dport: 443, ipLength: 140, seq: 0 });
    expect(s.inner?.error).toBeUndefined();
    expect(describePacket(s)).toBe("10.0.0.254 -> 10.0.0.1 ICMP time-exceeded len=56 {10.0.0.1:40000 -> 192.0.2.9:443 TCP}");

    const ptb = packet6({ src: "fd00::fe", dst: "fd00::1" }).icmp6Error({ type: 2, code: 0, mtu: 1280, quoted: quoteForIcmpError(orig6) });
    expect(describePacket(ptb, "ip")).toBe("fd00::fe -> fd00::1 ICMPv6 packet-too-big mtu=1280 len=1280 {[fd00::1]:5000 -> [2001:db8::9]:53 UDP}");
  });
});

describe("verifyChecksums", () => {
  it("passes on every builder's output", () => {
    for (const s of samples()) {
      const r = verifyChecksums(s.pkt, s.l3);
      expect(r.problems, s.name).toEqual([]);
      expect(r.ok, s.name).toBe(true);
    }
  });

  it("names the broken checksum with expected and found values", () => {
    const p = packet4({ src: "10.0.0.1", dst: "10.0.0.2", id: 0x1234, flags: { df: true } }).tcp({ sport: 1234, dport: 80, seq: 1000, flags: { syn: true }, window: 64240, options: tcpOptions({ mss: 1460 }) });
    const payloadFlip = p.slice();
    payloadFlip[43] ^= 0x01; // last MSS byte: 0xb4 -> 0xb5, the sum grows by 1
    expect(verifyChecksums(payloadFlip, 0)).toEqual({
      ok: false,
      problems: ["TCP checksum wrong: expected 0x8028, found 0x8029"],
      checked: ["IPv4 header"],
      skipped: [],
    });
    const ttlFlip = p.slice();
    ttlFlip[8] = 63; // 0x4006 -> 0x3f06: the header sum drops by 0x100
    expect(verifyChecksums(ttlFlip, 0).problems).toEqual(["IPv4 header checksum wrong: expected 0x1596, found 0x1496"]);
    const srcFlip = p.slice();
    srcFlip[15] ^= 0x03; // the address is in both the header and the pseudo-header
    expect(verifyChecksums(srcFlip, 0).problems.map((s) => s.split(" wrong")[0])).toEqual(["IPv4 header checksum", "TCP checksum"]);
  });

  it("treats UDP checksum 0 as none over IPv4 and as an error over IPv6", () => {
    const v4 = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2, payload: bytes(9) });
    v4[26] = v4[27] = 0;
    expect(verifyChecksums(v4, 0)).toEqual({ ok: true, problems: [], checked: ["IPv4 header"], skipped: ["UDP: checksum none (0) over IPv4"] });
    const v6 = packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 1, dport: 2, payload: bytes(9) });
    v6[46] = v6[47] = 0;
    expect(verifyChecksums(v6, 0)).toMatchObject({ ok: false, problems: ["UDP checksum missing: 0 is not allowed over IPv6"] });
  });

  it("reports ICMP and ICMPv6 by name", () => {
    const e4 = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).icmpEcho({ request: true, id: 1, seq: 1, payload: bytes(8) });
    e4[30] ^= 0xff;
    expect(verifyChecksums(e4, 0).problems[0]).toMatch(/^ICMP checksum wrong/);
    const e6 = packet6({ src: "fd00::1", dst: "fd00::2" }).icmp6Echo({ request: true, id: 1, seq: 1, payload: bytes(8) });
    e6[50] ^= 0xff;
    expect(verifyChecksums(e6, 0).problems[0]).toMatch(/^ICMPv6 checksum wrong/);
    // ICMPv6 uses the pseudo-header, so changing the destination breaks it.
    const d6 = packet6({ src: "fd00::1", dst: "fd00::2" }).icmp6Echo({ request: true, id: 1, seq: 1 });
    d6[39] = 3;
    expect(verifyChecksums(d6, 0).problems[0]).toMatch(/^ICMPv6 checksum wrong/);
  });

  it("ignores trailing Ethernet padding and reports truncation", () => {
    const ip = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2 });
    const padded = new Uint8Array(14 + 46);
    padded.set(ethernet({}, ip));
    padded.fill(0xee, 14 + ip.length);
    expect(verifyChecksums(padded, 14).ok).toBe(true);
    expect(decodePacket(padded, "ethernet")).toMatchObject({ ipLength: 28, payloadLength: 0 });
    expect(verifyChecksums(ip.subarray(0, 27), 0)).toMatchObject({ ok: false, problems: ["truncated: IP length is 28 bytes, 27 present"] });
    expect(verifyChecksums(ip.subarray(0, 10), 0).problems).toEqual(["truncated IPv4 header: 10 of 20 bytes"]);
  });

  it("fails after flipping any byte a checksum covers", () => {
    const covered = samples().flatMap((s) => {
      const loc = locateIp(s.pkt, s.l3);
      if (loc.family === undefined) throw new Error(s.name);
      const offsets: number[] = [];
      // IPv4 header (except version/IHL, which moves the header's own boundary).
      if (loc.family === 4) for (let o = s.l3 + 1; o < loc.l4Offset; o++) offsets.push(o);
      // IPv6 addresses are covered through the pseudo-header of an unfragmented L4 checksum.
      const l4 = !loc.fragment || (!loc.fragment.more && loc.fragment.offset === 0);
      // (The destination field only while it is the final destination: see the routing header test.)
      if (loc.family === 6 && l4) {
        const dstIsFinal = loc.dst.every((b, i) => b === loc.pseudoDst[i]);
        for (let o = s.l3 + 8; o < s.l3 + (dstIsFinal ? 40 : 24); o++) offsets.push(o);
      }
      if (l4) for (let o = loc.l4Offset; o < loc.end; o++) offsets.push(o);
      return offsets.map((o) => ({ s, o }));
    });
    fc.assert(
      fc.property(fc.constantFrom(...covered), fc.integer({ min: 1, max: 255 }), ({ s, o }, x) => {
        const p = s.pkt.slice();
        p[o] ^= x;
        const loc = locateIp(p, s.l3);
        // Zeroing a UDP/IPv4 checksum legitimately means "no checksum".
        const udp4Csum = loc.family === 4 && loc.proto === 17 && o >= loc.l4Offset + 6 && o < loc.l4Offset + 8;
        fc.pre(!(udp4Csum && p[loc.l4Offset + 6] === 0 && p[loc.l4Offset + 7] === 0));
        expect(verifyChecksums(p, s.l3).ok, `${s.name} byte ${o} ^ ${x}`).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("decode and describe", () => {
  it("describes every builder's output in one line", () => {
    const lines = samples().map((s) => describePacket(s.pkt, s.link));
    expect(lines).toEqual([
      "10.0.0.1:1234 -> 10.0.0.2:80 TCP [S] len=44",
      "10.0.0.1:1234 -> 10.0.0.2:80 TCP [PA] len=73",
      "10.0.0.1:53 -> 10.0.0.2:5353 UDP len=33",
      "10.0.0.1:1 -> 10.0.0.2:2 UDP len=28",
      "10.0.0.1 -> 10.0.0.2 ICMP echo-request id=7 seq=1 len=84",
      "10.0.0.1 -> 10.0.0.2 ICMP echo-reply id=7 seq=1 len=28",
      "10.0.0.254 -> 10.0.0.1 ICMP dest-unreach/frag-needed mtu=1400 len=56 {10.0.0.1:1000 -> 10.0.0.2:2000 UDP}",
      "10.0.0.1:9 -> 10.0.0.2:9 UDP len=47",
      "10.0.0.1:1000 -> 10.0.0.2:2000 UDP frag id=0x0 off=0 MF len=1500",
      "10.0.0.1 -> 10.0.0.2 UDP frag id=0x0 off=1480 MF len=1500",
      "10.0.0.1 -> 10.0.0.2 UDP frag id=0x0 off=2960 len=68",
      "[fd00::1]:40000 -> [fd00::2]:443 TCP [FPA] len=67",
      "[fd00::1]:5353 -> [fd00::2]:53 UDP len=53",
      "fd00::1 -> fd00::2 ICMPv6 echo-request id=7 seq=9 len=48",
      "fd00::fe -> fd00::1 ICMPv6 packet-too-big mtu=1280 len=1280 {[fd00::1]:1000 -> [fd00::2]:2000 UDP}",
      "fd00::1 -> ff02::1:ff00:2 ICMPv6 neighbor-solicit target=fd00::2 len=72",
      "[fd00::1]:1 -> [fd00::2]:2 TCP [R] ext=hop-by-hop,routing,dest-opts len=92",
      "[fd00::1]:7 -> [fd00::a]:8 UDP ext=routing len=108",
      "[fd00::1]:1000 -> [fd00::2]:2000 UDP ext=fragment frag id=0xabcdef off=0 MF len=1280",
      "fd00::1 -> fd00::2 UDP ext=fragment frag id=0xabcdef off=1232 MF len=1280",
      "fd00::1 -> fd00::2 UDP ext=fragment frag id=0xabcdef off=2464 len=592",
      "10.0.0.1:1234 -> 10.0.0.2:80 TCP [S] len=44",
      "vlan 100 [fd00::1]:5353 -> [fd00::2]:53 UDP len=53",
    ]);
  });

  it("decodes TCP fields and flag strings", () => {
    const syn = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).tcp({ sport: 1234, dport: 80, flags: { syn: true }, options: tcpOptions({ mss: 1460, sackPermitted: true, timestamp: { value: 1, echo: 0 }, windowScale: 7 }) });
    expect(describePacket(syn, "ip")).toBe("10.0.0.1:1234 -> 10.0.0.2:80 TCP [S] len=60");
    const synack = packet4({ src: "10.0.0.2", dst: "10.0.0.1" }).tcp({ sport: 80, dport: 1234, seq: 9, ack: 1, window: 1000, flags: { syn: true, ack: true } });
    expect(decodePacket(synack, "ip")).toEqual({
      length: 40,
      family: 4,
      src: "10.0.0.2",
      dst: "10.0.0.1",
      ipLength: 40,
      ttl: 64,
      dontFragment: false,
      proto: 6,
      protoName: "TCP",
      sport: 80,
      dport: 1234,
      seq: 9,
      ack: 1,
      tcpFlags: "SA",
      window: 1000,
      payloadLength: 0,
    });
    const all = packet4({ src: "10.0.0.2", dst: "10.0.0.1" }).tcp({ sport: 1, dport: 2, flags: { fin: true, syn: true, rst: true, psh: true, ack: true, urg: true, ece: true, cwr: true } });
    expect(decodePacket(all, "ip").tcpFlags).toBe("FSRPAUEC");
  });

  it("decodes Ethernet, VLANs and non-IP frames", () => {
    const ip = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2 });
    const f = ethernet({ src: "02:00:00:00:00:aa", dst: "02:00:00:00:00:bb", vlan: 42 }, ip);
    expect(decodePacket(f, "ethernet")).toMatchObject({ ethSrc: "02:00:00:00:00:aa", ethDst: "02:00:00:00:00:bb", vlans: [42], etherType: 0x0800, family: 4, sport: 1 });
    const arp = ethernet({ src: "02:00:00:00:00:aa", dst: "ff:ff:ff:ff:ff:ff", etherType: 0x0806 }, new Uint8Array(28));
    expect(describePacket(arp)).toBe("02:00:00:00:00:aa -> ff:ff:ff:ff:ff:ff ethertype 0x0806 (ARP) len=42");
    const lying = ethernet({ etherType: 0x86dd }, ip);
    expect(decodePacket(lying).error).toBe("EtherType says IPv6 but the header is IPv4");
  });

  it("decodes NDP", () => {
    const na = packet6({ src: "fd00::2", dst: "fd00::1" }).icmp6Ndp({ kind: "advert", target: "fd00::2", linkAddr: "02:00:00:00:00:02", solicited: true, override: true });
    expect(na[7]).toBe(255);
    expect(na[40]).toBe(136);
    expect(na[44]).toBe(0x60);
    expect(toHex(na.subarray(64, 72))).toBe("0201020000000002");
    expect(decodePacket(na, "ip")).toMatchObject({ icmpName: "neighbor-advert", ndpTarget: "fd00::2" });
    expect(verifyChecksums(na, 0).ok).toBe(true);
    const ns = neighborSolicitation({ src: "fd00::1", target: "fd00::2", srcMac: "02:00:00:00:00:01" });
    expect(ns.length).toBe(40 + 32);
    expect(ns[40]).toBe(135);
    expect(toHex(ns.subarray(64, 72))).toBe("0101020000000001"); // source link-layer address option
  });

  it("reports garbage as errors instead of throwing", () => {
    expect(decodePacket(new Uint8Array(0), "ip")).toEqual({ length: 0, error: "no IP header: offset 0 of 0 bytes" });
    expect(decodePacket(Uint8Array.of(1, 2, 3), "ethernet").error).toBe("truncated Ethernet header: 3 of 14 bytes");
    expect(decodePacket(Uint8Array.of(0x75, 0), "ip").error).toBe("unknown IP version 7");
    const tcpShort = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).tcp({ sport: 1, dport: 2, flags: { ack: true } }).slice(0, 30);
    tcpShort[3] = 30;
    const s = decodePacket(tcpShort, "ip");
    expect(s).toMatchObject({ sport: 1, dport: 2, error: "truncated TCP header: 10 of 20 bytes" });
    expect(describePacket(s)).toBe("10.0.0.1:1 -> 10.0.0.2:2 TCP len=30 error: truncated TCP header: 10 of 20 bytes");
    expect(describePacket(Uint8Array.of(0x45), "ip")).toBe("len=1 error: truncated IPv4 header: 1 of 20 bytes");
  });

  it("never throws on random bytes", () => {
    const seeds = samples();
    const garbage = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      // Start from a real packet so the decoder gets deep before the damage.
      fc
        .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat())
        .map(([s, edits, cut]) => {
          const p = s.pkt.slice(0, s.pkt.length - (cut % (s.pkt.length + 1)));
          for (const [i, v] of edits) if (p.length > 0) p[i % p.length] = v;
          return p;
        }),
      // IP version nibble forced so random bytes get past the first check.
      fc.tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60), fc.uint8Array({ maxLength: 120 })).map(([b0, rest]) => Uint8Array.of(b0, ...rest)),
    );
    fc.assert(
      fc.property(garbage, fc.constantFrom("ethernet" as const, "ip" as const), (b, link) => {
        const s = decodePacket(b, link);
        expect(s.length).toBe(b.length);
        expect(typeof describePacket(s)).toBe("string");
        expect(typeof describePacket(b, link)).toBe("string");
        const r = verifyChecksums(b, link === "ethernet" ? 14 : 0);
        expect(r.ok).toBe(r.problems.length === 0);
        expect(r.problems.every((p) => !p.startsWith("internal"))).toBe(true);
        expect(s.error === undefined || !s.error.startsWith("internal")).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
