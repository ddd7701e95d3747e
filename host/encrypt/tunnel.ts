/**
 * The security associations between this node and its peers, for the
 * userspace ESP path: which peer an inner packet goes to (its pod CIDRs),
 * which key it goes under (Keyring.sendSpi: the newest key both ends hold),
 * the outbound sequence numbers, the inbound anti-replay windows, and the
 * named drops. Pure: no sockets, no files, no clock of its own.
 *
 * Sequence numbers never wrap. An outbound SA rotates to its next
 * *generation* before its 32-bit sequence number could (SEQ_ROTATE_AT): the
 * wire SPI is `generation << 4 | key index` and the generation's key is
 * derived from the key file's key with HKDF-SHA256, so both ends derive it
 * on their own and no control-plane round trip is needed. Generation 0 uses
 * the key file's bytes as they are (what an independent decoder given the
 * key file decrypts).
 *
 * Restarts: the outbound sequence numbers are *reserved* ahead
 * (SEQ_RESERVE) and the reservation is what a snapshot holds, so a restarted
 * node resumes above every number it may have sent and never reuses a GCM
 * nonce, even if it was killed between a send and a save. `dirty` says the
 * reservation moved: the caller saves before the next batch, while at most
 * one batch has been sent from the new half of the reservation. A restored
 * SA (setPeers after a restart) starts with a new reservation and is dirty:
 * the caller saves it before it sends anything under it.
 */
import { hkdfSync } from "node:crypto";
import { espHeader, open, seal, type EspDrop } from "./esp.js";
import type { IpsecKey } from "./key-file.js";
import type { Keyring } from "./keyring.js";
import { SEQ_ROTATE_AT } from "./keyring.js";
import { ReplayWindow } from "./replay-window.js";
import type { Prefix } from "../packet/cidr.js";

/** Outbound sequence numbers reserved ahead of use (see the module comment). */
export const SEQ_RESERVE = 1 << 20;
/** Bits of the wire SPI that carry the key index (1..15); the rest is the generation. */
const INDEX_BITS = 4;
const MAX_GENERATION = 2 ** 28 - 1;

export interface Peer {
  name: string;
  /** Its underlay IPv4 address: where ESP-in-UDP goes. */
  address: string;
  /** Its pod CIDRs: inner packets to these are sealed towards it. */
  cidrs: Prefix[];
  /** The key index (SPI) it advertises; 0: it has no key, nothing is sent to it encrypted. */
  keyIndex: number;
}

/** Why an inner packet was not sealed, or an ESP datagram not accepted: named, counted drops. */
export type TunnelDrop = EspDrop | "bad-sequence" | "no-key" | "unknown-peer" | "generation-exhausted";

export interface TunnelCounters {
  sealed: number;
  opened: number;
  bytesSealed: number;
  bytesOpened: number;
  rekeys: number;
  drops: Record<TunnelDrop, number>;
}

const NO_DROPS = (): Record<TunnelDrop, number> => ({
  truncated: 0, "not-esp": 0, "unknown-spi": 0, replayed: 0, "too-old": 0, "bad-icv": 0, "bad-padding": 0, "bad-next-header": 0,
  "bad-sequence": 0, "no-key": 0, "unknown-peer": 0, "generation-exhausted": 0,
});

interface Outbound {
  generation: number;
  /** The last sequence number sent under this generation. */
  seq: number;
  /** Numbers below this may have been sent (what a snapshot records). */
  reserved: number;
}

interface PeerState {
  peer: Peer;
  /** Per key index. */
  out: Map<number, Outbound>;
  /** Per wire SPI. */
  windows: Map<number, ReplayWindow>;
  /** When the peer last sent under each wire SPI (the caller's clock), for status. */
  lastSeen: Map<number, number>;
}

/** What survives a restart (no key material). */
export interface TunnelSnapshot {
  version: 1;
  peers: Record<string, {
    out: Record<string, { generation: number; reserved: number }>;
    windows: Record<string, { top: number; bits: string }>;
  }>;
}

/** A planned seal (planSeal): the crypto is the caller's, per batch. */
export interface SealPlan {
  peer: Peer;
  /** The key of the SA's generation. */
  key: IpsecKey;
  spi: number;
  seq: number;
}

