// native/tun_gso_write.c (offload passthrough's write, in C) against the
// JavaScript path it replaces on devices with descriptor I/O
// (host/forwarder/passthrough-coalescer.ts over host/tun/offload/coalesce.ts):
// random batches of TCP and UDP packets of both families, partial or
// complete, some dropped, some moved by "the datapath", go through both, and
// every write must be the same bytes, virtio_net_hdr first, in the same order.
// The C side runs its test entry point (tun_gso_plan_descs), which is the
// write path with the writev(2) replaced by an append to a buffer.
import { expect, test } from "vitest";
import { tunNative } from "../../host/sys/tun-native.js";
import { PassthroughCoalescer } from "../../host/forwarder/passthrough-coalescer.js";
import { PKT_DESC, Verdict } from "../../host/generated/layout.js";
import { encodeVirtioNetHdr } from "../../host/tun/virtio-net-hdr.js";
import { VIRTIO_NET_HDR_LEN } from "../../host/tun/device.js";
import { seededRandom } from "../support/seeded-random.js";
import { describeIf } from "../support/describe-if.js";
import { missingNativeTun } from "./env.js";
import { asKernelSuperPacket, tcpRun, udpRun } from "./offload/fixtures.js";

const lib = tunNative();
const D = PKT_DESC.offsets;
const HEADROOM = 128;
const BUF = HEADROOM + 65535;
/** How the "datapath" moves a packet: prepends this many bytes (off - 20), as an encapsulation would. */
const MOVE_BY = 20;

