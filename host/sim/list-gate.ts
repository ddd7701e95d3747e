/**
 * A queue for list pages shared by every simulated agent: at most N pages
 * are being fetched and decoded at once (`--list-pages-in-flight`), so a mass
 * start of thousands of agents is a queue, not a stampede. Without it every
 * agent asks etcd for its first pages at the same moment, the replies pile up
 * in one event loop, and the per-call deadlines expire together (which is
 * how an earlier 5,000-agent attempt stalled).
 *
 * Turns go to the list that began first (its ticket), then in arrival order:
 * an agent that started listing finishes before later ones take its place,
 * so agents come up one after another instead of all of them at the very end.
 */
import type { PageGate } from "../kvstore/paged-list.js";

interface Waiter {
  ticket: number;
  seq: number;
  resolve: (release: () => void) => void;
  reject: (err: unknown) => void;
  gone: boolean;
}

export interface ListGateStats {
  /** Turns given. */
  turns: number;
  /** Turns that had to wait. */
  waited: number;
  /** Most pages in flight at once, and most waiting at once. */
  peakInFlight: number;
  peakQueued: number;
}

export class ListGate implements PageGate {
  private inFlight = 0;
  private nextTicket = 0;
  private seq = 0;
  private readonly heap: Waiter[] = [];
  readonly stats: ListGateStats = { turns: 0, waited: 0, peakInFlight: 0, peakQueued: 0 };

  /** `limit` pages in flight at most; 0 or Infinity: no limit (every acquire is granted at once). */
  constructor(readonly limit: number) {}

  get queued(): number {
    return this.heap.length;
  }

  get running(): number {
    return this.inFlight;
  }

  ticket(): number {
    return this.nextTicket++;
  }

  acquire(ticket: number, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (!(this.limit > 0) || (this.inFlight < this.limit && this.heap.length === 0)) return Promise.resolve(this.grant());
    this.stats.waited++;
    return new Promise((resolve, reject) => {
      // The abort listener goes when the turn is granted: an agent's signal lives as long as
      // the agent and sees one acquire per page, so listeners left behind would pile up on it.
      const onAbort = (): void => {
        if (w.gone) return;
        w.gone = true; // left in the heap, skipped when it comes up
        reject(signal!.reason);
      };
      const granted = (release: () => void): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve(release);
      };
      const w: Waiter = { ticket, seq: this.seq++, resolve: granted, reject, gone: false };
      this.push(w);
      this.stats.peakQueued = Math.max(this.stats.peakQueued, this.heap.length);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private grant(): () => void {
    this.inFlight++;
    this.stats.turns++;
    this.stats.peakInFlight = Math.max(this.stats.peakInFlight, this.inFlight);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight--;
      this.next();
    };
  }

  private next(): void {
    while (this.inFlight < this.limit && this.heap.length > 0) {
      const w = this.pop()!;
      if (w.gone) continue;
      w.gone = true;
      w.resolve(this.grant());
    }
  }

  // ---- a binary min-heap on (ticket, seq)

  private less(a: Waiter, b: Waiter): boolean {
    return a.ticket < b.ticket || (a.ticket === b.ticket && a.seq < b.seq);
  }

  private push(w: Waiter): void {
    const h = this.heap;
    h.push(w);
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Waiter | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
