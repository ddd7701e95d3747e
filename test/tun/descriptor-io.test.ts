// Descriptor-batch I/O (host/tun/device.ts DescriptorIo, native/tun_io.c
// tun_*_descs): a LinuxTun with native I/O reads packets straight into the
// buffers that struct pkt_desc records point at, filling the records in, and
// writes the records whose verdict is PASS from their (possibly moved)
// offset. Here the records and buffers live in one plain ArrayBuffer laid out
// as a Wasm batch is (records first, then buffers), so every field can be
// checked; for both native modes ("batch": read/write looped in C, "uring"):
// - what a read fills in: off = headroom, len, link/dir/flags from meta, the
//   bytes at the headroom;
// - a write sends exactly the passing records, from each record's own off
//   (a packet moved by the datapath), in order, and reports the passing
//   count, their bytes and the packets written;
// - a packet the kernel refuses stops the batch at its record
//   (TunIoError EINVAL, done = that record; later packets not sent);
// - a record pointing outside the memory stops the batch (EFAULT) and
//   nothing outside the memory is touched; a buffer smaller than the device's
//   read capacity is refused (EINVAL) before anything is read.
import { afterAll, beforeAll, expect, it } from "vitest";
import { openTun, type LinuxTun } from "../../host/tun/linux-tun.js";
import { TunIoError } from "../../host/tun/errors.js";
import type { DescriptorBatch, DescriptorIo } from "../../host/tun/device.js";
import type { TunIoMode } from "../../host/tun/tun-io-choice.js";
import { packet4 } from "../../host/packet/build.js";
import { decodePktDesc, encodePktDesc, PKT_DESC } from "../../host/generated/layout.js";
import { closeTunPairs, describeIf, missingNativeTun, missingTun, openTunPairs } from "./env.js";
import { ip, withNetns } from "../../host/sys/netns/index.js";

const MODES: TunIoMode[] = ["batch", "uring"];
const missing = missingTun() ?? missingNativeTun();

const HEADROOM = 64;
const META = 0 | (255 << 8) | (1 << 16); // LINK_RAW_IP, DIR_AUTO, PKT_F_CSUM_PARTIAL: a stamp to find again

function crafted(i: number): Uint8Array {
  const payload = new Uint8Array(10 + ((i * 37) % 300)).map((_, k) => (i * 7 + k) & 0xff);
  return packet4({ src: "10.253.0.2", dst: "10.253.1.2", id: i, ttl: 64 }).udp({ sport: 2000 + i, dport: 3000, payload });
}

/** n records, then n buffers of `room` bytes after the headroom, in one memory (a Wasm batch's shape). */
function arena(n: number, room: number): { batch: DescriptorBatch; bufAt: (i: number) => number; bufSize: number } {
  const bufSize = HEADROOM + room;
  const first = Math.ceil((n * PKT_DESC.size) / 16) * 16;
  const memory = new Uint8Array(first + n * bufSize);
  for (let i = 0; i < n; i++) {
    encodePktDesc({ buf: first + i * bufSize, bufSize, off: 0, len: 0, link: 9, dir: 9, verdict: 0, ctResult: 0, dropReason: 0, ctTable: 0, flags: 9 }, memory, i * PKT_DESC.size);
  }
  return { batch: { memory, descs: 0, count: n, headroom: HEADROOM, meta: META }, bufAt: (i) => first + i * bufSize, bufSize };
}

const record = (b: DescriptorBatch, i: number) => decodePktDesc(b.memory, b.descs + i * PKT_DESC.size);
function setRecord(b: DescriptorBatch, i: number, change: Partial<ReturnType<typeof record>>): void {
  encodePktDesc({ ...record(b, i), ...change }, b.memory, b.descs + i * PKT_DESC.size);
}

