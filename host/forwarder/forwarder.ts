/**
 * The userspace forwarder: reads batches of packets from a TUN device straight
 * into Wasm memory, has the datapath decide all of them in one call, and writes
 * the ones that pass back to the device. The kernel routes pod and service
 * traffic into the device; what comes back out is routed onwards by the kernel.
 */
import type { Datapath } from "../datapath.js";
import type { PacketBatch } from "../batch.js";
import type { TunDevice } from "../tun/device.js";
import { monotonicSeconds } from "./clock.js";
import { GcSchedule } from "../conntrack/gc-schedule.js";
import { NatGcSignal } from "../nat/gc-signal.js";
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE } from "../tun/virtio-net-hdr.js";
import { VIRTIO_NET_HDR_LEN } from "../tun/device.js";
import { TunIoError } from "../tun/errors.js";
import { coalesce, completePartialChecksum, readVirtioNetHdr, split } from "../tun/offload/index.js";

export interface ForwarderStats {
  batches: number;
  /** Reads from the device (one may carry a TSO/USO super-packet of many packets). */
  reads: number;
  /** Writes to the device (coalesced packets count once). */
  writes: number;
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  dropped: number;
  /** Packets the device refused while it was down (EIO), e.g. while being moved between namespaces. */
  writeErrors: number;
  gcRuns: number;
}

export interface ForwarderOptions {
  /** Packets per batch (default 128). */
  batchSize?: number;
  /** The datapath clock, seconds (default: the monotonic clock). */
  clock?: () => number;
}

export class Forwarder {
  readonly stats: ForwarderStats = { batches: 0, reads: 0, writes: 0, packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, dropped: 0, writeErrors: 0, gcRuns: 0 };
  private readonly batch: PacketBatch;
  private views: Uint8Array[];
  private readonly sizes: number[];
  private readonly out: Uint8Array[];
  private readonly outSizes: number[];
  private readonly clock: () => number;
  private readonly gc: GcSchedule;
  private nextGc: number;
  private readonly natGc: NatGcSignal;
  /** With offloads: super-packets land here first, then are split into the batch. */
  private readonly staging: Uint8Array[];
  private readonly stagingSizes: number[];
  private readonly udpCoalescing: boolean;

  constructor(private readonly dp: Datapath, private readonly device: TunDevice, opts: ForwarderOptions = {}) {
    const size = opts.batchSize ?? 128;
    // Headroom for the virtio-net header in front of each packet, and room to prepend.
    this.batch = dp.createBatch(size, { bufferSize: 65535 + 128, headroom: 128 });
    this.views = this.batch.bufferViews();
    this.sizes = new Array(size).fill(0);
    this.out = [];
    this.outSizes = [];
    this.clock = opts.clock ?? monotonicSeconds;
    this.gc = new GcSchedule({ mode: "adaptive", lru: dp.options.conntrack.whenFull === "evict-lru" });
    this.nextGc = this.clock() + this.gc.interval;
    this.natGc = new NatGcSignal(() => dp.nat.gcRequests());
    const stagingCount = device.vnetHdr ? Math.max(1, size >> 3) : 0;
    this.staging = Array.from({ length: stagingCount }, () => new Uint8Array(VIRTIO_NET_HDR_LEN + device.readCapacity));
    this.stagingSizes = new Array(stagingCount).fill(0);
    this.udpCoalescing = "offloads" in device && !!(device as { offloads?: { uso?: boolean } }).offloads?.uso;
  }

  /** One batch: read what is ready, decide, write. Returns the packets read. */
  step(): number {
    // Growing Wasm memory (a table dump, a new batch) detaches every view: take them again.
    if (this.views[0].byteLength === 0) this.views = this.batch.bufferViews();
    return this.device.vnetHdr ? this.stepOffloaded() : this.stepPlain();
  }

  /** Without offloads the device reads straight into the batch's buffers in Wasm memory. */
  private stepPlain(): number {
    const n = this.device.read(this.views, this.sizes, this.batch.raw.headroom);
    if (n === 0) return 0;
    this.stats.reads += n;
    this.decideAndWrite(n);
    return n;
  }

