// A lock whose create committed but whose reply was lost (a deadline under load, a dropped connection).
// Before, the key stayed bound to the node's lease: the disciplined client's retry of the create saw it
// "held by another holder" (itself) and waited; every later attempt of the node did the same until the lease's
// TTL (900 s for a node) ran out. In a 1,000-agent `membrane sim` run a full agent's rounds stopped for the
// whole churn and policy phases (docs/scale.md). Now the retry recognises its own key, and a create that is
// given up deletes what it may have left.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKvStore } from "../../host/kvstore/open.js";
import { acquireLock } from "../../host/kvstore/lock.js";
import { DisciplinedKvStore } from "../../host/kvstore/disciplined-store.js";
import { KvStoreError, type KvStore, type Lease } from "../../host/kvstore/store.js";

/** `inner` with its create replaced. */
function withCreate(inner: KvStore, create: KvStore["create"]): KvStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === "create") return create;
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** The store, except that the first create commits and then fails as `error` says, as if its reply were lost. */
function losingFirstCreateReply(inner: KvStore, error: () => Error): { store: KvStore; creates: () => number } {
  let creates = 0;
  const store = withCreate(inner, async (...args) => {
    const r = await inner.create(...args);
    if (creates++ === 0) throw error();
    return r;
  });
  return { store, creates: () => creates };
}

describe("lock whose create reply was lost", () => {
  let dir: string;
  let store: KvStore;
  let lease: Lease;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "membrane-lock-lost-"));
    store = await openKvStore(`embedded:${join(dir, "kv")}`);
    lease = await store.grantLease(60);
  });
  afterAll(async () => {
    lease?.release();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the disciplined client's retry finds its own committed create: the lock is held, fenced by that create", async () => {
    const flaky = losingFirstCreateReply(store, () => new KvStoreError("KVSTORE_UNAVAILABLE", "deadline exceeded (test: reply lost)"));
    const client = new DisciplinedKvStore(flaky.store, { backoff: { minMs: 5, maxMs: 20 } });
    const lock = await acquireLock(client, "locks/retried", lease, { timeoutMs: 2000 });
    expect(flaky.creates()).toBe(2); // the lost reply, then the retry's create (it failed its condition)
    const kv = await store.get("locks/retried");
    expect(kv?.createRevision).toBe(lock.guard().value);
    expect(await lock.isHeld()).toBe(true);
    // still exclusive, even for another acquisition under the same lease
    await expect(acquireLock(store, "locks/retried", lease, { timeoutMs: 200 })).rejects.toMatchObject({ code: "KVSTORE_LOCK_TIMEOUT" });
    await lock.release();
    expect(await store.get("locks/retried")).toBeUndefined();
  });

  it("a create given up removes the key it may have committed, so the next attempt takes the lock at once", async () => {
    const flaky = losingFirstCreateReply(store, () => new Error("connection reset (test: reply lost, not retried)"));
    await expect(acquireLock(flaky.store, "locks/given-up", lease, { timeoutMs: 2000 })).rejects.toThrow(/connection reset/);
    expect(await store.get("locks/given-up")).toBeUndefined();
    const lock = await acquireLock(store, "locks/given-up", lease, { timeoutMs: 200 });
    expect(await lock.isHeld()).toBe(true);
    await lock.release();
  });

  it("never deletes another holder's key when its own create fails", async () => {
    const holder = await acquireLock(store, "locks/other", lease);
    const failing = withCreate(store, () => Promise.reject(new Error("refused before reaching the store")));
    await expect(acquireLock(failing, "locks/other", lease, { timeoutMs: 200 })).rejects.toThrow(/refused/);
    expect(await holder.isHeld()).toBe(true);
    await holder.release();
  });
});
