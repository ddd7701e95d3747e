/**
 * Which SPI to send with and which to accept, across a rolling key update
 * (REFERENCE.md, "Transparent encryption"): a node installs the new key for
 * every peer first, advertises the new SPI in its node record second, and
 * keeps the old key for a grace period so packets in flight under it still
 * decrypt. A sender uses a new SPI only once the peer advertises it, so no
 * packet ever arrives under an SPI its receiver cannot open.
 *
 * Where REFERENCE.md is imprecise: it says "the minimum of the local key and
 * the peer's advertised key". SPIs are 1..15 and wrap (15 -> 1), where the
 * minimum picks the wrong one; the rule here is "the newest SPI both ends
 * hold": ours if the peer advertises it; the peer's if we still hold it (the
 * peer is behind); else ours (the peer is ahead and keeps ours for its grace
 * period).
 */
import type { IpsecKey } from "./key-file.js";
import { SEQ_MAX } from "./esp.js";

export const DEFAULT_GRACE_SECONDS = 300;
/** Rotate well before the 32-bit sequence number wraps (a wrap would repeat GCM nonces). */
export const SEQ_ROTATE_AT = SEQ_MAX - 2 ** 24;

interface HeldKey {
  key: IpsecKey;
  /** When it stopped being current (seconds, the caller's clock); undefined while current. */
  retiredAt?: number;
  /** When it is removed (seconds, the caller's clock): retiredAt + grace, or the deadline a restored key brought along. */
  removeAt?: number;
}

export class Keyring {
  private readonly keys = new Map<number, HeldKey>();
  private currentSpi = 0;

  constructor(private readonly graceSeconds = DEFAULT_GRACE_SECONDS) {}

  /** The key this node advertises (0: none yet). */
  get current(): number {
    return this.currentSpi;
  }

  /**
   * Installs `key` as the newest. The same SPI with the same bytes is a
   * no-op (a re-read of an unchanged file); the same SPI with other bytes is
   * refused, since peers could not tell the two keys apart.
   */
  install(key: IpsecKey, now: number): "installed" | "unchanged" {
    const held = this.keys.get(key.spi);
    if (held && held.retiredAt === undefined) {
      if (held.key.key.equals(key.key) && held.key.salt.equals(key.salt) && held.key.icvBits === key.icvBits) return "unchanged";
      throw new Error(`SPI ${key.spi} is already in use with another key: a new key needs a new SPI`);
    }
    if (this.currentSpi !== 0) {
      const old = this.keys.get(this.currentSpi)!;
      old.retiredAt = now;
      old.removeAt = now + this.graceSeconds;
    }
    this.keys.set(key.spi, { key });
    this.currentSpi = key.spi;
    return "installed";
  }

  /**
   * Takes back a key retired at `retiredAt` in an earlier run, to be removed
   * at `removeAt` (the deadline it had then: host/forwarder/esp-held-keys.ts),
   * so packets still in flight under it open after a restart. A key index
   * held already (the key file's current key) is left as it is: false.
   */
  restoreRetired(key: IpsecKey, retiredAt: number, removeAt: number): boolean {
    if (this.keys.has(key.spi)) return false;
    this.keys.set(key.spi, { key, retiredAt, removeAt });
    return true;
  }

  /** The current key, if any (what esp-held-keys.ts saves beside the retired ones). */
  currentKey(): IpsecKey | undefined {
    return this.keys.get(this.currentSpi)?.key;
  }

  /** The retired keys held now with when they retired and when they go (what esp-held-keys.ts saves). */
  retired(): { key: IpsecKey; retiredAt: number; removeAt: number }[] {
    return [...this.keys.values()].filter((h) => h.retiredAt !== undefined).map((h) => ({ key: h.key, retiredAt: h.retiredAt!, removeAt: h.removeAt! }));
  }

  /** The SPI to send to a peer that advertises `peerSpi` (0: the peer has no key; undefined: encryption cannot start). */
  sendSpi(peerSpi: number): number | undefined {
    if (this.currentSpi === 0 || peerSpi === 0) return undefined;
    if (peerSpi === this.currentSpi) return this.currentSpi;
    // The peer is behind: it still advertises a key we hold (our previous one).
    if (this.keys.has(peerSpi)) return peerSpi;
    // The peer is ahead: it advertises a key we have not installed yet, and it
    // keeps the one it rotated from, our current, through its grace period.
    return this.currentSpi;
  }

  /** The key for an SPI on receive: current or within its grace period. */
  receiveKey(spi: number): IpsecKey | undefined {
    return this.keys.get(spi)?.key;
  }

  sendKey(spi: number): IpsecKey | undefined {
    return this.keys.get(spi)?.key;
  }

  /** Drops keys whose grace period ended; returns their SPIs (the caller deletes their kernel states). */
  expire(now: number): number[] {
    const gone: number[] = [];
    for (const [spi, held] of this.keys) {
      if (held.removeAt !== undefined && now >= held.removeAt) {
        this.keys.delete(spi);
        gone.push(spi);
      }
    }
    return gone;
  }

  /** SPIs held now, newest first, for status. */
  held(): { spi: number; current: boolean; retiredAt?: number; removeAt?: number }[] {
    return [...this.keys.entries()]
      .map(([spi, h]) => ({ spi, current: spi === this.currentSpi, ...(h.retiredAt !== undefined ? { retiredAt: h.retiredAt, removeAt: h.removeAt } : {}) }))
      .sort((a, b) => Number(b.current) - Number(a.current) || (b.retiredAt ?? 0) - (a.retiredAt ?? 0));
  }
}
