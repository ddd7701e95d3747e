/**
 * PacketBatch: packets staged in Wasm memory for one `process` call, after
 * wireguard-go's tun.Device batches (buffers, sizes and headroom, so headers can
 * be prepended in place). Reused across calls: clear(), push(), process, read.
 */
import { MembraneError } from "../errors.js";
import { LinkType, PKT_DESC, PktFlags, decodePktDesc } from "../generated/layout.js";
import type { RawBatch, WasmCore } from "./core.js";
import { DIRECTION_CODE, type PacketMeta } from "../engine.js";
import { describeVerdict, type PacketVerdict } from "../verdict.js";
import type { DescriptorBatch } from "../tun/device.js";

export type { Direction, LinkKind, PacketMeta } from "../engine.js";

export class PacketBatch {
  private count = 0;
  private descs?: DataView;

  constructor(private readonly core: WasmCore, readonly raw: RawBatch) {}

  get capacity(): number { return this.raw.capacity; }
  get length(): number { return this.count; }
  /** Largest packet a buffer takes. */
  get maxPacket(): number { return this.raw.bufferSize - this.raw.headroom; }

  clear(): void {
    this.count = 0;
  }

  /**
   * One view over the whole descriptor array, taken once and again only when
   * Wasm memory grew (which detaches it): no allocation per packet.
   */
  private descriptors(): DataView {
    const buffer = this.core.bytes().buffer;
    if (this.descs?.buffer !== buffer) this.descs = new DataView(buffer, this.raw.desc, this.raw.capacity * PKT_DESC.size);
    return this.descs;
  }

  /** Copies a packet into the next buffer; returns its index. */
  push(packet: Uint8Array, meta: PacketMeta = {}): number {
    if (this.count >= this.raw.capacity) throw new MembraneError("BATCH_FULL", `add packet: the batch holds ${this.raw.capacity} packets`);
    if (packet.length > this.maxPacket) {
      throw new MembraneError("PACKET_TOO_LARGE", `add packet: ${packet.length} bytes exceed the batch buffer (${this.maxPacket} bytes after headroom)`);
    }
    const i = this.count++;
    const mem = this.core.bytes();
    const v = this.descriptors();
    const at = i * PKT_DESC.size;
    const buf = v.getUint32(at + PKT_DESC.offsets.buf, true);
    v.setUint32(at + PKT_DESC.offsets.off, this.raw.headroom, true);
    v.setUint32(at + PKT_DESC.offsets.len, packet.length, true);
    v.setUint8(at + PKT_DESC.offsets.link, meta.link === "ethernet" ? LinkType.LINK_ETHERNET : LinkType.LINK_RAW_IP);
    v.setUint8(at + PKT_DESC.offsets.dir, DIRECTION_CODE[meta.direction ?? "auto"]);
    v.setUint8(at + PKT_DESC.offsets.flags, meta.checksumPartial ? PktFlags.PKT_F_CSUM_PARTIAL : 0);
    mem.set(packet, buf + this.raw.headroom);
    return i;
  }

  /**
   * Views of every buffer in Wasm memory, for devices that read straight into
   * them (no copy). A packet goes at `raw.headroom`; then call fill(). The views
   * stay valid while the instance's memory does not grow (it grows only when
   * tables or batches are created).
   */
  bufferViews(): Uint8Array[] {
    const mem = this.core.bytes();
    return Array.from({ length: this.raw.capacity }, (_, i) => {
      const buf = new DataView(mem.buffer, this.core.descriptorAddr(this.raw, i), PKT_DESC.size).getUint32(PKT_DESC.offsets.buf, true);
      return mem.subarray(buf, buf + this.raw.bufferSize);
    });
  }

  /** Declares packets 0..count-1 present in the buffers at the headroom with these sizes. */
  fill(sizes: readonly number[], count: number, meta: PacketMeta = {}): void {
    if (count > this.raw.capacity) throw new MembraneError("BATCH_FULL", `fill batch: ${count} packets, capacity ${this.raw.capacity}`);
    for (let i = 0; i < count; i++) {
      if (sizes[i] > this.maxPacket) throw new MembraneError("PACKET_TOO_LARGE", `fill batch: packet ${i} is ${sizes[i]} bytes, buffers hold ${this.maxPacket}`);
    }
    const v = this.descriptors();
    const link = meta.link === "ethernet" ? LinkType.LINK_ETHERNET : LinkType.LINK_RAW_IP;
    const dir = DIRECTION_CODE[meta.direction ?? "auto"];
    const flags = meta.checksumPartial ? PktFlags.PKT_F_CSUM_PARTIAL : 0;
    for (let i = 0; i < count; i++) {
      const at = i * PKT_DESC.size;
      v.setUint32(at + PKT_DESC.offsets.off, this.raw.headroom, true);
      v.setUint32(at + PKT_DESC.offsets.len, sizes[i], true);
      v.setUint8(at + PKT_DESC.offsets.link, link);
      v.setUint8(at + PKT_DESC.offsets.dir, dir);
      v.setUint8(at + PKT_DESC.offsets.flags, flags);
    }
    this.count = count;
  }

