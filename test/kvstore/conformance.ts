/**
 * THE conformance suite of the kvstore interface, run against every backend
 * (embedded.test.ts, etcd.test.ts). Each test works under its own key prefix
 * so tests share one store without seeing each other's keys.
 */
import { describe, expect, it } from "vitest";
import { InvalidInputError } from "../../host/errors.js";
import { CompactedError, KvStoreError, type KvStore, type Watch, type WatchEvent } from "../../host/kvstore/store.js";
import { pause, waitFor } from "../support/wait-for.js";

export interface ConformanceTarget {
  /** Opens a NEW client on the same store (another connection / another handle on the path). */
  open(): Promise<KvStore>;
  /**
   * Breaks the watch's connection and brings it back: etcd is killed with
   * SIGKILL and restarted (the same Watch resumes by itself); the embedded
   * store's client is closed and reopened, and a new watch continues from the
   * old one's lastRevision + 1. `whileDown` runs while the watcher is cut off
   * when the backend allows writes then (embedded), or right after the restart.
   */
  interrupt(store: KvStore, watch: Watch, whileDown: () => Promise<void>): Promise<{ store: KvStore; watch: Watch }>;
  /** Lease TTL to use (etcd rounds small TTLs up to its minimum). */
  readonly leaseTtl: number;
}

let counter = 0;
function unique(name: string): string {
  counter++;
  return `conf/${name}/${process.pid}-${Date.now()}-${counter}/`;
}

