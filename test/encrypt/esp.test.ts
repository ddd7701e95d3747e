// Userspace ESP: key files refused line and field without showing the key;
// seal/open round trips for IPv4 and IPv6 inner packets; tampered, truncated
// and replayed packets are named drops; and tshark, given the key, decrypts
// what membrane sealed (an independent decoder agrees with the codec).
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseKeyFile, describeKey } from "../../host/encrypt/key-file.js";
import { espHeader, espOverhead, maxEspOverhead, open, seal } from "../../host/encrypt/esp.js";
import { ReplayWindow } from "../../host/encrypt/replay-window.js";
import { packet4, packet6 } from "../../host/packet/index.js";
import { writeCapture } from "../../host/pcap/write.js";
import { LinkType } from "../../host/pcap/link-type.js";
import { describeIf } from "../support/describe-if.js";
import { testTempDir } from "../support/temp-dir.js";

const KEY_HEX = "0123456789abcdef0123456789abcdef" + "cafebabe";
const KEY_LINE = `3 rfc4106(gcm(aes)) 0x${KEY_HEX} 128`;

describe("key file", () => {
  it("reads Cilium's format", () => {
    const k = parseKeyFile(`# node keys\n${KEY_LINE}\n`, "keys");
    expect(describeKey(k)).toEqual({ spi: 3, algorithm: "rfc4106(gcm(aes))", keyBits: 128, icvBits: 128 });
    expect(k.key.toString("hex")).toBe(KEY_HEX.slice(0, 32));
    expect(k.salt.toString("hex")).toBe("cafebabe");
  });

  const bad: [string, string, RegExp][] = [
    ["SPI 0", KEY_LINE.replace(/^3/, "0"), /keys:1: SPI: must be 1\.\.15/],
    ["SPI 16", KEY_LINE.replace(/^3/, "16"), /keys:1: SPI: must be 1\.\.15/],
    ["an unknown algorithm", KEY_LINE.replace("rfc4106(gcm(aes))", "rfc7539esp(chacha20,poly1305)"), /keys:1: algorithm: only rfc4106\(gcm\(aes\)\)/],
    ["a short key", `3 rfc4106(gcm(aes)) 0x${KEY_HEX.slice(2)} 128`, /keys:1: key: expected 40 hex digits .* got 38 \(the value is not shown\)/],
    ["a key that is not hex", `3 rfc4106(gcm(aes)) 0x${KEY_HEX.slice(1)}z 128`, /keys:1: key: not hexadecimal/],
    ["ICV 256", KEY_LINE.replace(/128$/, "256"), /keys:1: ICV-BITS: 256 is not an AES-GCM tag length/],
    ["ICV 100", KEY_LINE.replace(/128$/, "100"), /keys:1: ICV-BITS: expected 64, 96, 128/],
    ["the older HMAC+CBC form", `3 hmac(sha256) 0x${"ab".repeat(32)} cbc(aes) 0x${"cd".repeat(16)}`, /keys:1: algorithm: the "\[SPI\] AUTH-ALGO AUTH-KEY ENC-ALGO ENC-KEY" form/],
    ["two keys", `${KEY_LINE}\n${KEY_LINE.replace(/^3/, "4")}`, /keys:2: one key per file/],
    ["an empty file", "# nothing\n", /keys: no key/],
  ];
  for (const [what, text, message] of bad) {
    it(`refuses ${what}, naming line and field, never the key`, () => {
      let msg = "";
      try {
        parseKeyFile(text, "keys");
      } catch (err) {
        msg = (err as Error).message;
      }
      expect(msg).toMatch(message);
      expect(msg.toLowerCase()).not.toContain(KEY_HEX.slice(4, 20));
      expect(msg).not.toContain("abababab");
    });
  }
});

