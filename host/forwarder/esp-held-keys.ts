/**
 * The keys an ESP path holds survive an agent restart
 * (`<state dir>/esp-keys.json`). After a rotation the key file holds only the
 * new key; the old one lives in the keyring until its grace period ends, and
 * peers that have not switched yet (they have not seen our new key index)
 * keep sending under it. An agent restarted in that window would otherwise
 * drop their packets as unknown-spi until they switch.
 *
 * What is saved, whenever the set changes: the current key, and each retired
 * key with when it retired and its removal deadline, both as wall-clock time
 * (ISO 8601, UTC), so the deadline means the same after a restart or a reboot.
 * At start, after the key file's key is installed:
 * - the key file's key always wins as current; a saved current key under
 *   another SPI (the key file moved on while the agent was down) is held as
 *   retired from now, for a grace period, since peers may still use it;
 * - a retired key whose deadline has passed is dropped; the others come back
 *   with their deadline (never later than their retirement + today's grace).
 *
 * The file holds key material: 0600 in the 0700 state dir, written atomically
 * under the same lock discipline as the SA state (esp-state-file.ts), never
 * logged; errors name the file and the field, never a value. What the ESP
 * path does with a file it refuses is its decision (esp-path.ts: it starts
 * with the key file's key only, and says so).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { withFileLock } from "../sys/file-lock.js";
import { InvalidInputError } from "../errors.js";
import { AEAD_ALGORITHM, ICV_BITS, KEY_BYTES, SALT_BYTES, type IcvBits, type IpsecKey } from "../encrypt/key-file.js";
import type { Keyring } from "../encrypt/keyring.js";

export const ESP_KEYS_FILE = "esp-keys.json";
const VERSION = 2;
const WHAT = "held ESP keys";

interface SavedKey {
  spi: number;
  icvBits: number;
  /** 16-byte key then 4-byte salt, hex (the key file's form without 0x). */
  key: string;
}

interface SavedRetiredKey extends SavedKey {
  /** Wall clock, ISO 8601 UTC. */
  retiredAt: string;
  removeAt: string;
}

interface HeldKeysFile {
  version: typeof VERSION;
  current: SavedKey | null;
  retired: SavedRetiredKey[];
}

/** What a restore did, by SPI (no key material): for the start notice and status. */
export interface HeldKeysRestore {
  /** Retired keys held again, with their removal deadline (seconds, the caller's clock). */
  restored: { spi: number; removeAt: number }[];
  /** Saved keys not taken, and why. */
  dropped: { spi: number; why: string }[];
}

export function heldKeysPath(stateDir: string): string {
  return join(stateDir, ESP_KEYS_FILE);
}

const iso = (seconds: number) => new Date(Math.round(seconds * 1000)).toISOString();
const saved = (k: IpsecKey): SavedKey => ({ spi: k.spi, icvBits: k.icvBits, key: Buffer.concat([k.key, k.salt]).toString("hex") });

/** A fingerprint of the set (SPIs and deadlines, no key bytes), to save only when it changed. */
export function heldKeysStamp(keyring: Keyring): string {
  return [`current ${keyring.current}`, ...keyring.retired().map((h) => `${h.key.spi}@${h.removeAt}`).sort()].join(",");
}

/** Saves the keys `keyring` holds (atomically, 0600, under the file's lock). */
export function saveHeldKeys(stateDir: string, keyring: Keyring): void {
  const current = keyring.currentKey();
  const doc: HeldKeysFile = {
    version: VERSION,
    current: current ? saved(current) : null,
    retired: keyring.retired().map((h) => ({ ...saved(h.key), retiredAt: iso(h.retiredAt), removeAt: iso(h.removeAt) })),
  };
  const path = heldKeysPath(stateDir);
  withFileLock(`${path}.lock`, () => writeFileAtomic(path, JSON.stringify(doc)), { what: WHAT });
}

/**
 * Restores what `<state dir>/esp-keys.json` holds into `keyring`, which has
 * the key file's key installed already (the file comment gives the rules).
 * A missing file is nothing to restore; a bad one is refused whole
 * (InvalidInputError naming the file and the field) and nothing is taken.
 */
