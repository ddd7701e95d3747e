/**
 * Descriptor-batch I/O (device.ts, DescriptorIo) over several queues of one
 * TUN, for MultiQueueTun: a read fills the batch's records queue by queue
 * (one native call per queue, the first queue rotating), a write sends each
 * queue's run of records back on the queue it came from (one native call per
 * run). So two queues moved by one thread keep the one-queue path's property:
 * nothing per packet in JavaScript. Without it MultiQueueTun fell back to
 * read()/write() with a view, a size and a Map entry per packet.
 *
 * A read leaves the records in runs, one per queue that had packets: which
 * queue a record came from is its run's. A record past the last read's runs
 * (a datapath that added one) goes out on queue 0, as MultiQueueTun.write does.
 */
import { PKT_DESC, Verdict } from "../generated/layout.js";
import type { DescriptorBatch, DescriptorIo } from "./device.js";
import { TunIoError } from "./errors.js";

const D = PKT_DESC.offsets;

export class MultiQueueDescriptorIo implements DescriptorIo {
  /** Queue read first by the next read. */
  #first = 0;
  /** The last read's runs: records [start, end) came from queue q. */
  #runStart: number[] = [];
  #runEnd: number[] = [];
  #runQueue: number[] = [];
  /** The window on the caller's batch that one queue's call sees (reused). */
  readonly #window: DescriptorBatch = { memory: new Uint8Array(0), descs: 0, count: 0, headroom: 0, meta: 0 };
  /** One queue's call's totals (8: a virtio_net_hdr device's write reports that many). */
  readonly #totals = new Uint32Array(8);
  /** A virtio_net_hdr device's write totals past the first three (writes, coalesced writes and packets, unwritable, refused), summed over a write's runs. */
  readonly #more = new Uint32Array(8);

  constructor(private readonly queues: readonly DescriptorIo[]) {}

  readDescs(batch: DescriptorBatch, totals: Uint32Array): number {
    const n = this.queues.length;
    this.#runStart.length = this.#runEnd.length = this.#runQueue.length = 0;
    let got = 0;
    let bytes = 0;
    let wire = 0;
    for (let k = 0; k < n && got < batch.count; k++) {
      const q = (this.#first + k) % n;
      const w = this.#windowOf(batch, got, batch.count - got);
      let r: number;
      try {
        r = this.queues[q]!.readDescs(w, this.#totals);
      } catch (err) {
        // Records read before the failure are in place: say how many, as a single device would.
        if (err instanceof TunIoError) throw new TunIoError(`${err.message} [queue ${q}]`, err.errno, got + err.done, { cause: err });
        throw err;
      }
      if (r > 0) {
        this.#runStart.push(got);
        this.#runEnd.push(got + r);
        this.#runQueue.push(q);
        bytes += this.#totals[0]!;
        wire += this.#totals[1]!;
        got += r;
      }
    }
    this.#first = (this.#first + 1) % n;
    totals[0] = bytes;
    totals[1] = wire;
    return got;
  }

  writeDescs(batch: DescriptorBatch, from: number, totals: Uint32Array): number {
    let passing = 0;
    let bytes = 0;
    let written = 0;
    this.#more.fill(0);
    const addMore = () => {
      for (let k = 3; k < 8; k++) this.#more[k] += this.#totals[k]!;
    };
    const runs = this.#runsFrom(from, batch.count);
    for (let i = 0; i < runs.length; i += 3) {
      const start = runs[i]!;
      const end = runs[i + 1]!;
      const q = runs[i + 2]!;
      const w = this.#windowOf(batch, start, end - start);
      let stop: number;
      try {
        stop = this.queues[q]!.writeDescs(w, 0, this.#totals);
      } catch (err) {
        if (!(err instanceof TunIoError)) throw err;
        // The totals still cover the whole range, as a single device's do: this run's, then the untried runs' passing records.
        addMore();
        this.#setTotals(totals, passing + this.#totals[0]!, bytes + this.#totals[1]!, written + this.#totals[2]!, batch, runs, i + 3);
        throw new TunIoError(`${err.message} [queue ${q}]`, err.errno, start + err.done, { cause: err });
      }
      passing += this.#totals[0]!;
      bytes += this.#totals[1]!;
      written += this.#totals[2]!;
      addMore();
      if (stop < end - start) {
        // The queue pushed back (EAGAIN): report where, with the untried runs' passing records counted as a single device would.
        this.#setTotals(totals, passing, bytes, written, batch, runs, i + 3);
        return start + stop;
      }
    }
    this.#setTotals(totals, passing, bytes, written, batch, runs, runs.length);
    return batch.count;
  }

  /** [start, end, queue] triples covering records from..count-1: the last read's runs, clipped; anything past them on queue 0. */
  #runsFrom(from: number, count: number): number[] {
    const out: number[] = [];
    let covered = from;
    for (let r = 0; r < this.#runStart.length; r++) {
      const start = Math.max(this.#runStart[r]!, from);
      const end = Math.min(this.#runEnd[r]!, count);
      if (start >= end) continue;
      if (start > covered) out.push(covered, start, 0);
      out.push(start, end, this.#runQueue[r]!);
      covered = end;
    }
    if (covered < count) out.push(covered, count, 0);
    return out;
  }

  #windowOf(batch: DescriptorBatch, record: number, count: number): DescriptorBatch {
    const w = this.#window;
    w.memory = batch.memory;
    w.descs = batch.descs + record * PKT_DESC.size;
    w.count = count;
    w.headroom = batch.headroom;
    w.meta = batch.meta;
    w.readInfo = batch.readInfo?.subarray(record);
    w.gso = batch.gso;
    return w;
  }

  /** totals = [passing records, their bytes, packets written], adding the passing records of the runs from triple index `untried` on. */
  #setTotals(totals: Uint32Array, passing: number, bytes: number, written: number, batch: DescriptorBatch, runs: number[], untried: number): void {
    if (untried < runs.length) {
      const mem = batch.memory;
      const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
      for (let i = untried; i < runs.length; i += 3) {
        for (let rec = runs[i]!; rec < runs[i + 1]!; rec++) {
          const at = batch.descs + rec * PKT_DESC.size;
          if (v.getUint8(at + D.verdict) !== Verdict.VERDICT_PASS) continue;
          passing++;
          bytes += v.getUint32(at + D.len, true);
        }
      }
    }
    totals[0] = passing;
    totals[1] = bytes;
    totals[2] = written;
    for (let k = 3; k < totals.length && k < 8; k++) totals[k] = this.#more[k]!;
  }
}
