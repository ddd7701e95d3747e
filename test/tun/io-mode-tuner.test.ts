// The adaptive TUN I/O mode's tuner (host/tun/io-mode-tuner.ts), driven with
// clocks the test controls: each observed batch costs the thread
// cost[mode] ns per packet of CPU and 1 ms of wall time, so which mode is
// cheaper is known and the tuner must find it from its CPU readings alone.
import { describe, expect, it } from "vitest";
import { IoModeTuner, publishTuning, readTuning, TUNING_FIELDS, type IoModeTunerOptions, type NativeIoMode } from "../../host/tun/io-mode-tuner.js";

class Machine {
  cpu = 0;
  wall = 0;
  readonly modes: NativeIoMode[] = [];
  readonly tuner: IoModeTuner;
  constructor(public cost: Record<NativeIoMode, number>, opts: IoModeTunerOptions = {}) {
    this.tuner = new IoModeTuner(() => this.cpu, () => this.wall, { windowPackets: 1000, windowMaxMs: 50, settleMs: 1000, minPackets: 500, ...opts });
  }

  /** `batches` reads of `packets` each, in whatever mode the tuner says; returns the modes used. */
  run(batches: number, packets = 100): NativeIoMode[] {
    const used: NativeIoMode[] = [];
    for (let i = 0; i < batches; i++) used.push(this.#batch(packets));
    return used;
  }

  /** Batches of 100 packets until the tuner has made `decisions` decisions (at most 10,000); the modes used. */
  untilDecisions(decisions: number): NativeIoMode[] {
    const used: NativeIoMode[] = [];
    while (this.tuner.tuning.decisions < decisions && used.length < 10_000) used.push(this.#batch(100));
    return used;
  }

  #batch(packets: number): NativeIoMode {
    const mode = this.tuner.mode;
    this.cpu += this.cost[mode] * packets;
    this.wall += 1;
    this.tuner.observe(packets);
    return mode;
  }
}

/** Runs of equal modes: ["uring", "uring", "batch"] -> ["uring", "batch"]. */
const runs = (modes: NativeIoMode[]) => modes.filter((m, i) => i === 0 || modes[i - 1] !== m);

describe("IoModeTuner", () => {
  it("measures both modes in the order current, other, other, current and switches to the cheaper", () => {
    const m = new Machine({ uring: 4200, batch: 3800 });
    // The first batch starts the exploration; then 1000-packet windows of 100-packet batches: 4 windows = 40 batches.
    const used = m.untilDecisions(1);
    expect(used).toHaveLength(41);
    expect(runs(used)).toEqual(["uring", "batch", "uring"]);
    expect(used.filter((x) => x === "batch")).toHaveLength(20);
    expect(m.tuner.mode).toBe("batch");
    expect(m.tuner.tuning.decisions).toBe(1);
    expect(m.tuner.tuning.switches).toBe(1);
    expect(m.tuner.tuning.nsPerPacket.uring).toBeCloseTo(4200, 6);
    expect(m.tuner.tuning.nsPerPacket.batch).toBeCloseTo(3800, 6);
    // Settled: batch until the settle time is over.
    expect(new Set(m.run(900))).toEqual(new Set(["batch"]));
  });

  it("keeps the current mode when the other is cheaper by less than the margin", () => {
    const m = new Machine({ uring: 1000, batch: 980 });
    m.untilDecisions(1);
    expect(m.tuner.mode).toBe("uring");
    expect(m.tuner.tuning.decisions).toBe(1);
    expect(m.tuner.tuning.switches).toBe(0);
  });

  it("explores again after settling and follows a change in which mode is cheaper", () => {
    const m = new Machine({ uring: 4200, batch: 3800 });
    m.untilDecisions(1);
    expect(m.tuner.mode).toBe("batch");
    // The traffic changes: now io_uring is cheaper (large packets, few per call).
    m.cost = { uring: 450, batch: 650 };
    const used = m.untilDecisions(2);
    // Settled in batch for settleMs (1 ms a batch), then batch, uring, uring, batch windows.
    expect(used.length).toBeGreaterThanOrEqual(1000);
    expect(runs(used)).toEqual(["batch", "uring", "batch"]);
    expect(used.slice(-40).filter((x) => x === "uring")).toHaveLength(20);
    expect(m.tuner.mode).toBe("uring");
    expect(m.tuner.tuning.decisions).toBe(2);
    expect(m.tuner.tuning.switches).toBe(2);
  });

  it("decides nothing on light traffic: windows close on wall time with too few packets", () => {
    const m = new Machine({ uring: 4200, batch: 3800 });
    // 2 packets a batch, 1 ms a batch: each 50 ms window sees 100 packets, under minPackets per mode.
    m.run(400, 2);
    expect(m.tuner.tuning.decisions).toBe(0);
    expect(m.tuner.mode).toBe("uring");
  });

  it("does not start exploring while nothing is read", () => {
    const m = new Machine({ uring: 4200, batch: 3800 });
    const used = m.run(500, 0);
    expect(new Set(used)).toEqual(new Set(["uring"]));
    expect(m.tuner.tuning.decisions).toBe(0);
  });

  it("an ABBA exploration charges a steady drift in cost to both modes alike", () => {
    // Both modes cost the same, but the cost rises by 1 ns per packet every batch: A-B-B-A sums equal costs.
    const m = new Machine({ uring: 1000, batch: 1000 }, { margin: 0.001 });
    for (let i = 0; i < 41; i++) {
      m.run(1);
      m.cost = { uring: m.cost.uring + 1, batch: m.cost.batch + 1 };
    }
    expect(m.tuner.tuning.decisions).toBe(1);
    expect(m.tuner.mode).toBe("uring");
    expect(m.tuner.tuning.nsPerPacket.uring).toBeCloseTo(m.tuner.tuning.nsPerPacket.batch!, 6);
  });

  it("what a thread's tuner found crosses to another thread and back unchanged (publishTuning/readTuning)", () => {
    const shared = new Float64Array(new SharedArrayBuffer(TUNING_FIELDS * 8));
    expect(readTuning(shared)).toBeUndefined();
    const m = new Machine({ uring: 4200, batch: 3800 });
    publishTuning(m.tuner.tuning, shared);
    expect(readTuning(shared)).toEqual({ mode: "uring", decisions: 0, switches: 0, nsPerPacket: {} });
    m.untilDecisions(1);
    publishTuning(m.tuner.tuning, shared);
    expect(readTuning(shared)).toEqual(m.tuner.tuning);
  });
});