export function restoreHeldKeys(stateDir: string, keyring: Keyring, now: number, graceSeconds: number): HeldKeysRestore {
  const doc = loadHeldKeys(stateDir);
  const result: HeldKeysRestore = { restored: [], dropped: [] };
  if (!doc) return result;
  const fileKey = keyring.currentKey();
  if (doc.current) {
    const k = doc.current;
    if (k.spi === keyring.current) {
      if (fileKey && !sameKey(fileKey, k)) result.dropped.push({ spi: k.spi, why: "the key file holds another key under this SPI: the key file wins" });
    } else if (keyring.restoreRetired(k, now, now + graceSeconds)) {
      // The key file moved on while the agent was down: peers may still send under the old key.
      result.restored.push({ spi: k.spi, removeAt: now + graceSeconds });
    }
  }
  for (const r of doc.retired) {
    const removeAt = Math.min(r.removeAt, r.retiredAt + graceSeconds);
    if (now >= removeAt) {
      result.dropped.push({ spi: r.key.spi, why: `its grace period ended at ${iso(removeAt)}` });
    } else if (r.key.spi === keyring.current) {
      result.dropped.push({ spi: r.key.spi, why: "the key file's current key has this SPI: the key file wins" });
    } else if (keyring.restoreRetired(r.key, r.retiredAt, removeAt)) {
      result.restored.push({ spi: r.key.spi, removeAt });
    }
  }
  return result;
}

interface LoadedHeldKeys {
  current?: IpsecKey;
  retired: { key: IpsecKey; retiredAt: number; removeAt: number }[];
}

/** The file, checked field by field (seconds for times); undefined when there is none. */
export function loadHeldKeys(stateDir: string): LoadedHeldKeys | undefined {
  const path = heldKeysPath(stateDir);
  if (!existsSync(path)) return undefined;
  return withFileLock(`${path}.lock`, () => {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new InvalidInputError(`${WHAT} ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
    let doc: HeldKeysFile;
    try {
      doc = JSON.parse(text) as HeldKeysFile;
    } catch (err) {
      // Only the error's name: a parser's message quotes the text around the fault, which may be key bytes.
      throw new InvalidInputError(`${WHAT} ${path}: not JSON (${(err as Error).name})`);
    }
    const bad = (field: string, why: string) => new InvalidInputError(`${WHAT} ${path}: ${field}: ${why} (the value is not shown)`);
    if (typeof doc !== "object" || doc === null || doc.version !== VERSION) throw bad("version", `expected ${VERSION}`);
    if (!Array.isArray(doc.retired)) throw bad("retired", "expected an array");
    const current = doc.current === null || doc.current === undefined ? undefined : parseSavedKey(doc.current, "current", bad);
    const retired = doc.retired.map((r, i) => {
      const key = parseSavedKey(r, `retired[${i}]`, bad);
      return { key, retiredAt: parseTime(r.retiredAt, `retired[${i}].retiredAt`, bad), removeAt: parseTime(r.removeAt, `retired[${i}].removeAt`, bad) };
    });
    return { ...(current ? { current } : {}), retired };
  }, { what: WHAT });
}

type Bad = (field: string, why: string) => InvalidInputError;

function parseSavedKey(k: SavedKey, where: string, bad: Bad): IpsecKey {
  if (typeof k !== "object" || k === null) throw bad(where, "expected an object");
  if (!Number.isInteger(k.spi) || k.spi < 1 || k.spi > 15) throw bad(`${where}.spi`, "expected an integer 1..15");
  if (!ICV_BITS.includes(k.icvBits as IcvBits)) throw bad(`${where}.icvBits`, `expected one of ${ICV_BITS.join(", ")}`);
  if (typeof k.key !== "string" || !/^[0-9a-f]*$/.test(k.key) || k.key.length !== 2 * (KEY_BYTES + SALT_BYTES)) {
    throw bad(`${where}.key`, `expected ${2 * (KEY_BYTES + SALT_BYTES)} lower-case hex digits`);
  }
  const bytes = Buffer.from(k.key, "hex");
  return { spi: k.spi, algorithm: AEAD_ALGORITHM, key: bytes.subarray(0, KEY_BYTES), salt: bytes.subarray(KEY_BYTES), icvBits: k.icvBits as IcvBits };
}

function parseTime(value: unknown, field: string, bad: Bad): number {
  const ms = typeof value === "string" ? Date.parse(value) : NaN;
  if (!Number.isFinite(ms)) throw bad(field, "expected an ISO 8601 time");
  return ms / 1000;
}

function sameKey(a: IpsecKey, b: IpsecKey): boolean {
  return a.key.equals(b.key) && a.salt.equals(b.salt) && a.icvBits === b.icvBits;
}
