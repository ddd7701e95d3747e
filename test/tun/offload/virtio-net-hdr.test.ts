// The virtio_net_hdr codec of the offload layer: the byte layout (little-endian
// on this host, as the kernel lays it out for IFF_VNET_HDR), round trips, and
// every header that is invalid on its own.
import { endianness } from "node:os";
import { describe, expect, it } from "vitest";
import { OffloadError } from "../../../host/tun/offload/errors.js";
import {
  gsoTypeName,
  readVirtioNetHdr,
  validateVirtioNetHdr,
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VIRTIO_NET_HDR_LEN,
  writeVirtioNetHdr,
  ZERO_VIRTIO_NET_HDR,
  type VirtioNetHdr,
} from "../../../host/tun/offload/virtio-net-hdr.js";
import { encodeVirtioNetHdr, segmentsOf } from "../../../host/tun/virtio-net-hdr.js";
import { expectOffloadError } from "./fixtures.js";

const TSO: VirtioNetHdr = {
  flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
  gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
  hdrLen: 0x0102,
  gsoSize: 0x0304,
  csumStart: 0x0506,
  csumOffset: 0x0708,
};

describe("virtio_net_hdr", () => {
  it("has the kernel's numbers", () => {
    expect(VIRTIO_NET_HDR_LEN).toBe(10);
    expect([VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_DATA_VALID]).toEqual([1, 2]);
    expect([
      VIRTIO_NET_HDR_GSO_NONE,
      VIRTIO_NET_HDR_GSO_TCPV4,
      VIRTIO_NET_HDR_GSO_UDP,
      VIRTIO_NET_HDR_GSO_TCPV6,
      VIRTIO_NET_HDR_GSO_UDP_L4,
      VIRTIO_NET_HDR_GSO_ECN,
    ]).toEqual([0, 1, 3, 4, 5, 0x80]);
  });

  it.runIf(endianness() === "LE")("lays out u16 fields little-endian (host order on this little-endian host)", () => {
    const buf = new Uint8Array(14).fill(0xaa);
    writeVirtioNetHdr(buf, 2, TSO);
    expect([...buf]).toEqual([0xaa, 0xaa, 1, 1, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07, 0xaa, 0xaa]);
  });

  it("reads back what it wrote, at any position", () => {
    const buf = new Uint8Array(30);
    const hdr: VirtioNetHdr = { ...TSO, gsoType: VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN };
    writeVirtioNetHdr(buf, 17, hdr);
    expect(readVirtioNetHdr(buf, 17)).toEqual(hdr);
    writeVirtioNetHdr(buf, 0, ZERO_VIRTIO_NET_HDR);
    expect([...buf.subarray(0, 10)]).toEqual(new Array(10).fill(0));
    expect(readVirtioNetHdr(buf, 0)).toEqual(ZERO_VIRTIO_NET_HDR);
  });

  it("accepts DATA_VALID, USO and the deprecated UFO value (split refuses UFO, not the codec)", () => {
    for (const h of [
      { ...ZERO_VIRTIO_NET_HDR, flags: VIRTIO_NET_HDR_F_DATA_VALID },
      { ...TSO, gsoType: VIRTIO_NET_HDR_GSO_UDP_L4 },
      { ...TSO, gsoType: VIRTIO_NET_HDR_GSO_UDP },
      // gso_size is ignored with GSO NONE, as the kernel ignores it.
      { ...ZERO_VIRTIO_NET_HDR, gsoSize: 1400 },
    ]) {
      expect(() => validateVirtioNetHdr(h)).not.toThrow();
    }
  });

  it("names gso types for messages", () => {
    expect(gsoTypeName(VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN)).toBe("TCPV4|ECN");
    expect(gsoTypeName(VIRTIO_NET_HDR_GSO_UDP_L4)).toBe("UDP_L4");
    expect(gsoTypeName(9)).toBe("gso_type 9");
  });

  describe("rejects with OFFLOAD_INVALID", () => {
    const cases: [string, Partial<VirtioNetHdr>, RegExp][] = [
      ["unknown flag bits", { flags: 0x05 }, /flags 0x5 has unknown bits 0x4/],
      ["an unknown gso type", { gsoType: 2 }, /unknown gso_type 2/],
      ["an unknown gso type with ECN", { gsoType: 0x86 }, /unknown gso_type 6\|ECN/],
      ["ECN on GSO NONE", { gsoType: VIRTIO_NET_HDR_GSO_ECN, gsoSize: 0 }, /NONE\|ECN: the ECN bit only applies to TCP/],
      ["ECN on USO", { gsoType: VIRTIO_NET_HDR_GSO_UDP_L4 | VIRTIO_NET_HDR_GSO_ECN }, /UDP_L4\|ECN: the ECN bit only applies to TCP/],
      ["gso_size 0 with TCPV4", { gsoSize: 0 }, /gso_size 0 with gso_type TCPV4/],
      ["gso_size 0 with UDP_L4", { gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, gsoSize: 0 }, /gso_size 0 with gso_type UDP_L4/],
      ["a u16 field out of range", { hdrLen: 0x10000 }, /hdr_len must be an integer in 0\.\.65535, got 65536/],
      ["a negative field", { csumStart: -1 }, /csum_start must be an integer/],
      ["a fractional field", { gsoSize: 1.5 }, /gso_size must be an integer/],
      ["a u8 field out of range", { flags: 256 }, /flags must be an integer in 0\.\.255/],
    ];
    for (const [what, patch, msg] of cases) {
      it(what, () => {
        expectOffloadError(() => validateVirtioNetHdr({ ...TSO, ...patch }), msg);
        // write validates before touching the buffer
        const buf = new Uint8Array(10).fill(0x55);
        expectOffloadError(() => writeVirtioNetHdr(buf, 0, { ...TSO, ...patch }), msg);
        expect(buf.every((b) => b === 0x55)).toBe(true);
      });
    }

    it("a header read from bytes that are invalid", () => {
      const buf = new Uint8Array(10);
      buf[1] = VIRTIO_NET_HDR_GSO_TCPV6; // gso_size stays 0
      expectOffloadError(() => readVirtioNetHdr(buf, 0), /gso_size 0 with gso_type TCPV6/);
    });

    it("a header that does not fit its buffer", () => {
      expectOffloadError(() => readVirtioNetHdr(new Uint8Array(12), 3), /virtio_net_hdr at 3 needs 10 bytes, the buffer has 12/);
      expectOffloadError(() => readVirtioNetHdr(new Uint8Array(12), -1), /at -1/);
      expectOffloadError(() => writeVirtioNetHdr(new Uint8Array(9), 0, ZERO_VIRTIO_NET_HDR), /needs 10 bytes/);
    });

    it("with the OffloadError class", () => {
      expect(() => validateVirtioNetHdr({ ...TSO, gsoSize: 0 })).toThrow(OffloadError);
    });
  });
});

