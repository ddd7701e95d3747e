// The TUN I/O modes (host/tun/tun-io-choice.ts) move exactly the same bytes:
// "koffi" (one FFI call per packet), "batch" (read/write looped in C, one FFI
// call per batch), "uring" (a batch per io_uring_enter) and "adaptive" (one of
// the two, chosen by measurement; io-mode-tuner.test.ts). For each mode, in
// a scratch namespace with forwarding on, a batch of crafted IPv4 packets
// (sizes 21..1400, distinct payloads) is written into TUN A with that mode;
// the kernel routes each out of TUN B, where it is read back with the same
// mode. What comes out must be, for every mode, the same bytes: the packet
// as written with its TTL one lower and its checksum updated. Batches cover
// buffers in one arena (one native call), buffers each on its own
// ArrayBuffer (one call per run), offsets into the buffers, more packets than
// an io_uring round holds, and a packet the kernel refuses in the middle of a
// batch (the batch stops there; later packets are not sent, in every mode).
import { afterAll, beforeAll, expect, it } from "vitest";
import type { LinuxTun } from "../../host/tun/linux-tun.js";
import { TunIoError } from "../../host/tun/errors.js";
import { resolveTunIo, type TunIoMode } from "../../host/tun/tun-io-choice.js";
import { packet4 } from "../../host/packet/build.js";
import { verifyChecksums } from "../../host/packet/checksum.js";
import { closeTunPairs, describeIf, missingNativeTun, missingTun, openTunPairs } from "./env.js";
import { ip } from "../../host/sys/netns/index.js";

const MODES: TunIoMode[] = ["koffi", "batch", "uring", "adaptive"];
const missing = missingTun() ?? missingNativeTun();

/** Packet i: UDP from 10.252.0.2 (behind A) to 10.252.1.2 (behind B), a size that varies with i. */
function crafted(i: number): Uint8Array {
  const payload = new Uint8Array((i * 37) % 1372).map((_, k) => (i * 7 + k) & 0xff);
  return packet4({ src: "10.252.0.2", dst: "10.252.1.2", id: i, ttl: 64 }).udp({ sport: 2000 + i, dport: 3000, payload });
}

/** What B must hand over for packet p: TTL - 1, IPv4 header checksum adjusted. */
function forwarded(p: Uint8Array): Uint8Array {
  const q = Uint8Array.from(p);
  q[8] = q[8]! - 1;
  q[10] = 0;
  q[11] = 0;
  let sum = 0;
  for (let k = 0; k < 20; k += 2) sum += (q[k]! << 8) | q[k + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  const csum = ~sum & 0xffff;
  q[10] = csum >> 8;
  q[11] = csum & 0xff;
  return q;
}

describeIf("TUN I/O modes move the same bytes (real TUNs)", missing, () => {
  const ns = `mbr-tio-${process.pid}`;
  const pairs = new Map<TunIoMode, { a: LinuxTun; b: LinuxTun }>();

  beforeAll(() => {
    for (const [mode, pair] of openTunPairs(ns, "tio", MODES)) pairs.set(mode, pair);
  });

  afterAll(() => closeTunPairs(ns, pairs.values()));

  /** Routes 10.252.1.0/24 out of `mode`'s B (only one pair at a time: the route moves). */
  function routeVia(mode: TunIoMode): void {
    const { b } = pairs.get(mode)!;
    ip("-n", ns, "route", "replace", "10.252.1.0/24", "dev", b.name);
  }

  /** Reads from B until `want` packets came or a wait times out; the bytes of each. */
  function drain(b: LinuxTun, want: number, arena: boolean, waitMs = 2000): Uint8Array[] {
    const out: Uint8Array[] = [];
    const offset = 12;
    const n = 64;
    const room = offset + b.readCapacity;
    const one = new ArrayBuffer(n * (room + 4));
    const bufs = Array.from({ length: n }, (_, i) => (arena ? new Uint8Array(one, i * (room + 4), room) : new Uint8Array(room)));
    const sizes = new Array<number>(n).fill(0);
    while (out.length < want && b.wait(waitMs)) {
      const got = b.read(bufs, sizes, offset);
      for (let i = 0; i < got; i++) out.push(bufs[i]!.slice(offset, offset + sizes[i]!));
    }
    return out;
  }

  /** Writes the packets into A in one batch: in one arena, or each on its own buffer; at an offset. */
  function writeBatch(a: LinuxTun, packets: Uint8Array[], arena: boolean): number {
    const offset = 20;
    const stride = 1600;
    const one = new ArrayBuffer(packets.length * stride);
    const bufs = packets.map((p, i) => {
      const buf = arena ? new Uint8Array(one, i * stride, stride) : new Uint8Array(offset + p.length + 5);
      buf.set(p, offset);
      return buf;
    });
    return a.write(bufs, packets.map((p) => p.length), offset);
  }

  it("every mode was opened as asked (the machine gives io_uring and the native library)", () => {
    expect(resolveTunIo("auto").mode).toBe("adaptive");
    for (const [mode, { a, b }] of pairs) {
      expect(a.io).toBe(mode);
      expect(b.io).toBe(mode);
    }
  });

  for (const arena of [true, false]) {
    it(`a batch of 300 packets (${arena ? "one arena" : "a buffer each"}) comes out of B byte for byte the same in every mode`, () => {
      const packets = Array.from({ length: 300 }, (_, i) => crafted(i));
      const expected = packets.map(forwarded);
      const seen = new Map<TunIoMode, Uint8Array[]>();
      for (const mode of MODES) {
        routeVia(mode);
        const { a, b } = pairs.get(mode)!;
        // In chunks of 100: TUN A's receive path and B's queue take them all.
        let written = 0;
        for (let c = 0; c < 300; c += 100) written += writeBatch(a, packets.slice(c, c + 100), arena);
        expect(written).toBe(300);
        const got = drain(b, 300, arena);
        expect(got.length, `mode ${mode}`).toBe(300);
        got.forEach((g) => expect(verifyChecksums(g, 0).ok).toBe(true));
        seen.set(mode, got);
      }
      // The kernel may reorder nothing here (one flow per source port, one CPU's path): compare in order.
      for (const mode of MODES) {
        const got = seen.get(mode)!;
        for (let i = 0; i < 300; i++) expect(got[i], `mode ${mode}, packet ${i}`).toEqual(expected[i]);
      }
      expect(seen.get("batch")).toEqual(seen.get("koffi"));
      expect(seen.get("uring")).toEqual(seen.get("koffi"));
      expect(seen.get("adaptive")).toEqual(seen.get("koffi"));
    });
  }

  it("a packet the kernel refuses stops the batch there in every mode: TunIoError(EINVAL, done = its index), later packets not sent", () => {
    for (const mode of MODES) {
      routeVia(mode);
      const { a, b } = pairs.get(mode)!;
      const bad = new Uint8Array(40); // IP version 0: the TUN refuses it (EINVAL)
      const packets = [crafted(1), crafted(2), bad, crafted(3)];
      let error: unknown;
      try {
        writeBatch(a, packets, true);
      } catch (err) {
        error = err;
      }
      expect(error, `mode ${mode}`).toBeInstanceOf(TunIoError);
      expect((error as TunIoError).errnoName).toBe("EINVAL");
      expect((error as TunIoError).done).toBe(2);
      const got = drain(b, 3, true, 300);
      expect(got, `mode ${mode}`).toEqual([forwarded(crafted(1)), forwarded(crafted(2))]);
    }
  });
});
