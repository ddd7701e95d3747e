/**
 * A kvstore whose every backend call is timed into
 * kvstore_operations_duration_seconds{action,kind,outcome,scope}, with
 * Cilium's labels: `action` the call (Get, ListPrefix, Update, ...), `kind`
 * what it does (read, set, delete, lease, lock), `scope` the key's first
 * three path segments (`membrane/state/identities`: one series per kind of
 * record, never per key). It sits below the client discipline
 * (disciplined-store.ts), so a retried call counts once per attempt and the
 * rate limiter's waits are not in the figures.
 */
import type { Histogram } from "prom-client";
import type {
  ConditionalResult, DeleteResult, KeyValue, KvStore, Lease, LeaseOptions, ListOptions, ListResult, Lock, LockOptions,
  PutOptions, Revision, Txn, TxnResult, Watch, WatchOptions,
} from "./store.js";

type Kind = "read" | "set" | "delete" | "lease" | "lock";
export type KvstoreOperationsHistogram = Histogram<"action" | "kind" | "outcome" | "scope">;

/** `membrane/state/identities/v1/...` -> `membrane/state/identities`; keys outside a record prefix keep what they have. */
export function scopeOfKey(key: string): string {
  return key.split("/").filter((s) => s !== "").slice(0, 3).join("/") || "/";
}

export class MeteredKvStore implements KvStore {
  readonly backend: KvStore["backend"];
  readonly location: string;

  constructor(readonly inner: KvStore, private readonly histogram: KvstoreOperationsHistogram) {
    this.backend = inner.backend;
    this.location = inner.location;
  }

  private async timed<T>(action: string, kind: Kind, key: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    let outcome = "fail";
    try {
      const v = await fn();
      outcome = "success";
      return v;
    } finally {
      this.histogram.observe({ action, kind, outcome, scope: scopeOfKey(key) }, (performance.now() - t0) / 1000);
    }
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.timed("Get", "read", key, () => this.inner.get(key));
  }
  list(prefix: string, options?: ListOptions): Promise<ListResult> {
    return this.timed("ListPrefix", "read", prefix, () => this.inner.list(prefix, options));
  }
  revision(): Promise<Revision> {
    return this.timed("Revision", "read", "", () => this.inner.revision());
  }
  put(key: string, value: string, options?: PutOptions): Promise<Revision> {
    return this.timed("Update", "set", key, () => this.inner.put(key, value, options));
  }
  create(key: string, value: string, options?: PutOptions): Promise<ConditionalResult> {
    return this.timed("CreateOnly", "set", key, () => this.inner.create(key, value, options));
  }
  compareAndSwap(key: string, expectedModRevision: Revision, value: string, options?: PutOptions): Promise<ConditionalResult> {
    return this.timed("UpdateIfRevision", "set", key, () => this.inner.compareAndSwap(key, expectedModRevision, value, options));
  }
  delete(key: string, options?: { readonly expectedModRevision?: Revision }): Promise<DeleteResult> {
    return this.timed("Delete", "delete", key, () => this.inner.delete(key, options));
  }
  deletePrefix(prefix: string): Promise<DeleteResult> {
    return this.timed("DeletePrefix", "delete", prefix, () => this.inner.deletePrefix(prefix));
  }
  txn(txn: Txn): Promise<TxnResult> {
    const first = txn.success[0] ?? txn.failure?.[0];
    const key = first === undefined ? "" : "key" in first ? first.key : first.prefix;
    return this.timed("Txn", "set", key, () => this.inner.txn(txn));
  }
  compact(revision: Revision): Promise<void> {
    return this.timed("Compact", "delete", "", () => this.inner.compact(revision));
  }
  compactedRevision(): Promise<Revision> {
    return this.timed("CompactedRevision", "read", "", () => this.inner.compactedRevision());
  }
  grantLease(ttlSeconds: number, options?: LeaseOptions): Promise<Lease> {
    return this.timed("GrantLease", "lease", "", () => this.inner.grantLease(ttlSeconds, options));
  }
  lock(name: string, lease: Lease, options?: LockOptions): Promise<Lock> {
    return this.timed("LockPath", "lock", name, () => this.inner.lock(name, lease, options));
  }
  /** Watches are long-lived streams, not timed calls (their events' queue time is kvstore_events_queue_seconds). */
  watch(prefix: string, options?: WatchOptions): Watch {
    return this.inner.watch(prefix, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
