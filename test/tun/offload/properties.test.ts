// fast-check properties of the offload layer:
//   1. any run of TCP segments (or USO datagrams) of one flow coalesces into one
//      super-packet that splits back into the same bytes, checksums valid;
//   2. any batch mixing flows, protocols and garbage comes back unchanged and in
//      order from coalesce then split (merging is invisible after segmentation);
//   3. split on random bytes with random headers into random buffers throws
//      nothing but MembraneError (OFFLOAD_INVALID), stays inside its buffers,
//      and whatever it segments has correct checksums.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { verifyChecksums } from "../../../host/packet/checksum.js";
import { packet4, packet6, tcpOptions } from "../../../host/packet/build.js";
import { MembraneError } from "../../../host/errors.js";
import { split } from "../../../host/tun/offload/split.js";
import { validateVirtioNetHdr, readVirtioNetHdr, type VirtioNetHdr } from "../../../host/tun/offload/virtio-net-hdr.js";
import { asKernelSuperPacket, expectChecksumsOk, expectSamePackets, payloadBytes, roundTrip, tcpRun, udpRun } from "./fixtures.js";

const SEED = Number(process.env.FC_SEED ?? 0x0ff10ad) | 0;
const params = (numRuns: number) => ({ numRuns, seed: SEED });

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

const tcpRunArb = fc.record({
  family: fc.constantFrom(4 as const, 6 as const),
  mss: fc.integer({ min: 1, max: 1460 }),
  count: fc.integer({ min: 2, max: 30 }),
  lastShort: fc.option(fc.integer({ min: 1, max: 1460 }), { nil: undefined }),
  seq: u32,
  ack: u32,
  id: u16,
  window: u16,
  sport: u16,
  dport: u16,
  timestamps: fc.boolean(),
  cwr: fc.boolean(),
  ece: fc.boolean(),
  psh: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
});

