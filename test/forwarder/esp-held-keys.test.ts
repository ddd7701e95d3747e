// The keys an ESP path holds survive a restart (host/forwarder/esp-held-keys.ts):
// saved 0600 and atomically under a lock, with wall-clock deadlines; restored
// only while their grace period lasts; the key file's key always wins as
// current; a restored node opens packets a peer still sends under the old
// SPI; a bad file is refused whole naming the file and field, never a key.
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
const k4other = parseKeyFile("4 rfc4106(gcm(aes)) 0x4444444444444444444444444444444444444444 96", "k");
const k5 = parseKeyFile("5 rfc4106(gcm(aes)) 0x0505050505050505050505050505050505050505 128", "k");
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

const WALL = 1_800_000_000; // seconds since 1970: a wall-clock time in 2027

describe("held ESP keys across a restart", () => {
  it("saves the current and the retired keys 0600 with wall-clock deadlines and restores those within their grace period", () => {
    const dir = tmp();
    const ring = new Keyring(GRACE);
    ring.install(k3, WALL);
    ring.install(k4, WALL + 100); // 3 retires at +100, removed at +400
    saveHeldKeys(dir, ring);
    expect(statSync(heldKeysPath(dir)).mode & 0o777).toBe(0o600);
    // No temporary left behind; the lock file is the one esp-state-file.ts's discipline uses.
    expect(readdirSync(dir).sort()).toEqual(["esp-keys.json", "esp-keys.json.lock"]);
    const doc = JSON.parse(readFileSync(heldKeysPath(dir), "utf8"));
    expect(doc.current.spi).toBe(4);
    expect(doc.retired).toHaveLength(1);
    expect(doc.retired[0]).toMatchObject({ spi: 3, icvBits: 128, retiredAt: new Date((WALL + 100) * 1000).toISOString(), removeAt: new Date((WALL + 400) * 1000).toISOString() });

    // Restarted within the grace period: the key file gives 4, the file gives 3 back with its deadline.
    const after = new Keyring(GRACE);
    after.install(k4, WALL + 200);
    expect(restoreHeldKeys(dir, after, WALL + 200, GRACE)).toEqual({ restored: [{ spi: 3, removeAt: WALL + 400 }], dropped: [] });
    expect(after.receiveKey(3)?.key).toEqual(k3.key);
    expect(after.current).toBe(4);
    // Its grace period counts from the first retirement, not from the restart.
    expect(after.expire(WALL + 399)).toEqual([]);
    expect(after.expire(WALL + 400)).toEqual([3]);

    // Restarted after the deadline: nothing comes back, and the restore says why.
    const late = new Keyring(GRACE);
    late.install(k4, WALL + 500);
    const r = restoreHeldKeys(dir, late, WALL + 400, GRACE);
    expect(r.restored).toEqual([]);
    expect(r.dropped).toEqual([{ spi: 3, why: `its grace period ended at ${new Date((WALL + 400) * 1000).toISOString()}` }]);
    expect(late.receiveKey(3)).toBeUndefined();

    // A shorter grace period now than when the key retired: the earlier of the two deadlines.
    const shorter = new Keyring(10);
    shorter.install(k4, WALL + 105);
    expect(restoreHeldKeys(dir, shorter, WALL + 105, 10).restored).toEqual([{ spi: 3, removeAt: WALL + 110 }]);
  });

  it("the key file wins as current: a saved current key under another SPI is held as retired from now; one under the same SPI with other bytes is dropped", () => {
    const dir = tmp();
    const ring = new Keyring(GRACE);
    ring.install(k4, WALL);
    saveHeldKeys(dir, ring);
    // The key file moved on to 5 while the agent was down: 4 is held for a grace period from the start.
    const moved = new Keyring(GRACE);
    moved.install(k5, WALL + 50);
    expect(restoreHeldKeys(dir, moved, WALL + 50, GRACE)).toEqual({ restored: [{ spi: 4, removeAt: WALL + 50 + GRACE }], dropped: [] });
    expect(moved.current).toBe(5);
    expect(moved.sendKey(4)?.key).toEqual(k4.key);
    // The key file holds other bytes under SPI 4: the key file's key stays, the saved one is not taken.
    const other = new Keyring(GRACE);
    other.install(k4other, WALL + 50);
    const r = restoreHeldKeys(dir, other, WALL + 50, GRACE);
    expect(r.restored).toEqual([]);
    expect(r.dropped).toEqual([{ spi: 4, why: "the key file holds another key under this SPI: the key file wins" }]);
    expect(other.currentKey()?.key).toEqual(k4other.key);
  });

  it("a restarted node opens what a peer still sends under the old SPI", () => {
    const dir = tmp();
    const A = "192.0.2.1";
    const peerA: Peer = { name: "a", address: A, cidrs: [parsePrefix("10.1.0.0/24", "t")], keyIndex: 3 };
    const peerB: Peer = { name: "b", address: "192.0.2.2", cidrs: [parsePrefix("10.2.0.0/24", "t")], keyIndex: 3 };
    // A has not switched yet: it sends under 3.
    const ringA = new Keyring(GRACE);
    ringA.install(k3, WALL);
    const a = new EspTunnel(ringA);
    a.setPeers([peerB]);
    // B rotated to 4, saved its held keys, and restarted.
    const before = new Keyring(GRACE);
    before.install(k3, WALL);
    before.install(k4, WALL + 10);
    saveHeldKeys(dir, before);
    const ringB = new Keyring(GRACE);
    ringB.install(k4, WALL + 20);
    const fresh = new EspTunnel(ringB);
    fresh.setPeers([peerA]);
    const sealed = a.seal(packet("10.2.0.7"));
    if (typeof sealed === "string") throw new Error(sealed);
    expect(fresh.open(ipv4Number(A), sealed.datagram)).toBe("unknown-spi"); // what a restart did before
    restoreHeldKeys(dir, ringB, WALL + 20, GRACE);
    const b = new EspTunnel(ringB);
    b.setPeers([peerA]);
    expect(b.open(ipv4Number(A), sealed.datagram)).toEqual(packet("10.2.0.7"));
  });

  it("refuses a bad file whole, naming the file and the field, never showing a key; no file is nothing to restore", () => {
    const dir = tmp();
    const ring = new Keyring(GRACE);
    ring.install(k4, WALL);
    expect(restoreHeldKeys(dir, ring, WALL, GRACE)).toEqual({ restored: [], dropped: [] });
    const t = new Date(WALL * 1000).toISOString();
    const good = { spi: 3, icvBits: 128, key: "03".repeat(20), retiredAt: t, removeAt: t };
    const secret = "ab".repeat(19) + "zz";
    const cases: Array<[unknown, RegExp]> = [
      [{ version: 2, current: null, retired: [{ ...good, key: secret }] }, /esp-keys\.json: retired\[0\]\.key: expected 40 lower-case hex digits \(the value is not shown\)/],
      [{ version: 2, current: { spi: 16, icvBits: 128, key: "00".repeat(20) }, retired: [] }, /esp-keys\.json: current\.spi: expected an integer 1\.\.15/],
      [{ version: 2, current: null, retired: [{ ...good, icvBits: 256 }] }, /retired\[0\]\.icvBits: expected one of 64, 96, 128/],
      [{ version: 2, current: null, retired: [{ ...good, removeAt: "soon" }] }, /retired\[0\]\.removeAt: expected an ISO 8601 time/],
      [{ version: 2, current: null }, /esp-keys\.json: retired: expected an array/],
      [{ version: 1, keys: [] }, /esp-keys\.json: version: expected 2/],
      [[], /version: expected 2/],
    ];
    for (const [doc, message] of cases) {
      writeFileSync(heldKeysPath(dir), JSON.stringify(doc));
      expect(() => restoreHeldKeys(dir, ring, WALL, GRACE)).toThrow(message);
    }
    // Refused whole: the good key beside the bad one is not taken either.
    writeFileSync(heldKeysPath(dir), JSON.stringify({ version: 2, current: null, retired: [{ ...good, removeAt: new Date((WALL + 100) * 1000).toISOString() }, { ...good, spi: 5, key: secret }] }));
    let message = "";
    try {
      restoreHeldKeys(dir, ring, WALL, GRACE);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/held ESP keys .*esp-keys\.json: retired\[1\]\.key/);
    expect(message).not.toContain(secret.slice(0, 12));
    expect(ring.receiveKey(3)).toBeUndefined();
    // Not JSON: the parser's own message (which quotes the text near the fault) is not passed on.
    writeFileSync(heldKeysPath(dir), `{"version":2,"current":{"key":"${"03".repeat(20)}"`);
    expect(() => restoreHeldKeys(dir, ring, WALL, GRACE)).toThrow(/^held ESP keys .*esp-keys\.json: not JSON \(SyntaxError\)$/);
  });
});
