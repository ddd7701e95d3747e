// SNAT through both datapaths (the kernel one when this machine can run it):
// port retention, collisions, exhaustion and recovery, ICMP echo and ICMP
// errors, IPv4 and IPv6, lifetime tied to conntrack, and every checksum
// recomputed from scratch.
import { afterAll, expect, test } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { packet4, packet6, neighborSolicitation } from "../../host/packet/build.js";
import { ENGINES, MASQ4, MASQ6, expectChecksumsOk, expectQuotedChecksumsOk, fields, icmpChecksumVerifies, options, type NatEngine } from "./support.js";
import type { DatapathOptions } from "../../host/config.js";

const POD_A = "10.0.1.10";
const POD_B = "10.0.1.11";
const REMOTE = "198.51.100.7";
const POD6 = "fd00:1::10";
const REMOTE6 = "2001:db8:7::7";
const T = 1000;

for (const engine of ENGINES) {
  describeIf(`NAT (${engine.name})`, engine.missing, () => {
    const open: NatEngine[] = [];
    afterAll(() => open.forEach((d) => d.close()));
    const make = async (o: DatapathOptions = options()) => {
      const d = await engine.create(o);
      open.push(d);
      return d;
    };
    const egress = (d: NatEngine, pkt: Uint8Array, now = T) => d.decide(pkt, { now, direction: "egress" });
    const ingress = (d: NatEngine, pkt: Uint8Array, now = T) => d.decide(pkt, { now, direction: "ingress" });

    test("keeps the source port when it is free, and translates the reply back", async () => {
      const d = await make();
      const out = egress(d, packet4({ src: POD_A, dst: REMOTE }).tcp({ sport: 40000, dport: 80, flags: { syn: true } }));
      expect([out.verdict, out.ct]).toEqual(["pass", "new"]);
      expect(fields(out.data)).toMatchObject({ src: MASQ4, dst: REMOTE, sport: 40000, dport: 80 });
      expectChecksumsOk(out.data);
      const back = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).tcp({ sport: 80, dport: 40000, flags: { syn: true, ack: true } }));
      expect([back.verdict, back.ct, back.direction]).toEqual(["pass", "reply", "ingress"]);
      expect(fields(back.data)).toMatchObject({ src: REMOTE, dst: POD_A, sport: 80, dport: 40000 });
      expectChecksumsOk(back.data);
      const est = egress(d, packet4({ src: POD_A, dst: REMOTE }).tcp({ sport: 40000, dport: 80, flags: { ack: true } }));
      expect([est.verdict, est.ct]).toEqual(["pass", "established"]);
      expect(fields(est.data)).toMatchObject({ src: MASQ4, sport: 40000 });
      expectChecksumsOk(est.data);
      const s = d.nat.stats().nat4;
      expect([s.created, s.retained, s.collisions]).toEqual([1n, 1n, 0n]);
      expect(d.nat.list().map((r) => `${r.dir} ${r.src}:${r.sport} ${r.dst}:${r.dport} -> ${r.toAddr}:${r.toPort}`).sort()).toEqual([
        `egress ${POD_A}:40000 ${REMOTE}:80 -> ${MASQ4}:40000`,
        `ingress ${REMOTE}:80 ${MASQ4}:40000 -> ${POD_A}:40000`,
      ]);
    });

    test("one external port serves many destinations; a collision picks another port, the same in every run", async () => {
      const d = await make();
      const ports: number[] = [];
      for (const [src, dst] of [[POD_A, REMOTE], [POD_A, "198.51.100.8"], [POD_B, REMOTE]]) {
        const out = egress(d, packet4({ src, dst }).udp({ sport: 5353, dport: 53 }));
        expect(out.verdict).toBe("pass");
        expectChecksumsOk(out.data);
        ports.push(fields(out.data).sport);
      }
      expect(ports[0]).toBe(5353);
      expect(ports[1]).toBe(5353); // another destination: the reverse key differs
      expect(ports[2]).not.toBe(5353);
      expect(ports[2]).toBeGreaterThanOrEqual(1024);
      expect(d.nat.stats().nat4.collisions).toBeGreaterThanOrEqual(1n);
      // Replies find their own pod.
      for (const [port, pod] of [[5353, POD_A], [ports[2], POD_B]] as const) {
        const back = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).udp({ sport: 53, dport: port }));
        expect([back.verdict, back.ct]).toEqual(["pass", "reply"]);
        expect(fields(back.data)).toMatchObject({ dst: pod, dport: 5353 });
        expectChecksumsOk(back.data);
      }
      // Deterministic: a fresh datapath with the same seed picks the same port.
      const again = await make();
      egress(again, packet4({ src: POD_A, dst: REMOTE }).udp({ sport: 5353, dport: 53 }));
      expect(fields(egress(again, packet4({ src: POD_B, dst: REMOTE }).udp({ sport: 5353, dport: 53 })).data).sport).toBe(ports[2]);
    });

    test("exhaustion drops with DROP_NAT_NO_MAPPING, asks for GC, and recovers once the flows expire", async () => {
      const d = await make(options({ ports: { min: 6000, max: 6001 }, retries: 8 }));
      const flow = (i: number) => packet4({ src: `10.0.2.${i}`, dst: REMOTE }).udp({ sport: 7000, dport: 53 });
      const first = [1, 2].map((i) => egress(d, flow(i)));
      expect(first.map((v) => v.verdict)).toEqual(["pass", "pass"]);
      expect(first.map((v) => fields(v.data).sport).sort()).toEqual([6000, 6001]);
      const third = egress(d, flow(3));
      expect([third.verdict, third.dropReason]).toEqual(["drop", "DROP_NAT_NO_MAPPING"]);
      expect(third.dropText).toBe("No mapping for NAT masquerade");
      const s = d.nat.stats().nat4;
      expect([s.allocFailed, s.gcRequests]).toEqual([1n, 1n]);
      expect(d.nat.gcRequests()).toBe(1);
      expect(d.counters().drops.find((x) => x.reason === "DROP_NAT_NO_MAPPING")?.packets).toBe(1);
      expect([...d.conntrack()].length).toBe(2); // the refused flow left no conntrack entry
      // The UDP timeout (60 s) passes: GC removes the flows and their pairs.
      const later = T + 61;
      d.gc(later);
      expect(d.nat.list()).toEqual([]);
      const retry = egress(d, flow(3), later);
      expect(retry.verdict).toBe("pass");
      expect([6000, 6001]).toContain(fields(retry.data).sport);
    });

    test("an expired flow's pair is reclaimed on the packet path even before GC runs", async () => {
      const d = await make(options({ ports: { min: 6000, max: 6000 }, retries: 2 }));
      expect(egress(d, packet4({ src: POD_A, dst: REMOTE }).udp({ sport: 7000, dport: 53 })).verdict).toBe("pass");
      expect(egress(d, packet4({ src: POD_B, dst: REMOTE }).udp({ sport: 7000, dport: 53 })).verdict).toBe("drop");
      const out = egress(d, packet4({ src: POD_B, dst: REMOTE }).udp({ sport: 7000, dport: 53 }), T + 61);
      expect(out.verdict).toBe("pass");
      expect(fields(out.data).sport).toBe(6000);
      expect(d.nat.stats().nat4.staleRemoved).toBe(1n);
      // The old pod's late reply no longer reaches it.
      const late = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).udp({ sport: 53, dport: 6000 }), T + 62);
      expect(fields(late.data).dst).toBe(POD_B);
    });

    test("ICMP echo: the identifier is the port", async () => {
      const d = await make();
      const out = egress(d, packet4({ src: POD_A, dst: REMOTE }).icmpEcho({ request: true, id: 7, seq: 1 }));
      expect(out.verdict).toBe("pass");
      const id = fields(out.data).icmpId;
      expect(id).toBe(1024 + 7); // 7 lies below the range: clamped into it
      expect(fields(out.data).src).toBe(MASQ4);
      expectChecksumsOk(out.data);
      const back = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).icmpEcho({ request: false, id, seq: 1 }));
      expect([back.verdict, back.ct]).toEqual(["pass", "reply"]);
      expect(fields(back.data)).toMatchObject({ dst: POD_A, icmpId: 7 });
      expectChecksumsOk(back.data);
    });

    test("ICMPv6 echo and TCP over IPv6", async () => {
      const d = await make();
      const out = egress(d, packet6({ src: POD6, dst: REMOTE6 }).icmp6Echo({ request: true, id: 4242, seq: 9 }));
      expect(fields(out.data)).toMatchObject({ src: MASQ6, icmpId: 4242 });
      expectChecksumsOk(out.data);
      const back = ingress(d, packet6({ src: REMOTE6, dst: MASQ6 }).icmp6Echo({ request: false, id: 4242, seq: 9 }));
      expect([back.verdict, back.ct]).toEqual(["pass", "reply"]);
      expect(fields(back.data)).toMatchObject({ dst: POD6, icmpId: 4242 });
      expectChecksumsOk(back.data);
      const syn = egress(d, packet6({ src: POD6, dst: REMOTE6 }).tcp({ sport: 50000, dport: 443, flags: { syn: true } }));
      expect(fields(syn.data)).toMatchObject({ src: MASQ6, sport: 50000 });
      expectChecksumsOk(syn.data);
      const synack = ingress(d, packet6({ src: REMOTE6, dst: MASQ6 }).tcp({ sport: 443, dport: 50000, flags: { syn: true, ack: true } }));
      expect(fields(synack.data)).toMatchObject({ dst: POD6, dport: 50000 });
      expectChecksumsOk(synack.data);
    });

    test("ICMP and ICMPv6 echo with a range from 32768: identifiers below it are remapped, the replies get the pod's back", async () => {
      // As the demo's range: ping's small identifiers all lie below it. Identifier 0 goes first so
      // 32767 (whose first candidate, 32768 + 32767 % 32767, is 0's) collides and takes a seeded one.
      const d = await make(options({ ports: { min: 32768, max: 65534 } }));
      const range = 65534 - 32768 + 1;
      for (const v6 of [false, true]) {
        const [pod, remote, masq] = v6 ? [POD6, REMOTE6, MASQ6] : [POD_A, REMOTE, MASQ4];
        const echo = (src: string, dst: string, request: boolean, id: number) => {
          const spec = { request, id, seq: 5, payload: new Uint8Array(56).fill(0xa5) };
          return v6 ? packet6({ src, dst }).icmp6Echo(spec) : packet4({ src, dst }).icmpEcho(spec);
        };
        const sent = new Map<number, number>();
        for (const id of [0, 1, 7, 4404, 7604, 32767, 40000]) {
          const out = egress(d, echo(pod, remote, true, id));
          expect(out.verdict, `IPv${v6 ? 6 : 4} id ${id}`).toBe("pass");
          const f = fields(out.data);
          expect(f.src).toBe(masq);
          expect(f.icmpId).toBeGreaterThanOrEqual(32768);
          expect(f.icmpId).toBeLessThanOrEqual(65534);
          if (id === 40000) expect(f.icmpId).toBe(40000); // in range and free: kept
          else if (id !== 32767) expect(f.icmpId).toBe(32768 + (id % range)); // the first candidate
          expect([...sent.values()]).not.toContain(f.icmpId);
          sent.set(id, f.icmpId);
          expectChecksumsOk(out.data);
          expect(icmpChecksumVerifies(out.data), `request id ${id}`).toBe(true);
          const corrupt = out.data.slice();
          corrupt[f.l4 + 4] ^= 0x80; // the identifier changed without the checksum: the hand check must see it
          expect(icmpChecksumVerifies(corrupt)).toBe(false);
        }
        for (const [id, translated] of sent) {
          const back = ingress(d, echo(remote, masq, false, translated));
          expect([back.verdict, back.ct], `reply to id ${id}`).toEqual(["pass", "reply"]);
          expect(fields(back.data)).toMatchObject({ src: remote, dst: pod, icmpId: id });
          expectChecksumsOk(back.data);
          expect(icmpChecksumVerifies(back.data), `reply id ${id}`).toBe(true);
        }
      }
      expect(d.nat.stats().nat4.collisions).toBeGreaterThanOrEqual(1n);
    });

    test("ICMP errors about a translated flow are translated back, quoted header included", async () => {
      const d = await make(options({ ports: { min: 30000, max: 30010 } }));
      const sent = egress(d, packet4({ src: POD_A, dst: REMOTE }).udp({ sport: 5000, dport: 53, payload: new Uint8Array([1, 2, 3]) }));
      const port = fields(sent.data).sport;
      expect(port).toBeGreaterThanOrEqual(30000);
      const err = packet4({ src: "203.0.113.1", dst: MASQ4 }).icmpError({ type: 3, code: 3, quoted: sent.data });
      const out = ingress(d, err);
      expect([out.verdict, out.ct]).toEqual(["pass", "related"]);
      expect(fields(out.data).dst).toBe(POD_A);
      const quoted = out.data.subarray(fields(out.data).l4 + 8);
      expect(fields(quoted)).toMatchObject({ src: POD_A, dst: REMOTE, sport: 5000, dport: 53 });
      expectChecksumsOk(out.data);
      expectQuotedChecksumsOk(out.data);
      // The same for an echo request quoted in a time-exceeded, and over IPv6 for TCP.
      const ping = egress(d, packet4({ src: POD_A, dst: REMOTE }).icmpEcho({ request: true, id: 30005, seq: 2 }));
      const ttl = ingress(d, packet4({ src: "203.0.113.1", dst: MASQ4 }).icmpError({ type: 11, code: 0, quoted: ping.data }));
      expect([ttl.verdict, ttl.ct]).toEqual(["pass", "related"]);
      expect(fields(ttl.data.subarray(fields(ttl.data).l4 + 8))).toMatchObject({ src: POD_A, icmpId: 30005 });
      expectChecksumsOk(ttl.data);
      expectQuotedChecksumsOk(ttl.data);
      const syn6 = egress(d, packet6({ src: POD6, dst: REMOTE6 }).tcp({ sport: 50001, dport: 443, flags: { syn: true } }));
      const big = ingress(d, packet6({ src: "2001:db8:9::1", dst: MASQ6 }).icmp6Error({ type: 2, code: 0, mtu: 1280, quoted: syn6.data }));
      expect([big.verdict, big.ct]).toEqual(["pass", "related"]);
      expect(fields(big.data).dst).toBe(POD6);
      expect(fields(big.data.subarray(48))).toMatchObject({ src: POD6, sport: 50001 });
      expectChecksumsOk(big.data);
      expectQuotedChecksumsOk(big.data);
    });

    test("an ICMP error quoting only 8 bytes of TCP (no checksum in the quote) still translates", async () => {
      const d = await make();
      const sent = egress(d, packet4({ src: POD_A, dst: REMOTE }).tcp({ sport: 40001, dport: 80, flags: { syn: true } }));
      const quote = sent.data.slice(0, 28); // IPv4 header + 8 bytes, as RFC 792 routers do
      const out = ingress(d, packet4({ src: "203.0.113.1", dst: MASQ4 }).icmpError({ type: 3, code: 4, mtu: 1400, quoted: quote }));
      expect([out.verdict, out.ct]).toEqual(["pass", "related"]);
      expect(fields(out.data.subarray(28))).toMatchObject({ src: POD_A, sport: 40001 });
      expectChecksumsOk(out.data);
    });

    test("the reverse path without a mapping: low ports and echo requests reach the node, the rest is dropped", async () => {
      const d = await make();
      const ssh = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).tcp({ sport: 50000, dport: 22, flags: { syn: true } }));
      expect([ssh.verdict, fields(ssh.data).dst]).toEqual(["pass", MASQ4]);
      const ping = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).icmpEcho({ request: true, id: 3, seq: 1 }));
      expect(ping.verdict).toBe("pass");
      const stray = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).udp({ sport: 53, dport: 40000 }));
      expect([stray.verdict, stray.dropReason]).toEqual(["drop", "DROP_NAT_NO_MAPPING"]);
      const strayReply = ingress(d, packet4({ src: REMOTE, dst: MASQ4 }).icmpEcho({ request: false, id: 5000, seq: 1 }));
      expect(strayReply.dropReason).toBe("DROP_NAT_NO_MAPPING");
    });

    test("cluster destinations, excluded prefixes, the node itself and neighbour discovery pass untouched", async () => {
      const d = await make();
      for (const pkt of [
        packet4({ src: POD_A, dst: "10.0.9.9" }).udp({ sport: 1, dport: 2 }),
        packet4({ src: POD_A, dst: "203.0.113.200" }).udp({ sport: 1, dport: 2 }),
        packet4({ src: MASQ4, dst: REMOTE }).udp({ sport: 1, dport: 2 }),
        packet4({ src: "172.16.0.1", dst: REMOTE }).udp({ sport: 1, dport: 2 }),
        neighborSolicitation({ src: POD6, target: "fd00:1::1" }),
      ]) {
        const out = egress(d, pkt);
        expect(out.verdict).toBe("pass");
        expect(Buffer.from(out.data).equals(Buffer.from(pkt))).toBe(true);
      }
      expect(d.nat.list()).toEqual([]);
    });

    test("pairs live as long as their conntrack entry: flush and GC remove them", async () => {
      const d = await make();
      egress(d, packet4({ src: POD_A, dst: REMOTE }).tcp({ sport: 40000, dport: 80, flags: { syn: true } }));
      egress(d, packet4({ src: POD_A, dst: REMOTE }).udp({ sport: 40000, dport: 53 }));
      expect(d.nat.list()).toHaveLength(4);
      d.gc(T + 30); // nothing expired yet
      expect(d.nat.list()).toHaveLength(4);
      d.gc(T + 61); // both expired (SYN and UDP timeouts are 60 s)
      expect(d.nat.list()).toHaveLength(0);
      expect(d.nat.stats().nat4.gcDeleted).toBe(4n);
      egress(d, packet4({ src: POD_A, dst: REMOTE }).udp({ sport: 40000, dport: 53 }), T + 100);
      expect(d.nat.list()).toHaveLength(2);
      d.flush();
      expect(d.nat.list()).toHaveLength(0);
    });

    test("a closed TCP connection gives its port back after the close timeout", async () => {
      const d = await make(options({ ports: { min: 6000, max: 6000 }, retries: 0 }));
      const a = packet4({ src: POD_A, dst: REMOTE }), r = packet4({ src: REMOTE, dst: MASQ4 });
      egress(d, a.tcp({ sport: 6000, dport: 80, flags: { syn: true } }));
      ingress(d, r.tcp({ sport: 80, dport: 6000, flags: { syn: true, ack: true } }));
      egress(d, a.tcp({ sport: 6000, dport: 80, flags: { ack: true } }));
      egress(d, a.tcp({ sport: 6000, dport: 80, flags: { fin: true, ack: true } }), T + 1);
      ingress(d, r.tcp({ sport: 80, dport: 6000, flags: { fin: true, ack: true } }), T + 1);
      const other = packet4({ src: POD_B, dst: REMOTE }).tcp({ sport: 6000, dport: 80, flags: { syn: true } });
      expect(egress(d, other, T + 5).dropReason).toBe("DROP_NAT_NO_MAPPING"); // still closing (10 s)
      const later = egress(d, other, T + 12);
      expect(later.verdict).toBe("pass");
      expect(fields(later.data)).toMatchObject({ src: MASQ4, sport: 6000 });
    });

    test("a later fragment follows its first fragment's mapping", async () => {
      const d = await make();
      const { fragment4 } = await import("../../host/packet/build.js");
      const big = packet4({ src: POD_A, dst: REMOTE, id: 77 }).udp({ sport: 6000, dport: 53, payload: new Uint8Array(100).fill(5) });
      const [first, second] = fragment4(big, 64);
      const a = egress(d, first);
      const b = egress(d, second);
      expect([a.verdict, b.verdict]).toEqual(["pass", "pass"]);
      expect([fields(a.data).src, fields(b.data).src]).toEqual([MASQ4, MASQ4]);
      expectChecksumsOk(b.data); // the IPv4 header (the UDP checksum lives in the first fragment)
      // Reassembled, the datagram's UDP checksum is right.
      const whole = new Uint8Array(20 + 108);
      whole.set(a.data.subarray(0, 20));
      whole.set(a.data.subarray(20), 20);
      whole.set(b.data.subarray(20), 20 + (a.data.length - 20));
      whole[2] = 0; whole[3] = whole.length; whole[6] = 0; whole[7] = 0;
      const { fillChecksums } = await import("../../host/packet/checksum.js");
      const fixedHeader = fillChecksums(whole.slice());
      expect(fields(fixedHeader).sport).toBe(6000);
      expect(Buffer.from(fixedHeader.subarray(26, 28)).equals(Buffer.from(whole.subarray(26, 28)))).toBe(true);
    });
  });
}

