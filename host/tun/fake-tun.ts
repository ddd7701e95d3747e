/**
 * An in-memory TunDevice for tests: packets injected here come out of read(),
 * packets written are kept for drainWritten(). It applies exactly the batch
 * rules of the real device (shared validation in device.ts, the same offset
 * and virtio_net_hdr placement), so code tested against it behaves the same
 * on /dev/net/tun.
 *
 * Nothing can arrive while wait() blocks (there is no other producer on a
 * single thread), so wait() never sleeps: it reports the queue at once.
 */
import { InvalidInputError } from "../errors.js";
import { checkReadBatch, checkWriteBatch, MAX_GSO_PACKET, VIRTIO_NET_HDR_LEN, type TunDevice } from "./device.js";
import { TunClosedError } from "./errors.js";

export interface FakeTunOptions {
  name?: string;
  mtu?: number;
  vnetHdr?: boolean;
  /** Behave as with TSO/USO on: reads may carry super-packets up to MAX_GSO_PACKET, so buffers must hold one. */
  gso?: boolean;
  /**
   * Offloads to report as the kernel's (LinuxTun.offloads): what the
   * forwarder may write back as super-packets. Default: none, so a forwarder
   * writes packets one by one.
   */
  offloads?: { tso?: boolean; uso?: boolean };
}

/** A packet written to the fake, copied out of the caller's buffer. */
export interface WrittenPacket {
  packet: Uint8Array;
  /** The virtio_net_hdr that preceded it, when the device has vnetHdr. */
  vnetHdr?: Uint8Array;
}

interface Queued {
  packet: Uint8Array;
  vnetHdr: Uint8Array;
}

export class FakeTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly vnetHdr: boolean;
  readonly readCapacity: number;
  readonly offloads: { readonly csum: boolean; readonly tso: boolean; readonly uso: boolean };
  #queue: Queued[] = [];
  #written: WrittenPacket[] = [];
  #closed = false;

  constructor(options: FakeTunOptions = {}) {
    this.name = options.name ?? "fake0";
    this.mtu = options.mtu ?? 1500;
    this.vnetHdr = options.vnetHdr ?? false;
    this.readCapacity = options.gso ? MAX_GSO_PACKET : this.mtu;
    const { tso = false, uso = false } = options.offloads ?? {};
    if ((tso || uso) && !(this.vnetHdr && options.gso)) throw new InvalidInputError(`${this.name}: offloads need vnetHdr and gso`);
    this.offloads = Object.freeze({ csum: tso || uso, tso, uso });
  }

  /**
   * Queues a packet for read() (copied, so the caller may reuse its buffer).
   * `vnetHdr` is the 10-byte header read() places before it; zeros when
   * omitted. Giving one to a device without vnetHdr is an error.
   */
  inject(packet: Uint8Array, vnetHdr?: Uint8Array): void {
    this.#open();
    if (packet.length > this.readCapacity) {
      throw new InvalidInputError(`packet of ${packet.length} bytes exceeds what ${this.name} can deliver (${this.readCapacity})`);
    }
    if (vnetHdr !== undefined && !this.vnetHdr) throw new InvalidInputError(`${this.name} has no virtio_net_hdr (vnetHdr is off)`);
    if (vnetHdr !== undefined && vnetHdr.length !== VIRTIO_NET_HDR_LEN) {
      throw new InvalidInputError(`virtio_net_hdr must be ${VIRTIO_NET_HDR_LEN} bytes, got ${vnetHdr.length}`);
    }
    this.#queue.push({ packet: packet.slice(), vnetHdr: vnetHdr ? vnetHdr.slice() : new Uint8Array(VIRTIO_NET_HDR_LEN) });
  }

  /** Packets written since the last call, oldest first. */
  drainWritten(): WrittenPacket[] {
    return this.#written.splice(0);
  }

  /** Packets injected and not yet read. */
  get pending(): number {
    return this.#queue.length;
  }

  read(bufs: Uint8Array[], sizes: number[], offset: number): number {
    this.#open();
    checkReadBatch(this, bufs, sizes, offset);
    const n = Math.min(bufs.length, this.#queue.length);
    for (let i = 0; i < n; i++) {
      const { packet, vnetHdr } = this.#queue.shift()!;
      if (this.vnetHdr) bufs[i]!.set(vnetHdr, offset - VIRTIO_NET_HDR_LEN);
      bufs[i]!.set(packet, offset);
      sizes[i] = packet.length;
    }
    return n;
  }

  write(bufs: Uint8Array[], sizes: number[], offset: number): number {
    this.#open();
    checkWriteBatch(this, bufs, sizes, offset);
    for (let i = 0; i < bufs.length; i++) {
      const buf = bufs[i]!;
      const written: WrittenPacket = { packet: buf.slice(offset, offset + sizes[i]!) };
      if (this.vnetHdr) written.vnetHdr = buf.slice(offset - VIRTIO_NET_HDR_LEN, offset);
      this.#written.push(written);
    }
    return bufs.length;
  }

  wait(_timeoutMs: number): boolean {
    this.#open();
    return this.#queue.length > 0;
  }

  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  #open(): void {
    if (this.#closed) throw new TunClosedError(this.name);
  }
}
