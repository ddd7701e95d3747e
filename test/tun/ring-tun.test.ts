// The packet ring between a TUN queue's I/O thread and the deciding thread
// (host/tun/packet-ring.ts): packets come out in the order they went in,
// across the wrap of slots and of the int32 counters; a full ring drops and
// counts instead of blocking; a slot holds a whole offload-sized packet; and
// the two ends work from different threads over one SharedArrayBuffer.
import { describe, expect, test } from "vitest";
import { Worker } from "node:worker_threads";
import { PacketRing } from "../../host/tun/packet-ring.js";
import { InvalidInputError } from "../../host/errors.js";
import { MAX_GSO_PACKET } from "../../host/tun/device.js";

const packet = (n: number, len = 8) => Uint8Array.from({ length: len }, (_, i) => (n + i) & 0xff);

function drain(ring: PacketRing): Uint8Array[] {
  const out: Uint8Array[] = [];
  const n = ring.available();
  for (let k = 0; k < n; k++) out.push(ring.readySlot(k).slice(0, ring.length(k)));
  ring.release(n);
  return out;
}

describe("PacketRing", () => {
  test("refuses sizes it cannot hold, naming the field", () => {
    expect(() => PacketRing.create(0, 1500)).toThrow(InvalidInputError);
    expect(() => PacketRing.create(8, 0)).toThrow(/slot capacity/);
    expect(() => new PacketRing(new SharedArrayBuffer(256))).toThrow(/does not hold a ring/);
  });

  test("rounds slots up to a power of two; packets come out in order with their lengths", () => {
    const ring = PacketRing.create(5, 64);
    expect(ring.slots).toBe(8);
    for (let i = 0; i < 5; i++) expect(ring.push(packet(i, 10 + i), 0, 10 + i)).toBe(true);
    expect(ring.available()).toBe(5);
    expect(drain(ring)).toEqual([0, 1, 2, 3, 4].map((i) => packet(i, 10 + i)));
    expect(ring.available()).toBe(0);
    expect(ring.free()).toBe(8);
  });

  test("keeps order across many wraps of the slots", () => {
    const ring = PacketRing.create(4, 32);
    const seen: number[] = [];
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 3; i++) ring.push(packet(round * 3 + i), 0, 8);
      for (const p of drain(ring)) seen.push(p[0]!);
    }
    expect(seen).toEqual(Array.from({ length: 150 }, (_, i) => i & 0xff));
    expect(ring.drops).toBe(0);
  });

  test("a full ring drops the packet and counts it; the ring's contents stay as they were", () => {
    const ring = PacketRing.create(4, 32);
    for (let i = 0; i < 4; i++) expect(ring.push(packet(i), 0, 8)).toBe(true);
    expect(ring.free()).toBe(0);
    expect(ring.push(packet(9), 0, 8)).toBe(false);
    expect(ring.push(packet(10), 0, 8)).toBe(false);
    expect(ring.drops).toBe(2);
    expect(drain(ring)).toEqual([0, 1, 2, 3].map((i) => packet(i)));
    expect(ring.push(packet(11), 0, 8)).toBe(true);
    expect(drain(ring)).toEqual([packet(11)]);
  });

  test("a packet larger than a slot is dropped and counted, not truncated", () => {
    const ring = PacketRing.create(4, 100);
    expect(ring.push(new Uint8Array(101), 0, 101)).toBe(false);
    expect(ring.drops).toBe(1);
    expect(ring.available()).toBe(0);
  });

  test("slots sized for the offload maximum carry a 64 KiB super-packet whole, from an offset in the source", () => {
    const ring = PacketRing.create(2, 10 + MAX_GSO_PACKET);
    const big = Uint8Array.from({ length: 10 + MAX_GSO_PACKET + 16 }, (_, i) => (i * 7) & 0xff);
    expect(ring.push(big, 16, 10 + MAX_GSO_PACKET)).toBe(true);
    const [got] = drain(ring);
    expect(got!.length).toBe(10 + MAX_GSO_PACKET);
    expect(Buffer.compare(got!, big.subarray(16))).toBe(0);
  });

  test("filling free slots in place (as an I/O thread's read(2) does) and publishing a batch at once", () => {
    const ring = PacketRing.create(4, 16);
    expect(ring.free()).toBe(4);
    for (let k = 0; k < 3; k++) {
      ring.freeSlot(k).set(packet(k, 4));
      ring.setLength(k, 4);
    }
    // Nothing is visible before publish.
    expect(ring.available()).toBe(0);
    ring.publish(3);
    expect(drain(ring)).toEqual([0, 1, 2].map((k) => packet(k, 4)));
  });

  test("the counters wrap past 2^31 without losing order or fill", () => {
    const ring = PacketRing.create(4, 16);
    const i32 = new Int32Array(ring.sab);
    // head (line 0) and tail (line 1) just below the int32 wrap.
    i32[0] = 0x7fffffff - 1;
    i32[16] = 0x7fffffff - 1;
    const fresh = new PacketRing(ring.sab);
    const seen: number[] = [];
    for (let i = 0; i < 20; i++) {
      expect(fresh.push(packet(i), 0, 8)).toBe(true);
      expect(fresh.available()).toBe(1);
      seen.push(drain(fresh)[0]![0]!);
    }
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(fresh.drops).toBe(0);
  });

  test("producer and consumer on different threads: every packet once, in order, or counted as dropped", async () => {
    const ring = PacketRing.create(64, 16);
    const total = 20_000;
    // The producer thread: plain JS over the same buffer (the module is not loaded there: its layout is part of the contract).
    const worker = new Worker(`
      const { workerData } = require("node:worker_threads");
      const i32 = new Int32Array(workerData.sab);
      const slots = i32[34], cap = i32[35], stride = (4 + cap + 7) & ~7;
      const u8 = new Uint8Array(workerData.sab);
      const dv = new DataView(workerData.sab);
      for (let n = 0; n < workerData.total; n++) {
        const tail = i32[16];
        if (((tail - Atomics.load(i32, 0)) | 0) === slots) { Atomics.add(i32, 32, 1); continue; }
        const at = 192 + (tail & (slots - 1)) * stride;
        dv.setUint32(at + 4, n, true);
        i32[at >> 2] = 4;
        Atomics.store(i32, 16, (tail + 1) | 0);
      }
    `, { eval: true, workerData: { sab: ring.sab, total } });
    const exited = new Promise((resolve) => worker.on("exit", resolve));
    const got: number[] = [];
    let done = false;
    void exited.then(() => (done = true));
    while (!done || ring.available() > 0) {
      const n = ring.available();
      for (let k = 0; k < n; k++) got.push(new DataView(ring.readySlot(k).buffer, ring.readySlot(k).byteOffset).getUint32(0, true));
      ring.release(n);
      if (n === 0) await new Promise((r) => setImmediate(r));
    }
    expect(got.length + ring.drops).toBe(total);
    for (let i = 1; i < got.length; i++) expect(got[i]! > got[i - 1]!).toBe(true);
  });
});
