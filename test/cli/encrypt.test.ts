// `membrane encrypt check`: a good key file is described without its bytes,
// a bad one exits 2 naming file, line and field; `encrypt status` without an
// agent says so; `encrypt flush` removes a stopped agent's SA state.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cli } from "../support/run-cli.js";
import { saveEspState, espStatePath } from "../../host/forwarder/esp-state-file.js";
import { heldKeysPath, saveHeldKeys } from "../../host/forwarder/esp-held-keys.js";
import { Keyring } from "../../host/encrypt/keyring.js";
import { parseKeyFile } from "../../host/encrypt/key-file.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-encrypt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEX = "0123456789abcdef0123456789abcdefcafebabe";

describe("membrane encrypt", () => {
  it("check describes a good key file and never prints the key", async () => {
    const file = join(dir, "keys");
    writeFileSync(file, `# rotated 2026-12-05\n3 rfc4106(gcm(aes)) 0x${HEX} 128\n`);
    const r = await cli("encrypt", "check", file);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("key index (SPI) 3, rfc4106(gcm(aes)), 128-bit key + 32-bit salt, ICV 128 bits");
    expect(r.out).toContain("TUN MTU and pod routes: 1435");
    const j = await cli("encrypt", "check", file, "--json", "--underlay-mtu", "9000");
    expect(JSON.parse(j.out)).toMatchObject({ ok: true, spi: 3, icvBits: 128, tunMtu: 8935, udpPort: 4500 });
    for (const text of [r.out, r.err, j.out]) {
      expect(text).not.toContain(HEX.slice(0, 12));
      expect(text).not.toContain("cafebabe");
    }
  });

  it("check exits 2 on a bad file, naming the line and the field, without the value", async () => {
    const cases: Array<[string, RegExp]> = [
      [`16 rfc4106(gcm(aes)) 0x${HEX} 128`, /:1: SPI: must be 1..15/],
      [`0 rfc4106(gcm(aes)) 0x${HEX} 128`, /:1: SPI: must be 1..15/],
      [`3 rfc4106(gcm(aes)) 0x${HEX.slice(2)} 128`, /:1: key: expected 40 hex digits .* got 38 \(the value is not shown\)/],
      [`3 cbc(aes) 0x${HEX} 128`, /:1: algorithm/],
      [`3 rfc4106(gcm(aes)) 0x${HEX} 256`, /:1: ICV/],
    ];
    for (const [line, message] of cases) {
      const file = join(dir, "bad");
      writeFileSync(file, `\n${line}\n`.replace(/^\n/, ""));
      const r = await cli("encrypt", "check", file);
      expect(r.code, line).toBe(2);
      expect(r.err).toMatch(message);
      expect(r.err).not.toContain(HEX.slice(4, 16));
    }
    const missing = await cli("encrypt", "check", join(dir, "nope"));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/nope: ENOENT/);
  });

  it("the agent refuses bad encryption flags before it sets anything up", async () => {
    const keys = join(dir, "agent-keys");
    writeFileSync(keys, `3 rfc4106(gcm(aes)) 0x${HEX.slice(1)} 128\n`);
    const state = join(dir, "agent-state");
    const bad = await cli("agent", "--datapath", "tun", "--state-dir", state, "--encrypt-keys", keys, "--encrypt-listen", "192.0.2.1");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/agent-keys:1: key: expected 40 hex digits/);
    expect(bad.err).not.toContain(HEX.slice(1, 13));
    writeFileSync(keys, `3 rfc4106(gcm(aes)) 0x${HEX} 128\n`);
    const noListen = await cli("agent", "--datapath", "tun", "--state-dir", state, "--encrypt-keys", keys);
    expect(noListen.code).toBe(2);
    expect(noListen.err).toMatch(/--encrypt-keys needs --encrypt-listen/);
    const offloads = await cli("agent", "--datapath", "tun", "--state-dir", state, "--encrypt-keys", keys, "--encrypt-listen", "192.0.2.1", "--offloads");
    expect(offloads.err).toMatch(/--encrypt-keys and --offloads/);
    const queues = await cli("agent", "--datapath", "tun", "--state-dir", state, "--encrypt-keys", keys, "--encrypt-listen", "192.0.2.1", "--queues", "2");
    expect(queues.err).toMatch(/--encrypt-keys and --queues 2: the encrypted path runs on one TUN queue/);
    const peers = join(dir, "peers.json");
    writeFileSync(peers, JSON.stringify({ peers: [{ name: "n2", address: "192.0.2.2", cidrs: ["10.2.0.0/33"] }] }));
    const badPeers = await cli("agent", "--datapath", "tun", "--state-dir", state, "--encrypt-keys", keys, "--encrypt-listen", "192.0.2.1", "--encrypt-peers", peers);
    expect(badPeers.code).toBe(2);
    expect(badPeers.err).toMatch(/peers.json: peers\[0\].cidrs\[0\]/);
    const orphan = await cli("agent", "--datapath", "tun", "--state-dir", state, "--encrypt-grace", "10");
    expect(orphan.err).toMatch(/--encrypt-grace needs --encrypt-keys/);
    expect(existsSync(state)).toBe(false); // nothing was set up
  });

  it("status without an agent says so; flush removes a stopped agent's SA state and held keys", async () => {
    const state = join(dir, "state");
    const s = await cli("encrypt", "status", "--state-dir", state);
    expect(s.code).not.toBe(0);
    expect(s.err).toMatch(/no encryption status in .*state: no agent runs there with --encrypt-keys/);
    rmSync(state, { recursive: true, force: true });
    mkdirSync(state, { mode: 0o700 });
    saveEspState(state, { version: 1, peers: { n2: { out: { "3": { generation: 0, reserved: 1 << 20 } }, windows: {} } } });
    const ring = new Keyring();
    ring.install(parseKeyFile(`3 rfc4106(gcm(aes)) 0x${HEX} 128`, "k"), 0);
    saveHeldKeys(state, ring);
    expect(existsSync(espStatePath(state))).toBe(true);
    expect(existsSync(heldKeysPath(state))).toBe(true);
    const f = await cli("encrypt", "flush", "--state-dir", state);
    expect(f.code, f.err).toBe(0);
    expect(f.out).toContain(`removed ${espStatePath(state)}`);
    expect(f.out).toContain(`removed ${heldKeysPath(state)}`);
    expect(f.out).not.toContain(HEX.slice(0, 12));
    expect(existsSync(espStatePath(state))).toBe(false);
    expect(existsSync(heldKeysPath(state))).toBe(false);
    expect(existsSync(`${heldKeysPath(state)}.lock`)).toBe(false);
    const again = await cli("encrypt", "flush", "--state-dir", state);
    expect(again.out).toContain("no SA state or held keys in");
  });
});
