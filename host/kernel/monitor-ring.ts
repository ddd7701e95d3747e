/**
 * The kernel side of `membrane monitor`: the programs' BPF ring buffer
 * (bpf/lib/monitor.h) and their settings map. configure() writes the mode and
 * sampling; drain() reads what the kernel committed and applies the rate cap
 * here (the kernel has none of its own: what is over the cap is read and
 * counted as lost, so the ring never fills with stale events). Events the
 * kernel could not reserve (ring full) arrive as the map's `lost` counter.
 */
import type { BpfObject } from "../bpf/object.js";
import { openRingBuffer, type RingBufferReader } from "../bpf/ring-buffer.js";
import { decodeMonitorConfig, encodeMonitorConfig, MONITOR_CONFIG, MONITOR_EVENT } from "../generated/layout.js";
import { RateCap } from "../monitor/rate-cap.js";
import type { RawMonitorEvents } from "../monitor/raw-events.js";
import { modeOf, type MonitorSettings } from "../monitor/settings.js";

const ZERO = new Uint8Array(4);

export class KernelMonitorRing {
  private reader: RingBufferReader | undefined;
  private cap: RateCap | undefined;
  private pending: Uint8Array[] = [];
  private lostSeen = 0;

  constructor(private readonly object: BpfObject) {}

  /** Turns monitoring on with `settings`, or off (undefined): then the ring is closed and what it held is dropped. */
  configure(settings: MonitorSettings | undefined, nowMs = performance.now()): void {
    const map = this.object.map("monitor_config");
    const current = decodeMonitorConfig(map.lookup(ZERO) ?? new Uint8Array(MONITOR_CONFIG.size));
    const value = new Uint8Array(MONITOR_CONFIG.size);
    encodeMonitorConfig({ ...current, mode: settings ? modeOf(settings.types) : 0, sample: settings?.sample ?? 0 }, value);
    map.update(ZERO, value);
    this.lostSeen = current.lost;
    if (!settings) {
      this.reader?.close();
      this.reader = undefined;
      this.cap = undefined;
      return;
    }
    this.cap = new RateCap(settings.ratePerSecond, nowMs);
    this.reader ??= openRingBuffer(this.object.map("monitor_events").fd, "monitor_events", (r) => this.pending.push(r));
  }

  /** What the kernel committed since the last drain, capped; undefined when there is nothing to tell. */
  drain(nowMs = performance.now()): RawMonitorEvents | undefined {
    if (!this.reader || !this.cap) return undefined;
    this.reader.consume();
    const records = this.pending;
    this.pending = [];
    const lostTotal = decodeMonitorConfig(this.object.map("monitor_config").lookup(ZERO)!).lost;
    let lost = (lostTotal - this.lostSeen) >>> 0;
    this.lostSeen = lostTotal;
    const allowed = Math.min(records.length, this.cap.budget(0, nowMs));
    this.cap.budget(allowed, nowMs);
    lost += records.length - allowed;
    if (allowed === 0 && lost === 0) return undefined;
    const bytes = new Uint8Array(allowed * MONITOR_EVENT.size);
    for (let i = 0; i < allowed; i++) bytes.set(records[i]!.subarray(0, MONITOR_EVENT.size), i * MONITOR_EVENT.size);
    return { engine: "kernel", bytes, count: allowed, lost };
  }

  close(): void {
    this.reader?.close();
    this.reader = undefined;
  }
}
