/**
 * Where a forwarder's time goes, per stage of its per-batch pipeline
 * (read, admit, decide, collect, write, between batches): nanoseconds summed
 * over batches, read at each stage boundary from the thread's CPU-time clock
 * (host/sys/thread-cpu-clock.ts: on a shared machine wall time would charge
 * other tenants' time to whichever stage was preempted). One clock read per
 * stage per *batch* (7 a batch; a syscall each, 0.3-1.3 us depending on the
 * machine), so at ~120 packets a batch the timer adds ~20-180 ns a packet,
 * charged to the stages themselves;
 * `clockNs` says what one read costs, so the table can be read net of it.
 * Off unless asked for (ForwarderOptions.stageTiming).
 *
 * Stages (Forwarder.step):
 * - read: the device's batch read through the FFI (read(2) until EAGAIN or a
 *   full batch, or io_uring rounds), filling the descriptors too with descriptor I/O;
 * - admit: declaring the packets to the Wasm batch (descriptors), offload headers;
 * - decide: the one Wasm call that decides the batch;
 * - collect: reading the verdicts back and building the list of packets to write
 *   (nothing with descriptor I/O: the write reads the verdicts);
 * - write: the device's batch write;
 * - housekeeping: the betweenBatches hook (commands), the run loop's callback
 *   (reports, snapshots) and conntrack GC.
 */
import { threadCpuClock } from "../sys/thread-cpu-clock.js";

export const STAGES = ["read", "admit", "decide", "collect", "write", "housekeeping"] as const;
export type Stage = (typeof STAGES)[number];

export interface StageTimes {
  /** Batches that read at least one packet. */
  batches: number;
  /** What one clock read costs, ns (measured at start): each batch pays 7. */
  clockNs: number;
  /** Per stage, nanoseconds summed over those batches. */
  ns: Record<Stage, number>;
}

export function emptyStageTimes(): StageTimes {
  return { batches: 0, clockNs: 0, ns: { read: 0, admit: 0, decide: 0, collect: 0, write: 0, housekeeping: 0 } };
}

export class StageTimer {
  readonly times = emptyStageTimes();
  #at = 0;

  /** `clock`: ns, this thread's CPU time by default. */
  constructor(private readonly clock: () => number = threadCpuClock()) {
    const reads = 1000;
    const t0 = clock();
    for (let i = 0; i < reads; i++) clock();
    this.times.clockNs = (clock() - t0) / (reads + 1);
  }

  /** Starts timing (the beginning of a batch). */
  start(): void {
    this.#at = this.clock();
  }

  /** Adds the time since the last mark to `stage`. */
  mark(stage: Stage): void {
    const now = this.clock();
    this.times.ns[stage] += now - this.#at;
    this.#at = now;
  }
}
