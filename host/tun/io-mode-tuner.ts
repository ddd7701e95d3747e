/**
 * Which native TUN I/O mode costs this thread less CPU per packet, found by
 * measuring both under the traffic it is moving (`--tun-io auto`).
 *
 * Neither mode wins everywhere. On one machine on one day (docs/forwarder.md,
 * "Which native mode"), 64-byte UDP cost less with read(2)/write(2) looped in
 * C ("batch": 1.00-1.05x the C loop against 0.88-0.90x with io_uring, four
 * runs), while TCP with offloads cost less with io_uring (0.89x kernel
 * forwarding against 0.75x); on other days io_uring was ahead for UDP too,
 * when syscalls cost more. The difference is the kernel's per-call cost
 * against io_uring's per-entry cost, which the traffic and the machine
 * decide, so the forwarder measures instead of guessing.
 *
 * How: the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: not wall time, so a
 * preempted window is not charged the other tenants' time) is read at window
 * boundaries only, a window being WINDOW_PACKETS packets read or
 * WINDOW_MAX_MS of wall time. An exploration runs four windows in the order
 * current, other, other, current (ABBA, so a steady drift in the traffic
 * charges both modes alike), sums CPU and packets per mode and keeps the
 * cheaper one, switching only when it is cheaper by more than MARGIN. Then it
 * settles for SETTLE_MS and explores again, so a change in the traffic is
 * followed. An exploration that saw too few packets for either mode (an idle
 * or lightly loaded device, where the choice does not matter) decides nothing.
 * The cost: during an exploration half the windows run in the mode that was
 * not chosen, about 0.3 s in every 10 s under load.
 *
 * One tuner per thread (threadIoTuner): the thread's CPU is what is measured,
 * so every queue a thread moves packets for shares its tuner. Switching is
 * free: both modes move the same bytes through the same fd, and the switch
 * happens between calls.
 */
import { threadCpuClock } from "../sys/thread-cpu-clock.js";

export type NativeIoMode = "uring" | "batch";

/** What a tuner has found, for stats (ForwarderStats.tunIo). */
export interface TunIoTuning {
  /** The mode in use now (during an exploration, the one being measured). */
  mode: NativeIoMode;
  /** Explorations that measured both modes under enough traffic to decide. */
  decisions: number;
  /** Times a decision changed the mode. */
  switches: number;
  /** The last decision's CPU ns per packet read, per mode (absent before the first). */
  nsPerPacket: { uring?: number; batch?: number };
}

export interface IoModeTunerOptions {
  /** The mode to start with (default "uring", what `auto` meant before it measured; the first exploration corrects it). */
  initial?: NativeIoMode;
  windowPackets?: number;
  windowMaxMs?: number;
  settleMs?: number;
  /** Least packets each mode must have seen in an exploration for it to decide. */
  minPackets?: number;
  /** The other mode must be cheaper by more than this fraction to be switched to. */
  margin?: number;
}

const WINDOW_PACKETS = 16384;
const WINDOW_MAX_MS = 500;
const SETTLE_MS = 10_000;
const MIN_PACKETS = 4096;
const MARGIN = 0.03;

const other = (m: NativeIoMode): NativeIoMode => (m === "uring" ? "batch" : "uring");

export class IoModeTuner {
  readonly tuning: TunIoTuning;
  readonly #cpuNs: () => number;
  readonly #nowMs: () => number;
  readonly #windowTarget: number;
  readonly #windowMaxMs: number;
  readonly #settleMs: number;
  readonly #minPackets: number;
  readonly #margin: number;
  /** The mode an exploration started from (kept unless the other is cheaper). */
  #incumbent: NativeIoMode;
  /** Windows of the exploration under way, in order; empty while settled. */
  #schedule: NativeIoMode[] = [];
  #settledUntil: number;
  #windowStartCpu = 0;
  #windowStartMs = 0;
  #windowCount = 0;
  readonly #sums = { uring: { cpu: 0, packets: 0 }, batch: { cpu: 0, packets: 0 } };

