/**
 * Locks fenced by a lease, on top of the store's own primitives, so both
 * backends share one implementation (and neither depends on etcd3's Lock or
 * Election, which allowed several holders before 2023):
 *
 * - take: create-only of key `name` bound to the holder's lease. The key's
 *   create revision is the fencing token; every later holder's is larger.
 * - wait: watch the key from the revision the failed create saw, until a
 *   delete event (release, or the holder's lease expired), then try again.
 * - fence: `guard()` is a txn comparison on the key's create revision, so a
 *   write made "under the lock" by a holder that already lost it fails.
 * - lost replies: the key's value carries a token of this acquisition, so a
 *   create that committed but whose reply was lost is recognised as ours on
 *   the retry, or deleted when the create is given up (see acquireLock).
 */
import { randomBytes } from "node:crypto";
import { KvStoreError, type Compare, type ConditionalResult, type KvStore, type Lease, type Lock, type LockOptions } from "./store.js";
import { checkKey } from "./validate.js";

class FencedLock implements Lock {
  constructor(
    private readonly store: KvStore,
    readonly key: string,
    readonly lease: string,
    readonly fencingToken: number,
  ) {}

  guard(): Compare {
    return { key: this.key, target: "createRevision", op: "==", value: this.fencingToken };
  }

  async isHeld(): Promise<boolean> {
    const kv = await this.store.get(this.key);
    return kv !== undefined && kv.createRevision === this.fencingToken;
  }

  async release(): Promise<void> {
    await this.store.txn({ compare: [this.guard()], success: [{ type: "delete", key: this.key }] });
  }
}

export async function acquireLock(store: KvStore, name: string, lease: Lease, options: LockOptions = {}): Promise<Lock> {
  checkKey(name, "lock name");
  const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
  // The token tells this acquisition's own key from any other holder's, even one under the same lease.
  const value = `lease=${lease.id} pid=${process.pid} token=${randomBytes(8).toString("hex")}`;
  for (;;) {
    options.signal?.throwIfAborted();
    let r: ConditionalResult;
    try {
      r = await store.create(name, value, { lease: lease.id });
    } catch (err) {
      // The create may have committed with its reply lost (a deadline, a dropped connection). Left there, the key
      // would hold the lock for this lease's whole TTL (900 s for a node's), and every later attempt of this node
      // would wait on itself: take it back if it is ours, then report the failure.
      await store.txn({ compare: [{ key: name, target: "value", op: "==", value }], success: [{ type: "delete", key: name }] }).catch(() => undefined);
      throw err;
    }
    if (r.succeeded) return new FencedLock(store, name, lease.id, r.revision);
    const current = r.current;
    if (current === undefined) continue; // deleted between the compare and our read: try again
    // Our own create, committed by an earlier try whose reply was lost (the disciplined client retries a create that
    // failed as unreachable): we hold the lock, and its fencing token is that create's revision.
    if (current.value === value) return new FencedLock(store, name, lease.id, current.createRevision);
    // held, possibly under this very lease by another caller of this process: not re-entrant on
    // purpose (two local allocators sharing the node's lease must still exclude each other)
    await waitForDelete(store, name, current.modRevision + 1, deadline, options.signal);
  }
}

/** Resolves once `key` is deleted at or after `fromRevision`; rejects on timeout/abort. */
async function waitForDelete(store: KvStore, key: string, fromRevision: number, deadline: number | undefined, signal: AbortSignal | undefined): Promise<void> {
  const watch = store.watch(key, { fromRevision });
  let timer: NodeJS.Timeout | undefined;
  const onAbort = (): void => void watch.close();
  try {
    if (deadline !== undefined) {
      const ms = deadline - Date.now();
      if (ms <= 0) throw new KvStoreError("KVSTORE_LOCK_TIMEOUT", `lock ${key}: still held by another holder`);
      timer = setTimeout(() => void watch.close(), ms);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    for await (const ev of watch) {
      if (ev.kv.key === key && ev.type === "delete") return;
    }
    signal?.throwIfAborted();
    throw new KvStoreError("KVSTORE_LOCK_TIMEOUT", `lock ${key}: still held by another holder after the timeout`);
  } catch (err) {
    // history compacted under us: the key may well be gone now, so just try the create again
    if (err instanceof KvStoreError && err.code === "KVSTORE_COMPACTED") return;
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    await watch.close();
  }
}