/** An inbound datagram that passed the checks before decryption (admit). */
export interface Admission {
  /** The peer's SA state (opaque to callers). */
  readonly state: unknown;
  spi: number;
  seq: number;
  keyIndex: number;
  generation: number;
  key: IpsecKey;
}

export function wireSpi(keyIndex: number, generation: number): number {
  return ((generation << INDEX_BITS) | keyIndex) >>> 0;
}

export function splitWireSpi(spi: number): { keyIndex: number; generation: number } {
  return { keyIndex: spi & ((1 << INDEX_BITS) - 1), generation: spi >>> INDEX_BITS };
}

/** The key of generation `g` of `key` (g 0: the key itself). */
export function generationKey(key: IpsecKey, generation: number): IpsecKey {
  if (generation === 0) return key;
  const bytes = Buffer.from(hkdfSync("sha256", Buffer.concat([key.key, key.salt]), Buffer.alloc(0), `membrane esp generation ${generation}`, 20));
  return { ...key, key: bytes.subarray(0, 16), salt: bytes.subarray(16, 20) };
}

export class EspTunnel {
  readonly counters: TunnelCounters = { sealed: 0, opened: 0, bytesSealed: 0, bytesOpened: 0, rekeys: 0, drops: NO_DROPS() };
  /** A reservation moved since the last snapshot() (see the module comment). */
  dirty = false;
  private readonly byAddress = new Map<number, PeerState>();
  private readonly byName = new Map<string, PeerState>();
  /** Derived generation keys, by key index and generation. */
  private readonly derived = new Map<string, IpsecKey>();
  private peers4: { prefix: Prefix; state: PeerState }[] = [];
  private restored?: TunnelSnapshot;

  constructor(private readonly keyring: Keyring, snapshot?: TunnelSnapshot) {
    this.restored = snapshot;
  }

