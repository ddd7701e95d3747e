/**
 * ESP crypto once per batch for the forwarder's ESP path (esp-path.ts).
 *
 * Outbound: stage() plans each packet with the tunnel (planSeal: peer, key,
 * SPI, sequence number, all the per-packet state) and copies it into a
 * slot; seal() then seals every slot in one native call; send() hands them
 * to one sendmmsg. Inbound: receive() takes up to a batch with one
 * recvmmsg; open() admits each datagram (peer, SPI, replay window), opens
 * them all in one native call, and accepts or rejects each (the window moves
 * only after the ICV verified, as before).
 *
 * Without the native library (host/sys/esp-native.ts) the same stages run
 * per packet on node:crypto (host/encrypt/esp.ts) and the UDP socket's own
 * sendto/recvfrom: the same bytes on the wire, the same drops, slower.
 *
 * Slots: one buffer of `capacity` slots of `stride` bytes; a slot holds the
 * datagram with its UDP header (RFC 3948 framing, what esp.ts reads and
 * writes) and the socket sends / receives what follows that header.
 */
import { open as openEsp, seal as sealEsp, ESP_UDP_PORT } from "../encrypt/esp.js";
import type { IpsecKey } from "../encrypt/key-file.js";
import type { Admission, EspTunnel, Peer, TunnelDrop } from "../encrypt/tunnel.js";
import { espNative, NATIVE_DROPS, SLOT_BODY, type EspNative } from "../sys/esp-native.js";
import { UdpSocketError, type UdpSocket } from "../sys/udp-socket.js";

const UDP = 8;
const SOCKADDR_IN = 16;
/** Room behind an inner packet: padding (3), pad length and next header (2), ICV (16). */
const TRAILER = 24;

/** Native SA contexts per key object (keyring keys and derived generation keys are long-lived objects). */
const contexts = new WeakMap<IpsecKey, number>();
const freeContexts = new FinalizationRegistry<{ lib: EspNative; sa: number }>(({ lib, sa }) => lib.saFree(sa));

function context(lib: EspNative, key: IpsecKey): number {
  let sa = contexts.get(key);
  if (sa === undefined) {
    sa = lib.saNew(key.key, key.salt, key.icvBits / 8);
    contexts.set(key, sa);
    if (sa) freeContexts.register(key, { lib, sa });
  }
  return sa;
}

export interface EspBatchOptions {
  /** Packets per batch (the forwarder's batch size). */
  capacity: number;
  /** The largest inner packet (the TUN's read capacity). */
  maxInner: number;
  /** false: node:crypto even when the native library is there (tests, benchmarks). */
  native?: boolean;
  sourcePort?: number;
}

export class EspBatch {
  readonly capacity: number;
  readonly stride: number;
  /** Slot i at i * stride. */
  readonly slots: Buffer;
  /** Per slot: seal: datagram length (0: none); open: datagram length (UDP header included). */
  readonly lengths: Uint32Array;
  /** Per received slot: the sender's IPv4 address as a number. */
  readonly from: Uint32Array;
  /** Staged or received slots. */
  count = 0;
  private readonly lib: EspNative | undefined;
  private readonly sas: BigUint64Array;
  private readonly spis: Uint32Array;
  private readonly seqs: Uint32Array;
  private readonly results: Int32Array;
  private readonly sendLengths: Uint32Array;
  private readonly addrs: Buffer;
  private readonly keys: (IpsecKey | undefined)[];
  private readonly admissions: (Admission | undefined)[];
  private readonly sourcePort: number;

  constructor(private readonly tunnel: EspTunnel, opts: EspBatchOptions) {
    this.capacity = Math.min(256, Math.max(1, opts.capacity));
    this.stride = (opts.maxInner + SLOT_BODY + TRAILER + 63) & ~63;
    this.slots = Buffer.alloc(this.capacity * this.stride);
    this.lengths = new Uint32Array(this.capacity);
    this.from = new Uint32Array(this.capacity);
    this.sas = new BigUint64Array(this.capacity);
    this.spis = new Uint32Array(this.capacity);
    this.seqs = new Uint32Array(this.capacity);
    this.results = new Int32Array(this.capacity);
    this.sendLengths = new Uint32Array(this.capacity);
    this.addrs = Buffer.alloc(this.capacity * SOCKADDR_IN);
    this.keys = new Array(this.capacity).fill(undefined);
    this.admissions = new Array(this.capacity).fill(undefined);
    this.sourcePort = opts.sourcePort ?? ESP_UDP_PORT;
    this.lib = opts.native === false ? undefined : espNative();
  }