describe("ESP in UDP", () => {
  const key = parseKeyFile(KEY_LINE, "keys");
  const inner4 = packet4({ src: "10.1.0.5", dst: "10.2.0.7" }).tcp({ sport: 40000, dport: 8080, flags: { syn: true } });
  const inner6 = packet6({ src: "fd00:1::5", dst: "fd00:2::7" }).udp({ sport: 5000, dport: 53, payload: new Uint8Array(33).fill(7) });

  it("round-trips IPv4 and IPv6 inner packets with the overhead it announces", () => {
    for (const [seq, inner] of [[1, inner4], [2, inner6]] as const) {
      const d = seal({ key, spi: 3, seq, inner });
      expect(d.length - inner.length).toBe(espOverhead(inner.length, 16));
      expect(d.length - inner.length).toBeLessThanOrEqual(maxEspOverhead(16));
      expect(espHeader(d)).toEqual({ spi: 3, seq });
      expect(Buffer.from(open(d, key) as Buffer)).toEqual(Buffer.from(inner));
    }
  });

  it("names the drop for a tampered, truncated or wrongly keyed packet", () => {
    const d = seal({ key, spi: 3, seq: 9, inner: inner4 });
    for (const at of [9, 20, d.length - 20, d.length - 1]) {
      const t = Buffer.from(d);
      t[at]! ^= 0x01;
      expect(open(t, key)).toBe("bad-icv");
    }
    expect(espHeader(d.subarray(0, 20))).toBe("truncated");
    expect(open(d.subarray(0, d.length - 3), key)).toBe("truncated");
    const other = parseKeyFile(`3 rfc4106(gcm(aes)) 0x${"11".repeat(20)} 128`, "k2");
    expect(open(d, other)).toBe("bad-icv");
  });

  it("the anti-replay window accepts each sequence number once within 64", () => {
    const w = new ReplayWindow();
    expect(w.check(0)).toBe("zero");
    for (const s of [1, 3, 2, 70]) {
      expect(w.check(s)).toBe("ok");
      w.accept(s);
    }
    expect(w.check(3)).toBe("too-old"); // 70 - 3 >= 64
    expect(w.check(7)).toBe("ok");
    w.accept(7);
    expect(w.check(7)).toBe("replayed");
    expect(w.check(70)).toBe("replayed");
    expect(w.check(6)).toBe("too-old");
    const restored = new ReplayWindow(JSON.parse(JSON.stringify(w)));
    expect(restored.check(7)).toBe("replayed");
    expect(restored.check(69)).toBe("ok");
    w.accept(1000);
    expect(w.check(70)).toBe("too-old");
  });
});

const tsharkMissing = spawnSync("tshark", ["--version"]).error ? "tshark is not installed (Debian: tshark)" : undefined;
describeIf("an independent decoder", tsharkMissing, () => {
  it("tshark, given the SA, decrypts what membrane sealed", () => {
    const key = parseKeyFile(KEY_LINE, "keys");
    const payload = new TextEncoder().encode("membrane-esp-check");
    const inner = packet4({ src: "10.1.0.5", dst: "10.2.0.7" }).udp({ sport: 40000, dport: 9999, payload });
    const sealed = seal({ key, spi: 3, seq: 1, inner });
    const outer = packet4({ src: "192.0.2.1", dst: "192.0.2.2" }).udp({ sport: 4500, dport: 4500, payload: sealed.subarray(8) });
    const dir = testTempDir("mbr-esp-");
    const file = join(dir, "esp.pcap");
    writeFileSync(file, writeCapture(LinkType.Raw, [{ timestampNs: 1_000_000_000n, data: outer }]));
    const sa = `"IPv4","192.0.2.1","192.0.2.2","0x00000003","AES-GCM with 16 octet ICV [RFC4106]","0x${KEY_HEX}","NULL",""`;
    const r = spawnSync(
      "tshark",
      ["-r", file, "-o", "esp.enable_encryption_decode:TRUE", "-o", `uat:esp_sa:${sa}`, "-T", "fields", "-e", "esp.spi", "-e", "esp.sequence", "-e", "udp.dstport", "-e", "data.data"],
      { encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    const fields = r.stdout.trim().split("\t");
    expect(fields[0]).toBe("0x00000003");
    expect(fields[1]).toBe("1");
    expect(fields[2]).toContain("9999"); // the inner UDP's port, visible only after decryption
    expect(fields[3]).toBe(Buffer.from(payload).toString("hex"));
  });
});