  /** Replaces the peer set; SA state of peers still present (by name) is kept. */
  setPeers(peers: Peer[]): void {
    const old = this.byName;
    const next = new Map<string, PeerState>();
    for (const peer of peers) {
      const prev = old.get(peer.name);
      const state: PeerState = prev && prev.peer.address === peer.address
        ? { ...prev, peer }
        : { peer, out: new Map(), windows: new Map(), lastSeen: new Map() };
      if (!prev) this.restore(state);
      next.set(peer.name, state);
    }
    this.byName.clear();
    this.byAddress.clear();
    for (const [name, s] of next) {
      this.byName.set(name, s);
      this.byAddress.set(ipv4Number(s.peer.address), s);
    }
    // Longest prefix first, so a host route of a pod outside its node's CIDR wins.
    this.peers4 = [...next.values()]
      .flatMap((state) => state.peer.cidrs.map((prefix) => ({ prefix, state })))
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** The peer whose pod CIDRs hold the inner packet's destination, if any. */
  route(inner: Uint8Array): Peer | undefined {
    return this.stateFor(inner)?.peer;
  }

  private stateFor(inner: Uint8Array): PeerState | undefined {
    const version = inner[0]! >> 4;
    const dst = version === 4 ? inner.subarray(16, 20) : version === 6 ? inner.subarray(24, 40) : undefined;
    if (!dst || dst.length !== (version === 4 ? 4 : 16)) return undefined;
    const family = version === 4 ? 4 : 6;
    for (const p of this.peers4) {
      if (p.prefix.family === family && holds(p.prefix, dst)) return p.state;
    }
    return undefined;
  }

  /** Seals an inner packet towards the peer that owns its destination: the datagram and the peer, or a drop. */
  seal(inner: Uint8Array, peer?: Peer): { datagram: Buffer; peer: Peer } | TunnelDrop {
    const plan = this.planSeal(inner, peer);
    if (typeof plan === "string") return plan;
    return { datagram: seal({ key: plan.key, spi: plan.spi, seq: plan.seq, inner }), peer: plan.peer };
  }

  /**
   * Everything of seal() but the crypto: the peer, the key (of the SA's
   * generation), the wire SPI and the next sequence number, which is taken
   * (and counted as sealed) here. The forwarder plans a whole batch, then
   * seals it in one call (host/forwarder/esp-batch.ts).
   */
  planSeal(inner: Uint8Array, peer?: Peer): SealPlan | TunnelDrop {
    const state = peer ? this.byName.get(peer.name) : this.stateFor(inner);
    if (!state) return this.drop("unknown-peer");
    const keyIndex = this.keyring.sendSpi(state.peer.keyIndex);
    const key = keyIndex === undefined ? undefined : this.keyring.sendKey(keyIndex);
    if (keyIndex === undefined || !key) return this.drop("no-key");
    let out = state.out.get(keyIndex);
    if (!out) {
      out = { generation: 0, seq: 0, reserved: 0 };
      state.out.set(keyIndex, out);
    }
    if (out.seq >= SEQ_ROTATE_AT) {
      if (out.generation >= MAX_GENERATION) return this.drop("generation-exhausted");
      out.generation++;
      out.seq = 0;
      out.reserved = 0;
      this.counters.rekeys++;
    }
    const seq = ++out.seq;
    if (seq + SEQ_RESERVE / 2 >= out.reserved) {
      out.reserved = seq + SEQ_RESERVE;
      this.dirty = true;
    }
    this.counters.sealed++;
    this.counters.bytesSealed += inner.length;
    return { peer: state.peer, key: this.keyFor(key, out.generation), spi: wireSpi(keyIndex, out.generation), seq };
  }

  /**
   * Opens an ESP-in-UDP datagram (UDP header included) from underlay address
   * `from` (IPv4 as a 32-bit number): the inner packet, or a drop. The replay
   * window is checked before decryption and moved only after the ICV verified.
   */
  open(from: number, datagram: Uint8Array, now = 0): Buffer | TunnelDrop {
    const admitted = this.admit(from, datagram);
    if (typeof admitted === "string") return admitted;
    const inner = open(datagram, admitted.key);
    if (typeof inner === "string") return this.reject(inner);
    const accepted = this.accept(admitted, inner.length, now);
    return typeof accepted === "string" ? accepted : inner;
  }

  /**
   * The checks of open() before decryption: the peer, the header, the key of
   * the wire SPI, the replay window. What passes is decrypted (per batch),
   * then accept()ed or reject()ed.
   */
  admit(from: number, datagram: Uint8Array): Admission | TunnelDrop {
    const state = this.byAddress.get(from);
    if (!state) return this.drop("unknown-peer");
    const header = espHeader(datagram);
    if (typeof header === "string") return this.drop(header);
    const { keyIndex, generation } = splitWireSpi(header.spi);
    const base = this.keyring.receiveKey(keyIndex);
    if (!base) return this.drop("unknown-spi");
    const check = (state.windows.get(header.spi) ?? new ReplayWindow()).check(header.seq);
    if (check === "replayed" || check === "too-old") return this.drop(check);
    if (check === "zero") return this.drop("bad-sequence");
    return { state, spi: header.spi, seq: header.seq, keyIndex, generation, key: this.keyFor(base, generation) };
  }

  /**
   * An admitted datagram's ICV verified: the window moves. The window is
   * checked again first, since a batch may hold the same sequence number
   * twice (a replay within one batch) and admit() saw neither accepted yet.
   */
  accept(a: Admission, innerLength: number, now = 0): true | TunnelDrop {
    const state = a.state as PeerState;
    let window = state.windows.get(a.spi);
    if (window) {
      const check = window.check(a.seq);
      if (check === "replayed" || check === "too-old") return this.drop(check);
    } else {
      window = new ReplayWindow();
      state.windows.set(a.spi, window);
      this.forgetOldGenerations(state, a.keyIndex, a.generation);
    }
    window.accept(a.seq);
    state.lastSeen.set(a.spi, now);
    this.counters.opened++;
    this.counters.bytesOpened += innerLength;
    return true;
  }

  /** An admitted datagram did not decrypt or was malformed inside: a named, counted drop. */
  reject(why: EspDrop): TunnelDrop {
    return this.drop(why);
  }

  /** Counts a drop the caller found (a packet too large for its batch slot). */
  countDrop(why: TunnelDrop): TunnelDrop {
    return this.drop(why);
  }

  /** Drops all SA state of key indexes the keyring no longer holds (after its grace period). */
  forgetKeys(gone: number[]): void {
    if (!gone.length) return;
    for (const s of this.byName.values()) {
      for (const k of gone) s.out.delete(k);
      for (const spi of [...s.windows.keys()]) if (gone.includes(splitWireSpi(spi).keyIndex)) {
        s.windows.delete(spi);
        s.lastSeen.delete(spi);
      }
    }
    for (const k of [...this.derived.keys()]) if (gone.includes(Number(k.split("/")[0]))) this.derived.delete(k);
  }

  /** Per peer: the key index sent with, wire SPIs and sequence numbers out and in (no key material). */
  status(now = 0): PeerStatus[] {
    return [...this.byName.values()].map((s) => {
      const sendIndex = this.keyring.sendSpi(s.peer.keyIndex);
      const out = [...s.out.entries()].map(([keyIndex, o]) => ({ keyIndex, spi: wireSpi(keyIndex, o.generation), generation: o.generation, seq: o.seq }));
      const inbound = [...s.windows.entries()].map(([spi, w]) => ({
        spi, keyIndex: splitWireSpi(spi).keyIndex, highestSeq: w.toJSON().top, idleSeconds: Math.round(Math.max(0, now - (s.lastSeen.get(spi) ?? now)) * 10) / 10,
      }));
      return { name: s.peer.name, address: s.peer.address, advertisedKey: s.peer.keyIndex, sendKey: sendIndex ?? 0, out, in: inbound };
    });
  }

  /** What survives a restart; clears `dirty`. */
  snapshot(): TunnelSnapshot {
    const peers: TunnelSnapshot["peers"] = { ...(this.restored?.peers ?? {}) };
    for (const [name, s] of this.byName) {
      peers[name] = {
        out: Object.fromEntries([...s.out.entries()].map(([k, o]) => [String(k), { generation: o.generation, reserved: Math.max(o.reserved, o.seq) }])),
        windows: Object.fromEntries([...s.windows.entries()].map(([spi, w]) => [String(spi), w.toJSON()])),
      };
    }
    this.dirty = false;
    return { version: 1, peers };
  }

  private restore(state: PeerState): void {
    const saved = this.restored?.peers[state.peer.name];
    if (!saved) return;
    delete this.restored!.peers[state.peer.name];
    for (const [k, o] of Object.entries(saved.out)) {
      // Resume above every number that may have gone out, under a new reservation that the
      // caller must save (dirty) before it sends: a crash before then resumes at o.reserved again.
      state.out.set(Number(k), { generation: o.generation, seq: o.reserved, reserved: o.reserved + SEQ_RESERVE });
      this.dirty = true;
    }
    for (const [spi, w] of Object.entries(saved.windows)) state.windows.set(Number(spi), new ReplayWindow(w));
  }

  /** A peer moved to generation g of a key: windows of generations before g - 1 can go. */
  private forgetOldGenerations(state: PeerState, keyIndex: number, generation: number): void {
    for (const spi of [...state.windows.keys()]) {
      const w = splitWireSpi(spi);
      if (w.keyIndex === keyIndex && w.generation + 1 < generation) state.windows.delete(spi);
    }
  }

  private keyFor(key: IpsecKey, generation: number): IpsecKey {
    if (generation === 0) return key;
    const id = `${key.spi}/${generation}`;
    let k = this.derived.get(id);
    if (!k) {
      k = generationKey(key, generation);
      this.derived.set(id, k);
    }
    return k;
  }

  private drop(why: TunnelDrop): TunnelDrop {
    this.counters.drops[why]++;
    return why;
  }
}

export interface PeerStatus {
  name: string;
  address: string;
  advertisedKey: number;
  sendKey: number;
  out: { keyIndex: number; spi: number; generation: number; seq: number }[];
  in: { spi: number; keyIndex: number; highestSeq: number; idleSeconds: number }[];
}

/** Whether `prefix` holds address `bytes` (same family): per packet, so no allocation. */
function holds(prefix: Prefix, bytes: Uint8Array): boolean {
  const whole = prefix.length >> 3;
  for (let i = 0; i < whole; i++) if (prefix.bytes[i] !== bytes[i]) return false;
  const rest = prefix.length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (prefix.bytes[whole]! & mask) === (bytes[whole]! & mask);
}

export function ipv4Number(address: string): number {
  const p = address.split(".").map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}
