/**
 * A KvStore that counts what one simulated agent (or the operator) costs the
 * kvstore: operations issued (after its rate limiter: the metered store sits
 * under DisciplinedKvStore, so retries count), events delivered and their
 * bytes (key + value + previous value, the payload the client decodes, not
 * gRPC framing). Operations also land in a shared per-second timeline, which
 * is the kvstore operations/s the report plots.
 */
import type {
  ConditionalResult, DeleteResult, KeyValue, KvStore, Lease, LeaseOptions, ListOptions, ListResult, Lock, LockOptions,
  PutOptions, Revision, Txn, TxnResult, Watch, WatchEvent, WatchOptions,
} from "../kvstore/store.js";

/** Operations per whole second since `origin` (performance.now() based). */
export class OpsTimeline {
  readonly perSecond: number[] = [];
  total = 0;
  constructor(readonly origin = performance.now()) {}
  add(n = 1): void {
    const s = Math.floor((performance.now() - this.origin) / 1000);
    while (this.perSecond.length <= s) this.perSecond.push(0);
    this.perSecond[s]! += n;
    this.total += n;
  }
  /** Operations in [fromMs, toMs) relative to origin, per second. */
  rate(fromMs: number, toMs: number): number {
    let n = 0;
    for (let s = Math.floor(fromMs / 1000); s < Math.ceil(toMs / 1000); s++) n += this.perSecond[s] ?? 0;
    return n / Math.max(1, Math.ceil(toMs / 1000) - Math.floor(fromMs / 1000));
  }
  peak(fromMs = 0, toMs = Infinity): number {
    let max = 0;
    for (let s = Math.floor(fromMs / 1000); s < Math.min(this.perSecond.length, Math.ceil(toMs / 1000)); s++) max = Math.max(max, this.perSecond[s] ?? 0);
    return max;
  }
}

export interface MeterCounts {
  ops: number;
  /** Records received in list answers. */
  listed: number;
  events: number;
  bytes: number;
}

export function eventBytes(ev: WatchEvent): number {
  return ev.kv.key.length + ev.kv.value.length + (ev.prevKv?.value.length ?? 0);
}

export class MeteredKvStore implements KvStore {
  readonly backend: KvStore["backend"];
  readonly location: string;
  readonly counts: MeterCounts = { ops: 0, listed: 0, events: 0, bytes: 0 };

  /** `onEvent` sees every delivered event (the convergence tracker listens there). */
  constructor(
    private readonly inner: KvStore,
    private readonly timeline: OpsTimeline,
    private readonly onEvent?: (ev: WatchEvent) => void,
  ) {
    this.backend = inner.backend;
    this.location = inner.location;
  }

  private op<T>(p: () => Promise<T>): Promise<T> {
    this.counts.ops++;
    this.timeline.add();
    return p();
  }

  get(key: string): Promise<KeyValue | undefined> { return this.op(() => this.inner.get(key)); }
  list(prefix: string, options?: ListOptions): Promise<ListResult> {
    return this.op(async () => {
      const r = await this.inner.list(prefix, options);
      this.counts.listed += r.kvs.length;
      for (const kv of r.kvs) this.counts.bytes += kv.key.length + kv.value.length;
      return r;
    });
  }
  revision(): Promise<Revision> { return this.op(() => this.inner.revision()); }
  put(key: string, value: string, options?: PutOptions): Promise<Revision> { return this.op(() => this.inner.put(key, value, options)); }
  create(key: string, value: string, options?: PutOptions): Promise<ConditionalResult> { return this.op(() => this.inner.create(key, value, options)); }
  compareAndSwap(key: string, rev: Revision, value: string, options?: PutOptions): Promise<ConditionalResult> { return this.op(() => this.inner.compareAndSwap(key, rev, value, options)); }
  delete(key: string, options?: { readonly expectedModRevision?: Revision }): Promise<DeleteResult> { return this.op(() => this.inner.delete(key, options)); }
  deletePrefix(prefix: string): Promise<DeleteResult> { return this.op(() => this.inner.deletePrefix(prefix)); }
  txn(txn: Txn): Promise<TxnResult> { return this.op(() => this.inner.txn(txn)); }
  compact(revision: Revision): Promise<void> { return this.op(() => this.inner.compact(revision)); }
  compactedRevision(): Promise<Revision> { return this.op(() => this.inner.compactedRevision()); }
  grantLease(ttl: number, options?: LeaseOptions): Promise<Lease> { return this.op(() => this.inner.grantLease(ttl, options)); }
  lock(name: string, lease: Lease, options?: LockOptions): Promise<Lock> { return this.op(() => this.inner.lock(name, lease, options)); }

  watch(prefix: string, options?: WatchOptions): Watch {
    this.counts.ops++;
    this.timeline.add();
    const inner = this.inner.watch(prefix, options);
    const counts = this.counts;
    const onEvent = this.onEvent;
    return {
      prefix,
      get lastRevision() { return inner.lastRevision; },
      ready: inner.ready,
      close: () => inner.close(),
      async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
        for await (const ev of inner) {
          counts.events++;
          counts.bytes += eventBytes(ev);
          onEvent?.(ev);
          yield ev;
        }
      },
    };
  }

  /** The shared client belongs to its group, not to one agent: closing an agent's view closes nothing. */
  async close(): Promise<void> {}
}
