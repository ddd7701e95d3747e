// Keys within their grace period survive a restart (host/forwarder/esp-held-keys.ts):
// saved 0600 and atomically, restored only while their grace period lasts,
// a restored node opens packets a peer still sends under the old SPI, and a
// bad file is refused naming the field, never a key.
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keyring } from "../../host/encrypt/keyring.js";
import { parseKeyFile } from "../../host/encrypt/key-file.js";
import { EspTunnel, ipv4Number, type Peer } from "../../host/encrypt/tunnel.js";
import { parsePrefix } from "../../host/packet/cidr.js";
import { heldKeysPath, restoreHeldKeys, saveHeldKeys } from "../../host/forwarder/esp-held-keys.js";

const k3 = parseKeyFile("3 rfc4106(gcm(aes)) 0x0303030303030303030303030303030303030303 128", "k");
const k4 = parseKeyFile("4 rfc4106(gcm(aes)) 0x0404040404040404040404040404040404040404 96", "k");
const GRACE = 300;
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "e15-held-"));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function packet(dst: string): Buffer {
  const p = Buffer.alloc(40, 9);
  p[0] = 0x45;
  Buffer.from(dst.split(".").map(Number)).copy(p, 16);
  return p;
}

describe("held ESP keys across a restart", () => {
  it("saves the retired keys 0600 and restores those within their grace period", () => {
    const dir = tmp();
    const ring = new Keyring(GRACE);
    ring.install(k3, 1000);
    ring.install(k4, 1100); // 3 retires at 1100
    saveHeldKeys(dir, ring, 1100, GRACE);
    expect(statSync(heldKeysPath(dir)).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["esp-keys.json"]); // no temporary left behind
    const doc = JSON.parse(readFileSync(heldKeysPath(dir), "utf8"));
    expect(doc.keys.map((k: { spi: number }) => k.spi)).toEqual([3]); // the current key is the key file's, not here

    // Restarted within the grace period: the key file gives 4, the file gives 3 back.
    const after = new Keyring(GRACE);
    after.install(k4, 1200);
    expect(restoreHeldKeys(dir, after, 1200, GRACE)).toEqual([3]);
    expect(after.receiveKey(3)?.key).toEqual(k3.key);
    expect(after.current).toBe(4);
    // Its grace period counts from the first retirement, not from the restart.
    expect(after.expire(1399)).toEqual([]);
    expect(after.expire(1400)).toEqual([3]);

    // Restarted after the grace period: nothing comes back.
    const late = new Keyring(GRACE);
    late.install(k4, 1500);
    expect(restoreHeldKeys(dir, late, 1400, GRACE)).toEqual([]);
    expect(late.receiveKey(3)).toBeUndefined();
  });

  it("a restarted node opens what a peer still sends under the old SPI", () => {
    const dir = tmp();
    const A = "192.0.2.1";
    const peerA: Peer = { name: "a", address: A, cidrs: [parsePrefix("10.1.0.0/24", "t")], keyIndex: 3 };
    const peerB: Peer = { name: "b", address: "192.0.2.2", cidrs: [parsePrefix("10.2.0.0/24", "t")], keyIndex: 3 };
    // A has not switched yet: it sends under 3.
    const ringA = new Keyring(GRACE);
    ringA.install(k3, 0);
    const a = new EspTunnel(ringA);
    a.setPeers([peerB]);
    // B rotated to 4, saved its held keys, and restarted.
    const before = new Keyring(GRACE);
    before.install(k3, 0);
    before.install(k4, 10);
    saveHeldKeys(dir, before, 10, GRACE);
    const ringB = new Keyring(GRACE);
    ringB.install(k4, 20);
    const fresh = new EspTunnel(ringB);
    fresh.setPeers([peerA]);
    const sealed = a.seal(packet("10.2.0.7"));
    if (typeof sealed === "string") throw new Error(sealed);
    expect(fresh.open(ipv4Number(A), sealed.datagram)).toBe("unknown-spi"); // what a restart did before
    restoreHeldKeys(dir, ringB, 20, GRACE);
    const b = new EspTunnel(ringB);
    b.setPeers([peerA]);
    expect(b.open(ipv4Number(A), sealed.datagram)).toEqual(packet("10.2.0.7"));
  });

  it("refuses a bad file naming the field, never showing a key; no file is no keys", () => {
    const dir = tmp();
    const ring = new Keyring(GRACE);
    ring.install(k4, 0);
    expect(restoreHeldKeys(dir, ring, 0, GRACE)).toEqual([]);
    const secret = "ab".repeat(19) + "zz";
    writeFileSync(heldKeysPath(dir), JSON.stringify({ version: 1, keys: [{ spi: 3, icvBits: 128, key: secret, retiredAt: 0 }] }));
    expect(() => restoreHeldKeys(dir, ring, 0, GRACE)).toThrow(/esp-keys\.json: keys\[0\]\.key: expected 40 hex digits/);
    try {
      restoreHeldKeys(dir, ring, 0, GRACE);
    } catch (err) {
      expect((err as Error).message).not.toContain(secret);
    }
    writeFileSync(heldKeysPath(dir), JSON.stringify({ version: 1, keys: [{ spi: 16, icvBits: 128, key: "00".repeat(20), retiredAt: 0 }] }));
    expect(() => restoreHeldKeys(dir, ring, 0, GRACE)).toThrow(/keys\[0\]\.spi: expected an integer 1\.\.15/);
    writeFileSync(heldKeysPath(dir), "{");
    expect(() => restoreHeldKeys(dir, ring, 0, GRACE)).toThrow(/held ESP keys .*esp-keys\.json: not JSON/);
    writeFileSync(heldKeysPath(dir), JSON.stringify({ version: 2 }));
    expect(() => restoreHeldKeys(dir, ring, 0, GRACE)).toThrow(/version: expected 1/);
  });
});
