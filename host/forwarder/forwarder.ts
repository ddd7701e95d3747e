/**
 * The userspace forwarder: reads batches of packets from a TUN device straight
 * into Wasm memory, has the datapath decide all of them in one call, and writes
 * the ones that pass back to the device. The kernel routes pod and service
 * traffic into the device; what comes back out is routed onwards by the kernel.
 */
import type { TunIoTuning } from "../tun/io-mode-tuner.js";
import type { Datapath } from "../datapath.js";
import type { PacketBatch } from "../wasm/batch.js";
import type { PacketMeta } from "../engine.js";
import { InvalidInputError } from "../errors.js";
import type { DescriptorBatch, DescriptorIo, TunDevice } from "../tun/device.js";
import { monotonicSeconds } from "./clock.js";
import { GcSchedule } from "../conntrack/gc-schedule.js";
import { NatGcSignal } from "../nat/gc-signal.js";
import { segmentsOf, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE } from "../tun/virtio-net-hdr.js";
import { VIRTIO_NET_HDR_LEN } from "../tun/device.js";
import { TunIoError } from "../tun/errors.js";
import { coalesce, completePartialChecksum, readVirtioNetHdr, split } from "../tun/offload/index.js";
import { StageTimer, type StageTimes } from "./stage-timer.js";
import { PassthroughCoalescer, type CoalescingCounts } from "./passthrough-coalescer.js";

export interface ForwarderStats {
  batches: number;
  /** Reads from the device (one may carry a TSO/USO super-packet of many packets). */
  reads: number;
  /** Writes to the device (coalesced packets count once). */
  writes: number;
  /** Packets the datapath decided (with offload passthrough a super-packet is one). */
  packetsIn: number;
  bytesIn: number;
  /**
   * Packets as they are on the wire: a super-packet counts as the segments
   * the kernel makes of it (ceil(payload / gso_size)). The unit for CPU cost
   * per packet that does not depend on the offload mode.
   */
  wirePacketsIn: number;
  packetsOut: number;
  bytesOut: number;
  dropped: number;
  /**
   * Offloaded packets (GSO or partial checksum) that the datapath moved or
   * resized, which passthrough cannot hand back with their virtio_net_hdr;
   * also counted in `dropped`. Use offloadMode "split" for such datapaths.
   */
  offloadUnwritable: number;
  /**
   * Packets the device refused (EIO while down, EINVAL for one packet) or pushed back (EAGAIN);
   * with I/O threads (ring-tun.ts) also those their outbound ring had no room for or write(2) refused.
   */
  writeErrors: number;
  /** With I/O threads: packets read from the device that found the inbound ring full (the decider fell behind). */
  ringDrops?: number;
  /**
   * Passthrough on a device with TSO/USO: super-packets written that carry
   * more than one plain packet of a flow (passthrough-coalescer.ts), and the
   * packets they carry. Absent when the write side cannot coalesce.
   */
  coalescedWrites?: number;
  coalescedPackets?: number;
  gcRuns: number;
  /** Times the run loop found nothing to read and slept in the device's wait (poll): one wake-up each. */
  waits?: number;
  /** How long the last conntrack GC run took, seconds (absent before the first). */
  lastGcSeconds?: number;
  /** Time per pipeline stage, with ForwarderOptions.stageTiming only (stage-timer.ts). */
  stages?: StageTimes;
  /**
   * With adaptive TUN I/O (`--tun-io auto`): per thread that moves packets, the mode it uses and what it measured
   * (io-mode-tuner.ts). Filled in by the worker's reports (TunDevice.ioTuning), not by the forwarder itself.
   */
  tunIo?: TunIoTuning[];
}

/**
 * What the forwarder does with a vnetHdr device's offloads:
 * - "passthrough" (default): a TSO/USO super-packet is decided as ONE packet
 *   (the datapath reads headers only; conntrack counts it once, as a tc BPF
 *   program sees a GSO skb once), a partial checksum stays partial
 *   (PKT_F_CSUM_PARTIAL: rewrites keep the pseudo-header sum valid), and it
 *   goes back to the kernel with its virtio_net_hdr untouched, so the
 *   kernel segments it, or passes it on as GSO, and finishes the checksum.
 *   Packets are read straight into Wasm memory: no copy, no checksum in JS.
 * - "split": super-packets are split into segments in JS with full
 *   checksums, decided one by one, and coalesced again on the way out; for
 *   datapaths that change a packet's length (passthrough drops those,
 *   counting offloadUnwritable).
 */