describe("properties", () => {
  it("a TCP segment run coalesces into one super-packet and splits back byte for byte (300 runs)", () => {
    fc.assert(
      fc.property(tcpRunArb, (r) => {
        const lengths = new Array(r.count).fill(r.mss);
        if (r.lastShort !== undefined) lengths[r.count - 1] = Math.min(r.lastShort, r.mss);
        const pkts = tcpRun({
          family: r.family,
          lengths,
          seq: r.seq,
          ack: r.ack,
          id: r.id,
          window: r.window,
          sport: r.sport,
          dport: r.dport,
          options: r.timestamps ? Uint8Array.of(1, 1, ...tcpOptions({ timestamp: { value: r.seq, echo: r.ack } })) : undefined,
          flags: { ece: r.ece },
          firstFlags: { cwr: r.cwr },
          lastFlags: { psh: r.psh },
          seed: r.seed,
        });
        const { out, written } = roundTrip(pkts);
        expect(written.map((w) => w.segments)).toEqual([r.count]);
        expectSamePackets(out, pkts);
        out.forEach(expectChecksumsOk);
      }),
      params(300),
    );
  });

  it("a UDP datagram run coalesces into one USO super-packet and splits back byte for byte (200 runs)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(4 as const, 6 as const),
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 2, max: 64 }),
        fc.integer({ min: 1, max: 1000 }),
        u16,
        (family, size, count, last, id) => {
          const lengths = new Array(count).fill(size);
          lengths[count - 1] = Math.min(last, size);
          const pkts = udpRun({ family, lengths, id, seed: size });
          const { out, written } = roundTrip(pkts, { udp: true });
          expect(written.map((w) => w.segments)).toEqual([count]);
          expectSamePackets(out, pkts);
          out.forEach(expectChecksumsOk);
        },
      ),
      params(200),
    );
  });

  // A batch built from a few interleaved sources: two TCP flows and a UDP flow
  // that each continue where they left off (so runs form when a source repeats),
  // flags that break runs, and arbitrary bytes.
  type Step =
    | { kind: "tcp"; flow: 0 | 1; len: number; flags: number }
    | { kind: "udp"; len: number }
    | { kind: "junk"; bytes: Uint8Array };
  const stepArb: fc.Arbitrary<Step> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("tcp" as const), flow: fc.constantFrom(0 as const, 1 as const), len: fc.constantFrom(0, 100, 100, 100, 100, 37), flags: fc.constantFrom(0x10, 0x10, 0x10, 0x18, 0x11, 0x12, 0x90, 0x50) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("udp" as const), len: fc.constantFrom(200, 200, 200, 50) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("junk" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 80 }) }) },
  );

  function materialize(steps: Step[], family: 4 | 6): Uint8Array[] {
    const tcpState = [
      { seq: 1, id: 10 },
      { seq: 0xfffffff0, id: 0xfffe },
    ];
    const udpState = { id: 300 };
    let n = 0;
    return steps.map((s) => {
      n++;
      if (s.kind === "junk") return s.bytes;
      if (s.kind === "udp") {
        const payload = payloadBytes(s.len, n);
        const id = udpState.id++ & 0xffff;
        return family === 4 ? packet4({ src: "10.0.0.1", dst: "10.0.0.9", id }).udp({ sport: 53, dport: 5353, payload }) : packet6({ src: "fd00::1", dst: "fd00::9" }).udp({ sport: 53, dport: 5353, payload });
      }
      const st = tcpState[s.flow]!;
      const f = s.flags;
      const tcp = {
        sport: 1000 + s.flow,
        dport: 80,
        seq: st.seq >>> 0,
        ack: 5,
        payload: payloadBytes(s.len, n),
        flags: { fin: !!(f & 1), syn: !!(f & 2), psh: !!(f & 8), ack: !!(f & 16), ece: !!(f & 64), cwr: !!(f & 128) },
      };
      const id = st.id & 0xffff;
      st.id++;
      st.seq = (st.seq + s.len) % 2 ** 32;
      return family === 4 ? packet4({ src: "10.0.0.1", dst: "10.0.0.2", id }).tcp(tcp) : packet6({ src: "fd00::1", dst: "fd00::2" }).tcp(tcp);
    });
  }

  it("any batch comes back unchanged and in order from coalesce then split (500 runs)", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 0, maxLength: 40 }), fc.constantFrom(4 as const, 6 as const), fc.boolean(), (steps, family, udp) => {
        const pkts = materialize(steps, family);
        const { out, written } = roundTrip(pkts, { udp }, 8192);
        expectSamePackets(out, pkts);
        expect(written.reduce((n, w) => n + w.segments, 0)).toBe(pkts.length);
        for (const w of written) expect(() => validateVirtioNetHdr(readVirtioNetHdr(w.bytes, 0))).not.toThrow();
      }),
      params(500),
    );
  });

  // Headers biased towards the values that reach deep code paths.
  const hdrArb: fc.Arbitrary<VirtioNetHdr> = fc.record({
    flags: fc.oneof(fc.constantFrom(0, 1, 2, 3), fc.integer({ min: 0, max: 255 })),
    gsoType: fc.oneof(fc.constantFrom(0, 1, 3, 4, 5, 0x81, 0x84, 0x85), fc.integer({ min: 0, max: 255 })),
    hdrLen: fc.oneof(fc.integer({ min: 0, max: 80 }), u16),
    gsoSize: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 1500 }), u16),
    csumStart: fc.oneof(fc.constantFrom(0, 20, 24, 40), fc.integer({ min: 0, max: 100 }), u16),
    csumOffset: fc.oneof(fc.constantFrom(6, 16), fc.integer({ min: 0, max: 40 }), u16),
  });

  // Random bytes, or a real super-packet with a few bytes changed and maybe cut short.
  const pktArb: fc.Arbitrary<Uint8Array> = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc
      .record({
        which: fc.constantFrom("tcp4", "tcp6", "udp4", "udp6"),
        len: fc.integer({ min: 0, max: 400 }),
        flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
      })
      .map(({ which, len, flips, cut }) => {
        const payload = payloadBytes(len, len + 1);
        const l4 = { sport: 1, dport: 2, payload };
        let p =
          which === "tcp4" ? packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).tcp({ ...l4, flags: { ack: true } })
          : which === "tcp6" ? packet6({ src: "fd00::1", dst: "fd00::2" }).tcp({ ...l4, flags: { ack: true } })
          : which === "udp4" ? packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp(l4)
          : packet6({ src: "fd00::1", dst: "fd00::2" }).udp(l4);
        p = asKernelSuperPacket(p);
        for (const [at, v] of flips) p[at % p.length] = v;
        return cut === undefined ? p : p.subarray(0, cut % (p.length + 1));
      }),
  );

  it("split of random bytes with random headers throws nothing but MembraneError (2000 runs)", () => {
    fc.assert(
      fc.property(
        pktArb,
        hdrArb,
        fc.array(fc.integer({ min: 0, max: 600 }), { maxLength: 12 }),
        fc.oneof(fc.constantFrom(0, 10, 32), fc.integer({ min: -2, max: 64 })),
        (pkt, hdr, capacities, offset) => {
          const bufs = capacities.map((c) => new Uint8Array(c).fill(0xee));
          const sizes = capacities.map(() => -1);
          const before = pkt.slice();
          let n: number;
          try {
            n = split(pkt, hdr, bufs, sizes, offset);
          } catch (e) {
            if (!(e instanceof MembraneError) || e.code !== "OFFLOAD_INVALID") throw e;
            expect(bufs.every((b) => b.every((x) => x === 0xee))).toBe(true);
            return;
          }
          expect(pkt).toEqual(before);
          expect(n).toBeGreaterThanOrEqual(1);
          expect(n).toBeLessThanOrEqual(bufs.length);
          for (let i = 0; i < n; i++) {
            expect(offset + sizes[i]!).toBeLessThanOrEqual(bufs[i]!.length);
            expect(bufs[i]!.subarray(0, offset).every((x) => x === 0xee)).toBe(true);
            if ((hdr.gsoType & 0x7f) !== 0) {
              const r = verifyChecksums(bufs[i]!.subarray(offset, offset + sizes[i]!), 0);
              expect(r.problems).toEqual([]);
            }
          }
        },
      ),
      params(2000),
    );
  });
});
