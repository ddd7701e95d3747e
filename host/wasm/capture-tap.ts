/**
 * The Wasm side of `membrane capture`: copies packets out of a batch's
 * buffers before the datapath decides them (as the device delivered them) and
 * after (as the datapath left them, with the verdict and drop reason), for
 * the packets the filter takes, at most the rate cap's budget per batch.
 * Datapath.process calls before() and after(); with capture off each is one
 * comparison.
 */
import { dropReasonName, LinkType, PKT_DESC } from "../generated/layout.js";
import { captureMatch, type PacketMatch } from "../capture/match.js";
import type { CapturedPacket, CaptureSettings } from "../capture/settings.js";
import { RateCap } from "../monitor/rate-cap.js";
import type { RawBatch, WasmCore } from "./core.js";

const O = PKT_DESC.offsets;

export class WasmCaptureTap {
  private settings: CaptureSettings | undefined;
  private match: PacketMatch = () => true;
  private cap: RateCap | undefined;
  private pending: CapturedPacket[] = [];
  /** Packets the filter took that the rate cap refused, since the last listener call. */
  private missed = 0;
  /** Told after each batch that captured something: the packets, and how many the cap refused. */
  listener: ((packets: CapturedPacket[], missed: number) => void) | undefined;

  constructor(private readonly core: WasmCore) {}

  configure(settings: CaptureSettings | undefined): void {
    this.settings = settings;
    this.match = settings ? captureMatch(settings) : () => true;
    this.cap = settings ? new RateCap(settings.ratePerSecond, performance.now()) : undefined;
    this.pending = [];
    this.missed = 0;
  }

  before(batch: RawBatch, count: number): void {
    if (this.settings?.stages.includes("before")) this.copy(batch, count, "before");
  }

  after(batch: RawBatch, count: number): void {
    if (!this.settings) return;
    if (this.settings.stages.includes("after")) this.copy(batch, count, "after");
    if (this.pending.length || this.missed) {
      const packets = this.pending;
      const missed = this.missed;
      this.pending = [];
      this.missed = 0;
      this.listener?.(packets, missed);
    }
  }

  private copy(batch: RawBatch, count: number, stage: "before" | "after"): void {
    const s = this.settings!;
    const mem = this.core.bytes();
    const v = new DataView(mem.buffer, batch.desc, count * PKT_DESC.size);
    let budget = this.cap!.budget(0, performance.now());
    let taken = 0;
    const timeNs = String(BigInt(Date.now()) * 1_000_000n);
    for (let i = 0, at = 0; i < count; i++, at += PKT_DESC.size) {
      const buf = v.getUint32(at + O.buf, true);
      const size = v.getUint32(at + O.bufSize, true);
      const off = v.getUint32(at + O.off, true);
      const len = v.getUint32(at + O.len, true);
      if (off + len > size || buf + size > mem.length) continue;
      const link = v.getUint8(at + O.link) === LinkType.LINK_ETHERNET ? "ethernet" : "ip";
      const data = mem.subarray(buf + off, buf + off + len);
      if (!this.match(data, link)) continue;
      if (budget <= 0) {
        this.missed++;
        continue;
      }
      budget--;
      taken++;
      const packet: CapturedPacket = { stage, timeNs, link, data: data.slice(0, s.snaplen), length: len };
      if (stage === "after") {
        const dropped = v.getUint8(at + O.verdict) !== 0;
        packet.verdict = dropped ? "drop" : "pass";
        if (dropped) packet.reason = dropReasonName[v.getUint8(at + O.dropReason)] ?? String(v.getUint8(at + O.dropReason));
      }
      this.pending.push(packet);
    }
    this.cap!.budget(taken, performance.now());
  }
}