export type OffloadMode = "passthrough" | "split";

export interface ForwarderOptions {
  /** Packets per batch (default 128). */
  batchSize?: number;
  /** The datapath clock, seconds (default: the monotonic clock). */
  clock?: () => number;
  /** Only with a vnetHdr device; default "passthrough". */
  offloadMode?: OffloadMode;
  /**
   * Runs before each batch is read: the one place where the tables may change
   * under a running forwarder (CommandInbox.drain), so no batch is ever
   * decided half under one state and half under another.
   */
  betweenBatches?: () => void;
  /** Time each stage of the per-batch pipeline into stats.stages (stage-timer.ts); off by default. */
  stageTiming?: boolean;
}

const IP_AUTO: PacketMeta = { link: "ip", direction: "auto" };
const HDR_FLAGS = 0;
const HDR_GSO_TYPE = 1;

export class Forwarder {
  readonly stats: ForwarderStats = {
    batches: 0, reads: 0, writes: 0, packetsIn: 0, bytesIn: 0, wirePacketsIn: 0, packetsOut: 0, bytesOut: 0,
    dropped: 0, offloadUnwritable: 0, writeErrors: 0, gcRuns: 0, waits: 0,
  };
  readonly offloadMode: OffloadMode;
  private readonly batch: PacketBatch;
  private views: Uint8Array[];
  private readonly sizes: number[];
  private readonly out: Uint8Array[];
  private readonly outSizes: number[];
  /** Outcomes of the batch just decided; reused, so the loop allocates nothing per packet. */
  private readonly pass: Uint8Array;
  private readonly offs: Uint32Array;
  private readonly lens: Uint32Array;
  /** Passthrough: whether packet i carries offload metadata (NEEDS_CSUM or a GSO type) that must travel with it. */
  private readonly offloaded: Uint8Array;
  private readonly clock: () => number;
  private readonly gc: GcSchedule;
  private nextGc: number;
  private readonly natGc: NatGcSignal;
  /** Split mode: super-packets land here first, then are split into the batch. */
  private readonly staging: Uint8Array[];
  private readonly stagingSizes: number[];
  private readonly udpCoalescing: boolean;
  /** Passthrough on a device with TSO or USO: merges plain partial packets of a flow on write. */
  private readonly writeCoalescer?: PassthroughCoalescer;
  private readonly betweenBatches?: () => void;
  private readonly timer?: StageTimer;
  /** A device whose writes complete later, on other threads (RingTun): its running totals of lost writes and reads. */
  private readonly deferred?: { deferredWriteErrors(): number; ringDrops(): number };
  private deferredSeen = 0;
  /** On a device with descriptor I/O, without offloads or in passthrough (stepDescriptors): the device's, and the batch as it sees it. */
  private readonly descIo?: DescriptorIo;
  private readonly descBatch?: DescriptorBatch;
  /** What a descriptor read or write reports (DescriptorIo: 8 entries for a virtio_net_hdr device's write); reused. */
  private readonly ioTotals = new Uint32Array(8);