  /** Whether the crypto and the socket calls run in native/esp_gcm.c. */
  get native(): boolean {
    return this.lib !== undefined;
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Datagram i (UDP header included) of the batch just sealed or received. */
  datagram(i: number): Buffer {
    return this.slots.subarray(i * this.stride, i * this.stride + this.lengths[i]!);
  }

  // ---- outbound ----

  /**
   * Plans `inner` (to `peer`, or the peer owning its destination) and stages
   * it for seal(); `to` is the peer's sockaddr_in. A drop is returned (and
   * counted by the tunnel); the caller sends when the batch is full.
   */
  stage(inner: Uint8Array, peer: Peer | undefined, to: Uint8Array): TunnelDrop | undefined {
    if (inner.length === 0 || inner.length + SLOT_BODY + TRAILER > this.stride) return this.tunnel.countDrop("truncated");
    const plan = this.tunnel.planSeal(inner, peer);
    if (typeof plan === "string") return plan;
    const i = this.count++;
    const base = i * this.stride;
    this.slots.set(inner, base + SLOT_BODY);
    this.lengths[i] = inner.length;
    this.spis[i] = plan.spi;
    this.seqs[i] = plan.seq;
    this.keys[i] = plan.key;
    this.addrs.set(to, i * SOCKADDR_IN);
    return undefined;
  }

  /** Seals the staged slots: afterwards lengths[i] is datagram i's length (0: it could not be sealed). */
  seal(): number {
    const n = this.count;
    if (n === 0) return 0;
    if (this.lib) {
      for (let i = 0; i < n; i++) this.sas[i] = BigInt(context(this.lib, this.keys[i]!));
      const sealed = this.lib.sealBatch(this.sas, this.spis, this.seqs, this.slots, this.stride, this.lengths, n, this.sourcePort, ESP_UDP_PORT);
      for (let i = 0; i < n; i++) this.keys[i] = undefined;
      return sealed;
    }
    for (let i = 0; i < n; i++) {
      const base = i * this.stride;
      const inner = this.slots.subarray(base + SLOT_BODY, base + SLOT_BODY + this.lengths[i]!);
      const d = sealEsp({ key: this.keys[i]!, spi: this.spis[i]!, seq: this.seqs[i]!, inner, sourcePort: this.sourcePort });
      this.slots.set(d, base);
      this.lengths[i] = d.length;
      this.keys[i] = undefined;
    }
    return n;
  }

  /** Sends the sealed slots (what follows each UDP header) and empties the batch: the datagrams the socket pushed back. */
  send(socket: UdpSocket): number {
    const n = this.count;
    this.count = 0;
    let wanted = 0;
    for (let i = 0; i < n; i++) {
      this.sendLengths[i] = this.lengths[i]! > UDP ? this.lengths[i]! - UDP : 0;
      if (this.sendLengths[i]) wanted++;
    }
    if (wanted === 0) return 0;
    if (this.lib) {
      const sent = this.lib.sendmmsg(socket.fd, this.slots, this.stride, UDP, this.sendLengths, this.addrs, n);
      if (sent < 0) throw new UdpSocketError(`sendmmsg on ${socket.address}:${socket.port}`, -sent);
      return wanted - sent;
    }
    let pushedBack = 0;
    for (let i = 0; i < n; i++) {
      if (!this.sendLengths[i]) continue;
      const base = i * this.stride + UDP;
      if (!socket.send(this.slots.subarray(base, base + this.sendLengths[i]!), this.sendLengths[i]!, this.addrs.subarray(i * SOCKADDR_IN, (i + 1) * SOCKADDR_IN))) pushedBack++;
    }
    return pushedBack;
  }

  // ---- inbound ----

  /** Receives up to `max` datagrams into the slots (their UDP headers written for the codec): how many. */
  receive(socket: UdpSocket, max = this.capacity): number {
    const want = Math.min(max, this.capacity);
    let n = 0;
    if (this.lib) {
      n = this.lib.recvmmsg(socket.fd, this.slots, this.stride, UDP, this.lengths, this.from, want);
      if (n < 0) throw new UdpSocketError(`recvmmsg on ${socket.address}:${socket.port}`, -n);
      for (let i = 0; i < n; i++) this.lengths[i] = this.lengths[i]! + UDP;
    } else {
      while (n < want) {
        const base = n * this.stride;
        const got = socket.receive(this.slots.subarray(base + UDP, base + this.stride));
        if (!got) break;
        this.lengths[n] = got.length + UDP;
        this.from[n] = got.from;
        n++;
      }
    }
    for (let i = 0; i < n; i++) {
      const base = i * this.stride;
      this.slots.writeUInt16BE(socket.port, base);
      this.slots.writeUInt16BE(ESP_UDP_PORT, base + 2);
    }
    this.count = n;
    return n;
  }

  /** Puts one datagram (UDP header included) from `from` into the next slot, as receive() would (tests, benchmarks). */
  put(datagram: Uint8Array, from: number): boolean {
    if (this.count >= this.capacity) return false;
    const i = this.count++;
    const room = Math.min(datagram.length, this.stride);
    this.slots.set(datagram.subarray(0, room), i * this.stride);
    this.lengths[i] = datagram.length > this.stride ? this.stride + 1 : datagram.length;
    this.from[i] = from;
    return true;
  }

  /**
   * Opens the received slots and delivers each inner packet to
   * `bufs[start + k]` at `offset` (sizes likewise): the number delivered.
   * Every other datagram is a named drop counted by the tunnel.
   */
  open(bufs: Uint8Array[], sizes: number[], offset: number, start: number, now: number): number {
    const n = this.count;
    this.count = 0;
    if (n === 0) return 0;
    for (let i = 0; i < n; i++) {
      const len = this.lengths[i]!;
      const base = i * this.stride;
      const a = len > this.stride ? this.tunnel.countDrop("truncated") : this.tunnel.admit(this.from[i]!, this.slots.subarray(base, base + len));
      this.admissions[i] = typeof a === "string" ? undefined : a;
    }
    if (this.lib) {
      for (let i = 0; i < n; i++) {
        const a = this.admissions[i];
        this.sas[i] = a ? BigInt(context(this.lib, a.key)) : 0n;
        if (!a) this.lengths[i] = 0;
      }
      this.lib.openBatch(this.sas, this.slots, this.stride, this.lengths, this.results, n);
    } else {
      for (let i = 0; i < n; i++) {
        const a = this.admissions[i];
        if (!a) continue;
        const base = i * this.stride;
        const inner = openEsp(this.slots.subarray(base, base + this.lengths[i]!), a.key);
        if (typeof inner === "string") {
          this.tunnel.reject(inner);
          this.admissions[i] = undefined;
          continue;
        }
        // Where the native open leaves it (node:crypto decrypted into a new buffer).
        this.slots.set(inner, base + SLOT_BODY);
        this.results[i] = inner.length;
      }
    }
    let delivered = 0;
    for (let i = 0; i < n; i++) {
      const a = this.admissions[i];
      if (!a) continue;
      this.admissions[i] = undefined;
      const r = this.results[i]!;
      if (r <= 0) {
        this.tunnel.reject(NATIVE_DROPS[r] ?? "bad-icv");
        continue;
      }
      const k = start + delivered;
      if (k >= bufs.length || r > bufs[k]!.length - offset) {
        this.tunnel.countDrop("truncated");
        continue;
      }
      if (this.tunnel.accept(a, r, now) !== true) continue;
      const base = i * this.stride + SLOT_BODY;
      bufs[k]!.set(this.slots.subarray(base, base + r), offset);
      sizes[k] = r;
      delivered++;
    }
    return delivered;
  }
}
