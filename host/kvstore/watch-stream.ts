/**
 * The Watch both backends hand out: a queue between the backend (which
 * pushes events in revision order) and the consumer's `for await`. The
 * backend owns resumption; this file only guarantees that what was pushed is
 * delivered once, in order, and that close/failure end the iteration cleanly.
 */
import { KvStoreError, type Revision, type Watch, type WatchEvent } from "./store.js";

export class WatchStream implements Watch {
  readonly prefix: string;
  readonly ready: Promise<void>;
  private lastDelivered: Revision;
  private readonly queue: WatchEvent[] = [];
  private waiter: { resolve: (r: IteratorResult<WatchEvent>) => void; reject: (e: unknown) => void } | undefined;
  private failure: unknown;
  private closed = false;
  private markReady!: () => void;
  private readonly onClose: () => Promise<void> | void;

  constructor(prefix: string, startRevision: Revision, onClose: () => Promise<void> | void) {
    this.prefix = prefix;
    this.lastDelivered = startRevision - 1;
    this.onClose = onClose;
    this.ready = new Promise<void>((resolve) => {
      this.markReady = resolve;
    });
  }

  get lastRevision(): Revision {
    return this.lastDelivered;
  }

  /** Why the backend stopped the watch (undefined while running or after a plain close). */
  get error(): unknown {
    return this.failure;
  }

  get isClosed(): boolean {
    return this.closed || this.failure !== undefined;
  }

  /** The backend established the watch. */
  setReady(): void {
    this.markReady();
  }

  /** The backend delivers one event (in revision order). */
  push(event: WatchEvent): void {
    if (this.isClosed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      this.lastDelivered = event.revision;
      w.resolve({ value: event, done: false });
    } else {
      this.queue.push(event);
    }
  }

  /** The backend cannot continue (compaction, store closed): the iteration throws after queued events. */
  fail(err: unknown): void {
    if (this.isClosed) return;
    this.failure = err;
    this.markReady();
    if (this.waiter && this.queue.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    }
    void this.onClose();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.markReady();
    this.queue.length = 0;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
    if (this.failure === undefined) await this.onClose();
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    return {
      next: () => {
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        const ev = this.queue.shift();
        if (ev !== undefined) {
          this.lastDelivered = ev.revision;
          return Promise.resolve({ value: ev, done: false });
        }
        if (this.failure !== undefined) return Promise.reject(this.failure);
        if (this.waiter) return Promise.reject(new KvStoreError("KVSTORE_INTERNAL", `watch ${this.prefix}: next() called twice concurrently`));
        return new Promise((resolve, reject) => {
          this.waiter = { resolve, reject };
        });
      },
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }
}
