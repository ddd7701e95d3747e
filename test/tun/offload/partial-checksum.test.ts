// Completing CHECKSUM_PARTIAL packets (GSO NONE + NEEDS_CSUM): the kernel
// leaves the pseudo-header sum in the checksum field, we finish the sum from
// csum_start to the end. The result must equal a full recompute that shares
// no code path with it (fillChecksums / verifyChecksums from host/packet).
import { describe, expect, it } from "vitest";
import { fillChecksums, internetChecksum } from "../../../host/packet/checksum.js";
import { packet4, packet6 } from "../../../host/packet/build.js";
import { completePartialChecksum } from "../../../host/tun/offload/partial-checksum.js";
import { split } from "../../../host/tun/offload/split.js";
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE } from "../../../host/tun/offload/virtio-net-hdr.js";
import { asKernelSuperPacket, expectChecksumsOk, expectOffloadError, OFFSET, outBuffers, packetAt, payloadBytes } from "./fixtures.js";

type Kind = "tcp4" | "tcp6" | "udp4" | "udp6";
const KINDS: Kind[] = ["tcp4", "tcp6", "udp4", "udp6"];

function build(kind: Kind, payload: Uint8Array): Uint8Array {
  const l4 = { sport: 3000, dport: 4000, payload };
  switch (kind) {
    case "tcp4":
      return packet4({ src: "10.9.0.1", dst: "10.9.0.2", id: 3 }).tcp({ ...l4, seq: 17, flags: { ack: true } });
    case "tcp6":
      return packet6({ src: "2001:db8::1", dst: "2001:db8::2" }).tcp({ ...l4, seq: 17, flags: { ack: true } });
    case "udp4":
      return packet4({ src: "10.9.0.1", dst: "10.9.0.2" }).udp(l4);
    case "udp6":
      return packet6({ src: "2001:db8::1", dst: "2001:db8::2" }).udp(l4);
  }
}

const l4Of = (k: Kind) => (k.endsWith("4") ? 20 : 40);
const fieldOf = (k: Kind) => (k.startsWith("tcp") ? 16 : 6);

function completeViaSplit(partial: Uint8Array, kind: Kind): Uint8Array {
  const bufs = outBuffers(1);
  const sizes = [0];
  const hdr = { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: l4Of(kind), csumOffset: fieldOf(kind) };
  expect(split(partial, hdr, bufs, sizes, OFFSET)).toBe(1);
  return packetAt(bufs, sizes, 0).slice();
}

describe("partial checksum completion", () => {
  for (const kind of KINDS) {
    it(`matches a full recompute for ${kind}, over 300 payload lengths (odd and even)`, () => {
      for (let n = 0; n < 300; n++) {
        const full = build(kind, payloadBytes(n, n + 1));
        const done = completeViaSplit(asKernelSuperPacket(full), kind);
        expect(done).toEqual(full);
        expectChecksumsOk(done);
      }
    });
  }

  // A packet whose correct checksum is 0: the trailing word cancels the rest of the sum.
  function zeroSumPacket(kind: Kind): Uint8Array {
    const p = build(kind, new Uint8Array(20).fill(0x5a).fill(0, 18));
    const at = l4Of(kind) + fieldOf(kind);
    p[at] = 0;
    p[at + 1] = 0;
    const l4 = l4Of(kind);
    // The value the field would take is ~sum; writing it into the last word makes the sum 0xffff.
    const c = internetChecksum(p, l4, p.length, asKernelSum(kind, p));
    p[p.length - 2] = c >> 8;
    p[p.length - 1] = c & 0xff;
    return fillChecksums(p);
  }
  function asKernelSum(kind: Kind, p: Uint8Array): number {
    const k = asKernelSuperPacket(p);
    const at = l4Of(kind) + fieldOf(kind);
    return (k[at]! << 8) | k[at + 1]!;
  }

  it("writes 0xffff for a UDP sum of zero (0 means 'no checksum') and keeps 0 for TCP", () => {
    const u = zeroSumPacket("udp4");
    expect([u[26], u[27]]).toEqual([0xff, 0xff]);
    expect(completeViaSplit(asKernelSuperPacket(u), "udp4")).toEqual(u);
    const t = zeroSumPacket("tcp6");
    expect([t[56], t[57]]).toEqual([0, 0]);
    expect(completeViaSplit(asKernelSuperPacket(t), "tcp6")).toEqual(t);
    expectChecksumsOk(t);
  });

  it("is protocol-agnostic: the complement of the sum from csum_start, field included", () => {
    const b = payloadBytes(41, 9);
    const copy = b.slice();
    completePartialChecksum(b, 3, 10);
    const expected = internetChecksum(copy, 3, copy.length);
    expect((b[13]! << 8) | b[14]!).toBe(expected);
    // Only the field changes.
    expect([...b.subarray(0, 13), ...b.subarray(15)]).toEqual([...copy.subarray(0, 13), ...copy.subarray(15)]);
  });

  it("rejects a region or field outside the packet", () => {
    expectOffloadError(() => completePartialChecksum(new Uint8Array(20), 20, 0), /csum_start 20 is beyond the 20-byte packet/);
    expectOffloadError(() => completePartialChecksum(new Uint8Array(20), 10, 9), /csum_start 10 \+ csum_offset 9 puts the 2-byte checksum past the end of the 20-byte packet/);
    expect(() => completePartialChecksum(new Uint8Array(20), 10, 8)).not.toThrow();
  });
});