test("Wasm: deleting a conntrack entry removes its pair", async () => {
  const { Datapath } = await import("../../host/datapath.js");
  const d = await Datapath.create(options());
  d.decide(packet4({ src: POD_A, dst: REMOTE }).udp({ sport: 1234, dport: 53 }), { now: T, direction: "egress" });
  const [rec] = [...d.conntrack("any4")];
  expect(d.nat.list()).toHaveLength(2);
  expect(d.deleteEntry("any4", rec.key)).toBe(true);
  expect(d.nat.list()).toHaveLength(0);
});

test("Wasm: with a partial checksum the field holds the pseudo-header sum of the new addresses", async () => {
  const { Datapath } = await import("../../host/datapath.js");
  const { pseudoHeaderSum4, pseudoHeaderSum6, verifyChecksums } = await import("../../host/packet/checksum.js");
  const { parseIp } = await import("../../host/packet/address.js");
  const d = await Datapath.create(options());
  const fold = (x: number) => { while (x > 0xffff) x = (x & 0xffff) + (x >>> 16); return x; };
  for (const [pkt, masq, remote, v6] of [
    [packet4({ src: POD_A, dst: REMOTE }).tcp({ sport: 41000, dport: 80, flags: { syn: true } }), MASQ4, REMOTE, false],
    [packet6({ src: POD6, dst: REMOTE6 }).udp({ sport: 41000, dport: 53 }), MASQ6, REMOTE6, true],
  ] as const) {
    const partial = pkt.slice();
    const { l4, proto } = fields(partial);
    const csumAt = l4 + (proto === 6 ? 16 : 6);
    const len = partial.length - l4;
    const src = parseIp(v6 ? POD6 : POD_A).bytes, dst = parseIp(remote).bytes;
    const sum = fold(v6 ? pseudoHeaderSum6(src, dst, proto, len) : pseudoHeaderSum4(src, dst, proto, len));
    partial[csumAt] = sum >> 8; partial[csumAt + 1] = sum & 0xff;
    const out = d.decide(partial, { now: T, direction: "egress", checksumPartial: true });
    expect(out.verdict).toBe("pass");
    const newSrc = parseIp(masq).bytes;
    const expected = fold(v6 ? pseudoHeaderSum6(newSrc, dst, proto, len) : pseudoHeaderSum4(newSrc, dst, proto, len));
    expect((out.data[csumAt] << 8) | out.data[csumAt + 1]).toBe(expected);
    if (!v6) expect(verifyChecksums(out.data, 0).checked).toContain("IPv4 header");
  }
});