  /**
   * This batch as a device sees it when it reads and writes the descriptor
   * records itself (host/tun/device.ts DescriptorBatch): its reads stamp
   * `meta` on each record they fill; after a read of n packets, declare(n).
   * One object per batch, reused; its memory is the instance's current one.
   */
  descriptorBatch(meta: PacketMeta = {}): DescriptorBatch {
    const core = this.core;
    const link = meta.link === "ethernet" ? LinkType.LINK_ETHERNET : LinkType.LINK_RAW_IP;
    const flags = meta.checksumPartial ? PktFlags.PKT_F_CSUM_PARTIAL : 0;
    return {
      get memory() { return core.bytes(); },
      descs: this.raw.desc,
      count: this.raw.capacity,
      headroom: this.raw.headroom,
      meta: link | (DIRECTION_CODE[meta.direction ?? "auto"] << 8) | (flags << 16),
    };
  }

  /**
   * Declares packets 0..count-1 present, their records already filled in
   * (by a device reading a descriptorBatch()): fill() without the writes.
   */
  declare(count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > this.raw.capacity) {
      throw new MembraneError("BATCH_FULL", `declare batch: ${count} packets, capacity ${this.raw.capacity}`);
    }
    this.count = count;
  }

  /**
   * Marks packet i (already declared by fill()) as carrying a partial L4
   * checksum (PacketMeta.checksumPartial), for batches where only some do.
   */
  markChecksumPartial(i: number): void {
    if (i < 0 || i >= this.count) throw new MembraneError("INVALID_INPUT", `mark packet ${i}: the batch has ${this.count} packets`);
    const v = this.descriptors();
    const at = i * PKT_DESC.size + PKT_DESC.offsets.flags;
    v.setUint8(at, v.getUint8(at) | PktFlags.PKT_F_CSUM_PARTIAL);
  }

  /**
   * outcome() of packets 0..n-1 into caller-owned arrays (pass[i] 1 or 0),
   * for loops that must not allocate per packet. Returns how many passed.
   */
  outcomesInto(n: number, pass: Uint8Array, off: Uint32Array, len: Uint32Array): number {
    if (n > this.count || pass.length < n || off.length < n || len.length < n) {
      throw new MembraneError("INVALID_INPUT", `read ${n} outcomes: the batch has ${this.count} packets, the arrays ${Math.min(pass.length, off.length, len.length)} slots`);
    }
    const v = this.descriptors();
    let passed = 0;
    for (let i = 0, at = 0; i < n; i++, at += PKT_DESC.size) {
      const ok = v.getUint8(at + PKT_DESC.offsets.verdict) === 0 ? 1 : 0;
      pass[i] = ok;
      passed += ok;
      off[i] = v.getUint32(at + PKT_DESC.offsets.off, true);
      len[i] = v.getUint32(at + PKT_DESC.offsets.len, true);
    }
    return passed;
  }

  /**
   * Where packet i's bytes are after process() (the datapath may move the start
   * to prepend headers) and whether it passed: what a forwarder writes out.
   */
  outcome(i: number): { pass: boolean; off: number; len: number; dropReason: number } {
    const v = this.descriptors();
    const at = i * PKT_DESC.size;
    return {
      pass: v.getUint8(at + PKT_DESC.offsets.verdict) === 0,
      off: v.getUint32(at + PKT_DESC.offsets.off, true),
      len: v.getUint32(at + PKT_DESC.offsets.len, true),
      dropReason: v.getUint8(at + PKT_DESC.offsets.dropReason),
    };
  }

  /** The decision for packet i after process(), with a copy of its (possibly rewritten) bytes. */
  result(i: number): PacketVerdict {
    if (i < 0 || i >= this.count) throw new MembraneError("INVALID_INPUT", `read result ${i}: the batch has ${this.count} packets`);
    const d = decodePktDesc(this.core.bytes(), this.core.descriptorAddr(this.raw, i));
    return describeVerdict(d, this.core.view(d.buf + d.off, d.len).slice());
  }
}