  constructor(private readonly dp: Datapath, private readonly device: TunDevice, opts: ForwarderOptions = {}) {
    const size = opts.batchSize ?? 128;
    const mode = opts.offloadMode ?? "passthrough";
    if (mode !== "passthrough" && mode !== "split") throw new InvalidInputError(`offloadMode must be "passthrough" or "split", got ${String(mode)}`);
    this.offloadMode = mode;
    // Headroom for the virtio-net header in front of each packet, and room to prepend.
    // A buffer holds what one read may return: a whole super-packet with offloads, else
    // an MTU (64 KiB buffers for 1500-byte packets would spread a batch over 8 MiB and
    // cost cache and TLB misses on every packet).
    const headroom = 128;
    this.batch = dp.createBatch(size, { bufferSize: headroom + device.readCapacity, headroom });
    this.views = this.batch.bufferViews();
    this.sizes = new Array(size).fill(0);
    this.out = [];
    this.outSizes = [];
    this.pass = new Uint8Array(size);
    this.offs = new Uint32Array(size);
    this.lens = new Uint32Array(size);
    this.offloaded = new Uint8Array(size);
    this.clock = opts.clock ?? monotonicSeconds;
    this.gc = new GcSchedule({ mode: "adaptive", lru: dp.options.conntrack.whenFull === "evict-lru" });
    this.nextGc = this.clock() + this.gc.interval;
    this.natGc = new NatGcSignal(() => dp.nat.gcRequests());
    const stagingCount = device.vnetHdr && mode === "split" ? Math.max(1, size >> 3) : 0;
    this.staging = Array.from({ length: stagingCount }, () => new Uint8Array(VIRTIO_NET_HDR_LEN + device.readCapacity));
    this.stagingSizes = new Array(stagingCount).fill(0);
    this.betweenBatches = opts.betweenBatches;
    if (opts.stageTiming) {
      this.timer = new StageTimer();
      this.stats.stages = this.timer.times;
      this.timer.start();
    }
    if ("deferredWriteErrors" in device && "ringDrops" in device) {
      this.deferred = device as unknown as { deferredWriteErrors(): number; ringDrops(): number };
      this.stats.ringDrops = 0;
    }
    const offloads = "offloads" in device ? (device as { offloads?: { tso?: boolean; uso?: boolean } }).offloads : undefined;
    this.udpCoalescing = !!offloads?.uso;
    if (device.vnetHdr && mode === "passthrough" && (offloads?.tso || offloads?.uso)) {
      this.writeCoalescer = new PassthroughCoalescer({ tcp: !!offloads.tso, udp: !!offloads.uso });
      this.stats.coalescedWrites = 0;
      this.stats.coalescedPackets = 0;
    }
    // MEMBRANE_FORWARDER_DESCRIPTORS=0: the read()/write() path on such devices too (bench:forwarder-stages compares the two).
    // Split mode takes super-packets apart in JavaScript, so it keeps that path.
    if ((!device.vnetHdr || mode === "passthrough") && process.env.MEMBRANE_FORWARDER_DESCRIPTORS !== "0") {
      this.descIo = device.descriptorIo?.();
      if (this.descIo) {
        this.descBatch = this.batch.descriptorBatch(IP_AUTO);
        if (device.vnetHdr) {
          this.descBatch.readInfo = new Uint32Array(size);
          this.descBatch.gso = (offloads?.tso ? 1 : 0) | (offloads?.uso ? 2 : 0);
        }
      }
    }
  }

  private get passthrough(): boolean {
    return this.device.vnetHdr && this.offloadMode === "passthrough";
  }

  /** One batch: read what is ready, decide, write. Returns the packets read. */
  step(): number {
    this.betweenBatches?.();
    // Since the last batch: the run loop's callback, waiting, commands (stage-timer.ts).
    this.timer?.mark("housekeeping");
    // Growing Wasm memory (a table dump, a new batch) detaches every view: take them again.
    if (this.views[0].byteLength === 0) this.views = this.batch.bufferViews();
    if (this.descIo) return this.stepDescriptors();
    if (!this.device.vnetHdr) return this.stepPlain();
    return this.offloadMode === "passthrough" ? this.stepPassthrough() : this.stepSplit();
  }

  /** Without offloads the device reads straight into the batch's buffers in Wasm memory. */
  private stepPlain(): number {
    const n = this.device.read(this.views, this.sizes, this.batch.raw.headroom);
    if (n === 0) return 0;
    this.timer?.mark("read");
    this.stats.reads += n;
    this.stats.wirePacketsIn += n;
    this.batch.fill(this.sizes, n, IP_AUTO);
    this.timer?.mark("admit");
    this.decideAndWrite(n);
    return n;
  }