/** Reads `n` events, failing (not hanging) when they do not arrive in time. */
export async function take(watch: Watch, n: number, what = "events", waitMs = 20_000): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  if (n === 0) return out;
  const it = watch[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: got ${out.length} of ${n} events within ${waitMs} ms`)), waitMs);
  });
  try {
    while (out.length < n) {
      const r = await Promise.race([it.next(), timeout]);
      if (r.done) throw new Error(`${what}: watch ended after ${out.length} of ${n} events`);
      out.push(r.value);
    }
    return out;
  } finally {
    clearTimeout(timer);
  }
}

/** Retries an operation while the backend is unreachable (etcd restarting). */
export async function retrying<T>(fn: () => Promise<T>, what: string): Promise<T> {
  const outcome = await waitFor(
    what,
    async (): Promise<{ value: T } | { error: unknown }> => {
      try {
        return { value: await fn() };
      } catch (err) {
        if (err instanceof KvStoreError && err.code === "KVSTORE_UNAVAILABLE") throw err; // not back yet: ask again
        return { error: err };
      }
    },
    { intervalMs: 100 },
  );
  if ("error" in outcome) throw new Error(`${what}: ${(outcome.error as Error).message}`, { cause: outcome.error });
  return outcome.value;
}

export function kvStoreConformance(target: ConformanceTarget, getStore: () => KvStore): void {
  describe("reads and writes", () => {
    it("bumps one global revision per write and tracks create/mod revisions and versions", async () => {
      const s = getStore();
      const p = unique("rev");
      const before = await s.revision();
      const r1 = await s.put(`${p}a`, "1");
      expect(r1).toBeGreaterThan(before);
      const r2 = await s.put(`${p}b`, "2");
      expect(r2).toBe(r1 + 1);
      const r3 = await s.put(`${p}a`, "3");
      expect(r3).toBe(r2 + 1);
      const a = await s.get(`${p}a`);
      expect(a).toEqual({ key: `${p}a`, value: "3", createRevision: r1, modRevision: r3, version: 2, lease: undefined });
      expect(await s.revision()).toBe(r3);
      expect(await s.get(`${p}missing`)).toBeUndefined();
    });

    it("lists a prefix in key order with the revision it read at, honouring limit and not leaking siblings", async () => {
      const s = getStore();
      const p = unique("list");
      for (const k of ["c", "a", "b/x", "b", "ab"]) await s.put(`${p}${k}`, k);
      await s.put(`${p.slice(0, -1)}X`, "sibling"); // shares the prefix minus its slash
      const l = await s.list(p);
      expect(l.kvs.map((kv) => kv.key.slice(p.length))).toEqual(["a", "ab", "b", "b/x", "c"]);
      expect(l.revision).toBe(await s.revision());
      expect(l.kvs.map((kv) => kv.value)).toEqual(["a", "ab", "b", "b/x", "c"]);
      const limited = await s.list(p, { limit: 2 });
      expect(limited.kvs.map((kv) => kv.key.slice(p.length))).toEqual(["a", "ab"]);
      expect((await s.list(`${p}b`)).kvs.map((kv) => kv.key.slice(p.length))).toEqual(["b", "b/x"]);
    });

    it("create only when absent; compare-and-swap on the mod revision; 0 means absent", async () => {
      const s = getStore();
      const p = unique("cas");
      const c1 = await s.create(`${p}k`, "first");
      expect(c1.succeeded).toBe(true);
      const c2 = await s.create(`${p}k`, "second");
      expect(c2.succeeded).toBe(false);
      expect(c2.current?.value).toBe("first");
      expect(c2.current?.modRevision).toBe(c1.revision);
      const bad = await s.compareAndSwap(`${p}k`, c1.revision - 1, "x");
      expect(bad.succeeded).toBe(false);
      expect(bad.current?.value).toBe("first");
      const good = await s.compareAndSwap(`${p}k`, c1.revision, "swapped");
      expect(good.succeeded).toBe(true);
      expect((await s.get(`${p}k`))?.value).toBe("swapped");
      const stale = await s.compareAndSwap(`${p}k`, c1.revision, "stale");
      expect(stale.succeeded).toBe(false);
      expect((await s.compareAndSwap(`${p}new`, 0, "fresh")).succeeded).toBe(true);
      expect((await s.compareAndSwap(`${p}new`, 0, "again")).succeeded).toBe(false);
    });

    it("deletes a key, conditionally, and a whole prefix in one revision", async () => {
      const s = getStore();
      const p = unique("del");
      const r = await s.put(`${p}one`, "1");
      expect((await s.delete(`${p}one`, { expectedModRevision: r - 1 })).deleted).toBe(0);
      expect(await s.get(`${p}one`)).toBeDefined();
      const d = await s.delete(`${p}one`, { expectedModRevision: r });
      expect(d.deleted).toBe(1);
      expect(d.revision).toBe(r + 1);
      expect(await s.get(`${p}one`)).toBeUndefined();
      expect((await s.delete(`${p}one`)).deleted).toBe(0);
      for (let i = 0; i < 5; i++) await s.put(`${p}many/${i}`, String(i));
      await s.put(`${p}keep`, "k");
      const before = await s.revision();
      const w = s.watch(`${p}many/`, { fromRevision: before + 1, prevKv: true });
      const dp = await s.deletePrefix(`${p}many/`);
      expect(dp.deleted).toBe(5);
      expect(dp.revision).toBe(before + 1);
      const evs = await take(w, 5, "deletePrefix events");
      expect(evs.every((e) => e.type === "delete" && e.revision === before + 1)).toBe(true);
      expect(evs.map((e) => e.prevKv?.value).sort()).toEqual(["0", "1", "2", "3", "4"]);
      await w.close();
      expect((await s.list(p)).kvs.map((kv) => kv.key)).toEqual([`${p}keep`]);
    });

    it("refuses bad input with InvalidInputError and writes nothing", async () => {
      const s = getStore();
      const before = await s.revision();
      await expect(s.put("", "x")).rejects.toBeInstanceOf(InvalidInputError);
      await expect(s.deletePrefix("")).rejects.toBeInstanceOf(InvalidInputError);
      await expect(s.put("k", 5 as unknown as string)).rejects.toBeInstanceOf(InvalidInputError);
      await expect(s.grantLease(0)).rejects.toBeInstanceOf(InvalidInputError);
      await expect(s.put("bad\u0000key", "x")).rejects.toThrow(/control characters/);
      expect(await s.revision()).toBe(before);
    });
  });

  describe("transactions", () => {
    it("applies all writes of a branch at one revision, or none", async () => {
      const s = getStore();
      const p = unique("txn");
      const base = await s.put(`${p}guard`, "g");
      const ok = await s.txn({
        compare: [{ key: `${p}guard`, target: "modRevision", op: "==", value: base }],
        success: [
          { type: "put", key: `${p}a`, value: "A" },
          { type: "put", key: `${p}b`, value: "B" },
          { type: "delete", key: `${p}guard` },
          { type: "get", key: `${p}a` },
        ],
        failure: [{ type: "put", key: `${p}failed`, value: "yes" }],
      });
      expect(ok.succeeded).toBe(true);
      expect(ok.revision).toBe(base + 1);
      expect(ok.results.map((r) => r.type)).toEqual(["put", "put", "delete", "get"]);
      const a = await s.get(`${p}a`);
      const b = await s.get(`${p}b`);
      expect(a?.modRevision).toBe(base + 1);
      expect(b?.modRevision).toBe(base + 1);
      expect(await s.get(`${p}guard`)).toBeUndefined();
      expect(await s.get(`${p}failed`)).toBeUndefined();

      const no = await s.txn({
        compare: [{ key: `${p}guard`, target: "version", op: ">", value: 0 }],
        success: [{ type: "put", key: `${p}a`, value: "changed" }],
        failure: [{ type: "get", key: `${p}b` }, { type: "list", prefix: p }],
      });
      expect(no.succeeded).toBe(false);
      expect(no.revision).toBe(base + 1); // a read-only branch bumps nothing
      const got = no.results[0];
      expect(got?.type === "get" && got.kv?.value).toBe("B");
      const listed = no.results[1];
      expect(listed?.type === "list" && listed.kvs.map((kv) => kv.key)).toEqual([`${p}a`, `${p}b`]);
      expect((await s.get(`${p}a`))?.value).toBe("A");
    });

    it("compares values, versions and create revisions as etcd does", async () => {
      const s = getStore();
      const p = unique("cmp");
      const r = await s.put(`${p}k`, "v1");
      await s.put(`${p}k`, "v2");
      const run = (c: Parameters<KvStore["txn"]>[0]["compare"][number]) => s.txn({ compare: [c], success: [] }).then((x) => x.succeeded);
      expect(await run({ key: `${p}k`, target: "value", op: "==", value: "v2" })).toBe(true);
      expect(await run({ key: `${p}k`, target: "value", op: "==", value: "v1" })).toBe(false);
      expect(await run({ key: `${p}k`, target: "version", op: "==", value: 2 })).toBe(true);
      expect(await run({ key: `${p}k`, target: "createRevision", op: "==", value: r })).toBe(true);
      expect(await run({ key: `${p}k`, target: "modRevision", op: ">", value: r })).toBe(true);
      expect(await run({ key: `${p}absent`, target: "createRevision", op: "==", value: 0 })).toBe(true);
      expect(await run({ key: `${p}absent`, target: "value", op: "!=", value: "x" })).toBe(false);
    });

    it("a txn that fails part-way (unknown lease) leaves nothing behind", async () => {
      const s = getStore();
      const p = unique("txnfail");
      const lease = await s.grantLease(target.leaseTtl, { autoKeepAlive: false });
      await lease.revoke();
      const before = await s.revision();
      await expect(
        s.txn({
          compare: [],
          success: [
            { type: "put", key: `${p}a`, value: "1" },
            { type: "put", key: `${p}b`, value: "2", lease: lease.id },
          ],
        }),
      ).rejects.toMatchObject({ code: "KVSTORE_LEASE_NOT_FOUND" });
      expect(await s.get(`${p}a`)).toBeUndefined();
      expect(await s.revision()).toBe(before);
      await expect(
        s.txn({ compare: [], success: [{ type: "put", key: `${p}a`, value: "1" }, { type: "put", key: `${p}a`, value: "2" }] }),
      ).rejects.toMatchObject({ code: "KVSTORE_TXN_INVALID" });
    });
  });

  describe("watch", () => {
    it("list-then-watch delivers every later change in revision order with prevKv", async () => {
      const s = getStore();
      const p = unique("watch");
      await s.put(`${p}pre`, "existing");
      const l = await s.list(p);
      const w = s.watch(p, { fromRevision: l.revision + 1, prevKv: true });
      const writer = await target.open();
      try {
        const revs: number[] = [];
        revs.push(await writer.put(`${p}a`, "1"));
        revs.push(await writer.put(`${p}pre`, "changed"));
        revs.push((await writer.delete(`${p}a`)).revision);
        await writer.put(`${p.slice(0, -1)}-other`, "not mine");
        revs.push(await writer.put(`${p}b`, "2"));
        const evs = await take(w, 4);
        expect(evs.map((e) => [e.type, e.kv.key.slice(p.length), e.revision])).toEqual([
          ["put", "a", revs[0]],
          ["put", "pre", revs[1]],
          ["delete", "a", revs[2]],
          ["put", "b", revs[3]],
        ]);
        expect(evs[1]?.prevKv?.value).toBe("existing");
        expect(evs[1]?.kv.value).toBe("changed");
        expect(evs[2]?.prevKv?.value).toBe("1");
        expect(w.lastRevision).toBe(revs[3]);
      } finally {
        await w.close();
        await writer.close();
      }
    });

    it("without prevKv a watch sends no previous state, and a create is told by createRevision === modRevision", async () => {
      const s = getStore();
      const p = unique("noprev");
      const before = await s.revision();
      const w = s.watch(p, { fromRevision: before + 1 });
      try {
        const created = await s.put(`${p}a`, "1");
        const changed = await s.put(`${p}a`, "2");
        const deleted = (await s.delete(`${p}a`)).revision;
        const recreated = await s.put(`${p}a`, "3");
        const evs = await take(w, 4);
        expect(evs.map((e) => [e.type, e.kv.value, e.prevKv])).toEqual([
          ["put", "1", undefined],
          ["put", "2", undefined],
          ["delete", "", undefined],
          ["put", "3", undefined],
        ]);
        expect(evs.map((e) => e.type === "put" && e.kv.createRevision === e.kv.modRevision)).toEqual([true, false, false, true]);
        expect(evs.map((e) => e.revision)).toEqual([created, changed, deleted, recreated]);
      } finally {
        await w.close();
      }
    });

    it("a watch from an old revision replays history, then follows live writes", async () => {
      const s = getStore();
      const p = unique("replay");
      const first = await s.put(`${p}0`, "0");
      for (let i = 1; i < 10; i++) await s.put(`${p}${i}`, String(i));
      const w = s.watch(p, { fromRevision: first + 3 });
      const live = s.put(`${p}live`, "x");
      const evs = await take(w, 8);
      expect(evs.map((e) => e.revision)).toEqual([...Array(8).keys()].map((i) => first + 3 + i));
      expect(evs[7]?.revision).toBe(await live);
      await w.close();
    });

    it("resumes after a disconnect from its revision: no event lost, none repeated", async () => {
      const p = unique("resume");
      let store = await target.open();
      const writer = await target.open();
      try {
        const start = (await store.revision()) + 1;
        let watch = store.watch(p, { fromRevision: start });
        const written: number[] = [];
        for (let i = 0; i < 15; i++) written.push(await writer.put(`${p}k${i % 4}`, `a${i}`));
        const seen = await take(watch, 10, "before the disconnect");
        ({ store, watch } = await target.interrupt(store, watch, async () => {
          for (let i = 0; i < 10; i++) written.push(await retrying(() => writer.put(`${p}k${i % 4}`, `b${i}`), "write while down"));
        }));
        for (let i = 0; i < 10; i++) written.push(await retrying(() => writer.put(`${p}k${i % 4}`, `c${i}`), "write after"));
        seen.push(...(await take(watch, written.length - seen.length, "after the disconnect")));
        expect(seen.map((e) => e.revision)).toEqual(written);
        expect(seen.map((e) => e.kv.value)).toEqual([
          ...[...Array(15).keys()].map((i) => `a${i}`),
          ...[...Array(10).keys()].map((i) => `b${i}`),
          ...[...Array(10).keys()].map((i) => `c${i}`),
        ]);
        await watch.close();
      } finally {
        await store.close();
        await writer.close();
      }
    });

    it("close ends a pending iteration", async () => {
      const s = getStore();
      const w = s.watch(unique("close"));
      await w.ready;
      const pending = w[Symbol.asyncIterator]().next();
      await w.close();
      expect((await pending).done).toBe(true);
    });
  });

  describe("leases and locks", () => {
    it("expiry deletes the keys bound to the lease (one delete event each, one revision) and keeps others", async () => {
      const s = getStore();
      const p = unique("lease");
      const lease = await s.grantLease(target.leaseTtl, { autoKeepAlive: false });
      expect(lease.ttl).toBeGreaterThanOrEqual(target.leaseTtl);
      const from = (await s.revision()) + 1;
      await s.put(`${p}a`, "1", { lease: lease.id });
      await s.put(`${p}b`, "2", { lease: lease.id });
      await s.put(`${p}free`, "3");
      expect((await s.get(`${p}a`))?.lease).toBe(lease.id);
      const w = s.watch(p, { fromRevision: from });
      const evs = await take(w, 5, "puts then lease expiry", 30_000);
      await w.close();
      const deletes = evs.slice(3);
      expect(deletes.map((e) => [e.type, e.kv.key.slice(p.length)]).sort()).toEqual([
        ["delete", "a"],
        ["delete", "b"],
      ]);
      expect(deletes[0]?.revision).toBe(deletes[1]?.revision);
      expect(await s.get(`${p}a`)).toBeUndefined();
      expect((await s.get(`${p}free`))?.value).toBe("3");
      await expect(lease.keepAlive()).rejects.toMatchObject({ code: "KVSTORE_LEASE_NOT_FOUND" });
      await expect(s.put(`${p}late`, "x", { lease: lease.id })).rejects.toMatchObject({ code: "KVSTORE_LEASE_NOT_FOUND" });
    });

    it("keep-alive holds the lease past its TTL; revoke deletes its keys at once", async () => {
      const s = getStore();
      const p = unique("keep");
      const lease = await s.grantLease(target.leaseTtl, { autoKeepAlive: true });
      await s.put(`${p}a`, "1", { lease: lease.id });
      const from = await s.revision();
      // a deliberate pause: outlive the TTL, which only time can do, so keep-alive has to be what holds the lease
      await pause(lease.ttl * 1000 + 1500);
      expect((await s.get(`${p}a`))?.value).toBe("1");
      await lease.revoke();
      expect(await s.get(`${p}a`)).toBeUndefined();
      const w = s.watch(p, { fromRevision: from + 1 });
      const [ev] = await take(w, 1, "revoke");
      expect(ev?.type).toBe("delete");
      await w.close();
      await lease.revoke(); // idempotent
    });

    it("locks are exclusive, fenced by increasing tokens, and a stale holder's guarded write fails", async () => {
      const s = getStore();
      const other = await target.open();
      const p = unique("lock");
      try {
        const l1 = await s.grantLease(target.leaseTtl + 3);
        const l2 = await other.grantLease(target.leaseTtl + 3);
        const a = await s.lock(`${p}mutex`, l1);
        expect(await a.isHeld()).toBe(true);
        // not re-entrant: another caller with the same lease is excluded too
        await expect(s.lock(`${p}mutex`, l1, { timeoutMs: 200 })).rejects.toMatchObject({ code: "KVSTORE_LOCK_TIMEOUT" });
        let bHeld = false;
        const bP = other.lock(`${p}mutex`, l2).then((b) => {
          bHeld = true;
          return b;
        });
        await expect(other.lock(`${p}mutex`, l2, { timeoutMs: 300 }).catch((e: unknown) => e)).resolves.toMatchObject({ code: "KVSTORE_LOCK_TIMEOUT" });
        expect(bHeld).toBe(false);
        const guarded = await s.txn({ compare: [a.guard()], success: [{ type: "put", key: `${p}data`, value: "from a" }] });
        expect(guarded.succeeded).toBe(true);
        await l1.revoke(); // a loses the lock without knowing
        const b = await bP;
        expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
        expect(await a.isHeld()).toBe(false);
        const stale = await s.txn({ compare: [a.guard()], success: [{ type: "put", key: `${p}data`, value: "stale a" }] });
        expect(stale.succeeded).toBe(false);
        expect((await s.get(`${p}data`))?.value).toBe("from a");
        await a.release(); // must not release b's lock
        expect(await b.isHeld()).toBe(true);
        await b.release();
        expect(await b.isHeld()).toBe(false);
        await l2.revoke();
      } finally {
        await other.close();
      }
    });
  });

  describe("races", () => {
    it("many contenders creating one key: exactly one wins", async () => {
      const clients = [getStore(), await target.open(), await target.open()];
      const p = unique("race-create");
      try {
        const results = await Promise.all([...Array(30).keys()].map((i) => clients[i % 3]!.create(`${p}k`, `c${i}`)));
        const winners = results.filter((r) => r.succeeded);
        expect(winners).toHaveLength(1);
        const kv = await clients[0]!.get(`${p}k`);
        expect(kv?.modRevision).toBe(winners[0]?.revision);
      } finally {
        await clients[1]!.close();
        await clients[2]!.close();
      }
    });

    it("compare-and-swap races: exactly one swap per revision, and a CAS counter loses no increment", async () => {
      const clients = [getStore(), await target.open(), await target.open()];
      const p = unique("race-cas");
      try {
        const base = await clients[0]!.put(`${p}k`, "0");
        const results = await Promise.all([...Array(30).keys()].map((i) => clients[i % 3]!.compareAndSwap(`${p}k`, base, `w${i}`)));
        expect(results.filter((r) => r.succeeded)).toHaveLength(1);

        await clients[0]!.put(`${p}counter`, "0");
        const incrementer = async (c: KvStore, n: number): Promise<number> => {
          let conflicts = 0;
          for (let done = 0; done < n; ) {
            const cur = await c.get(`${p}counter`);
            const r = await c.compareAndSwap(`${p}counter`, cur!.modRevision, String(Number(cur!.value) + 1));
            if (r.succeeded) done++;
            else conflicts++;
          }
          return conflicts;
        };
        await Promise.all([...Array(9).keys()].map((i) => incrementer(clients[i % 3]!, 10)));
        expect((await clients[0]!.get(`${p}counter`))?.value).toBe("90");
        expect((await clients[0]!.get(`${p}counter`))?.version).toBe(91);
      } finally {
        await clients[1]!.close();
        await clients[2]!.close();
      }
    });
  });

  describe("compaction", () => {
    it("a watch from before the compacted revision fails with CompactedError; re-list and watch from there works", async () => {
      const s = getStore();
      const p = unique("compact");
      const first = await s.put(`${p}k`, "0");
      for (let i = 1; i < 10; i++) await s.put(`${p}k`, String(i));
      const at = first + 5;
      await s.compact(at);
      expect(await s.compactedRevision()).toBeGreaterThanOrEqual(at);
      const compactedAt = await s.compactedRevision();
      const old = s.watch(p, { fromRevision: first + 1 });
      const err = await take(old, 1, "compacted watch").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CompactedError);
      expect((err as CompactedError).compactedRevision).toBe(compactedAt);
      expect((err as CompactedError).requestedRevision).toBe(first + 1);
      await old.close();
      // the recovery every caller does: re-list, watch from the list's revision + 1
      const l = await s.list(p);
      expect(l.kvs[0]?.value).toBe("9");
      const w = s.watch(p, { fromRevision: l.revision + 1 });
      const r = await s.put(`${p}k`, "after");
      const [ev] = await take(w, 1);
      expect(ev?.revision).toBe(r);
      await w.close();
      // history from the compacted revision itself is still there
      if (compactedAt === at) {
        const fromAt = s.watch(p, { fromRevision: at });
        const [e] = await take(fromAt, 1);
        expect(e?.revision).toBe(at);
        await fromAt.close();
      }
      await expect(s.compact((await s.revision()) + 100)).rejects.toBeInstanceOf(InvalidInputError);
    });
  });
}
