// The forwarder's offload passthrough on the in-memory TUN: super-packets and
// partial checksums decided as one packet each and handed back to the kernel
// byte for byte with their virtio_net_hdr.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { packet4, packet6 } from "../../host/packet/build.js";
import { PKT_DESC } from "../../host/generated/layout.js";
import type { PacketBatch } from "../../host/wasm/batch.js";
import { coalesce } from "../../host/tun/offload/index.js";
import { wireSegments } from "../support/kernel-gso.js";
import { encodeVirtioNetHdr } from "../../host/tun/virtio-net-hdr.js";
import { verifyChecksums } from "../../host/packet/checksum.js";
import { asKernelSuperPacket, tcpRun, udpRun } from "../tun/offload/fixtures.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const OPTIONS = { conntrack: { tcpEntries: 1024, otherEntries: 1024 } };

/** A super-packet with the virtio_net_hdr the kernel gives it, built by coalescing segments. */
function superPacket(segments: Uint8Array[]): { packet: Uint8Array; hdr: Uint8Array } {
  const bufs = segments.map((s) => { const b = new Uint8Array(10 + 65535); b.set(s, 10); return b; });
  const [sup] = coalesce(bufs, segments.map((s) => s.length), 10, { udp: true });
  expect(sup.segments).toBe(segments.length);
  return { packet: sup.bytes.slice(10), hdr: sup.bytes.slice(0, 10) };
}

/** A complete packet made partial, as the kernel hands it over with NEEDS_CSUM. */
function partial(pkt: Uint8Array): { packet: Uint8Array; hdr: Uint8Array } {
  const v = pkt[0] >> 4;
  const l4 = v === 4 ? (pkt[0] & 15) * 4 : 40;
  const proto = v === 4 ? pkt[9] : pkt[6];
  const hdr = new Uint8Array(10);
  encodeVirtioNetHdr(hdr, 0, { flags: 1, csumStart: l4, csumOffset: proto === 6 ? 16 : 6 });
  return { packet: asKernelSuperPacket(pkt), hdr };
}

async function setup(batchSize = 16) {
  const dp = await Datapath.create(OPTIONS);
  const tun = new FakeTun({ mtu: 1500, vnetHdr: true, gso: true });
  return { dp, tun, fwd: new Forwarder(dp, tun, { batchSize, clock: () => 1000 }) };
}

