// The TunDevice batch contract (wireguard-go's Read(bufs, sizes, offset) /
// Write(bufs, offset) with headroom), first on the in-memory FakeTun, then on
// a real /dev/net/tun device in a scratch network namespace: a UDP socket in
// the namespace sends into the TUN (read side), a crafted reply written into
// the TUN reaches the socket (write side), and with vnetHdr + offloads the
// virtio_net_hdr arrives in the headroom. The real part needs root, /dev/net/tun
// and iproute2; outside CI it skips with the reason, in CI it fails.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidInputError, NotSupportedError } from "../../host/errors.js";
import { MAX_GSO_PACKET, VIRTIO_NET_HDR_LEN, type TunDevice } from "../../host/tun/device.js";
import { TunClosedError } from "../../host/tun/errors.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { openTun, type LinuxTun } from "../../host/tun/linux-tun.js";
import {
  decodeVirtioNetHdr,
  encodeVirtioNetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from "../../host/tun/virtio-net-hdr.js";
import { internetChecksum, verifyChecksums } from "../../host/packet/checksum.js";
import { packet4 } from "../../host/packet/build.js";
import { decodePacket } from "../../host/packet/decode.js";
import { describeIf, missingTun, scratchNetns } from "./env.js";
import { ip, netnsExists, withNetns } from "../../host/sys/netns/index.js";
import { UdpSocket } from "./udp-socket.js";

const text = (s: string) => new TextEncoder().encode(s);

function buffers(n: number, size: number, fill = 0xee): Uint8Array[] {
  return Array.from({ length: n }, () => new Uint8Array(size).fill(fill));
}

function udpPacket(i: number): Uint8Array {
  return packet4({ src: "10.0.0.1", dst: "10.0.0.2", id: i }).udp({ sport: 1000 + i, dport: 53, payload: text(`packet ${i}`) });
}

describe("FakeTun", () => {
  it("reads nothing and is not ready while its queue is empty", () => {
    const tun = new FakeTun();
    expect(tun.wait(1000)).toBe(false);
    expect(tun.read(buffers(4, 1600), [0, 0, 0, 0], 0)).toBe(0);
  });

  it("reads injected packets in batches, in order, each at the offset", () => {
    const tun = new FakeTun({ mtu: 1500 });
    const pkts = [0, 1, 2].map(udpPacket);
    for (const p of pkts) tun.inject(p);
    expect(tun.wait(0)).toBe(true);
    const bufs = buffers(2, 1600);
    const sizes = [0, 0];
    expect(tun.read(bufs, sizes, 32)).toBe(2);
    expect(sizes).toEqual([pkts[0]!.length, pkts[1]!.length]);
    expect(bufs[0]!.subarray(32, 32 + sizes[0]!)).toEqual(pkts[0]);
    expect(bufs[1]!.subarray(32, 32 + sizes[1]!)).toEqual(pkts[1]);
    // The headroom is the caller's: a read does not touch it.
    expect(bufs[0]!.subarray(0, 32).every((b) => b === 0xee)).toBe(true);
    expect(tun.read(bufs, sizes, 32)).toBe(1);
    expect(bufs[0]!.subarray(32, 32 + sizes[0]!)).toEqual(pkts[2]);
    expect(tun.pending).toBe(0);
    expect(tun.wait(0)).toBe(false);
  });

  it("copies injected packets, so the caller may reuse its buffer", () => {
    const tun = new FakeTun();
    const p = udpPacket(7);
    const original = p.slice();
    tun.inject(p);
    p.fill(0);
    const bufs = buffers(1, 1500);
    const sizes = [0];
    tun.read(bufs, sizes, 0);
    expect(bufs[0]!.subarray(0, sizes[0])).toEqual(original);
  });

  it("with vnetHdr puts the 10-byte header right before the packet, zeros when none was given", () => {
    const tun = new FakeTun({ vnetHdr: true });
    const hdr = new Uint8Array(VIRTIO_NET_HDR_LEN);
    encodeVirtioNetHdr(hdr, 0, { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: 6 });
    tun.inject(udpPacket(1), hdr);
    tun.inject(udpPacket(2));
    const bufs = buffers(2, 1600);
    const sizes = [0, 0];
    expect(tun.read(bufs, sizes, 16)).toBe(2);
    expect(bufs[0]!.subarray(6, 16)).toEqual(hdr);
    expect(decodeVirtioNetHdr(bufs[0]!, 16 - VIRTIO_NET_HDR_LEN)).toEqual({
      flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
      gsoType: VIRTIO_NET_HDR_GSO_NONE,
      hdrLen: 0,
      gsoSize: 0,
      csumStart: 20,
      csumOffset: 6,
    });
    expect(bufs[1]!.subarray(6, 16)).toEqual(new Uint8Array(10));
    expect(bufs[0]!.subarray(0, 6).every((b) => b === 0xee)).toBe(true);
    expect(bufs[0]!.subarray(16, 16 + sizes[0]!)).toEqual(udpPacket(1));
  });

  it("records written packets (copies) and their virtio_net_hdr; drainWritten empties the record", () => {
    const tun = new FakeTun({ vnetHdr: true });
    const bufs = buffers(2, 200, 0);
    const pkts = [udpPacket(1), udpPacket(2)];
    pkts.forEach((p, i) => bufs[i]!.set(p, 12));
    encodeVirtioNetHdr(bufs[1]!, 2, { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: 6 });
    expect(tun.write(bufs, [pkts[0]!.length, pkts[1]!.length], 12)).toBe(2);
    bufs[0]!.fill(0);
    const written = tun.drainWritten();
    expect(written.map((w) => w.packet)).toEqual(pkts);
    expect(written[0]!.vnetHdr).toEqual(new Uint8Array(10));
    expect(decodeVirtioNetHdr(written[1]!.vnetHdr!, 0).csumStart).toBe(20);
    expect(tun.drainWritten()).toEqual([]);
  });

  it("without vnetHdr records no header and accepts offset 0", () => {
    const tun = new FakeTun();
    const p = udpPacket(3);
    expect(tun.write([p], [p.length], 0)).toBe(1);
    expect(tun.drainWritten()).toEqual([{ packet: p }]);
  });

  it("rejects an offset without room for the virtio_net_hdr, and negative or fractional offsets", () => {
    const v = new FakeTun({ vnetHdr: true });
    v.inject(udpPacket(1));
    expect(() => v.read(buffers(1, 1600), [0], 9)).toThrow(InvalidInputError);
    expect(() => v.write([new Uint8Array(100)], [20], 9)).toThrow(/offset must be an integer >= 10/);
    expect(v.pending).toBe(1);
    const plain = new FakeTun();
    expect(() => plain.read(buffers(1, 1600), [0], -1)).toThrow(InvalidInputError);
    expect(() => plain.write([new Uint8Array(100)], [20], 1.5)).toThrow(InvalidInputError);
  });

  it("rejects read buffers without an MTU of room after the offset, before consuming anything", () => {
    const tun = new FakeTun({ mtu: 1500 });
    tun.inject(udpPacket(1));
    const bufs = [new Uint8Array(1600), new Uint8Array(1515)];
    expect(() => tun.read(bufs, [0, 0], 16)).toThrow(/read buffer 1 has 1499 bytes after offset 16; fake0 needs 1500/);
    expect(tun.pending).toBe(1);
    expect(tun.read(bufs, [0, 0], 15)).toBe(1);
  });

  it("needs room for a 64 KiB super-packet when GSO is on", () => {
    const tun = new FakeTun({ vnetHdr: true, gso: true });
    expect(tun.readCapacity).toBe(MAX_GSO_PACKET);
    expect(() => tun.read(buffers(1, 9000), [0], 10)).toThrow(InvalidInputError);
    const big = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2, payload: new Uint8Array(30000) });
    tun.inject(big);
    const bufs = [new Uint8Array(10 + MAX_GSO_PACKET)];
    const sizes = [0];
    expect(tun.read(bufs, sizes, 10)).toBe(1);
    expect(sizes[0]).toBe(big.length);
  });

  it("rejects sizes shorter than bufs, empty packets and packets overrunning their buffer", () => {
    const tun = new FakeTun();
    expect(() => tun.read(buffers(2, 1600), [0], 0)).toThrow(/sizes has 1 slots for 2 buffers/);
    expect(() => tun.write([new Uint8Array(100), new Uint8Array(100)], [10], 0)).toThrow(InvalidInputError);
    expect(() => tun.write([new Uint8Array(100)], [0], 0)).toThrow(/sizes\[0\] must be a positive integer/);
    expect(() => tun.write([new Uint8Array(100), new Uint8Array(100)], [10, 91], 10)).toThrow(
      /packet 1 \(offset 10 \+ size 91\) overruns its 100-byte buffer/,
    );
    // Validated as a whole: packet 0 was not written either.
    expect(tun.drainWritten()).toEqual([]);
  });

  it("rejects injecting a header into a device without vnetHdr, a header of the wrong size, or an oversized packet", () => {
    expect(() => new FakeTun().inject(udpPacket(1), new Uint8Array(10))).toThrow(/no virtio_net_hdr/);
    expect(() => new FakeTun({ vnetHdr: true }).inject(udpPacket(1), new Uint8Array(12))).toThrow(/must be 10 bytes/);
    expect(() => new FakeTun({ mtu: 100 }).inject(new Uint8Array(101))).toThrow(/exceeds/);
  });

  it("close is idempotent; afterwards read, write, wait and inject throw TunClosedError", () => {
    const tun: TunDevice & FakeTun = new FakeTun();
    tun.inject(udpPacket(1));
    tun.close();
    tun.close();
    expect(() => tun.read(buffers(1, 1600), [0], 0)).toThrow(TunClosedError);
    expect(() => tun.write([udpPacket(1)], [udpPacket(1).length], 0)).toThrow(TunClosedError);
    expect(() => tun.wait(0)).toThrow(TunClosedError);
    expect(() => tun.inject(udpPacket(1))).toThrow(TunClosedError);
    try {
      tun.wait(0);
    } catch (err) {
      expect((err as TunClosedError).code).toBe("TUN_CLOSED");
    }
  });
});

