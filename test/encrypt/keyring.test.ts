// Rolling key updates: a sender moves to a new SPI only when the peer has it,
// old keys decrypt through their grace period and then go, and SPI wrap
// (15 -> 1) does not pick a key the peer lacks.
import { describe, expect, it } from "vitest";
import { Keyring } from "../../host/encrypt/keyring.js";
import { parseKeyFile, type IpsecKey } from "../../host/encrypt/key-file.js";

const key = (spi: number, byte = spi): IpsecKey => parseKeyFile(`${spi} rfc4106(gcm(aes)) 0x${byte.toString(16).padStart(2, "0").repeat(20)} 128`, "k");

describe("keyring", () => {
  it("keeps the old SPI towards a peer until the peer advertises the new one", () => {
    const a = new Keyring(300);
    expect(a.sendSpi(3)).toBeUndefined(); // no key yet
    a.install(key(3), 0);
    expect(a.sendSpi(3)).toBe(3);
    expect(a.sendSpi(0)).toBeUndefined(); // the peer has no key: no encryption towards it yet
    a.install(key(4), 100);
    expect(a.sendSpi(3)).toBe(3); // peer still on 3
    expect(a.sendSpi(4)).toBe(4); // peer has 4
    expect(a.receiveKey(3)).toBeDefined(); // in flight under 3 still decrypts
    expect(a.expire(399)).toEqual([]);
    expect(a.expire(400)).toEqual([3]);
    expect(a.receiveKey(3)).toBeUndefined();
  });

  it("handles the wrap from SPI 15 to 1, where the minimum would be wrong", () => {
    const a = new Keyring(300);
    a.install(key(15), 0);
    a.install(key(1), 10);
    // min(1, 15) = 1, which the peer does not have yet; the rule sends 15.
    expect(a.sendSpi(15)).toBe(15);
    expect(a.sendSpi(1)).toBe(1);
  });

  it("a peer ahead of us gets the key both hold", () => {
    const a = new Keyring(300);
    a.install(key(3), 0);
    expect(a.sendSpi(4)).toBe(3);
    a.install(key(4), 5);
    expect(a.sendSpi(4)).toBe(4);
  });

  it("re-reading an unchanged key changes nothing; reusing an SPI for another key is refused", () => {
    const a = new Keyring();
    expect(a.install(key(3), 0)).toBe("installed");
    expect(a.install(key(3), 5)).toBe("unchanged");
    expect(() => a.install(key(3, 0x77), 6)).toThrow(/SPI 3 is already in use with another key/);
    expect(a.held()).toEqual([{ spi: 3, current: true }]);
  });
});
