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
import { checkReadBatch, checkWriteBatch, MAX_GSO_PACKET, VIRTIO_NET_HDR_LEN, type DescriptorBatch, type DescriptorIo, type TunDevice } from "./device.js";
import { TunClosedError, TunIoError } from "./errors.js";
import { PKT_DESC } from "../generated/layout.js";

const ERRNO = { EAGAIN: 11, EIO: 5, EINVAL: 22 } as const;
const D = PKT_DESC.offsets;

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
  /** Offer descriptor-batch I/O (device.ts DescriptorIo), as a LinuxTun with native I/O does; without vnetHdr only. */
  descriptorIo?: boolean;
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
  readonly #descriptorIo: DescriptorIo | undefined;
  /** failWrite(): the next write's packet `at` (counting written packets of that call) fails with `errno`. */
  #failure: { at: number; errno: keyof typeof ERRNO } | undefined;

  constructor(options: FakeTunOptions = {}) {
    this.name = options.name ?? "fake0";
    this.mtu = options.mtu ?? 1500;
    this.vnetHdr = options.vnetHdr ?? false;
    this.readCapacity = options.gso ? MAX_GSO_PACKET : this.mtu;
    const { tso = false, uso = false } = options.offloads ?? {};
    if ((tso || uso) && !(this.vnetHdr && options.gso)) throw new InvalidInputError(`${this.name}: offloads need vnetHdr and gso`);
    this.offloads = Object.freeze({ csum: tso || uso, tso, uso });
    if (options.descriptorIo && this.vnetHdr) throw new InvalidInputError("FakeTun: descriptorIo is offered without vnetHdr only");
    if (options.descriptorIo) {
      this.#descriptorIo = {
        readDescs: (batch, totals) => this.#readDescs(batch, totals),
        writeDescs: (batch, from, totals) => this.#writeDescs(batch, from, totals),
      };
    }
  }

  descriptorIo(): DescriptorIo | undefined {
    return this.#descriptorIo;
  }

  /**
   * Makes the next write (write() or a descriptor write) fail at its packet
   * `at` (0: the first it would send) as the kernel would: EAGAIN pushes back
   * (that packet and the rest not taken), EINVAL refuses that one packet, EIO
   * (a device that is down) fails it and the rest. Packets before it go out.
   */
  failWrite(at: number, errno: keyof typeof ERRNO): void {
    this.#failure = { at, errno };
  }

  /** The failure armed for this write's packet number `k`, taken (one-shot). */
  #failureAt(k: number): keyof typeof ERRNO | undefined {
    if (this.#failure?.at !== k) return undefined;
    const errno = this.#failure.errno;
    this.#failure = undefined;
    return errno;
  }

  #readDescs(batch: DescriptorBatch, totals: Uint32Array): number {
    this.#open();
    const mem = batch.memory;
    const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    totals[0] = 0;
    const n = Math.min(batch.count, this.#queue.length);
    for (let i = 0; i < n; i++) {
      const at = batch.descs + i * PKT_DESC.size;
      const buf = v.getUint32(at + D.buf, true);
      if (v.getUint32(at + D.bufSize, true) - batch.headroom < this.readCapacity) throw new TunIoError(`read packet ${i} of a batch from ${this.name}: buffer too small`, ERRNO.EINVAL, i);
      const { packet } = this.#queue.shift()!;
      mem.set(packet, buf + batch.headroom);
      v.setUint32(at + D.off, batch.headroom, true);
      v.setUint32(at + D.len, packet.length, true);
      v.setUint8(at + D.link, batch.meta & 0xff);
      v.setUint8(at + D.dir, (batch.meta >> 8) & 0xff);
      v.setUint8(at + D.flags, (batch.meta >> 16) & 0xff);
      totals[0] += packet.length;
    }
    return n;
  }

  #writeDescs(batch: DescriptorBatch, from: number, totals: Uint32Array): number {
    this.#open();
    const mem = batch.memory;
    const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    const pass = (i: number) => v.getUint8(batch.descs + i * PKT_DESC.size + D.verdict) === 0;
    totals[0] = totals[1] = totals[2] = 0;
    for (let i = from; i < batch.count; i++) {
      if (!pass(i)) continue;
      totals[0]++;
      totals[1] += v.getUint32(batch.descs + i * PKT_DESC.size + D.len, true);
    }
    for (let i = from, k = 0; i < batch.count; i++) {
      if (!pass(i)) continue;
      const fail = this.#failureAt(k++);
      if (fail === "EAGAIN") return i;
      if (fail) throw new TunIoError(`write packet ${i} of a batch to ${this.name}`, ERRNO[fail], i);
      const at = batch.descs + i * PKT_DESC.size;
      const start = v.getUint32(at + D.buf, true) + v.getUint32(at + D.off, true);
      this.#written.push({ packet: mem.slice(start, start + v.getUint32(at + D.len, true)) });
      totals[2]++;
    }
    return batch.count;
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
      const fail = this.#failureAt(i);
      if (fail === "EAGAIN") return i;
      if (fail) throw new TunIoError(`write packet ${i} of a batch to ${this.name}`, ERRNO[fail], i);
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