describeIf("descriptor-batch TUN I/O (real TUNs, native modes)", missing, () => {
  const ns = `mbr-tdesc-${process.pid}`;
  const pairs = new Map<TunIoMode, { a: LinuxTun; b: LinuxTun; aIo: DescriptorIo; bIo: DescriptorIo }>();

  beforeAll(() => {
    for (const [mode, { a, b }] of openTunPairs(ns, "td", MODES)) pairs.set(mode, { a, b, aIo: a.descriptorIo()!, bIo: b.descriptorIo()! });
  });

  afterAll(() => closeTunPairs(ns, pairs.values()));

  function routeVia(mode: TunIoMode): void {
    ip("-n", ns, "route", "replace", "10.253.1.0/24", "dev", pairs.get(mode)!.b.name);
  }

  /** Reads from B into a fresh arena until `want` packets came (or a wait times out); the arena and the count. */
  function readInto(mode: TunIoMode, want: number, capacity = 64) {
    const { b, bIo } = pairs.get(mode)!;
    const a = arena(capacity, b.readCapacity);
    const totals = new Uint32Array(3);
    let got = 0;
    while (got === 0 && b.wait(2000)) got = bIo.readDescs(a.batch, totals);
    expect(got, `mode ${mode}`).toBeGreaterThan(0);
    expect(got).toBeLessThanOrEqual(want);
    return { ...a, got, bytes: totals[0]! };
  }

  it("the koffi mode has no descriptor I/O (the forwarder then keeps read/write)", () => {
    const k = withNetns(ns, () => openTun({ name: "tdk0", mtu: 1500, io: "koffi" }));
    try {
      expect(k.descriptorIo()).toBeUndefined();
    } finally {
      k.close();
    }
  });

  for (const mode of MODES) {
    it(`${mode}: a read fills in each record and the bytes; a write sends exactly the passing records, from each one's off`, () => {
      routeVia(mode);
      const { a: tunA, aIo } = pairs.get(mode)!;
      const packets = Array.from({ length: 6 }, (_, i) => crafted(i));
      // Into A through a descriptor write: all pass, each from its own place.
      const out = arena(packets.length, 1500);
      packets.forEach((p, i) => {
        // Packet 3 sits 20 bytes before the headroom, as if the datapath had prepended a header.
        const off = i === 3 ? HEADROOM - 20 : HEADROOM;
        out.batch.memory.set(p, out.bufAt(i) + off);
        setRecord(out.batch, i, { off, len: p.length, verdict: 0 });
      });
      // Packet 1 dropped: not sent, not counted as passing.
      setRecord(out.batch, 1, { verdict: 1 });
      const totals = new Uint32Array(3);
      const stop = aIo.writeDescs(out.batch, 0, totals);
      expect(stop).toBe(packets.length);
      const passing = packets.filter((_, i) => i !== 1);
      expect([...totals]).toEqual([5, passing.reduce((s, p) => s + p.length, 0), 5]);
      expect(tunA.fd).toBeGreaterThan(0);

      // Out of B (forwarded: TTL - 1): into a descriptor read.
      const r = readInto(mode, 5);
      let all = r.got;
      const seen: Uint8Array[] = [];
      const collect = (got: number, x: typeof r) => {
        for (let i = 0; i < got; i++) {
          const d = record(x.batch, i);
          expect(d.off).toBe(HEADROOM);
          expect([d.link, d.dir, d.flags]).toEqual([0, 255, 1]);
          expect(d.verdict).toBe(0); // a read leaves the outputs alone
          seen.push(x.batch.memory.slice(d.buf + d.off, d.buf + d.off + d.len));
        }
      };
      collect(r.got, r);
      expect(r.bytes).toBe(seen.reduce((s, p) => s + p.length, 0));
      while (all < 5) {
        const more = readInto(mode, 5 - all);
        collect(more.got, more);
        all += more.got;
      }
      expect(seen.map((p) => p.length)).toEqual(passing.map((p) => p.length));
      seen.forEach((p, i) => {
        expect(p[8]).toBe(63);
        expect(p.subarray(20)).toEqual(passing[i]!.subarray(20));
      });
    });

    it(`${mode}: a packet the kernel refuses stops the write at its record (EINVAL, done = the record); later ones are not sent`, () => {
      routeVia(mode);
      const { aIo } = pairs.get(mode)!;
      const out = arena(4, 1500);
      const packets = [crafted(10), crafted(11), new Uint8Array(40), crafted(12)]; // IP version 0: refused
      packets.forEach((p, i) => {
        out.batch.memory.set(p, out.bufAt(i) + HEADROOM);
        setRecord(out.batch, i, { off: HEADROOM, len: p.length, verdict: 0 });
      });
      const totals = new Uint32Array(3);
      let error: unknown;
      try {
        aIo.writeDescs(out.batch, 0, totals);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(TunIoError);
      expect((error as TunIoError).errnoName).toBe("EINVAL");
      expect((error as TunIoError).done).toBe(2);
      expect([totals[0], totals[2]]).toEqual([4, 2]);
      // The rest, from the record after the refused one.
      expect(aIo.writeDescs(out.batch, 3, totals)).toBe(4);
      expect([totals[0], totals[2]]).toEqual([1, 1]);
      const ids: number[] = [];
      while (ids.length < 3) {
        const r = readInto(mode, 3 - ids.length);
        for (let i = 0; i < r.got; i++) {
          const d = record(r.batch, i);
          ids.push((r.batch.memory[d.buf + d.off + 4]! << 8) | r.batch.memory[d.buf + d.off + 5]!);
        }
      }
      expect(ids).toEqual([10, 11, 12]);
    });

    it(`${mode}: a record outside the memory stops the batch (EFAULT); a buffer smaller than the read capacity is refused (EINVAL)`, () => {
      const { aIo, bIo, b } = pairs.get(mode)!;
      const out = arena(2, 1500);
      out.batch.memory.set(crafted(20), out.bufAt(0) + HEADROOM);
      setRecord(out.batch, 0, { off: HEADROOM, len: crafted(20).length, verdict: 0 });
      setRecord(out.batch, 1, { buf: out.batch.memory.length - 10, off: HEADROOM, len: 100, verdict: 0 });
      const totals = new Uint32Array(3);
      expect(() => aIo.writeDescs(out.batch, 0, totals)).toThrow(/EFAULT/);
      // The records themselves past the end of the memory: nothing is done at all.
      expect(() => aIo.writeDescs({ ...out.batch, descs: out.batch.memory.length - 8 }, 0, totals)).toThrow(/EFAULT/);
      // Room for less than an MTU after the headroom: refused before anything is read.
      const small = arena(4, b.readCapacity - 1);
      expect(() => bIo.readDescs(small.batch, totals)).toThrow(/EINVAL/);
      // What the first write sent (record 0) is still there to read: nothing was lost to the refused read.
      routeVia(mode);
      const r = readInto(mode, 1);
      expect(r.got).toBe(1);
    });
  }
});
