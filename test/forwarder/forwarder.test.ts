// The forwarder loop on the in-memory TUN device: batches in, decisions, batches out.
import { describe, expect, test, vi } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { packet4, packet6 } from "../../host/packet/build.js";
import { restoreSnapshot, takeSnapshot, parseSnapshot } from "../../host/conntrack/snapshot.js";

const out = (sport: number, flags: object) => packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).tcp({ sport, dport: 80, flags });
const back = (sport: number, flags: object) => packet4({ src: "10.0.2.2", dst: "10.0.1.2" }).tcp({ sport: 80, dport: sport, flags });
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

async function setup(clock = () => 1000) {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
  const tun = new FakeTun({ mtu: 1500 });
  return { dp, tun, fwd: new Forwarder(dp, tun, { batchSize: 8, clock }) };
}

describe("forwarder", () => {
  test("forwards what passes, byte for byte, in batches; drops what does not", async () => {
    const { dp, tun, fwd } = await setup();
    const packets = [out(1, { syn: true }), back(1, { syn: true, ack: true }), out(1, { ack: true }), packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 5, dport: 6 })];
    const runt = packets[0].slice(0, 10);
    for (const p of [...packets, runt]) tun.inject(p);
    expect(fwd.step()).toBe(5);
    expect(tun.drainWritten().map((w) => hex(w.packet))).toEqual(packets.map(hex));
    expect(fwd.stats).toMatchObject({ batches: 1, packetsIn: 5, packetsOut: 4, dropped: 1 });
    expect(dp.counters().drops.map((d) => d.reason)).toEqual(["DROP_INVALID"]);
    expect(fwd.step()).toBe(0);
  });

  test("a batch never holds more than its size; the rest waits for the next step", async () => {
    const { tun, fwd } = await setup();
    for (let i = 0; i < 20; i++) tun.inject(out(100 + i, { syn: true }));
    expect([fwd.step(), fwd.step(), fwd.step(), fwd.step()]).toEqual([8, 8, 4, 0]);
    expect(tun.drainWritten()).toHaveLength(20);
  });

  test("runs GC on its clock", async () => {
    let now = 1000;
    const { dp, tun, fwd } = await setup(() => now);
    tun.inject(out(7, { syn: true }));
    fwd.step();
    expect(dp.tableInfo("tcp4").count).toBe(1);
    expect(fwd.stats.lastGcSeconds).toBeUndefined();
    now += 24 * 3600; // past the SYN timeout and any GC interval
    tun.inject(out(8, { syn: true }));
    fwd.step();
    expect(fwd.stats.gcRuns).toBe(1);
    // Timed: datapath_conntrack_gc_duration_seconds is no longer always 0.
    expect(fwd.stats.lastGcSeconds).toBeGreaterThan(0);
    expect([...dp.conntrack("tcp4")].map((r) => r.tuple.sport)).toEqual([8]);
  });

  test("a conntrack snapshot carries an established connection into a new datapath", async () => {
    const a = await setup();
    for (const p of [out(9, { syn: true }), back(9, { syn: true, ack: true }), out(9, { ack: true })]) a.tun.inject(p);
    a.fwd.step();
    const snap = takeSnapshot(a.dp);
    expect(parseSnapshot(snap).tables.find((t) => t.table === "tcp4")?.records).toHaveLength(1);
    const b = await setup();
    expect(restoreSnapshot(b.dp, snap)).toMatchObject({ tcp4: 1 });
    expect(b.dp.decide(back(9, { ack: true }), { now: 1001 }).ct).toBe("reply");
    const [entry] = [...b.dp.conntrack("tcp4")];
    expect(Number(entry.entry.txPackets)).toBe(2);
  });

  test("a bad snapshot changes nothing", async () => {
    const { dp } = await setup();
    const snap = takeSnapshot(dp);
    expect(() => restoreSnapshot(dp, snap.subarray(0, 20))).toThrow(/truncated|do not fit/);
    expect(() => restoreSnapshot(dp, Buffer.from("nonsense"))).toThrow("not a membrane conntrack snapshot");
    const small = await Datapath.create({ conntrack: { tcpEntries: 1, otherEntries: 1 } });
    const a = await setup();
    a.dp.decide(out(1, { syn: true }), { now: 1000 });
    a.dp.decide(out(2, { syn: true }), { now: 1000 });
    expect(() => restoreSnapshot(small, takeSnapshot(a.dp))).toThrow("has room for 1 more entries, the snapshot holds 2");
    expect(small.tableInfo("tcp4").count).toBe(0);
  });
});