  /**
   * On a device with descriptor I/O (a LinuxTun with native TUN I/O, or
   * several queues of one), without offloads or in offload passthrough: the
   * device reads straight into the batch's buffers and fills in their records
   * (with offloads also their partial-checksum flag, and the wire packets),
   * and writes the passing packets straight from the records the datapath
   * left (with offloads merging runs of a flow into super-packets in C:
   * native/tun_gso_write.c): one native call each way and one Wasm call,
   * nothing per packet in JavaScript. The same stats, drops and write-error
   * handling as stepPlain/stepPassthrough + decideAndWrite.
   */
  private stepDescriptors(): number {
    const b = this.descBatch!;
    const totals = this.ioTotals;
    b.count = this.batch.capacity;
    const n = this.descIo!.readDescs(b, totals);
    if (n === 0) return 0;
    this.timer?.mark("read");
    this.stats.reads += n;
    this.stats.wirePacketsIn += this.device.vnetHdr ? totals[1] : n;
    this.stats.bytesIn += totals[0];
    this.batch.declare(n);
    this.timer?.mark("admit");
    const now = this.clock();
    this.dp.process(this.batch, now);
    this.timer?.mark("decide");
    this.stats.batches++;
    this.stats.packetsIn += n;
    if (this.timer) {
      this.timer.times.batches++;
      this.timer.mark("collect");
    }
    this.writeDescriptors(n);
    if (this.deferred) this.countDeferred();
    this.timer?.mark("write");
    if (now >= this.nextGc || this.natGc.due(now)) this.collect(now);
    this.timer?.mark("housekeeping");
    return n;
  }

  /**
   * Writes the passing packets of records 0..n-1 (stepDescriptors), counting
   * as decideAndWrite + writeOut do: what passed in packetsOut/bytesOut, the
   * rest in dropped; a packet the kernel refuses (EINVAL) is skipped and the
   * rest written; pushed back (EAGAIN) or a device that is down (EIO) loses
   * the rest of the batch, counted in writeErrors.
   */
  private writeDescriptors(n: number): void {
    if (this.device.vnetHdr) return this.writeGsoDescriptors(n);
    const b = this.descBatch!;
    const t = this.ioTotals;
    b.count = n;
    for (let from = 0; ;) {
      let failed: TunIoError | undefined;
      try {
        this.descIo!.writeDescs(b, from, t);
      } catch (err) {
        if (!(err instanceof TunIoError)) throw err;
        failed = err;
      }
      // The first call's totals cover the whole batch (later ones only what follows a refused packet).
      if (from === 0) {
        this.stats.packetsOut += t[0];
        this.stats.bytesOut += t[1];
        this.stats.dropped += n - t[0];
      }
      this.stats.writes += t[2];
      // Pushed back (EAGAIN, no throw) or a device that is down (EIO): what it did not take is lost, as on a full NIC queue.
      if (!failed || failed.errnoName === "EIO") {
        this.stats.writeErrors += t[0] - t[2];
        return;
      }
      // The kernel refused one packet (EINVAL): skip it, write the rest.
      if (failed.errnoName !== "EINVAL") throw failed;
      this.stats.writeErrors++;
      from = failed.done + 1;
      if (from >= n) return;
    }
  }

  /**
   * writeDescriptors on a virtio_net_hdr device (offload passthrough): one
   * call, the C side merging runs of a flow into super-packets and skipping a
   * write the kernel refuses (EINVAL). Counted as decideAndWrite + writeOut
   * count the same path in JavaScript: a moved packet whose header cannot
   * follow it is dropped (offloadUnwritable); writes are the writes made
   * (a super-packet is one); what a push-back (EAGAIN), a device that is down
   * (EIO) or a refusal lost is in writeErrors, counted in packets.
   */
  private writeGsoDescriptors(n: number): void {
    const b = this.descBatch!;
    const t = this.ioTotals;
    b.count = n;
    try {
      this.descIo!.writeDescs(b, 0, t);
    } catch (err) {
      // A device that is down (just created, being moved to another namespace) loses this batch, as a NIC would.
      if (!(err instanceof TunIoError) || err.errnoName !== "EIO") throw err;
    }
    const [passing, bytes, written, writes, coalescedWrites, coalescedPackets, unwritable] = t;
    this.stats.packetsOut += passing - unwritable;
    this.stats.bytesOut += bytes;
    this.stats.dropped += n - passing + unwritable;
    this.stats.offloadUnwritable += unwritable;
    this.stats.writes += writes;
    this.stats.coalescedWrites = (this.stats.coalescedWrites ?? 0) + coalescedWrites;
    this.stats.coalescedPackets = (this.stats.coalescedPackets ?? 0) + coalescedPackets;
    this.stats.writeErrors += passing - unwritable - written;
  }

