// native/esp_gcm.c through koffi (host/sys/esp-native.ts): its seal equals
// node:crypto's (host/encrypt/esp.ts seal) byte for byte for every ICV
// length, inner size (all paddings) and both inner families; its open
// returns the inner packet, and a tampered, truncated or wrongly keyed
// datagram is a named drop code, never a crash; sendmmsg/recvmmsg move a
// batch over loopback with the senders' addresses.
import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { espNative, nativeLibraryPath, NATIVE_DROPS, SLOT_BODY } from "../../host/sys/esp-native.js";
import { open, seal } from "../../host/encrypt/esp.js";
import { parseKeyFile, type IpsecKey } from "../../host/encrypt/key-file.js";
import { UdpSocket, sockaddrIn } from "../../host/sys/udp-socket.js";
import { ipv4Number } from "../../host/encrypt/tunnel.js";
import { createCipheriv } from "node:crypto";
import { describeIf } from "../support/describe-if.js";

const keyOf = (icv: number, hex = "0123456789abcdef0123456789abcdefcafebabe"): IpsecKey => parseKeyFile(`3 rfc4106(gcm(aes)) 0x${hex} ${icv}`, "k");

function inner(length: number, version: 4 | 6 = 4, fill = 7): Buffer {
  const p = Buffer.alloc(length, fill);
  p[0] = version === 4 ? 0x45 : 0x60;
  return p;
}

const STRIDE = 2048;
const missing = existsSync(nativeLibraryPath()) ? undefined : `${nativeLibraryPath()} not built (npm run build:native; needs libssl-dev)`;