test("keeps forwarding after Wasm memory grows under it", async () => {
  const { dp, tun, fwd } = await setup();
  tun.inject(out(1, { syn: true }));
  fwd.step();
  dp.createBatch(64, { bufferSize: 65535 }); // grows linear memory: every view taken before is detached
  tun.inject(out(2, { syn: true }));
  expect(fwd.step()).toBe(1);
  expect(tun.drainWritten()).toHaveLength(2);
});

describe("forwarder with offloads (virtio-net header)", () => {
  const seg = (i: number) => packet4({ src: "10.0.1.2", dst: "10.0.2.2", id: 100 + i })
    .tcp({ sport: 4000, dport: 80, seq: 1 + i * 1000, ack: 1, flags: { ack: true }, payload: new Uint8Array(1000).fill(i) });

  test("split mode: a TSO super-packet is split for the datapath, every segment tracked, and coalesced again on the way out", async () => {
    const { coalesce, split, readVirtioNetHdr } = await import("../../host/tun/offload/index.js");
    const { verifyChecksums } = await import("../../host/packet/checksum.js");
    const segments = Array.from({ length: 8 }, (_, i) => seg(i));
    // Build the super-packet the kernel would hand over: coalesce the segments.
    const bufs = segments.map((s) => { const b = new Uint8Array(10 + 65535); b.set(s, 10); return b; });
    const [sup] = coalesce(bufs, segments.map((s) => s.length), 10);
    const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
    const tun = new FakeTun({ mtu: 1500, vnetHdr: true, gso: true });
    const fwd = new Forwarder(dp, tun, { batchSize: 16, clock: () => 1000, offloadMode: "split" });
    tun.inject(sup.bytes.subarray(10), sup.bytes.subarray(0, 10));
    fwd.step();
    expect(fwd.stats).toMatchObject({ reads: 1, packetsIn: 8, packetsOut: 8, writes: 1 });
    const [entry] = [...dp.conntrack("tcp4")];
    expect(Number(entry.entry.txPackets)).toBe(8);
    const [written] = tun.drainWritten();
    // What goes back to the kernel splits into exactly the segments that came in.
    const outBufs = Array.from({ length: 8 }, () => new Uint8Array(2000));
    const sizes: number[] = [];
    expect(split(written.packet, readVirtioNetHdr(written.vnetHdr!, 0), outBufs, sizes, 0)).toBe(8);
    outBufs.forEach((b, i) => {
      expect(hex(b.subarray(0, sizes[i]))).toBe(hex(segments[i]));
      expect(verifyChecksums(b.subarray(0, sizes[i]), 0).ok).toBe(true);
    });
  });

  test("split mode: a packet with a partial checksum leaves with a complete one", async () => {
    const { pseudoHeaderSum4, verifyChecksums } = await import("../../host/packet/checksum.js");
    const pkt = packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: 1, dport: 2, payload: new Uint8Array(40).fill(7) });
    // As the kernel sends it with NEEDS_CSUM: the L4 checksum field holds only the pseudo-header sum.
    const partial = pkt.slice();
    const sum = pseudoHeaderSum4(partial.subarray(12, 16), partial.subarray(16, 20), 17, partial.length - 20);
    partial[26] = sum >> 8; partial[27] = sum & 255;
    const hdr = new Uint8Array(10);
    hdr[0] = 1; hdr[6] = 20; hdr[8] = 6; // NEEDS_CSUM, csum_start 20, csum_offset 6 (little-endian u16s)
    const dp = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 } });
    const tun = new FakeTun({ mtu: 1500, vnetHdr: true });
    const fwd = new Forwarder(dp, tun, { clock: () => 1000, offloadMode: "split" });
    tun.inject(partial, hdr);
    fwd.step();
    const [w] = tun.drainWritten();
    expect(hex(w.packet)).toBe(hex(pkt));
    expect(verifyChecksums(w.packet, 0).ok).toBe(true);
  });
});

