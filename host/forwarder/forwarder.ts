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

export interface ForwarderStats {
  batches: number;
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  dropped: number;
  gcRuns: number;
}

export interface ForwarderOptions {
  /** Packets per batch (default 128). */
  batchSize?: number;
  /** The datapath clock, seconds (default: the monotonic clock). */
  clock?: () => number;
}

export class Forwarder {
  readonly stats: ForwarderStats = { batches: 0, packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, dropped: 0, gcRuns: 0 };
  private readonly batch: PacketBatch;
  private views: Uint8Array[];
  private readonly sizes: number[];
  private readonly out: Uint8Array[];
  private readonly outSizes: number[];
  private readonly clock: () => number;
  private readonly gc: GcSchedule;
  private nextGc: number;

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
  }

  /** One batch: read what is ready, decide, write. Returns the packets read. */
  step(): number {
    const headroom = this.batch.raw.headroom;
    // Growing Wasm memory (a table dump, a new batch) detaches every view: take them again.
    if (this.views[0].byteLength === 0) this.views = this.batch.bufferViews();
    const n = this.device.read(this.views, this.sizes, headroom);
    if (n === 0) return 0;
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
    if (this.out.length) this.device.write(this.out, this.outSizes, headroom);
    this.stats.batches++;
    this.stats.packetsIn += n;
    this.stats.packetsOut += this.out.length;
    if (now >= this.nextGc) this.collect(now);
    return n;
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