  /**
   * With offloads a read may be a super-packet (TSO/USO) or carry a partial
   * checksum: split or complete it into the batch, decide the batch, and
   * coalesce what passes into super-packets again on the way out.
   */
  private stepOffloaded(): number {
    const n = this.device.read(this.staging, this.stagingSizes, VIRTIO_NET_HDR_LEN);
    if (n === 0) return 0;
    this.stats.reads += n;
    const headroom = this.batch.raw.headroom;
    let filled = 0;
    for (let i = 0; i < n; i++) {
      const hdr = readVirtioNetHdr(this.staging[i], 0);
      const pkt = this.staging[i].subarray(VIRTIO_NET_HDR_LEN, VIRTIO_NET_HDR_LEN + this.stagingSizes[i]);
      try {
        if (hdr.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
          const segments = Math.ceil(pkt.length / Math.max(1, hdr.gsoSize));
          if (filled + segments > this.views.length && filled > 0) {
            this.decideAndWrite(filled);
            filled = 0;
          }
          const sizes: number[] = [];
          filled += split(pkt, hdr, this.views.slice(filled), sizes, headroom);
          for (let k = 0; k < sizes.length; k++) this.sizes[filled - sizes.length + k] = sizes[k];
          continue;
        }
        if (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) completePartialChecksum(pkt, hdr.csumStart, hdr.csumOffset);
      } catch {
        // A super-packet the offload layer cannot take apart is dropped whole.
        this.stats.dropped++;
        continue;
      }
      if (filled === this.views.length) {
        this.decideAndWrite(filled);
        filled = 0;
      }
      this.views[filled].set(pkt, headroom);
      this.sizes[filled++] = pkt.length;
    }
    if (filled) this.decideAndWrite(filled);
    return n;
  }

  /** Decides packets 0..n-1 of the batch and writes the ones that pass. */
  private decideAndWrite(n: number): void {
    const headroom = this.batch.raw.headroom;
    const now = this.clock();
    this.batch.fill(this.sizes, n, { link: "ip", direction: "auto" });
    this.dp.process(this.batch, now);
    this.out.length = 0;
    this.outSizes.length = 0;
    for (let i = 0; i < n; i++) {
      this.stats.bytesIn += this.sizes[i];
      const o = this.batch.outcome(i);
      if (!o.pass) {
        this.stats.dropped++;
        continue;
      }
      // Rewrites may move the packet's start; hand the device a view that puts it at `headroom`.
      this.out.push(this.views[i].subarray(o.off - headroom));
      this.outSizes.push(o.len);
      this.stats.bytesOut += o.len;
    }
    this.stats.batches++;
    this.stats.packetsIn += n;
    this.stats.packetsOut += this.out.length;
    if (this.out.length) this.writeOut(headroom);
    if (now >= this.nextGc || this.natGc.due(now)) this.collect(now);
  }

  private writeOut(headroom: number): void {
    let bufs = this.out, sizes = this.outSizes, offset = headroom;
    if (this.device.vnetHdr) {
      const merged = coalesce(this.out, this.outSizes, headroom, { tcp: true, udp: this.udpCoalescing });
      bufs = merged.map((m) => m.bytes);
      sizes = merged.map((m) => m.size);
      offset = VIRTIO_NET_HDR_LEN;
    }
    try {
      this.device.write(bufs, sizes, offset);
      this.stats.writes += bufs.length;
    } catch (err) {
      // A device that is down (EIO: just created, being moved to another namespace) loses
      // this batch, as a NIC would; anything else is a real failure.
      if (!(err instanceof TunIoError && err.errnoName === "EIO")) throw err;
      this.stats.writes += err.done;
      this.stats.writeErrors += bufs.length - err.done;
    }
  }

  private collect(now: number): void {
    const results = this.dp.gc(now);
    const scanned = results.reduce((s, r) => s + r.scanned, 0);
    const ratio = Math.max(...results.map((r) => (r.scanned ? r.deleted / r.scanned : 0)));
    this.nextGc = now + this.gc.next(scanned ? ratio : NaN);
    this.stats.gcRuns++;
  }

  /** Forwards until `shouldStop()` says so, waiting at most `pollMs` for packets between checks. */
  run(shouldStop: () => boolean, pollMs = 100): void {
    while (!shouldStop()) {
      if (this.step() === 0) {
        if (this.clock() >= this.nextGc) this.collect(this.clock());
        this.device.wait(pollMs);
      }
    }
  }
}