test("a device that is down (EIO) loses the batch and the forwarder goes on", async () => {
  const { TunIoError } = await import("../../host/tun/errors.js");
  const { dp, tun } = await setup();
  let down = true;
  const write = tun.write.bind(tun);
  tun.write = (bufs, sizes, offset) => {
    if (down) throw new TunIoError("write packet 0 of a batch to fake0", 5 /* EIO */);
    return write(bufs, sizes, offset);
  };
  const fwd = new Forwarder(dp, tun, { clock: () => 1000 });
  tun.inject(out(1, { syn: true }));
  tun.inject(out(2, { syn: true }));
  expect(fwd.step()).toBe(2);
  expect(fwd.stats).toMatchObject({ writes: 0, writeErrors: 2 });
  down = false;
  tun.inject(out(3, { syn: true }));
  fwd.step();
  expect(fwd.stats).toMatchObject({ writes: 1, writeErrors: 2 });
  expect(tun.drainWritten()).toHaveLength(1);
});

// Descriptor I/O (Forwarder.stepDescriptors: the device reads into and writes
// out of the Wasm batch's records) must count and forward exactly as the
// read()/write() path does, also when a write fails part-way: the same
// packets out, the same stats. FakeTun's descriptorIo fails where a real TUN
// would (failWrite: EAGAIN pushes back, EINVAL refuses one packet, EIO fails
// the rest).
describe("forwarder with descriptor I/O", () => {
  const packets = () => [
    out(1, { syn: true }), back(1, { syn: true, ack: true }), out(1, { syn: true }).slice(0, 10), out(1, { ack: true }),
    packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 5, dport: 6 }), out(2, { syn: true }),
  ];
  const scenarios: Array<[string, ((t: FakeTun) => void) | undefined]> = [
    ["no failure", undefined],
    ["the kernel refuses the 2nd packet (EINVAL)", (t) => t.failWrite(1, "EINVAL")],
    ["the device pushes back at the 3rd packet (EAGAIN)", (t) => t.failWrite(2, "EAGAIN")],
    ["the device is down (EIO) at the 1st packet", (t) => t.failWrite(0, "EIO")],
    ["the kernel refuses the last passing packet (EINVAL)", (t) => t.failWrite(4, "EINVAL")],
  ];
  for (const [name, arm] of scenarios) {
    test(`${name}: the same packets out and the same stats as the read()/write() path`, async () => {
      const runs = await Promise.all([false, true].map(async (descriptorIo) => {
        const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
        const tun = new FakeTun({ mtu: 1500, descriptorIo });
        const reads = descriptorIo ? vi.spyOn(tun.descriptorIo()!, "readDescs") : undefined;
        const fwd = new Forwarder(dp, tun, { batchSize: 8, clock: () => 1000 });
        for (const p of packets()) tun.inject(p);
        arm?.(tun);
        expect(fwd.step()).toBe(6);
        if (reads) expect(reads).toHaveBeenCalledTimes(1);
        return { written: tun.drainWritten().map((w) => hex(w.packet)), stats: { ...fwd.stats }, drops: dp.counters().drops };
      }));
      const [plain, desc] = runs;
      expect(desc!.written).toEqual(plain!.written);
      expect(desc!.stats).toEqual(plain!.stats);
      expect(desc!.drops).toEqual(plain!.drops);
      // What the scenario should have done, so the comparison is not of two equal mistakes.
      expect(plain!.stats).toMatchObject({ packetsIn: 6, packetsOut: 5, dropped: 1 });
      const expected = { "no failure": [5, 0], "the kernel refuses the 2nd packet (EINVAL)": [4, 1], "the device pushes back at the 3rd packet (EAGAIN)": [2, 3],
        "the device is down (EIO) at the 1st packet": [0, 5], "the kernel refuses the last passing packet (EINVAL)": [4, 1] }[name]!;
      expect([plain!.stats.writes, plain!.stats.writeErrors]).toEqual(expected);
      expect(plain!.written).toHaveLength(expected[0]!);
    });
  }

  test("its device reads into the batch's records; a grown Wasm memory is followed", async () => {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
    const tun = new FakeTun({ mtu: 1500, descriptorIo: true });
    const fwd = new Forwarder(dp, tun, { batchSize: 8, clock: () => 1000 });
    tun.inject(out(1, { syn: true }));
    fwd.step();
    dp.createBatch(64, { bufferSize: 65535 }); // grows linear memory
    tun.inject(out(2, { syn: true }));
    expect(fwd.step()).toBe(1);
    expect(tun.drainWritten().map((w) => hex(w.packet))).toEqual([out(1, { syn: true }), out(2, { syn: true })].map(hex));
    expect(fwd.stats).toMatchObject({ packetsIn: 2, packetsOut: 2, bytesIn: 2 * out(1, { syn: true }).length, bytesOut: 2 * out(1, { syn: true }).length });
  });
});