describe("offload passthrough (the default with a virtio-net header)", () => {
  test("a 64 KiB TSO super-packet is one packet to the datapath and leaves byte for byte with its header", async () => {
    const segments = tcpRun({ family: 4, lengths: [...new Array(44).fill(1448), 1000] });
    const sup = superPacket(segments);
    expect(sup.packet.length).toBeGreaterThan(64_000);
    const { dp, tun, fwd } = await setup();
    tun.inject(sup.packet, sup.hdr);
    expect(fwd.step()).toBe(1);
    const written = tun.drainWritten();
    expect(written).toHaveLength(1);
    expect(hex(written[0].vnetHdr!)).toBe(hex(sup.hdr));
    expect(hex(written[0].packet)).toBe(hex(sup.packet));
    // What the kernel then segments is exactly what the sender meant, checksums complete.
    const out = wireSegments(written[0]);
    expect(out.map(hex)).toEqual(segments.map(hex));
    for (const p of out) expect(verifyChecksums(p, 0).ok).toBe(true);
    // Conntrack sees the super-packet once, with all its bytes (as a tc program sees a GSO skb).
    const [entry] = [...dp.conntrack("tcp4")];
    expect([Number(entry.entry.txPackets), Number(entry.entry.txBytes)]).toEqual([1, sup.packet.length]);
    expect(fwd.stats).toMatchObject({ reads: 1, packetsIn: 1, wirePacketsIn: 45, packetsOut: 1, writes: 1, dropped: 0, bytesOut: sup.packet.length });
  });

  test("IPv6 TSO, USO and partial checksums in one batch, with plain packets and a drop between them: each leaves as it came, in order", async () => {
    const tso6 = superPacket(tcpRun({ family: 6, lengths: [1200, 1200, 1200, 500], sport: 41000 }));
    const uso4 = superPacket(udpRun({ family: 4, lengths: [1000, 1000, 1000, 10] }));
    const csumUdp6 = partial(packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 53, dport: 5353, payload: new Uint8Array(33).fill(9) }));
    const csumTcp4 = partial(packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).tcp({ sport: 4000, dport: 80, flags: { syn: true } }));
    const plain = packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: 1, dport: 2 });
    const runt = plain.slice(0, 12);
    const { dp, tun, fwd } = await setup();
    const inputs = [tso6, { packet: runt, hdr: new Uint8Array(10) }, uso4, { packet: plain, hdr: new Uint8Array(10) }, csumUdp6, csumTcp4];
    for (const p of inputs) tun.inject(p.packet, p.hdr);
    expect(fwd.step()).toBe(6);
    const written = tun.drainWritten();
    const expected = inputs.filter((p) => p.packet !== runt);
    expect(written.map((w) => [hex(w.vnetHdr!), hex(w.packet)])).toEqual(expected.map((p) => [hex(p.hdr), hex(p.packet)]));
    for (const w of written) for (const seg of wireSegments(w)) expect(verifyChecksums(seg, 0).ok).toBe(true);
    expect(fwd.stats).toMatchObject({ packetsIn: 6, wirePacketsIn: 4 + 1 + 4 + 1 + 1 + 1, packetsOut: 5, dropped: 1, offloadUnwritable: 0 });
    expect(dp.counters().drops.map((d) => d.reason)).toEqual(["DROP_INVALID"]);
    expect([...dp.conntrack()].map((r) => [r.table, Number(r.entry.txPackets)]).sort()).toEqual(
      [["any4", 1], ["any4", 1], ["any6", 1], ["tcp4", 1], ["tcp6", 1]],
    );
  });

  test("the datapath sees partial checksums as partial: PKT_F_CSUM_PARTIAL on exactly the NEEDS_CSUM packets", async () => {
    const { dp, tun, fwd } = await setup();
    const flags: number[] = [];
    const process = dp.process.bind(dp);
    dp.process = (batch: PacketBatch, now: number) => {
      const { descriptors } = batch as unknown as { descriptors(): DataView };
      const v = descriptors.call(batch);
      for (let i = 0; i < batch.length; i++) flags.push(v.getUint8(i * PKT_DESC.size + PKT_DESC.offsets.flags));
      return process(batch, now);
    };
    const csum = partial(packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: 7, dport: 8 }));
    const sup = superPacket(tcpRun({ family: 4, lengths: [1000, 1000] }));
    tun.inject(packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: 5, dport: 6 }));
    tun.inject(csum.packet, csum.hdr);
    tun.inject(sup.packet, sup.hdr);
    fwd.step();
    expect(flags).toEqual([0, 1, 1]);
  });

  /** A datapath stand-in that moves packet `which` 4 bytes forward (as an encapsulation would), after deciding. */
  function moving(dp: Datapath, which: number): void {
    const process = dp.process.bind(dp);
    dp.process = (batch: PacketBatch, now: number) => {
      const r = process(batch, now);
      const v = (batch as unknown as { descriptors(): DataView }).descriptors();
      const at = which * PKT_DESC.size;
      v.setUint32(at + PKT_DESC.offsets.off, v.getUint32(at + PKT_DESC.offsets.off, true) - 4, true);
      v.setUint32(at + PKT_DESC.offsets.len, v.getUint32(at + PKT_DESC.offsets.len, true) + 4, true);
      return r;
    };
  }

  test("a complete packet the datapath moved gets a zero header in front of its new start", async () => {
    const { dp, tun, fwd } = await setup();
    moving(dp, 0);
    const pkt = packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: 1, dport: 2 });
    const hdr = new Uint8Array(10);
    hdr[0] = 2; // DATA_VALID only: nothing to do for the kernel
    tun.inject(pkt, hdr);
    fwd.step();
    const [w] = tun.drainWritten();
    expect(hex(w.vnetHdr!)).toBe("00".repeat(10));
    expect(w.packet.length).toBe(pkt.length + 4);
    expect(hex(w.packet.subarray(4))).toBe(hex(pkt));
  });

  test("an offloaded packet the datapath moved cannot keep its header: dropped and counted, the rest goes on", async () => {
    const { dp, tun, fwd } = await setup();
    moving(dp, 0);
    const sup = superPacket(tcpRun({ family: 4, lengths: [1000, 1000] }));
    const plain = packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: 1, dport: 2 });
    tun.inject(sup.packet, sup.hdr);
    tun.inject(plain);
    fwd.step();
    const written = tun.drainWritten();
    expect(written.map((w) => hex(w.packet))).toEqual([hex(plain)]);
    expect(fwd.stats).toMatchObject({ packetsIn: 2, packetsOut: 1, dropped: 1, offloadUnwritable: 1 });
  });

  test("one packet the kernel refuses (EINVAL) is skipped, the rest of the batch is written", async () => {
    const { TunIoError } = await import("../../host/tun/errors.js");
    const { tun, fwd } = await setup();
    const write = tun.write.bind(tun);
    let refused = false;
    tun.write = (bufs, sizes, offset) => {
      if (!refused && bufs.length > 1) {
        refused = true;
        write(bufs.slice(0, 1), sizes.slice(0, 1), offset);
        throw new TunIoError("write packet 1 of a batch to fake0", 22 /* EINVAL */, 1);
      }
      return write(bufs, sizes, offset);
    };
    const pkts = [1, 2, 3, 4].map((p) => packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: p, dport: 9 }));
    for (const p of pkts) tun.inject(p);
    fwd.step();
    expect(tun.drainWritten().map((w) => hex(w.packet))).toEqual([pkts[0], pkts[2], pkts[3]].map(hex));
    expect(fwd.stats).toMatchObject({ writes: 3, writeErrors: 1 });
  });

  test("rejects an unknown offload mode", async () => {
    const { dp, tun } = await setup();
    expect(() => new Forwarder(dp, tun, { offloadMode: "gro" as never })).toThrow(/offloadMode must be "passthrough" or "split"/);
  });
});
