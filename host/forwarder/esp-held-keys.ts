/**
 * Keys within their grace period survive an agent restart
 * (`<state dir>/esp-keys.json`). After a rotation the key file holds only the
 * new key; the old one lives in the keyring until its grace period ends, and
 * peers that have not switched yet keep sending under it. An agent restarted
 * in that window would otherwise drop their packets as unknown-spi until
 * they switch: here the retired keys are saved whenever the set changes, and
 * restored (those still within their grace period) at start.
 *
 * The file holds key material: 0600, written atomically (sys/atomic-file.ts)
 * in the 0700 state dir, never logged; errors name the file and the field,
 * never a value. Only retired keys are in it (the current key is the key
 * file's), and a key leaves it when its grace period ends.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { InvalidInputError } from "../errors.js";
import { AEAD_ALGORITHM, ICV_BITS, KEY_BYTES, SALT_BYTES, type IcvBits, type IpsecKey } from "../encrypt/key-file.js";
import type { Keyring } from "../encrypt/keyring.js";

export const ESP_KEYS_FILE = "esp-keys.json";

interface HeldKeysFile {
  version: 1;
  keys: { spi: number; icvBits: number; key: string; retiredAt: number }[];
}

export function heldKeysPath(stateDir: string): string {
  return join(stateDir, ESP_KEYS_FILE);
}

/** What the file would hold now: the retired keys still within their grace period. */
function held(keyring: Keyring, now: number, graceSeconds: number): HeldKeysFile["keys"] {
  return keyring.retired()
    .filter((h) => now - h.retiredAt < graceSeconds)
    .map((h) => ({ spi: h.key.spi, icvBits: h.key.icvBits, key: Buffer.concat([h.key.key, h.key.salt]).toString("hex"), retiredAt: h.retiredAt }));
}

/** A fingerprint of the set (SPIs and retirement times, no key bytes), to save only when it changed. */
export function heldKeysStamp(keyring: Keyring): string {
  return keyring.retired().map((h) => `${h.key.spi}@${h.retiredAt}`).sort().join(",");
}

export function saveHeldKeys(stateDir: string, keyring: Keyring, now: number, graceSeconds: number): void {
  const doc: HeldKeysFile = { version: 1, keys: held(keyring, now, graceSeconds) };
  writeFileAtomic(heldKeysPath(stateDir), JSON.stringify(doc));
}

/**
 * Restores the saved keys still within their grace period into `keyring`
 * (after the key file's current key is installed): the SPIs restored. A
 * missing file is no keys; a bad one is refused whole, naming the field.
 */
export function restoreHeldKeys(stateDir: string, keyring: Keyring, now: number, graceSeconds: number): number[] {
  const path = heldKeysPath(stateDir);
  if (!existsSync(path)) return [];
  let doc: HeldKeysFile;
  try {
    doc = JSON.parse(readFileSync(path, "utf8")) as HeldKeysFile;
  } catch (err) {
    throw new InvalidInputError(`held ESP keys ${path}: not JSON (${(err as SyntaxError).name})`);
  }
  if (doc?.version !== 1 || !Array.isArray(doc.keys)) throw new InvalidInputError(`held ESP keys ${path}: version: expected 1 with a "keys" array`);
  const keys: { key: IpsecKey; retiredAt: number }[] = doc.keys.map((k, i) => {
    const field = (name: string, why: string) => new InvalidInputError(`held ESP keys ${path}: keys[${i}].${name}: ${why}`);
    if (!Number.isInteger(k?.spi) || k.spi < 1 || k.spi > 15) throw field("spi", "expected an integer 1..15");
    if (!ICV_BITS.includes(k.icvBits as IcvBits)) throw field("icvBits", `expected one of ${ICV_BITS.join(", ")}`);
    if (typeof k.key !== "string" || !/^[0-9a-f]*$/.test(k.key) || k.key.length !== 2 * (KEY_BYTES + SALT_BYTES)) {
      throw field("key", `expected ${2 * (KEY_BYTES + SALT_BYTES)} hex digits`);
    }
    if (typeof k.retiredAt !== "number" || !Number.isFinite(k.retiredAt)) throw field("retiredAt", "expected seconds");
    const bytes = Buffer.from(k.key, "hex");
    return {
      key: { spi: k.spi, algorithm: AEAD_ALGORITHM, key: bytes.subarray(0, KEY_BYTES), salt: bytes.subarray(KEY_BYTES), icvBits: k.icvBits as IcvBits },
      retiredAt: k.retiredAt,
    };
  });
  const restored: number[] = [];
  for (const { key, retiredAt } of keys) {
    if (now - retiredAt >= graceSeconds) continue; // its grace period ended while the agent was down
    if (keyring.restoreRetired(key, retiredAt)) restored.push(key.spi);
  }
  return restored;
}