interface Item {
  packet: Uint8Array;
  /** NEEDS_CSUM with csum_start/offset at the L4 checksum, else an all-zero header. */
  partial: boolean;
  pass: boolean;
  moved: boolean;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function hdrFor(item: Item): Uint8Array {
  const h = new Uint8Array(VIRTIO_NET_HDR_LEN);
  if (item.partial) {
    const p = item.packet;
    const v4 = p[0]! >> 4 === 4;
    encodeVirtioNetHdr(h, 0, { flags: 1, csumStart: v4 ? (p[0]! & 15) * 4 : 40, csumOffset: (v4 ? p[9] : p[6]) === 6 ? 16 : 6 });
  }
  return h;
}

/** What the JavaScript path writes: the forwarder's list of passing packets, planned by PassthroughCoalescer. */
function viaJs(items: Item[], gso: { tcp: boolean; udp: boolean }): string[] {
  const bufs: Uint8Array[] = [];
  const sizes: number[] = [];
  for (const item of items) {
    if (!item.pass) continue;
    const buf = new Uint8Array(BUF);
    if (item.moved) {
      // Forwarder.rehome: a complete packet gets a zeroed header before its new start; a partial one is unwritable.
      if (item.partial) continue;
      // The JS path writes it from a view starting MOVE_BY earlier, so its header lands at HEADROOM - 10 of that view.
      buf.set(item.packet, HEADROOM);
    } else {
      buf.set(hdrFor(item), HEADROOM - VIRTIO_NET_HDR_LEN);
      buf.set(item.packet, HEADROOM);
    }
    bufs.push(buf);
    sizes.push(item.packet.length);
  }
  const c = new PassthroughCoalescer(gso);
  c.plan(bufs, sizes, HEADROOM, { coalescedWrites: 0, coalescedPackets: 0 });
  return c.bufs.map((b, k) => hex(b.subarray(HEADROOM - VIRTIO_NET_HDR_LEN, HEADROOM + c.sizes[k]!)));
}

/** What the C path writes, from records in one memory as a Wasm batch has them. */
function viaC(items: Item[], gso: { tcp: boolean; udp: boolean }) {
  const n = items.length;
  const descs = 0;
  const bufsAt = n * PKT_DESC.size + 64;
  const memory = new Uint8Array(bufsAt + n * BUF);
  const v = new DataView(memory.buffer);
  const info = new Uint32Array(n);
  items.forEach((item, i) => {
    const at = descs + i * PKT_DESC.size;
    const buf = bufsAt + i * BUF;
    const off = item.moved ? HEADROOM - MOVE_BY : HEADROOM;
    v.setUint32(at + D.buf, buf, true);
    v.setUint32(at + D.bufSize, BUF, true);
    v.setUint32(at + D.off, off, true);
    v.setUint32(at + D.len, item.packet.length, true);
    v.setUint8(at + D.verdict, item.pass ? Verdict.VERDICT_PASS : Verdict.VERDICT_DROP);
    // As read: the header before HEADROOM; a moved packet then overwrote part of it (it now starts MOVE_BY earlier).
    memory.set(hdrFor(item), buf + HEADROOM - VIRTIO_NET_HDR_LEN);
    memory.set(item.packet, buf + off);
    info[i] = item.packet.length | (item.partial ? 0x8000_0000 : 0);
  });
  const out = new Uint8Array(n * (BUF + 16));
  const unitLens = new Uint32Array(n);
  const totals = new Uint32Array(8);
  const err = new Int32Array(1);
  const stop = lib!.gsoPlanDescs(memory, descs, 0, n, HEADROOM, (gso.tcp ? 1 : 0) | (gso.udp ? 2 : 0), info, out, unitLens, totals, err);
  const writes: string[] = [];
  let at = 0;
  for (let k = 0; k < totals[3]!; k++) {
    writes.push(hex(out.subarray(at, at + unitLens[k]!)));
    at += unitLens[k]!;
  }
  return { stop, err: err[0], writes, totals: Array.from(totals) };
}

/** A random batch: runs of flows (TCP/UDP, IPv4/IPv6, full and short segments, PSH), shuffled a little, some dropped, moved or complete. */
function randomBatch(random: () => number, size: number): Item[] {
  const pkts: Uint8Array[] = [];
  while (pkts.length < size) {
    const family = random() < 0.5 ? 4 : 6;
    const count = 1 + Math.floor(random() * 12);
    const seg = [8, 36, 100, 1000, 1448][Math.floor(random() * 5)]!;
    const lengths = Array.from({ length: count }, (_, k) => (k === count - 1 && random() < 0.3 ? 1 + Math.floor(random() * seg) : seg));
    const sport = 1000 + Math.floor(random() * 3);
    const id = Math.floor(random() * 0x10000);
    const run = random() < 0.5
      ? udpRun({ family, lengths, sport, id })
      : tcpRun({ family, lengths, sport, id, seq: Math.floor(random() * 2 ** 32), lastFlags: random() < 0.3 ? { psh: true } : {} });
    pkts.push(...run);
  }
  // Swap a few neighbours: runs broken in the middle.
  for (let k = 0; k < size / 16; k++) {
    const i = Math.floor(random() * (size - 1));
    [pkts[i], pkts[i + 1]] = [pkts[i + 1]!, pkts[i]!];
  }
  return pkts.slice(0, size).map((p) => {
    const partial = random() < 0.85;
    return {
      packet: partial ? asKernelSuperPacket(p) : p,
      partial,
      pass: random() < 0.9,
      moved: random() < 0.04,
    };
  });
}

describeIf("offload passthrough's write in C (native/tun_gso_write.c)", missingNativeTun(), () => {
  test("64 UDP datagrams of one flow: one USO write; without USO, 64 writes with their headers as read", () => {
    const items = udpRun({ family: 4, lengths: new Array(64).fill(36) }).map((p) => ({ packet: asKernelSuperPacket(p), partial: true, pass: true, moved: false }));
    const on = viaC(items, { tcp: true, udp: true });
    expect(on.writes).toHaveLength(1);
    expect(on.writes).toEqual(viaJs(items, { tcp: true, udp: true }));
    expect(on.totals).toEqual([64, 64 * 64, 64, 1, 1, 64, 0, 0]);
    const off = viaC(items, { tcp: true, udp: false });
    expect(off.writes).toHaveLength(64);
    expect(off.writes).toEqual(viaJs(items, { tcp: true, udp: false }));
  });

  test("random batches: the same writes, byte for byte, as the JavaScript path", () => {
    const random = seededRandom(18);
    let coalesced = 0;
    let unwritable = 0;
    for (let round = 0; round < 300; round++) {
      const gso = round % 5 === 4 ? { tcp: true, udp: false } : { tcp: true, udp: true };
      const items = randomBatch(random, 1 + Math.floor(random() * 128));
      const c = viaC(items, gso);
      expect(c.err, `round ${round}`).toBe(0);
      expect(c.stop).toBe(items.length);
      expect(c.writes, `round ${round}`).toEqual(viaJs(items, gso));
      const passing = items.filter((i) => i.pass);
      expect(c.totals[0]).toBe(passing.length);
      expect(c.totals[6]).toBe(passing.filter((i) => i.moved && i.partial).length);
      expect(c.totals[2]).toBe(passing.length - c.totals[6]!);
      coalesced += c.totals[4]!;
      unwritable += c.totals[6]!;
    }
    // The batches exercised what they were made for.
    expect(coalesced).toBeGreaterThan(300);
    expect(unwritable).toBeGreaterThan(10);
  });

  test("a record outside the memory stops the write there with EFAULT", () => {
    const items = udpRun({ family: 6, lengths: [50, 50] }).map((p) => ({ packet: p, partial: false, pass: true, moved: false }));
    const memory = new Uint8Array(2 * PKT_DESC.size);
    const v = new DataView(memory.buffer);
    for (let i = 0; i < 2; i++) {
      v.setUint32(i * PKT_DESC.size + D.buf, 1 << 20, true);
      v.setUint32(i * PKT_DESC.size + D.off, HEADROOM, true);
      v.setUint32(i * PKT_DESC.size + D.len, items[i]!.packet.length, true);
    }
    const err = new Int32Array(1);
    const totals = new Uint32Array(8);
    const stop = lib!.gsoPlanDescs(memory, 0, 0, 2, HEADROOM, 3, new Uint32Array([70, 70]), new Uint8Array(1024), new Uint32Array(2), totals, err);
    expect(stop).toBe(0);
    expect(err[0]).toBe(14); // EFAULT
    expect(totals[2]).toBe(0);
  });
});
