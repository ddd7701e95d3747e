/**
 * The Reflector (host/kvstore/reflector.ts) on real stores: list-then-watch,
 * nothing lost or repeated across an outage (a switchable wrapper on the
 * embedded store) and across an etcd SIGKILL + restart, a re-list that diffs
 * after compaction, undecodable records skipped.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { InvalidInputError } from "../../host/errors.js";
import { Reflector } from "../../host/kvstore/reflector.js";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KeyValue, KvStore } from "../../host/kvstore/store.js";
import { describeIf } from "../support/describe-if.js";
import { TestEtcd, etcdMissing } from "../support/etcd.js";
import { flaky } from "./flaky-store.js";
import { tempEmbeddedStore } from "../support/kvstores.js";
import { waitFor } from "../support/wait-for.js";

const P = "membrane/test/reflector/";

/** A reflector over P that logs every handler call; values are "v=<n>" and anything else is refused. */
function follow(store: KvStore, pageSize?: number) {
  const log: string[] = [];
  const problems: string[] = [];
  const r = new Reflector<number>(store, P, {
    decode: (kv: KeyValue) => {
      const m = /^v=(\d+)$/.exec(kv.value);
      if (!m) throw new InvalidInputError(`kvstore key ${kv.key}: value must be v=<number>`);
      return Number(m[1]);
    },
    backoffMs: () => 20,
    pageSize,
    handlers: {
      upsert: (k, v, prev) => log.push(`upsert ${k.slice(P.length)} ${prev ?? "-"}->${v}`),
      delete: (k, prev) => log.push(`delete ${k.slice(P.length)} ${prev}`),
      problem: (m) => problems.push(m),
    },
  });
  return { r, log, problems };
}

async function storeState(store: KvStore): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const kv of (await store.list(P)).kvs) {
    const m = /^v=(\d+)$/.exec(kv.value);
    if (m) out[kv.key.slice(P.length)] = Number(m[1]);
  }
  return out;
}

function mirror(r: Reflector<number>): Record<string, number> {
  return Object.fromEntries([...r.records].map(([k, v]) => [k.slice(P.length), v]));
}

function suite(name: string, open: () => Promise<{ store: KvStore; close(): Promise<void> }>) {
  describe(`reflector on ${name}`, () => {
    let env: { store: KvStore; close(): Promise<void> };
    let followers: Reflector<number>[] = [];
    beforeAll(async () => {
      env = await open();
    });
    afterEach(async () => {
      for (const r of followers) await r.stop();
      followers = [];
      await env.store.deletePrefix(P);
    });
    afterAll(async () => env.close());

    it("lists, then watches from the list's revision: every change exactly once, in order", async () => {
      const { store } = env;
      await store.put(`${P}a`, "v=1");
      await store.put(`${P}b`, "v=2");
      const f = follow(store);
      followers.push(f.r);
      await f.r.start();
      expect(f.log).toEqual(["upsert a -->1", "upsert b -->2"]);
      expect(f.r.hasSynced).toBe(true);
      await store.put(`${P}a`, "v=3");
      await store.delete(`${P}b`);
      await store.put(`${P}c`, "v=4");
      const last = await store.put(`${P}c`, "v=5");
      await waitFor("the last write mirrored", async () => (f.r.syncedRevision >= last ? true : undefined));
      expect(f.log).toEqual(["upsert a -->1", "upsert b -->2", "upsert a 1->3", "delete b 2", "upsert c -->4", "upsert c 4->5"]);
      expect(mirror(f.r)).toEqual(await storeState(store));
    });

    it("lists in pages at one revision; a failed page is retried in place, not from the first page", async () => {
      const store = flaky(env.store);
      for (let i = 0; i < 7; i++) await env.store.put(`${P}k${i}`, `v=${i}`);
      store.failListCall(2); // the third page, once
      const f = follow(store, 2);
      followers.push(f.r);
      await f.r.start();
      expect(mirror(f.r)).toEqual(await storeState(env.store));
      const calls = store.listCalls;
      expect(calls.map((c) => c.options.startAfter?.slice(P.length))).toEqual([undefined, "k1", "k3", "k3", "k5"]);
      expect(calls.map((c) => c.failed)).toEqual([false, false, true, false, false]);
      expect(calls.every((c) => c.options.limit === 2)).toBe(true);
      const pinned = calls[1]!.options.revision!;
      expect(calls.slice(1).every((c) => c.options.revision === pinned)).toBe(true);
      expect(f.problems.some((p) => /list page 3: .*retrying that page/.test(p))).toBe(true);
      expect(f.r.syncedRevision).toBe(pinned);
      // and it watches on from there
      const rev = await env.store.put(`${P}k0`, "v=10");
      await waitFor("the write mirrored", async () => (f.r.syncedRevision >= rev ? true : undefined));
      expect(mirror(f.r)).toEqual(await storeState(env.store));
    });

    it("skips a record that does not decode, names it, and takes it once it is fixed", async () => {
      const { store } = env;
      await store.put(`${P}good`, "v=1");
      await store.put(`${P}bad`, "garbage");
      const f = follow(store);
      followers.push(f.r);
      await f.r.start();
      expect(mirror(f.r)).toEqual({ good: 1 });
      expect(f.problems.some((p) => p.includes(`${P}bad`) && p.includes("v=<number>"))).toBe(true);
      const rev = await store.put(`${P}bad`, "v=7");
      await waitFor("the fixed record", async () => (f.r.syncedRevision >= rev ? true : undefined));
      expect(mirror(f.r)).toEqual({ good: 1, bad: 7 });
      // A record that stops decoding is gone for consumers (a delete), not left stale.
      const rev2 = await store.put(`${P}good`, "broken");
      await waitFor("the broken record", async () => (f.r.syncedRevision >= rev2 ? true : undefined));
      expect(mirror(f.r)).toEqual({ bad: 7 });
      expect(f.log.at(-1)).toBe("delete good 1");
    });

    it("across an outage: keeps serving, then converges with exactly the changes it missed (none repeated)", async () => {
      const store = flaky(env.store);
      await env.store.put(`${P}keep`, "v=1");
      await env.store.put(`${P}change`, "v=1");
      await env.store.put(`${P}drop`, "v=1");
      const f = follow(store);
      followers.push(f.r);
      await f.r.start();
      f.log.length = 0;
      store.down();
      // Written through another connection while this follower cannot reach the store.
      await env.store.put(`${P}change`, "v=2");
      await env.store.put(`${P}change`, "v=3");
      await env.store.delete(`${P}drop`);
      await env.store.put(`${P}new`, "v=9");
      await waitFor("a failure noticed", async () => (f.r.failureCount > 0 ? true : undefined));
      expect(mirror(f.r)).toEqual({ keep: 1, change: 1, drop: 1 }); // the last state, still served
      store.up();
      f.r.resync();
      const rev = await env.store.revision();
      await waitFor("caught up", async () => (f.r.syncedRevision >= rev && f.r.failureCount === 0 ? true : undefined));
      expect(mirror(f.r)).toEqual(await storeState(env.store));
      // Each key that changed appears once with its final value; "keep" never appears.
      expect([...f.log].sort()).toEqual(["delete drop 1", "upsert change 1->3", "upsert new -->9"]);
    });

    it("re-lists and diffs when the history it needs was compacted", async () => {
      const store = flaky(env.store);
      await env.store.put(`${P}x`, "v=1");
      await env.store.put(`${P}y`, "v=1");
      const f = follow(store);
      followers.push(f.r);
      await f.r.start();
      f.log.length = 0;
      const listsBefore = store.listCount();
      store.down();
      await env.store.put(`${P}x`, "v=2");
      await env.store.delete(`${P}y`);
      const rev = await env.store.put(`${P}z`, "v=3");
      await env.store.compact(rev);
      await waitFor("a failure noticed", async () => (f.r.failureCount > 0 ? true : undefined));
      store.up(); // no resync asked: the watch's own retry meets the compaction
      await waitFor("caught up", async () => (f.r.syncedRevision >= rev ? true : undefined));
      expect(f.problems.some((p) => p.includes("compacted"))).toBe(true);
      expect(store.listCount()).toBeGreaterThan(listsBefore);
      expect(mirror(f.r)).toEqual(await storeState(env.store));
      expect([...f.log].sort()).toEqual(["delete y 1", "upsert x 1->2", "upsert z -->3"]);
    });
  });
}