describe("openTun option checks (before anything is opened)", () => {
  it.each([
    [{ name: "a-name-that-is-too-long" }, /not a valid interface name/],
    [{ name: "bad/name" }, /not a valid interface name/],
    [{ name: "" }, /not a valid interface name/],
    [{ mtu: 67 }, /mtu must be an integer in 68\.\.65535/],
    [{ mtu: 1500.5 }, /mtu must be an integer/],
    [{ offloads: { csum: true } }, /offloads need vnetHdr/],
    [{ offloads: { tso: true } }, /offloads need vnetHdr/],
    [{ vnetHdr: true, offloads: { tso: true, csum: false } }, /tso and uso need csum/],
  ])("%j is rejected", (options, message) => {
    expect(() => openTun(options)).toThrow(InvalidInputError);
    expect(() => openTun(options)).toThrow(message);
  });

  it("a missing clone device is NotSupportedError saying what to do", () => {
    let caught: unknown;
    try {
      openTun({ devicePath: "/nonexistent/net/tun" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NotSupportedError);
    expect((caught as NotSupportedError).code).toBe("NOT_SUPPORTED");
    expect((caught as Error).message).toMatch(/CONFIG_TUN.*modprobe tun/);
  });
});

describeIf("Linux TUN device in a scratch namespace", missingTun(), () => {
  const ns = `mbr-tun-${process.pid}`;
  // Plain device: 10.251.0.1/24 on it; 10.251.0.2 is "behind" the TUN (us).
  const local = "10.251.0.1";
  const peer = "10.251.0.2";
  // vnetHdr device with offloads: 10.251.1.0/24.
  const vlocal = "10.251.1.1";
  const vpeer = "10.251.1.2";
  const PORT = 40001;
  const PEER_PORT = 40002;
  let tun: LinuxTun;
  let vtun: LinuxTun;
  let sock: UdpSocket;
  let vsock: UdpSocket;

  beforeAll(() => {
    scratchNetns(ns);
    tun = withNetns(ns, () => openTun({ name: "mbrt%d", mtu: 1400 }));
    ip("-n", ns, "addr", "add", `${local}/24`, "dev", tun.name);
    vtun = withNetns(ns, () => openTun({ name: "mbrv%d", vnetHdr: true, offloads: { tso: true, uso: true } }));
    ip("-n", ns, "addr", "add", `${vlocal}/24`, "dev", vtun.name);
    sock = withNetns(ns, () => UdpSocket.bind(local, PORT));
    vsock = withNetns(ns, () => UdpSocket.bind(vlocal, PORT));
  });

  afterAll(() => {
    sock?.close();
    vsock?.close();
    tun?.close();
    vtun?.close();
    if (netnsExists(ns)) ip("netns", "del", ns);
    expect(netnsExists(ns)).toBe(false);
  });

  /** Waits (bounded) for the next packet and reads exactly one. */
  function readOne(dev: LinuxTun, offset: number): { buf: Uint8Array; size: number } {
    expect(dev.wait(5000)).toBe(true);
    const bufs = buffers(1, offset + dev.readCapacity);
    const sizes = [0];
    expect(dev.read(bufs, sizes, offset)).toBe(1);
    return { buf: bufs[0]!, size: sizes[0]! };
  }

  /** What the kernel should have sent for a datagram from the socket, rebuilt with our builder (id, tos, ttl, DF copied). */
  function expectedDatagram(got: Uint8Array, src: string, dst: string, payload: Uint8Array): Uint8Array {
    return packet4({ src, dst, tos: got[1]!, id: (got[4]! << 8) | got[5]!, flags: { df: (got[6]! & 0x40) !== 0 }, ttl: got[8]! }).udp({
      sport: PORT,
      dport: PEER_PORT,
      payload,
    });
  }

  it("creates the interface in the namespace with the name read back, the MTU asked, and up", () => {
    expect(tun.name).toMatch(/^mbrt\d+$/);
    expect(tun.mtu).toBe(1400);
    expect(tun.vnetHdr).toBe(false);
    expect(tun.fd).toBeGreaterThanOrEqual(0);
    const [link] = JSON.parse(ip("-n", ns, "-j", "link", "show", "dev", tun.name)) as Array<{ mtu: number; flags: string[] }>;
    expect(link!.mtu).toBe(1400);
    expect(link!.flags).toContain("UP");
    // Made in the namespace, not here.
    expect(ip("-o", "link", "show")).not.toContain(`${tun.name}:`);
  });

  it("reads a datagram routed into the TUN, byte for byte, straight into the caller's memory at the offset", () => {
    const payload = text("hello through the tun");
    sock.sendTo(peer, PEER_PORT, payload);
    expect(tun.wait(5000)).toBe(true);
    // Views into one arena at non-zero byteOffsets: if koffi copied instead
    // of passing the view's address (byteOffset included), the bytes would
    // not show up at these places in the arena.
    const arena = new Uint8Array(2 * 2048);
    const bufs = [arena.subarray(100, 100 + 1500), arena.subarray(2048, 2048 + 1500)];
    const sizes = [0, 0];
    const offset = 24;
    expect(tun.read(bufs, sizes, offset)).toBe(1);
    const got = arena.slice(100 + offset, 100 + offset + sizes[0]!);
    expect(got).toEqual(expectedDatagram(got, local, peer, payload));
    expect(verifyChecksums(got, 0).ok).toBe(true);
    expect(arena.subarray(100, 100 + offset).every((b) => b === 0)).toBe(true);
    expect(tun.read(bufs, sizes, offset)).toBe(0);
  });

  it("reads several datagrams in one batch call, then 0 when none is left", () => {
    const payloads = [0, 1, 2].map((i) => text(`batch ${i}`));
    for (const p of payloads) sock.sendTo(peer, PEER_PORT, p);
    expect(tun.wait(5000)).toBe(true);
    const bufs = buffers(8, 16 + 1400);
    const sizes = new Array<number>(8).fill(0);
    // sendto returned after the kernel queued each packet on the TUN, so all three are there.
    expect(tun.read(bufs, sizes, 16)).toBe(3);
    payloads.forEach((p, i) => {
      const got = bufs[i]!.subarray(16, 16 + sizes[i]!);
      expect(decodePacket(got, "ip")).toMatchObject({ src: local, dst: peer, sport: PORT, dport: PEER_PORT, payloadLength: p.length });
      expect(got.subarray(28)).toEqual(p);
    });
    expect(tun.read(bufs, sizes, 16)).toBe(0);
    expect(tun.wait(0)).toBe(false);
  });

  it("rejects a read buffer smaller than the MTU without consuming the waiting packet", () => {
    sock.sendTo(peer, PEER_PORT, text("still here"));
    expect(tun.wait(5000)).toBe(true);
    expect(() => tun.read([new Uint8Array(1000)], [0], 0)).toThrow(/needs 1400/);
    const { buf, size } = readOne(tun, 0);
    expect(buf.subarray(28, size)).toEqual(text("still here"));
  });

  it("writes crafted replies (a batch of two) into the TUN and the socket receives them", () => {
    const offset = 32;
    const replies = [text("reply one"), text("reply two")].map((payload) =>
      packet4({ src: peer, dst: local }).udp({ sport: PEER_PORT, dport: PORT, payload }),
    );
    const bufs = replies.map((r) => {
      const b = new Uint8Array(offset + r.length);
      b.set(r, offset);
      return b;
    });
    expect(tun.write(bufs, replies.map((r) => r.length), offset)).toBe(2);
    expect(sock.recv(5000)).toEqual({ data: text("reply one"), from: peer, port: PEER_PORT });
    expect(sock.recv(5000)).toEqual({ data: text("reply two"), from: peer, port: PEER_PORT });
  });

  it("with vnetHdr and offloads: the kernel agreed to csum and TSO (USO where the kernel has it)", () => {
    expect(vtun.vnetHdr).toBe(true);
    expect(vtun.offloads.csum).toBe(true);
    expect(vtun.offloads.tso).toBe(true);
    // USO is Linux >= 6.2; on older kernels it is dropped with a note instead of failing.
    expect(vtun.offloads.uso || vtun.notes.some((n) => n.includes("USO"))).toBe(true);
    expect(vtun.readCapacity).toBe(MAX_GSO_PACKET);
  });

  it("with vnetHdr, a read puts the virtio_net_hdr in the headroom: checksum left to us, and where", () => {
    const payload = text("offloaded checksum");
    vsock.sendTo(vpeer, PEER_PORT, payload);
    const offset = VIRTIO_NET_HDR_LEN; // the least allowed
    const { buf, size } = readOne(vtun, offset);
    const hdr = decodeVirtioNetHdr(buf, 0);
    // With TUN_F_CSUM the stack hands over the UDP checksum unfinished (CHECKSUM_PARTIAL).
    expect(hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM).toBe(VIRTIO_NET_HDR_F_NEEDS_CSUM);
    expect(hdr.gsoType).toBe(VIRTIO_NET_HDR_GSO_NONE);
    expect(hdr).toMatchObject({ csumStart: 20, csumOffset: 6 });
    const pkt = buf.slice(offset, offset + size);
    expect(decodePacket(pkt, "ip")).toMatchObject({ src: vlocal, dst: vpeer, sport: PORT, dport: PEER_PORT });
    expect(pkt.subarray(28)).toEqual(payload);
    // Finishing the checksum as the header says (sum from csum_start, the field
    // holding the pseudo-header sum) gives a packet that verifies.
    const at = hdr.csumStart + hdr.csumOffset;
    const sum = internetChecksum(pkt, hdr.csumStart, pkt.length);
    pkt[at] = sum >> 8;
    pkt[at + 1] = sum & 0xff;
    expect(verifyChecksums(pkt, 0).ok).toBe(true);
  });

  it("with USO, one UDP_SEGMENT send arrives as one super-packet with gso_size in the header", (ctx) => {
    if (!vtun.offloads.uso) ctx.skip(`kernel lacks USO: ${vtun.notes.join("; ")}`);
    const s = withNetns(ns, () => UdpSocket.bind(vlocal, PORT + 1));
    try {
      s.setGsoSize(500);
      s.sendTo(vpeer, PEER_PORT, new Uint8Array(1500).fill(7));
      const { buf, size } = readOne(vtun, 16);
      const hdr = decodeVirtioNetHdr(buf, 16 - VIRTIO_NET_HDR_LEN);
      expect(hdr.gsoType).toBe(VIRTIO_NET_HDR_GSO_UDP_L4);
      expect(hdr.gsoSize).toBe(500);
      expect(hdr.hdrLen).toBe(28);
      expect(size).toBe(20 + 8 + 1500);
    } finally {
      s.close();
    }
  });

  it("with vnetHdr, writes take the header from the headroom (zeros: a finished packet)", () => {
    const reply = packet4({ src: vpeer, dst: vlocal }).udp({ sport: PEER_PORT, dport: PORT, payload: text("vnet reply") });
    const buf = new Uint8Array(VIRTIO_NET_HDR_LEN + reply.length);
    buf.set(reply, VIRTIO_NET_HDR_LEN);
    encodeVirtioNetHdr(buf, 0, {});
    expect(vtun.write([buf], [reply.length], VIRTIO_NET_HDR_LEN)).toBe(1);
    expect(vsock.recv(5000)).toEqual({ data: text("vnet reply"), from: vpeer, port: PEER_PORT });
  });

  it("close is idempotent, removes the interface, and later calls throw TunClosedError", () => {
    const t = withNetns(ns, () => openTun({ name: "mbrc%d" }));
    expect(ip("-n", ns, "-o", "link", "show")).toContain(`${t.name}:`);
    t.close();
    t.close();
    expect(t.fd).toBe(-1);
    expect(ip("-n", ns, "-o", "link", "show")).not.toContain(`${t.name}:`);
    expect(() => t.read(buffers(1, 1600), [0], 0)).toThrow(TunClosedError);
    expect(() => t.write([new Uint8Array(40)], [40], 0)).toThrow(TunClosedError);
    expect(() => t.wait(0)).toThrow(TunClosedError);
  });
});
