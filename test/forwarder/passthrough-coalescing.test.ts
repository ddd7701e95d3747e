// Offload passthrough's write side (host/forwarder/passthrough-coalescer.ts)
// on the in-memory TUN: plain packets with partial checksums of one flow go
// back as one TSO/USO super-packet, and what the kernel's segmentation makes
// of it (split() is the kernel's GSO) is byte for byte what writing them one
// by one would have put on the wire - with NAT rewrites too.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { packet4 } from "../../host/packet/build.js";
import { coalesce, readVirtioNetHdr } from "../../host/tun/offload/index.js";
import { wireSegments } from "../support/kernel-gso.js";
import { encodeVirtioNetHdr } from "../../host/tun/virtio-net-hdr.js";
import { verifyChecksums } from "../../host/packet/checksum.js";
import { asKernelSuperPacket, expectSamePackets, tcpRun, udpRun } from "../tun/offload/fixtures.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const OPTIONS = { conntrack: { tcpEntries: 1024, otherEntries: 1024 } };

interface Input {
  packet: Uint8Array;
  hdr: Uint8Array;
}

/** A complete packet made partial, as the kernel hands it over with NEEDS_CSUM (GSO NONE). */
function partial(pkt: Uint8Array): Input {
  const v = pkt[0] >> 4;
  const l4 = v === 4 ? (pkt[0] & 15) * 4 : 40;
  const proto = v === 4 ? pkt[9] : pkt[6];
  const hdr = new Uint8Array(10);
  encodeVirtioNetHdr(hdr, 0, { flags: 1, csumStart: l4, csumOffset: proto === 6 ? 16 : 6 });
  return { packet: asKernelSuperPacket(pkt), hdr };
}

/** A complete packet (checksum done, nothing asked of the kernel). */
function complete(pkt: Uint8Array): Input {
  return { packet: pkt, hdr: new Uint8Array(10) };
}

/** A super-packet with the virtio_net_hdr the kernel gives it. */
function superPacket(segments: Uint8Array[]): Input {
  const bufs = segments.map((s) => { const b = new Uint8Array(10 + 65535); b.set(s, 10); return b; });
  const [sup] = coalesce(bufs, segments.map((s) => s.length), 10, { udp: true });
  expect(sup.segments).toBe(segments.length);
  return { packet: sup.bytes.slice(10), hdr: sup.bytes.slice(0, 10) };
}

/**
 * Runs `inputs` through a forwarder on a device with (coalescing) or without
 * (one write per packet) TSO/USO, in batches of `batchSize`.
 */
async function forward(inputs: Input[], offloads: { tso?: boolean; uso?: boolean } | undefined, setup?: (dp: Datapath) => void, batchSize = 64) {
  const dp = await Datapath.create(OPTIONS);
  setup?.(dp);
  const tun = new FakeTun({ mtu: 1500, vnetHdr: true, gso: true, offloads });
  const fwd = new Forwarder(dp, tun, { batchSize, clock: () => 1000 });
  for (const p of inputs) tun.inject(p.packet, p.hdr);
  while (fwd.step() > 0);
  const written = tun.drainWritten();
  return { written, wire: written.flatMap(wireSegments), stats: fwd.stats };
}