describe("segmentsOf: the wire packets a packet read with its header stands for", () => {
  /** A header and packet in one buffer, as a read leaves them (header at 0, packet at 10). */
  const read = (hdr: Parameters<typeof encodeVirtioNetHdr>[2], pkt: Uint8Array) => {
    const buf = new Uint8Array(VIRTIO_NET_HDR_LEN + pkt.length);
    encodeVirtioNetHdr(buf, 0, hdr);
    buf.set(pkt, VIRTIO_NET_HDR_LEN);
    return segmentsOf(buf, 0, VIRTIO_NET_HDR_LEN, pkt.length);
  };
  // IPv4 + TCP with 12 bytes of options (data offset 8: 32 bytes) and 2,500 bytes of payload; IPv4 + UDP with 100.
  const tcp = new Uint8Array(20 + 32 + 2500);
  tcp[20 + 12] = 8 << 4;
  const udp = new Uint8Array(20 + 8 + 100);

  it("counts from csum_start and the L4 header, whatever hdr_len says (the kernel puts the skb's linear length there)", () => {
    for (const hdrLen of [52, tcp.length, 0]) {
      expect(read({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen, gsoSize: 1000, csumStart: 20, csumOffset: 16 }, tcp)).toBe(3);
      expect(read({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN, hdrLen, gsoSize: 1250, csumStart: 20, csumOffset: 16 }, tcp)).toBe(2);
    }
    expect(read({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, hdrLen: udp.length, gsoSize: 36, csumStart: 20, csumOffset: 6 }, udp)).toBe(3);
  });

  it("a plain packet, or a GSO header without a segment size, is one", () => {
    expect(read({ flags: 1, csumStart: 20, csumOffset: 6 }, udp)).toBe(1);
    expect(read({ gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, gsoSize: 0 }, udp)).toBe(1);
  });

  it("without a partial checksum to say where L4 starts, hdr_len is all there is", () => {
    expect(read({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 52, gsoSize: 1000 }, tcp)).toBe(3);
  });
});
