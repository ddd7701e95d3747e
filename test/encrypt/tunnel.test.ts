// The SAs between two nodes' tunnels: sealing towards the peer that owns a
// destination, replay and tamper drops, the rekey before the sequence number
// could wrap, a restart that never reuses a sequence number, and a rolling
// key update in the order REFERENCE.md gives (install, advertise, switch,
// grace, remove) with every packet opened.
import { describe, expect, it } from "vitest";
import { EspTunnel, SEQ_RESERVE, ipv4Number, splitWireSpi, type Peer } from "../../host/encrypt/tunnel.js";
import { Keyring, SEQ_ROTATE_AT } from "../../host/encrypt/keyring.js";
import { parseKeyFile, type IpsecKey } from "../../host/encrypt/key-file.js";
import { parsePrefix } from "../../host/packet/cidr.js";
import { parsePeersFile } from "../../host/encrypt/peers-file.js";

const key = (spi: number, byte = spi): IpsecKey => parseKeyFile(`${spi} rfc4106(gcm(aes)) 0x${byte.toString(16).padStart(2, "0").repeat(20)} 128`, "k");
const A = "192.0.2.1";
const B = "192.0.2.2";
const peerA = (keyIndex: number): Peer => ({ name: "a", address: A, cidrs: [parsePrefix("10.1.0.0/24", "t")], keyIndex });
const peerB = (keyIndex: number): Peer => ({ name: "b", address: B, cidrs: [parsePrefix("10.2.0.0/24", "t"), parsePrefix("fd00:2::/64", "t")], keyIndex });