  /** `cpuNs`: this thread's CPU time, ns; `nowMs`: a monotonic wall clock, ms. */
  constructor(cpuNs: () => number, nowMs: () => number, opts: IoModeTunerOptions = {}) {
    this.#cpuNs = cpuNs;
    this.#nowMs = nowMs;
    this.#windowTarget = opts.windowPackets ?? WINDOW_PACKETS;
    this.#windowMaxMs = opts.windowMaxMs ?? WINDOW_MAX_MS;
    this.#settleMs = opts.settleMs ?? SETTLE_MS;
    this.#minPackets = opts.minPackets ?? MIN_PACKETS;
    this.#margin = opts.margin ?? MARGIN;
    this.#incumbent = opts.initial ?? "uring";
    this.tuning = { mode: this.#incumbent, decisions: 0, switches: 0, nsPerPacket: {} };
    // The first exploration starts with the first traffic.
    this.#settledUntil = -Infinity;
  }

  get mode(): NativeIoMode {
    return this.tuning.mode;
  }

  /** Called after every read with the packets it returned (0 too): may change `mode` for the next calls. */
  observe(packets: number): void {
    if (this.#schedule.length === 0) {
      if (packets === 0 || this.#nowMs() < this.#settledUntil) return;
      // The first window starts now: this read's CPU was spent before the clock reading, so its packets are not counted.
      this.#explore();
      return;
    }
    this.#windowCount += packets;
    if (this.#windowCount < this.#windowTarget && this.#nowMs() - this.#windowStartMs < this.#windowMaxMs) return;
    const cpu = this.#cpuNs();
    const sum = this.#sums[this.tuning.mode];
    sum.cpu += cpu - this.#windowStartCpu;
    sum.packets += this.#windowCount;
    this.#schedule.shift();
    if (this.#schedule.length > 0) {
      this.#startWindow(this.#schedule[0]!, cpu);
      return;
    }
    this.#decide();
  }

  #explore(): void {
    const a = this.#incumbent;
    const b = other(a);
    this.#schedule = [a, b, b, a];
    for (const s of Object.values(this.#sums)) {
      s.cpu = 0;
      s.packets = 0;
    }
    this.#startWindow(a, this.#cpuNs());
  }

  #startWindow(mode: NativeIoMode, cpu: number): void {
    this.tuning.mode = mode;
    this.#windowStartCpu = cpu;
    this.#windowStartMs = this.#nowMs();
    this.#windowCount = 0;
  }

  #decide(): void {
    const a = this.#incumbent;
    const b = other(a);
    const sa = this.#sums[a];
    const sb = this.#sums[b];
    let next = a;
    if (sa.packets >= this.#minPackets && sb.packets >= this.#minPackets) {
      const nsA = sa.cpu / sa.packets;
      const nsB = sb.cpu / sb.packets;
      this.tuning.nsPerPacket = { [a]: nsA, [b]: nsB };
      this.tuning.decisions++;
      if (nsB < nsA * (1 - this.#margin)) {
        next = b;
        this.tuning.switches++;
      }
    }
    this.#incumbent = next;
    this.tuning.mode = next;
    this.#settledUntil = this.#nowMs() + this.#settleMs;
  }
}

/** Float64s per thread for publishTuning: [mode (1 uring, 2 batch), decisions, switches, ns/pkt uring, ns/pkt batch]. */
export const TUNING_FIELDS = 5;

/** Copies a tuner's findings where the decider's thread reads them (ring-tun.ts: the I/O threads tune, the decider reports). */
export function publishTuning(t: TunIoTuning, into: Float64Array): void {
  into[0] = t.mode === "uring" ? 1 : 2;
  into[1] = t.decisions;
  into[2] = t.switches;
  into[3] = t.nsPerPacket.uring ?? NaN;
  into[4] = t.nsPerPacket.batch ?? NaN;
}

/** The other side of publishTuning; undefined before the thread's first read. */
export function readTuning(from: Float64Array): TunIoTuning | undefined {
  if (from[0] === 0) return undefined;
  const ns = (v: number) => (Number.isNaN(v) ? undefined : v);
  return { mode: from[0] === 1 ? "uring" : "batch", decisions: from[1]!, switches: from[2]!, nsPerPacket: { uring: ns(from[3]!), batch: ns(from[4]!) } };
}

let perThread: IoModeTuner | undefined;

/** This thread's tuner (module state is per thread: each worker has its own), made on first use. */
export function threadIoTuner(): IoModeTuner {
  perThread ??= new IoModeTuner(threadCpuClock(), () => performance.now());
  return perThread;
}