describeIf("native ESP (esp_gcm.c)", missing, () => {
  const lib = () => espNative()!;

  function nativeSeal(key: IpsecKey, spi: number, seqs: number[], inners: Buffer[]): Buffer[] {
    const n = inners.length;
    const sa = lib().saNew(key.key, key.salt, key.icvBits / 8);
    expect(sa).not.toBe(0);
    try {
      const buf = Buffer.alloc(n * STRIDE);
      const lengths = new Uint32Array(n);
      inners.forEach((p, i) => {
        buf.set(p, i * STRIDE + SLOT_BODY);
        lengths[i] = p.length;
      });
      const sas = new BigUint64Array(n).fill(BigInt(sa));
      const sealed = lib().sealBatch(sas, new Uint32Array(n).fill(spi), Uint32Array.from(seqs), buf, STRIDE, lengths, n, 4500, 4500);
      expect(sealed).toBe(n);
      return inners.map((_, i) => Buffer.from(buf.subarray(i * STRIDE, i * STRIDE + lengths[i]!)));
    } finally {
      lib().saFree(sa);
    }
  }

  function nativeOpen(key: IpsecKey, datagrams: Buffer[]): (Buffer | string)[] {
    const n = datagrams.length;
    const sa = lib().saNew(key.key, key.salt, key.icvBits / 8);
    try {
      const buf = Buffer.alloc(n * STRIDE);
      const lengths = new Uint32Array(n);
      datagrams.forEach((d, i) => {
        buf.set(d.subarray(0, STRIDE), i * STRIDE);
        lengths[i] = d.length;
      });
      const results = new Int32Array(n);
      lib().openBatch(new BigUint64Array(n).fill(BigInt(sa)), buf, STRIDE, lengths, results, n);
      return [...results].map((r, i) => (r > 0 ? Buffer.from(buf.subarray(i * STRIDE + SLOT_BODY, i * STRIDE + SLOT_BODY + r)) : NATIVE_DROPS[r]!));
    } finally {
      lib().saFree(sa);
    }
  }

  it("seals exactly the bytes node:crypto seals (ICV 64/96/128, every padding, IPv4 and IPv6, one batch)", () => {
    for (const icv of [64, 96, 128]) {
      const key = keyOf(icv);
      const inners = [20, 21, 22, 23, 40, 64, 1400, 1401, 1402, 1403].flatMap((len, i) => [inner(len, 4, i), inner(len + 20, 6, i + 1)]);
      const seqs = inners.map((_, i) => i * 7919 + 1);
      const native = nativeSeal(key, 0x53, seqs, inners);
      inners.forEach((p, i) => expect(native[i]!.equals(seal({ key, spi: 0x53, seq: seqs[i]!, inner: p }))).toBe(true));
    }
  });

  it("opens what node:crypto sealed, and node:crypto opens what it sealed", () => {
    const key = keyOf(128);
    const inners = [inner(64), inner(1400, 6), inner(23)];
    const fromNode = inners.map((p, i) => seal({ key, spi: 3, seq: i + 1, inner: p }));
    expect(nativeOpen(key, fromNode)).toEqual(inners);
    const fromNative = nativeSeal(key, 3, [10, 11, 12], inners);
    fromNative.forEach((d, i) => expect(open(d, key)).toEqual(inners[i]));
  });

  it("names the drop of a tampered, truncated, wrongly keyed or malformed datagram, and a bad SA is refused", () => {
    const key = keyOf(128);
    const good = seal({ key, spi: 3, seq: 1, inner: inner(100) });
    const flip = (at: number) => { const d = Buffer.from(good); d[at]! ^= 1; return d; };
    const cases: [Buffer, string][] = [
      [flip(30), "bad-icv"], // ciphertext
      [flip(12), "bad-icv"], // sequence number (AAD)
      [flip(20), "bad-icv"], // IV
      [flip(good.length - 1), "bad-icv"], // ICV
      [good.subarray(0, good.length - 1), "truncated"],
      [good.subarray(0, 24 + 16 + 1), "truncated"],
      [good.subarray(0, 10), "truncated"],
      [Buffer.alloc(0), "truncated"],
      [Buffer.alloc(STRIDE + 100), "truncated"], // longer than its slot
    ];
    const wrongKey = keyOf(128, "ff".repeat(20));
    expect(nativeOpen(key, cases.map(([d]) => d))).toEqual(cases.map(([, why]) => why));
    expect(nativeOpen(wrongKey, [good])).toEqual(["bad-icv"]);
    // Well authenticated but malformed inside: sealed by hand with a bad pad and a bad next header.
    const plain = (pad: number[], next: number) => Buffer.concat([inner(22 - pad.length), Buffer.from(pad), Buffer.from([pad.length, next])]);
    expect(nativeOpen(key, [handSeal(key, plain([1, 3], 4)), handSeal(key, plain([], 17))])).toEqual(["bad-padding", "bad-next-header"]);
    expect(lib().saNew(Buffer.alloc(15), Buffer.alloc(4), 16)).toBe(0);
    expect(lib().saNew(Buffer.alloc(16), Buffer.alloc(4), 10)).toBe(0);
    // No SA at all for a slot: a drop, not a crash.
    const res = new Int32Array(1);
    lib().openBatch(new BigUint64Array(1), Buffer.from(good), good.length, Uint32Array.of(good.length), res, 1);
    expect(NATIVE_DROPS[res[0]!]).toBe("bad-icv");
  });

  it("sends a batch with sendmmsg and receives it with recvmmsg over loopback", () => {
    const rx = UdpSocket.bind("127.0.0.1", 0);
    const port = 41000 + (process.pid % 9000);
    const server = UdpSocket.bind("127.0.0.1", port);
    try {
      const n = 5;
      const buf = Buffer.alloc(n * STRIDE);
      const lengths = new Uint32Array(n);
      const addrs = Buffer.alloc(16 * n);
      for (let i = 0; i < n; i++) {
        buf.fill(i + 1, i * STRIDE + 8, i * STRIDE + 8 + 100 + i);
        lengths[i] = i === 2 ? 0 : 100 + i; // slot 2 is empty: skipped
        sockaddrIn("127.0.0.1", port).copy(addrs, 16 * i);
      }
      expect(lib().sendmmsg(rx.fd, buf, STRIDE, 8, lengths, addrs, n)).toBe(4);
      expect(server.waitWith(-1, 1000)).toBe(true);
      const got = Buffer.alloc(8 * STRIDE);
      const gotLengths = new Uint32Array(8);
      const from = new Uint32Array(8);
      let m = 0;
      for (let tries = 0; m < 4 && tries < 100; tries++) {
        const r = lib().recvmmsg(server.fd, got.subarray(m * STRIDE), STRIDE, 8, gotLengths.subarray(m), from.subarray(m), 8 - m);
        expect(r).toBeGreaterThanOrEqual(0);
        m += r;
        if (m < 4) server.waitWith(-1, 100);
      }
      expect([...gotLengths.subarray(0, 4)]).toEqual([100, 101, 103, 104]);
      expect([...from.subarray(0, 4)]).toEqual(new Array(4).fill(ipv4Number("127.0.0.1")));
      expect(got[3 * STRIDE + 8]).toBe(5);
      expect(lib().recvmmsg(server.fd, got, STRIDE, 8, gotLengths, from, 8)).toBe(0); // nothing waiting: no block
      expect(lib().recvmmsg(-1, got, STRIDE, 8, gotLengths, from, 8)).toBe(-9); // EBADF, not a crash
    } finally {
      rx.close();
      server.close();
    }
  });
});

/** A datagram sealed around a plaintext given whole (padding and trailer included), to test open's checks inside. */
function handSeal(key: IpsecKey, plain: Buffer): Buffer {
  // esp.ts seal computes its own padding; built with node:crypto directly.
  const out = Buffer.alloc(24 + plain.length + 16);
  out.writeUInt16BE(4500, 0);
  out.writeUInt16BE(4500, 2);
  out.writeUInt16BE(out.length, 4);
  out.writeUInt32BE(3, 8);
  out.writeUInt32BE(1, 12);
  out.writeUInt32BE(1, 20);
  const c = createCipheriv("aes-128-gcm", key.key, Buffer.concat([key.salt, out.subarray(16, 24)]), { authTagLength: 16 });
  c.setAAD(out.subarray(8, 16));
  const body = Buffer.concat([c.update(plain), c.final()]);
  body.copy(out, 24);
  c.getAuthTag().copy(out, 24 + plain.length);
  return out;
}