/** An IPv4 UDP packet 10.1.0.5 -> dst with a payload. */
function packet(dst: string, payload = "hello"): Buffer {
  const p = Buffer.alloc(28 + payload.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = 17;
  Buffer.from([10, 1, 0, 5]).copy(p, 12);
  Buffer.from(dst.split(".").map(Number)).copy(p, 16);
  p.writeUInt16BE(p.length - 20, 24);
  p.write(payload, 28);
  return p;
}

function pair(keysA: IpsecKey[], keysB: IpsecKey[]) {
  const ringA = new Keyring(300);
  const ringB = new Keyring(300);
  keysA.forEach((k, i) => ringA.install(k, i));
  keysB.forEach((k, i) => ringB.install(k, i));
  const a = new EspTunnel(ringA);
  const b = new EspTunnel(ringB);
  a.setPeers([peerB(ringB.current)]);
  b.setPeers([peerA(ringA.current)]);
  return { a, b, ringA, ringB };
}

function sealed(t: EspTunnel, inner: Buffer): Buffer {
  const r = t.seal(inner);
  if (typeof r === "string") throw new Error(`sealed: ${r}`);
  return r.datagram;
}

describe("ESP tunnel between two nodes", () => {
  it("seals towards the peer owning the destination and the peer opens it", () => {
    const { a, b } = pair([key(3)], [key(3)]);
    const inner = packet("10.2.0.7");
    expect(a.route(inner)?.name).toBe("b");
    expect(a.route(packet("10.9.0.1"))).toBeUndefined();
    const d = sealed(a, inner);
    expect(d.readUInt32BE(8)).toBe(3); // wire SPI: key index 3, generation 0
    expect(d.readUInt32BE(12)).toBe(1); // first sequence number
    expect(b.open(ipv4Number(A), d)).toEqual(inner);
    expect(b.counters.opened).toBe(1);
    expect(a.seal(packet("10.9.0.1"))).toBe("unknown-peer");
  });

  it("names and counts replayed, tampered, truncated and foreign datagrams", () => {
    const { a, b } = pair([key(3)], [key(3)]);
    const d = sealed(a, packet("10.2.0.7"));
    expect(b.open(ipv4Number(A), d)).toBeInstanceOf(Buffer);
    expect(b.open(ipv4Number(A), d)).toBe("replayed");
    const tampered = Buffer.from(sealed(a, packet("10.2.0.7")));
    tampered[30] ^= 1;
    expect(b.open(ipv4Number(A), tampered)).toBe("bad-icv");
    expect(b.open(ipv4Number(A), d.subarray(0, 20))).toBe("truncated");
    expect(b.open(ipv4Number("192.0.2.99"), d)).toBe("unknown-peer");
    // 70 newer packets push the first out of the 64-packet window.
    const late = sealed(a, packet("10.2.0.7"));
    for (let i = 0; i < 70; i++) expect(b.open(ipv4Number(A), sealed(a, packet("10.2.0.7")))).toBeInstanceOf(Buffer);
    expect(b.open(ipv4Number(A), late)).toBe("too-old");
    expect(b.counters.drops).toMatchObject({ replayed: 1, "bad-icv": 1, truncated: 1, "unknown-peer": 1, "too-old": 1 });
    // The tampered one did not move the window: the genuine packet with its number still opens.
    expect(b.counters.opened).toBe(71);
  });

  it("sends nothing to a peer without a key, and a wrong key is bad-icv", () => {
    const { a } = pair([key(3)], []);
    expect(a.seal(packet("10.2.0.7"))).toBe("no-key");
    const x = pair([key(3, 1)], [key(3, 2)]);
    expect(x.b.open(ipv4Number(A), sealed(x.a, packet("10.2.0.7")))).toBe("bad-icv");
  });

  it("moves to the next generation before the sequence number can wrap, and the peer follows", () => {
    const { a, b, ringA } = pair([key(3)], [key(3)]);
    const snap = a.snapshot();
    snap.peers.b = { out: { "3": { generation: 0, reserved: SEQ_ROTATE_AT - 2 } }, windows: {} };
    const a2 = new EspTunnel(ringA, snap);
    a2.setPeers([peerB(3)]);
    const first = sealed(a2, packet("10.2.0.7", "one"));
    expect(first.readUInt32BE(12)).toBe(SEQ_ROTATE_AT - 1);
    expect(b.open(ipv4Number(A), first)).toBeInstanceOf(Buffer);
    sealed(a2, packet("10.2.0.7")); // SEQ_ROTATE_AT: the last of generation 0
    const next = sealed(a2, packet("10.2.0.7", "two"));
    expect(splitWireSpi(next.readUInt32BE(8))).toEqual({ keyIndex: 3, generation: 1 });
    expect(next.readUInt32BE(12)).toBe(1);
    expect(a2.counters.rekeys).toBe(1);
    expect((b.open(ipv4Number(A), next) as Buffer).subarray(28).toString()).toBe("two");
  });

  it("resumes above every sequence number it may have sent after a restart", () => {
    const { a, b, ringA } = pair([key(3)], [key(3)]);
    for (let i = 0; i < 10; i++) b.open(ipv4Number(A), sealed(a, packet("10.2.0.7")));
    expect(a.dirty).toBe(true);
    const saved = a.snapshot(); // taken before more packets go out: a crash here must not reuse 11..
    for (let i = 0; i < 5; i++) b.open(ipv4Number(A), sealed(a, packet("10.2.0.7")));
    const restarted = new EspTunnel(ringA, JSON.parse(JSON.stringify(saved)));
    restarted.setPeers([peerB(3)]);
    // The restored SA carries a new reservation, to be saved before it sends (dirty).
    expect(restarted.dirty).toBe(true);
    expect(restarted.snapshot().peers.b!.out["3"]!.reserved).toBe(2 * SEQ_RESERVE + 1);
    const d = sealed(restarted, packet("10.2.0.7"));
    expect(d.readUInt32BE(12)).toBeGreaterThan(15);
    expect(d.readUInt32BE(12)).toBe(SEQ_RESERVE + 2);
    expect(b.open(ipv4Number(A), d)).toBeInstanceOf(Buffer);
    // The receiver's window survives too: a replay of a packet from before the restart is refused.
    const bSaved = b.snapshot();
    const ringB = new Keyring(300);
    ringB.install(key(3), 0);
    const b2 = new EspTunnel(ringB, JSON.parse(JSON.stringify(bSaved)));
    b2.setPeers([peerA(3)]);
    expect(b2.open(ipv4Number(A), d)).toBe("replayed");
  });

  it("rotates keys with every packet opened: install, advertise, switch, grace, remove", () => {
    const { a, b, ringA, ringB } = pair([key(3)], [key(3)]);
    let lost = 0;
    const exchange = () => {
      if (!(b.open(ipv4Number(A), sealed(a, packet("10.2.0.7"))) instanceof Buffer)) lost++;
      if (!(a.open(ipv4Number(B), sealed(b, packet("10.1.0.7"))) instanceof Buffer)) lost++;
    };
    exchange();
    ringA.install(key(4), 100); // A installs 4 for every peer; B does not advertise it yet
    exchange();
    expect(sealed(a, packet("10.2.0.7")).readUInt32BE(8)).toBe(3);
    ringB.install(key(4), 101);
    exchange(); // both hold 4, neither advertises it: both still send 3
    a.setPeers([peerB(4)]); // B advertises 4
    b.setPeers([peerA(4)]); // A advertises 4
    const inFlight = sealed(a, packet("10.2.0.7")); // sealed under 4 now
    expect(inFlight.readUInt32BE(8)).toBe(4);
    exchange();
    expect(lost).toBe(0);
    expect(ringA.expire(399)).toEqual([]);
    a.forgetKeys(ringA.expire(400));
    b.forgetKeys(ringB.expire(401));
    expect(a.status()[0]!.out.map((o) => o.keyIndex)).toEqual([4]);
    expect(b.open(ipv4Number(A), inFlight)).toBeInstanceOf(Buffer);
  });
});

describe("peers file", () => {
  it("reads peers and names the file and field of a bad one", () => {
    const ok = parsePeersFile(JSON.stringify({ peers: [{ name: "n2", address: "192.0.2.2", cidrs: ["10.2.0.0/24"], keyIndex: 3 }] }), "peers.json");
    expect(ok[0]).toMatchObject({ name: "n2", keyIndex: 3 });
    expect(() => parsePeersFile("{", "peers.json")).toThrow(/peers.json: not JSON/);
    expect(() => parsePeersFile(JSON.stringify({ peers: [{ name: "n2", address: "fd00::1", cidrs: ["10.2.0.0/24"] }] }), "p")).toThrow(/p: peers\[0\].address: .*IPv4/);
    expect(() => parsePeersFile(JSON.stringify({ peers: [{ name: "n2", address: "192.0.2.2", cidrs: ["10.2.0.1/24"] }] }), "p")).toThrow(/peers\[0\].cidrs\[0\]/);
    expect(() => parsePeersFile(JSON.stringify({ peers: [{ name: "n2", address: "192.0.2.2", cidrs: ["10.2.0.0/24"], keyIndex: 16 }] }), "p")).toThrow(/peers\[0\].keyIndex: expected an integer from 0 to 15/);
  });
});
