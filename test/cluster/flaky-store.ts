/**
 * A real store behind a switch: while "down", reads and new watches fail
 * with KVSTORE_UNAVAILABLE and running watches fail too, as a connection
 * loss looks to a client; writes made meanwhile through the real store (an
 * operator on another connection) are what the follower must catch up on.
 */
import { KvStoreError, type KvStore, type ListOptions, type Watch, type WatchEvent, type WatchOptions } from "../../host/kvstore/store.js";

export function flaky(inner: KvStore): KvStore & { down(): void; up(): void; listCount(): number; failListCall(n: number): void; listCalls: { options: ListOptions; failed: boolean }[] } {
  let isDown = false;
  let lists = 0;
  /** List calls (0-based, counting failed ones) that fail once with KVSTORE_UNAVAILABLE, as a page past its deadline. */
  const failAt = new Set<number>();
  const listCalls: { options: ListOptions; failed: boolean }[] = [];
  const failures = new Set<(err: unknown) => void>();
  const unavailable = (what: string) => new KvStoreError("KVSTORE_UNAVAILABLE", `test: store down (${what})`);
  const guard = <T>(what: string, fn: () => Promise<T>): Promise<T> => (isDown ? Promise.reject(unavailable(what)) : fn());

  const watch = (prefix: string, options?: WatchOptions): Watch => {
    const real = inner.watch(prefix, options);
    let failWith: ((err: unknown) => void) | undefined;
    const failed = new Promise<never>((_, reject) => (failWith = reject));
    failed.catch(() => {});
    if (isDown) failWith!(unavailable("watch"));
    else failures.add(failWith!);
    return {
      prefix,
      get lastRevision() {
        return real.lastRevision;
      },
      ready: real.ready,
      close: async () => {
        failures.delete(failWith!);
        await real.close();
      },
      [Symbol.asyncIterator]() {
        const it = real[Symbol.asyncIterator]();
        return {
          next: async (): Promise<IteratorResult<WatchEvent>> => {
            try {
              return await Promise.race([it.next(), failed]);
            } catch (err) {
              await real.close();
              throw err;
            }
          },
          return: async () => {
            await real.close();
            return { value: undefined, done: true as const };
          },
        };
      },
    };
  };

  return Object.assign(Object.create(inner) as KvStore, {
    backend: inner.backend,
    location: inner.location,
    list: (prefix: string, o?: Parameters<KvStore["list"]>[1]) => {
      const failed = failAt.delete(listCalls.length);
      listCalls.push({ options: { ...o }, failed });
      if (failed) return Promise.reject(unavailable("list: deadline exceeded"));
      return guard("list", () => { lists++; return inner.list(prefix, o); });
    },
    listCalls,
    failListCall(n: number) {
      failAt.add(n);
    },
    revision: () => guard("revision", () => inner.revision()),
    get: (key: string) => guard("get", () => inner.get(key)),
    put: (k: string, v: string, o?: Parameters<KvStore["put"]>[2]) => guard("put", () => inner.put(k, v, o)),
    watch,
    down() {
      isDown = true;
      for (const f of failures) f(unavailable("connection lost"));
      failures.clear();
    },
    up() {
      isDown = false;
    },
    listCount: () => lists,
  });
}