  /**
   * Offload passthrough (see OffloadMode): read straight into the batch, with
   * each packet's virtio_net_hdr landing in its headroom, where it stays for
   * the write.
   */
  private stepPassthrough(): number {
    const headroom = this.batch.raw.headroom;
    const n = this.device.read(this.views, this.sizes, headroom);
    if (n === 0) return 0;
    this.timer?.mark("read");
    this.stats.reads += n;
    this.batch.fill(this.sizes, n, IP_AUTO);
    const at = headroom - VIRTIO_NET_HDR_LEN;
    let wire = 0;
    for (let i = 0; i < n; i++) {
      const buf = this.views[i];
      const needsCsum = buf[at + HDR_FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM;
      const gsoType = buf[at + HDR_GSO_TYPE];
      this.offloaded[i] = needsCsum | gsoType;
      if (needsCsum) this.batch.markChecksumPartial(i);
      if (gsoType === VIRTIO_NET_HDR_GSO_NONE) {
        wire++;
        continue;
      }
      wire += segmentsOf(buf, at, headroom, this.sizes[i]);
    }
    this.stats.wirePacketsIn += wire;
    this.timer?.mark("admit");
    this.decideAndWrite(n);
    return n;
  }

  /**
   * Offload split mode: a read may be a super-packet (TSO/USO) or carry a
   * partial checksum: split or complete it into the batch, decide the batch,
   * and coalesce what passes into super-packets again on the way out.
   */
  private stepSplit(): number {
    const n = this.device.read(this.staging, this.stagingSizes, VIRTIO_NET_HDR_LEN);
    if (n === 0) return 0;
    this.timer?.mark("read");
    this.stats.reads += n;
    const headroom = this.batch.raw.headroom;
    let filled = 0;
    const flush = () => {
      this.stats.wirePacketsIn += filled;
      this.batch.fill(this.sizes, filled, IP_AUTO);
      this.timer?.mark("admit");
      this.decideAndWrite(filled);
      filled = 0;
    };
    for (let i = 0; i < n; i++) {
      const hdr = readVirtioNetHdr(this.staging[i], 0);
      const pkt = this.staging[i].subarray(VIRTIO_NET_HDR_LEN, VIRTIO_NET_HDR_LEN + this.stagingSizes[i]);
      try {
        if (hdr.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
          const segments = Math.ceil(pkt.length / Math.max(1, hdr.gsoSize));
          if (filled + segments > this.views.length && filled > 0) flush();
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
      if (filled === this.views.length) flush();
      this.views[filled].set(pkt, headroom);
      this.sizes[filled++] = pkt.length;
    }
    if (filled) flush();
    return n;
  }

  /** Decides packets 0..n-1 of the batch (declared by fill()) and writes the ones that pass. */
  private decideAndWrite(n: number): void {
    const headroom = this.batch.raw.headroom;
    const now = this.clock();
    this.dp.process(this.batch, now);
    this.timer?.mark("decide");
    this.batch.outcomesInto(n, this.pass, this.offs, this.lens);
    const passthrough = this.passthrough;
    this.out.length = 0;
    this.outSizes.length = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    for (let i = 0; i < n; i++) {
      bytesIn += this.sizes[i];
      if (!this.pass[i]) {
        this.stats.dropped++;
        continue;
      }
      const off = this.offs[i];
      const len = this.lens[i];
      if (passthrough && (off !== headroom || len !== this.sizes[i]) && !this.rehome(i, off)) {
        this.stats.dropped++;
        this.stats.offloadUnwritable++;
        continue;
      }
      this.out.push(off === headroom ? this.views[i] : this.shifted(i, off, len));
      this.outSizes.push(len);
      bytesOut += len;
    }
    this.stats.bytesIn += bytesIn;
    this.stats.bytesOut += bytesOut;
    this.stats.batches++;
    this.stats.packetsIn += n;
    this.stats.packetsOut += this.out.length;
    if (this.timer) {
      this.timer.times.batches++;
      this.timer.mark("collect");
    }
    if (this.out.length) this.writeOut(headroom);
    if (this.deferred) this.countDeferred();
    this.timer?.mark("write");
    if (now >= this.nextGc || this.natGc.due(now)) this.collect(now);
    this.timer?.mark("housekeeping");
  }

  /**
   * Rewrites moved packet i's start to `off`: a view of Wasm memory that puts
   * it at `headroom`, as the device's batch contract wants. When the datapath
   * prepended (off < headroom) the view begins before the buffer; only bytes
   * from off - VIRTIO_NET_HDR_LEN on, inside the buffer, are ever read.
   */
  private shifted(i: number, off: number, len: number): Uint8Array {
    const v = this.views[i];
    const headroom = this.batch.raw.headroom;
    return new Uint8Array(v.buffer, v.byteOffset + off - headroom, headroom + len);
  }

  /**
   * Passthrough, packet i moved to `off` or resized by the datapath: its
   * virtio_net_hdr must now sit in front of `off`. One that asks for nothing
   * (a complete packet) is rewritten as zeros there; one carrying a GSO type
   * or a partial checksum describes the packet as it was read (csum_start,
   * hdr_len), so it cannot go out as it is: false.
   */
  private rehome(i: number, off: number): boolean {
    if (this.offloaded[i] || off < VIRTIO_NET_HDR_LEN) return false;
    this.views[i].fill(0, off - VIRTIO_NET_HDR_LEN, off);
    return true;
  }

  private writeOut(headroom: number): void {
    let bufs = this.out, sizes = this.outSizes, offset = headroom;
    if (this.device.vnetHdr && !this.passthrough) {
      const merged = coalesce(this.out, this.outSizes, headroom, { tcp: true, udp: this.udpCoalescing });
      bufs = merged.map((m) => m.bytes);
      sizes = merged.map((m) => m.size);
      offset = VIRTIO_NET_HDR_LEN;
    } else if (this.writeCoalescer && this.passthrough && this.out.length > 1) {
      this.writeCoalescer.plan(this.out, this.outSizes, headroom, this.stats as CoalescingCounts);
      bufs = this.writeCoalescer.bufs;
      sizes = this.writeCoalescer.sizes;
    }
    let from = 0;
    while (from < bufs.length) {
      const restBufs = from === 0 ? bufs : bufs.slice(from);
      const restSizes = from === 0 ? sizes : sizes.slice(from);
      try {
        const done = this.device.write(restBufs, restSizes, offset);
        this.stats.writes += done;
        // The device pushed back (EAGAIN): what it did not take is lost, as on a full NIC queue.
        this.stats.writeErrors += restBufs.length - done;
        return;
      } catch (err) {
        if (!(err instanceof TunIoError)) throw err;
        this.stats.writes += err.done;
        if (err.errnoName === "EIO") {
          // A device that is down (just created, being moved to another namespace) loses
          // this batch, as a NIC would.
          this.stats.writeErrors += restBufs.length - err.done;
          return;
        }
        // The kernel refused one packet (EINVAL: a virtio_net_hdr it will not take): skip it, write the rest.
        if (err.errnoName !== "EINVAL") throw err;
        this.stats.writeErrors++;
        from += err.done + 1;
      }
    }
  }

  /** Folds the device's lost writes (since the last look) into writeErrors, and its ring drops into ringDrops. */
  private countDeferred(): void {
    const lost = this.deferred!.deferredWriteErrors();
    this.stats.writeErrors += lost - this.deferredSeen;
    this.deferredSeen = lost;
    this.stats.ringDrops = this.deferred!.ringDrops();
  }

  private collect(now: number): void {
    const startedAt = performance.now();
    const results = this.dp.gc(now);
    this.stats.lastGcSeconds = (performance.now() - startedAt) / 1000;
    const scanned = results.reduce((s, r) => s + r.scanned, 0);
    const ratio = Math.max(...results.map((r) => (r.scanned ? r.deleted / r.scanned : 0)));
    this.nextGc = now + this.gc.next(scanned ? ratio : NaN);
    this.stats.gcRuns++;
  }

  /** Forwards until `shouldStop()` says so, waiting at most `pollMs` for packets between checks. */
  run(shouldStop: () => boolean, pollMs = 100): void {
    while (!shouldStop()) {
      if (this.step() === 0) {
        if (this.deferred) this.countDeferred();
        if (this.clock() >= this.nextGc) this.collect(this.clock());
        this.stats.waits!++;
        this.device.wait(pollMs);
      }
    }
  }
}