describe("coalescing on write in offload passthrough", () => {
  test("64 small UDP datagrams of one flow leave as one USO write that segments back into exactly them", async () => {
    const datagrams = udpRun({ family: 4, lengths: new Array(64).fill(36) });
    const { written, wire, stats } = await forward(datagrams.map(partial), { tso: true, uso: true });
    expect(written).toHaveLength(1);
    const hdr = readVirtioNetHdr(written[0].vnetHdr!, 0);
    expect(hdr).toMatchObject({ flags: 1, gsoType: 5, hdrLen: 28, gsoSize: 36, csumStart: 20, csumOffset: 6 });
    // The kernel finishes the checksums; written one by one it would have finished the same ones.
    expectSamePackets(wire, datagrams);
    for (const p of wire) expect(verifyChecksums(p, 0).ok).toBe(true);
    expect(stats).toMatchObject({ packetsIn: 64, packetsOut: 64, writes: 1, coalescedWrites: 1, coalescedPackets: 64, dropped: 0 });
  });

  test("TCP segments with partial checksums, IPv4 and IPv6, leave as TSO writes equal to the segments", async () => {
    for (const family of [4, 6] as const) {
      const segments = tcpRun({ family, lengths: [1448, 1448, 1448, 1448, 700], lastFlags: { psh: true } });
      const { written, wire, stats } = await forward(segments.map(partial), { tso: true, uso: true });
      expect(written).toHaveLength(1);
      expect(readVirtioNetHdr(written[0].vnetHdr!, 0).gsoType).toBe(family === 4 ? 1 : 4);
      expectSamePackets(wire, segments);
      expect(stats).toMatchObject({ writes: 1, coalescedWrites: 1, coalescedPackets: 5 });
    }
  });

  test("a mixed batch: only runs of partial plain packets merge; super-packets, complete packets and other flows leave as they came, in order", async () => {
    const flowA = udpRun({ family: 4, lengths: [100, 100, 100, 100, 100], sport: 5000 });
    const flowB = udpRun({ family: 4, lengths: [50, 50], sport: 6000, id: 900 });
    const tso = superPacket(tcpRun({ family: 4, lengths: [1000, 1000, 400], sport: 41000 }));
    const syn = partial(packet4({ src: "10.1.0.1", dst: "10.2.0.2" }).tcp({ sport: 4000, dport: 80, flags: { syn: true } }));
    // Complete (checksummed) datagrams of flow A: left alone, so a checksum that was wrong stays wrong.
    const completeA = udpRun({ family: 4, lengths: [100, 100], sport: 5000, id: 700 }).map(complete);
    const inputs: Input[] = [
      tso,
      ...flowA.slice(0, 3).map(partial),
      ...completeA,
      ...flowB.map(partial),
      ...flowA.slice(3).map(partial),
      syn,
    ];
    const coalesced = await forward(inputs, { tso: true, uso: true });
    const oneByOne = await forward(inputs, undefined);
    expect(oneByOne.written).toHaveLength(inputs.length);
    expect(oneByOne.stats.coalescedWrites).toBeUndefined();
    // What reaches the wire is the same bytes in the same order.
    expectSamePackets(coalesced.wire, oneByOne.wire);
    // tso | A0-A2 merged | complete x2 | B0-B1 merged | A3-A4 merged (ids 503, 504 follow 502, but not across the others) | syn
    const kinds = coalesced.written.map((w) => readVirtioNetHdr(w.vnetHdr!, 0).gsoType);
    expect(kinds).toEqual([1, 5, 0, 0, 5, 5, 0]);
    // The packets that did not merge keep the header they were read with, byte for byte.
    const lone = [0, 2, 3, 6].map((i) => coalesced.written[i]);
    expect(lone.map((w) => [hex(w.vnetHdr!), hex(w.packet)])).toEqual([tso, completeA[0], completeA[1], syn].map((p) => [hex(p.hdr), hex(p.packet)]));
    expect(coalesced.stats).toMatchObject({ packetsOut: inputs.length, writes: 7, coalescedWrites: 3, coalescedPackets: 3 + 2 + 2 });
  });

  test("a lone partial packet between others keeps its partial header (the kernel still finishes its checksum)", async () => {
    const a = partial(udpRun({ family: 4, lengths: [80], sport: 1111 })[0]);
    const b = partial(udpRun({ family: 4, lengths: [80], sport: 2222 })[0]);
    const { written, stats } = await forward([a, b], { tso: true, uso: true });
    expect(written.map((w) => [hex(w.vnetHdr!), hex(w.packet)])).toEqual([a, b].map((p) => [hex(p.hdr), hex(p.packet)]));
    expect(stats).toMatchObject({ writes: 2, coalescedWrites: 0, coalescedPackets: 0 });
  });

  test("after a service DNAT the coalesced write still segments into exactly what one-by-one writes would carry", async () => {
    // The datagrams go to a service VIP; the datapath rewrites destination address and port (partial checksum kept valid).
    const datagrams = udpRun({ family: 4, lengths: new Array(20).fill(36), dport: 53 });
    const service = (dp: Datapath) => {
      dp.services.upsertService({ vip: "10.2.0.2", port: 53, proto: "udp", backends: [{ addr: "10.3.0.3", port: 5353 }] });
    };
    const coalesced = await forward(datagrams.map(partial), { tso: true, uso: true }, service);
    const oneByOne = await forward(datagrams.map(partial), undefined, service);
    expect(coalesced.written).toHaveLength(1);
    expect(oneByOne.written).toHaveLength(20);
    // The rewrite happened: the wire carries the backend, not the VIP.
    expect([...oneByOne.wire[0].subarray(16, 20)]).toEqual([10, 3, 0, 3]);
    expect((oneByOne.wire[0][22] << 8) | oneByOne.wire[0][23]).toBe(5353);
    expectSamePackets(coalesced.wire, oneByOne.wire);
    for (const p of coalesced.wire) expect(verifyChecksums(p, 0).ok).toBe(true);
  });

  test("UDP is merged only when the device has USO, TCP only with TSO; without offloads every packet is a write", async () => {
    const datagrams = udpRun({ family: 4, lengths: new Array(8).fill(36) }).map(partial);
    const segments = tcpRun({ family: 4, lengths: [500, 500, 500] }).map(partial);
    const tsoOnly = await forward([...datagrams, ...segments], { tso: true });
    expect(tsoOnly.written).toHaveLength(8 + 1);
    expect(tsoOnly.stats).toMatchObject({ coalescedWrites: 1, coalescedPackets: 3 });
    const none = await forward([...datagrams, ...segments], undefined);
    expect(none.written).toHaveLength(11);
    expectSamePackets(tsoOnly.wire, none.wire);
  });

  test("a run longer than a batch is merged batch by batch", async () => {
    const datagrams = udpRun({ family: 4, lengths: new Array(40).fill(36) });
    const { written, wire, stats } = await forward(datagrams.map(partial), { tso: true, uso: true }, undefined, 16);
    expect(written).toHaveLength(3);
    expectSamePackets(wire, datagrams);
    expect(stats).toMatchObject({ batches: 3, writes: 3, coalescedWrites: 3, coalescedPackets: 40 });
  });
});