suite("the embedded store", () => tempEmbeddedStore("membrane-reflector-"));

describeIf("reflector on etcd", etcdMissing(), () => {
  suite("etcd", async () => {
    const etcd = await TestEtcd.start();
    const store = await openKvStore(etcd.spec);
    return {
      store,
      close: async () => {
        await store.close();
        await etcd.stop();
      },
    };
  });

  it("loses and repeats nothing across an etcd SIGKILL and restart", async () => {
    const etcd = await TestEtcd.start();
    const store = await openKvStore(etcd.spec);
    const writer = await openKvStore(etcd.spec);
    try {
      for (let i = 0; i < 5; i++) await writer.put(`${P}k${i}`, `v=${i}`);
      const f = follow(store);
      await f.r.start();
      for (let i = 0; i < 5; i++) await writer.put(`${P}k${i}`, `v=${10 + i}`);
      await etcd.kill9();
      await etcd.restart();
      for (let i = 0; i < 5; i++) await writer.put(`${P}k${i}`, `v=${20 + i}`);
      const rev = await writer.delete(`${P}k0`);
      await waitFor("caught up after the restart", async () => (f.r.syncedRevision >= rev.revision ? true : undefined));
      const expected = [
        ...[0, 1, 2, 3, 4].map((i) => `upsert k${i} -->${i}`),
        ...[0, 1, 2, 3, 4].map((i) => `upsert k${i} ${i}->${10 + i}`),
        ...[0, 1, 2, 3, 4].map((i) => `upsert k${i} ${10 + i}->${20 + i}`),
        "delete k0 20",
      ];
      expect(f.log).toEqual(expected);
      // and a resync after the restart repeats nothing
      f.r.resync();
      const rev2 = await writer.put(`${P}k1`, "v=99");
      await waitFor("the write after the resync", async () => (f.r.syncedRevision >= rev2 ? true : undefined));
      expect(f.log).toEqual([...expected, "upsert k1 21->99"]);
      expect(mirror(f.r)).toEqual(await storeState(writer));
      await f.r.stop();
    } finally {
      await store.close();
      await writer.close();
      await etcd.stop();
    }
  });
});
