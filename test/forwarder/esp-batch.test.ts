// Per-batch ESP (host/forwarder/esp-batch.ts) between two nodes' tunnels, on
// the native library and on node:crypto: a batch sealed on one is the same
// bytes as the other and as the tunnel's per-packet seal; the peer opens a
// batch into the forwarder's buffers; a replay inside one batch, a tampered
// or truncated datagram, an unknown sender and an inner packet too large for
// its slot are named, counted drops; sequence numbers go on across batches.
import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { EspBatch } from "../../host/forwarder/esp-batch.js";
import { EspTunnel, ipv4Number, type Peer } from "../../host/encrypt/tunnel.js";
import { Keyring } from "../../host/encrypt/keyring.js";
import { parseKeyFile } from "../../host/encrypt/key-file.js";
import { parsePrefix } from "../../host/packet/cidr.js";
import { sockaddrIn } from "../../host/sys/udp-socket.js";
import { nativeLibraryPath } from "../../host/sys/esp-native.js";

const A = "192.0.2.1";
const B = "192.0.2.2";
const key = parseKeyFile("3 rfc4106(gcm(aes)) 0x0303030303030303030303030303030303030303 128", "k");
const peerA: Peer = { name: "a", address: A, cidrs: [parsePrefix("10.1.0.0/24", "t")], keyIndex: 3 };
const peerB: Peer = { name: "b", address: B, cidrs: [parsePrefix("10.2.0.0/24", "t")], keyIndex: 3 };

function packet(dst: string, length: number): Buffer {
  const p = Buffer.alloc(length, length & 0xff);
  p[0] = 0x45;
  p.writeUInt16BE(length, 2);
  Buffer.from([10, 1, 0, 5]).copy(p, 12);
  Buffer.from(dst.split(".").map(Number)).copy(p, 16);
  return p;
}

function tunnels() {
  const ringA = new Keyring(300);
  const ringB = new Keyring(300);
  ringA.install(key, 0);
  ringB.install(key, 0);
  const a = new EspTunnel(ringA);
  const b = new EspTunnel(ringB);
  a.setPeers([peerB]);
  b.setPeers([peerA]);
  return { a, b };
}

const modes = existsSync(nativeLibraryPath()) ? [true, false] : [false];
if (process.env.CI === "true" && modes.length === 1) throw new Error(`${nativeLibraryPath()} not built: npm run build:native`);

describe.each(modes)("ESP batch (native %s)", (native) => {
  const toB = sockaddrIn(B, 4500);

  it("seals a batch to the same bytes as the per-packet seal, and the peer opens it into the forwarder's buffers", () => {
    const { a, b } = tunnels();
    const reference = tunnels().a;
    const batch = new EspBatch(a, { capacity: 8, maxInner: 1500, native });
    expect(batch.native).toBe(native);
    const inners = [64, 1400, 21, 1500, 100].map((len) => packet("10.2.0.9", len));
    for (const p of inners) expect(batch.stage(p, undefined, toB)).toBeUndefined();
    expect(batch.seal()).toBe(5);
    const datagrams = inners.map((_, i) => Buffer.from(batch.datagram(i)));
    inners.forEach((p, i) => {
      const r = reference.seal(p);
      expect(typeof r === "string" ? r : r.datagram.equals(datagrams[i]!)).toBe(true);
    });
    expect(a.counters.sealed).toBe(5);

    const rx = new EspBatch(b, { capacity: 8, maxInner: 1500, native });
    for (const d of datagrams) rx.put(d, ipv4Number(A));
    const bufs = Array.from({ length: 8 }, () => Buffer.alloc(1600));
    const sizes = new Array<number>(8).fill(0);
    expect(rx.open(bufs, sizes, 10, 1, 0)).toBe(5);
    inners.forEach((p, i) => expect(bufs[i + 1]!.subarray(10, 10 + sizes[i + 1]!)).toEqual(p));
    expect(b.counters.opened).toBe(5);
  });

  it("drops a replay within one batch, a tampered, truncated or unknown datagram by name, and delivers the rest", () => {
    const { a, b } = tunnels();
    const tx = new EspBatch(a, { capacity: 8, maxInner: 1500, native });
    for (let i = 0; i < 3; i++) tx.stage(packet("10.2.0.9", 100 + i), undefined, toB);
    tx.seal();
    const [d1, d2, d3] = [0, 1, 2].map((i) => Buffer.from(tx.datagram(i)));
    const tampered = Buffer.from(d3!);
    tampered[40]! ^= 0x80;
    const rx = new EspBatch(b, { capacity: 8, maxInner: 1500, native });
    rx.put(d1!, ipv4Number(A));
    rx.put(d1!, ipv4Number(A)); // the same packet twice in one batch
    rx.put(tampered, ipv4Number(A));
    rx.put(d2!.subarray(0, d2!.length - 3), ipv4Number(A));
    rx.put(d2!, ipv4Number("192.0.2.99")); // not a peer
    rx.put(Buffer.alloc(rx.stride + 10, 1), ipv4Number(A)); // larger than any datagram of this MTU
    rx.put(d2!, ipv4Number(A));
    const bufs = Array.from({ length: 8 }, () => Buffer.alloc(1600));
    const sizes = new Array<number>(8).fill(0);
    expect(rx.open(bufs, sizes, 0, 0, 0)).toBe(2);
    expect(sizes.slice(0, 2)).toEqual([100, 101]);
    const d = b.counters.drops;
    expect({ replayed: d.replayed, badIcv: d["bad-icv"], truncated: d.truncated, unknownPeer: d["unknown-peer"] }).toEqual({ replayed: 1, badIcv: 1, truncated: 2, unknownPeer: 1 });
    // The tampered one did not move the window: the genuine d3 still opens.
    rx.put(d3!, ipv4Number(A));
    expect(rx.open(bufs, sizes, 0, 0, 0)).toBe(1);
    // And a replay of an accepted one, in a later batch.
    rx.put(d1!, ipv4Number(A));
    expect(rx.open(bufs, sizes, 0, 0, 0)).toBe(0);
    expect(b.counters.drops.replayed).toBe(2);
  });

  it("counts an inner packet too large for a slot as truncated, and numbers packets on across batches", () => {
    const { a } = tunnels();
    const tx = new EspBatch(a, { capacity: 2, maxInner: 200, native });
    expect(tx.stage(packet("10.2.0.9", 400), undefined, toB)).toBe("truncated");
    expect(tx.stage(packet("10.9.0.9", 40), undefined, toB)).toBe("unknown-peer");
    tx.stage(packet("10.2.0.9", 40), undefined, toB);
    tx.stage(packet("10.2.0.9", 40), undefined, toB);
    expect(tx.full).toBe(true);
    tx.seal();
    expect([tx.datagram(0).readUInt32BE(12), tx.datagram(1).readUInt32BE(12)]).toEqual([1, 2]);
    tx.count = 0;
    tx.stage(packet("10.2.0.9", 40), undefined, toB);
    tx.seal();
    expect(tx.datagram(0).readUInt32BE(12)).toBe(3);
  });
});
