/**
 * The Wasm side of `membrane monitor`: the event ring in linear memory
 * (assembly/monitor.ts), configured from MonitorSettings and drained once per
 * batch (Datapath.process calls afterBatch). The drain copies the events out,
 * empties the ring and hands the datapath its next budget from the rate cap.
 * With monitoring off afterBatch returns after one comparison.
 */
import { MembraneError } from "../errors.js";
import { MONITOR_CONFIG, MONITOR_EVENT } from "../generated/layout.js";
import { RateCap } from "../monitor/rate-cap.js";
import type { RawMonitorEvents } from "../monitor/raw-events.js";
import { modeOf, type MonitorSettings } from "../monitor/settings.js";
import type { WasmCore } from "./core.js";

/** Events one batch may leave in the ring: the largest batch (256) times two events per packet, rounded up. */
export const WASM_MONITOR_CAPACITY = 1024;

const O = MONITOR_CONFIG.offsets;

export class WasmMonitorRing {
  private readonly base: number;
  private cap: RateCap | undefined;
  private lostSeen = 0;
  /** Told about each non-empty drain. */
  listener: ((events: RawMonitorEvents) => void) | undefined;

  constructor(private readonly core: WasmCore, capacity = WASM_MONITOR_CAPACITY) {
    this.base = core.exports.monitor_create(capacity);
    if (this.base === 0) throw new MembraneError("OUT_OF_MEMORY", `create the monitor ring (${capacity} events): Wasm linear memory is full`);
  }

  private config(): DataView {
    const mem = this.core.bytes();
    return new DataView(mem.buffer, this.base, MONITOR_CONFIG.size);
  }

  /** Turns monitoring on with `settings`, or off (undefined). Events still in the ring are dropped. */
  configure(settings: MonitorSettings | undefined, nowMs = performance.now()): void {
    const v = this.config();
    v.setUint32(O.count, 0, true);
    if (!settings) {
      v.setUint32(O.mode, 0, true);
      this.cap = undefined;
      return;
    }
    this.cap = new RateCap(settings.ratePerSecond, nowMs);
    v.setUint32(O.sample, settings.sample, true);
    v.setUint32(O.budget, this.cap.budget(0, nowMs), true);
    v.setUint32(O.mode, modeOf(settings.types), true);
  }

  /** Drains the ring (after a batch): the events, or undefined when there is nothing to tell. */
  drain(nowMs = performance.now()): RawMonitorEvents | undefined {
    if (!this.cap) return undefined;
    const v = this.config();
    const count = v.getUint32(O.count, true);
    const lostTotal = v.getUint32(O.lost, true);
    const lost = (lostTotal - this.lostSeen) >>> 0;
    this.lostSeen = lostTotal;
    v.setUint32(O.count, 0, true);
    v.setUint32(O.budget, this.cap.budget(count, nowMs), true);
    if (count === 0 && lost === 0) return undefined;
    const bytes = this.core.view(this.base + MONITOR_CONFIG.size, count * MONITOR_EVENT.size).slice();
    return { engine: "wasm", bytes, count, lost };
  }

  /** Datapath.process's hook: drain and tell the listener. */
  afterBatch(): void {
    if (!this.cap) return;
    const events = this.drain();
    if (events) this.listener?.(events);
  }
}
