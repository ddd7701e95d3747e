// Offload passthrough on descriptor batches with real TUNs that took TSO/USO:
// a descriptor write (native/tun_gso_write.c through LinuxTun.descriptorIo)
// merges a run of UDP datagrams and a run of TCP segments, each into one
// super-packet sent with one writev(2); the kernel forwards them to a second
// TUN as super-packets (its offloads let them through unsegmented), where a
// descriptor read (native/tun_io.c) records them: the partial checksum flag,
// the wire packets they stand for, and the read-info word the write needs.
// What arrives carries exactly the payloads that were written, in order.
import { afterAll, beforeAll, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { openTun, type LinuxTun } from "../../host/tun/linux-tun.js";
import type { DescriptorBatch } from "../../host/tun/device.js";
import { VIRTIO_NET_HDR_LEN } from "../../host/tun/device.js";
import { decodePktDesc, encodePktDesc, PKT_DESC } from "../../host/generated/layout.js";
import { readVirtioNetHdr } from "../../host/tun/offload/index.js";
import { encodeVirtioNetHdr } from "../../host/tun/virtio-net-hdr.js";
import { ip, withNetns } from "../../host/sys/netns/index.js";
import { describeIf, missingNativeTun, missingTun, scratchNetns } from "./env.js";
import { asKernelSuperPacket, concatBytes, tcpRun, udpRun } from "./offload/fixtures.js";

const missing = missingTun() ?? missingNativeTun();
const HEADROOM = 128;
const ROOM = 65535;

/** n records and buffers in one memory, as a Wasm batch lays them out. */
function arena(n: number): { batch: DescriptorBatch; bufAt: (i: number) => number } {
  const bufSize = HEADROOM + ROOM;
  const first = Math.ceil((n * PKT_DESC.size) / 16) * 16;
  const memory = new Uint8Array(first + n * bufSize);
  for (let i = 0; i < n; i++) {
    encodePktDesc({ buf: first + i * bufSize, bufSize, off: HEADROOM, len: 0, link: 0, dir: 255, verdict: 0, ctResult: 0, dropReason: 0, ctTable: 0, flags: 0 }, memory, i * PKT_DESC.size);
  }
  return { batch: { memory, descs: 0, count: n, headroom: HEADROOM, meta: 255 << 8, readInfo: new Uint32Array(n), gso: 3 }, bufAt: (i) => first + i * bufSize };
}

const l4Payload = (p: Uint8Array, headerLength: number) => p.subarray(headerLength);

describeIf("offload passthrough's descriptor write and read on real TUNs with TSO/USO", missing, () => {
  const ns = `mbr-tgso-${process.pid}`;
  let a: LinuxTun;
  let b: LinuxTun;

  beforeAll(() => {
    scratchNetns(ns);
    withNetns(ns, () => writeFileSync("/proc/sys/net/ipv4/ip_forward", "1"));
    const options = { mtu: 1500, vnetHdr: true, offloads: { tso: true, uso: true }, io: "batch" as const };
    a = withNetns(ns, () => openTun({ name: "tgsoa0", ...options }));
    b = withNetns(ns, () => openTun({ name: "tgsob0", ...options }));
    ip("-n", ns, "route", "replace", "10.2.0.0/24", "dev", b.name);
  });

  afterAll(() => {
    a?.close();
    b?.close();
    ip("netns", "del", ns);
  });

  it("a UDP run and a TCP run leave as two writes and arrive as two super-packets carrying every payload", (ctx) => {
    // USO is Linux >= 6.2 (as test/tun/device.test.ts); this kernel has it.
    if (!b.offloads.uso) ctx.skip(`kernel lacks USO: ${b.notes.join("; ")}`);
    const udp = udpRun({ family: 4, lengths: new Array(40).fill(36) });
    const tcp = tcpRun({ family: 4, lengths: [1000, 1000, 1000, 400] });
    const packets = [...udp, ...tcp];
    const out = arena(packets.length);
    packets.forEach((p, i) => {
      const v4 = p[9] === 17 ? { csumOffset: 6 } : { csumOffset: 16 };
      // As the kernel hands such packets over: NEEDS_CSUM, GSO NONE, the checksum field holding the pseudo-header sum.
      encodeVirtioNetHdr(out.batch.memory, out.bufAt(i) + HEADROOM - VIRTIO_NET_HDR_LEN, { flags: 1, csumStart: 20, ...v4 });
      out.batch.memory.set(asKernelSuperPacket(p), out.bufAt(i) + HEADROOM);
      encodePktDesc({ ...decodePktDesc(out.batch.memory, i * PKT_DESC.size), len: p.length, verdict: 0 }, out.batch.memory, i * PKT_DESC.size);
      out.batch.readInfo![i] = p.length | 0x8000_0000;
    });
    const totals = new Uint32Array(8);
    const stop = a.descriptorIo()!.writeDescs(out.batch, 0, totals);
    expect(stop).toBe(packets.length);
    const bytes = packets.reduce((s, p) => s + p.length, 0);
    // passing, bytes, packets written, writes, coalesced writes, packets in them, unwritable, refused
    expect([...totals]).toEqual([44, bytes, 44, 2, 2, 44, 0, 0]);

    // Out of B: one descriptor read of both super-packets, recorded as such.
    const into = arena(8);
    const read = new Uint32Array(3);
    let got = 0;
    let wire = 0;
    while (got < 2 && b.wait(2000)) {
      got += b.descriptorIo()!.readDescs({ ...into.batch, descs: got * PKT_DESC.size, count: 8 - got, readInfo: into.batch.readInfo!.subarray(got) }, read);
      wire += read[1]!;
    }
    expect(got).toBe(2);
    expect(wire).toBe(44);
    const arrived = [0, 1].map((i) => {
      const d = decodePktDesc(into.batch.memory, i * PKT_DESC.size);
      const hdr = readVirtioNetHdr(into.batch.memory, d.buf + d.off - VIRTIO_NET_HDR_LEN);
      return { d, hdr, pkt: into.batch.memory.slice(d.buf + d.off, d.buf + d.off + d.len), info: into.batch.readInfo![i]! };
    });
    const [u, t] = arrived[0]!.pkt[9] === 17 ? arrived : [arrived[1]!, arrived[0]!];
    // (Their hdr_len is the skb's linear length, the whole packet here: why wire packets are counted from the headers.)
    expect(u!.hdr).toMatchObject({ gsoType: 5, gsoSize: 36, csumStart: 20 });
    expect(t!.hdr).toMatchObject({ gsoType: 1, gsoSize: 1000, csumStart: 20 });
    for (const x of [u!, t!]) {
      expect(x.d.flags & 1).toBe(1); // PKT_F_CSUM_PARTIAL, from NEEDS_CSUM
      expect(x.info).toBe((x.pkt.length | 0x8000_0000) >>> 0);
      expect(x.pkt[8]).toBe(63); // forwarded once: TTL - 1
    }
    expect(l4Payload(u!.pkt, 28)).toEqual(concatBytes(udp.map((p) => l4Payload(p, 28))));
    expect(l4Payload(t!.pkt, 40)).toEqual(concatBytes(tcp.map((p) => l4Payload(p, 40))));
  });
});
