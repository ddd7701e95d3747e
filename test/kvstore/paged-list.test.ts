/**
 * Paged lists (host/kvstore/paged-list.ts, ListOptions startAfter/revision)
 * on both backends, etcd started for real: the pages together equal the
 * unpaged list; they are one snapshot at the first page's revision however
 * the prefix changes while paging; a compaction past that revision ends the
 * list with CompactedError; a failed page is retried in place (same start,
 * same revision), never from the first page; bad options are refused.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidInputError } from "../../host/errors.js";
import { listPages, pagedList, type PageGate } from "../../host/kvstore/paged-list.js";
import { openKvStore } from "../../host/kvstore/open.js";
import { CompactedError, KvStoreError, type KvStore, type ListOptions } from "../../host/kvstore/store.js";
import { describeIf } from "../support/describe-if.js";
import { backends } from "../support/kvstores.js";

const P = "membrane/test/paged/";

/** Keys whose order is not their insertion order, and neighbours just outside the prefix. */
function keyOf(i: number): string {
  return `${P}${String((i * 7919) % 1000).padStart(4, "0")}-${i}`;
}

async function fill(store: KvStore, n: number): Promise<void> {
  const ops = Array.from({ length: n }, (_, i) => ({ type: "put" as const, key: keyOf(i), value: `v${i}` }));
  for (let i = 0; i < ops.length; i += 100) await store.txn({ compare: [], success: ops.slice(i, i + 100) });
  await store.put("membrane/test/paged", "just before the prefix");
  await store.put("membrane/test/paged0", "just after the prefix");
}

const plain = (r: { kvs: { key: string; value: string; modRevision: number }[] }) => r.kvs.map((kv) => [kv.key, kv.value, kv.modRevision]);

for (const backend of backends("membrane-paged-")) {
  describeIf(`paged list on ${backend.name}`, backend.missing, () => {
    let store: KvStore;
    beforeAll(async () => {
      store = await openKvStore(await backend.setup());
      await fill(store, 250);
    });
    afterAll(async () => {
      await store?.close();
      await backend.teardown();
    });

    it("equals the unpaged list for every page size", async () => {
      const whole = await store.list(P);
      expect(whole.kvs).toHaveLength(250);
      for (const pageSize of [1, 7, 100, 249, 250, 251, 1000]) {
        const paged = await pagedList(store, P, { pageSize });
        expect(paged.revision).toBe(whole.revision);
        expect(plain(paged)).toEqual(plain(whole));
        expect(paged.pages).toBe(Math.max(1, Math.ceil(250 / pageSize)));
      }
      // an empty prefix is one empty page with a revision
      const none = await pagedList(store, `${P}nothing/`, { pageSize: 10 });
      expect(none.kvs).toEqual([]);
      expect(none.revision).toBe(whole.revision);
    });

    it("says whether more keys follow a page", async () => {
      const first = await store.list(P, { limit: 100 });
      expect(first.more).toBe(true);
      const last = await store.list(P, { limit: 100, startAfter: first.kvs.at(-1)!.key, revision: first.revision });
      const rest = await store.list(P, { limit: 100, startAfter: last.kvs.at(-1)!.key, revision: first.revision });
      expect(rest.kvs).toHaveLength(50);
      expect(rest.more).toBe(false);
      expect(rest.revision).toBe(first.revision);
    });

    it("is one snapshot at the first page's revision while the prefix changes under it", async () => {
      const before = await store.list(P);
      const pages: string[][] = [];
      let n = 0;
      for await (const page of listPages(store, P, { pageSize: 20 })) {
        pages.push(page.kvs.map((kv) => kv.key));
        expect(page.revision).toBe(before.revision);
        // between pages: create keys ahead of and behind the cursor, delete and change keys on both sides
        const k = n++;
        await store.put(`${P}0000-new-${k}`, "created after the snapshot");
        await store.put(`${P}zzzz-new-${k}`, "created after the snapshot");
        await store.delete(before.kvs[(k * 37) % 250]!.key);
        await store.put(before.kvs[(k * 53 + 11) % 250]!.key, `changed ${k}`);
        await store.txn({ compare: [], success: [{ type: "delete", key: before.kvs[(k * 17 + 5) % 250]!.key }, { type: "put", key: `${P}5000-new-${k}`, value: "x" }] });
      }
      expect(await store.revision()).toBeGreaterThan(before.revision);
      expect(pages.flat()).toEqual(before.kvs.map((kv) => kv.key));
      // and reads at that revision, after all those writes, still give exactly the old values: whole, and page by page
      expect(plain(await store.list(P, { revision: before.revision }))).toEqual(plain(before));
      const walked: ReturnType<typeof plain> = [];
      let startAfter: string | undefined;
      for (;;) {
        const page = await store.list(P, { limit: 9, startAfter, revision: before.revision });
        expect(page.revision).toBe(before.revision);
        walked.push(...plain(page));
        if (!page.more) break;
        startAfter = page.kvs.at(-1)!.key;
      }
      expect(walked).toEqual(plain(before));
    });

    it("ends with CompactedError when the pinned revision is compacted while paging", async () => {
      const pages = listPages(store, P, { pageSize: 10 });
      const first = await pages.next();
      expect(first.done).toBe(false);
      const pinned = (first.value as { revision: number }).revision;
      const rev = await store.put(`${P}0001-after`, "moves the revision on");
      await store.compact(rev);
      const err = await pages.next().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(CompactedError);
      expect((err as CompactedError).requestedRevision).toBe(pinned);
      expect((err as CompactedError).compactedRevision).toBeGreaterThanOrEqual(rev);
      // a fresh list works again (at the new revision)
      const fresh = await pagedList(store, P, { pageSize: 50 });
      expect(fresh.revision).toBeGreaterThanOrEqual(rev);
      expect(plain(fresh)).toEqual(plain(await store.list(P)));
    });

    it("refuses bad options, naming them", async () => {
      await expect(store.list(P, { startAfter: "membrane/other/x" })).rejects.toThrow(/startAfter .* does not start with the prefix/);
      await expect(store.list(P, { limit: 0 })).rejects.toThrow(/limit must be a whole number >= 1/);
      await expect(store.list(P, { revision: 0 })).rejects.toBeInstanceOf(InvalidInputError);
      const now = await store.revision();
      await expect(store.list(P, { revision: now + 1000 })).rejects.toThrow(/future revision/);
    });
  });
}

describe("paged list retries a failed page in place", () => {
  /** A store answering from a fixed key set, failing chosen calls with KVSTORE_UNAVAILABLE, recording every call. */
  function scripted(failCalls: Set<number>) {
    const keys = Array.from({ length: 95 }, (_, i) => `${P}${String(i).padStart(3, "0")}`);
    const calls: { startAfter?: string; revision?: number; failed: boolean }[] = [];
    const store = {
      backend: "embedded",
      location: "scripted",
      list: async (_prefix: string, o: ListOptions = {}) => {
        const failed = failCalls.has(calls.length);
        calls.push({ startAfter: o.startAfter, revision: o.revision, failed });
        if (failed) throw new KvStoreError("KVSTORE_UNAVAILABLE", "scripted: deadline exceeded");
        const from = o.startAfter === undefined ? 0 : keys.indexOf(o.startAfter) + 1;
        const kvs = keys.slice(from, from + (o.limit ?? keys.length)).map((key) => ({ key, value: "v", createRevision: 1, modRevision: 1, version: 1, lease: undefined }));
        return { kvs, revision: o.revision ?? 42, more: from + kvs.length < keys.length };
      },
    } as unknown as KvStore;
    return { store, calls, keys };
  }

  it("asks for the same page (same start key, same revision) again, and never for the first page again", async () => {
    const { store, calls, keys } = scripted(new Set([3, 4, 7]));
    const retries: string[] = [];
    const r = await pagedList(store, P, { pageSize: 10, retryWaitMs: () => 1, onRetry: ({ page, attempt }) => retries.push(`${page}/${attempt}`) });
    expect(r.kvs.map((kv) => kv.key)).toEqual(keys);
    expect(r.revision).toBe(42);
    expect(r.retries).toBe(3);
    expect(retries).toEqual(["3/1", "3/2", "5/1"]);
    // each failed call is followed by the same request; the first page is asked for once
    for (const [i, c] of calls.entries()) if (c.failed) expect({ ...calls[i + 1], failed: true }).toEqual(c);
    expect(calls.filter((c) => c.startAfter === undefined)).toHaveLength(1);
    expect(calls.slice(1).every((c) => c.revision === 42)).toBe(true);
    expect(calls).toHaveLength(10 + 3);
  });

  it("gives up after maxAttempts with the store's error, and does not retry errors retrying cannot fix", async () => {
    const { store } = scripted(new Set([1, 2, 3]));
    await expect(pagedList(store, P, { pageSize: 10, retryWaitMs: () => 1, maxAttempts: 2 })).rejects.toThrow(/deadline exceeded/);
    const closed = { ...scripted(new Set()).store, list: async () => { throw new KvStoreError("KVSTORE_CLOSED", "closed"); } } as unknown as KvStore;
    let tries = 0;
    await expect(pagedList(closed, P, { retryWaitMs: () => ((tries++), 1) })).rejects.toThrow(/closed/);
    expect(tries).toBe(0);
  });

  it("takes a gate turn per page and gives it back after the page was consumed", async () => {
    const { store } = scripted(new Set([2]));
    let held = 0;
    let maxHeld = 0;
    let turns = 0;
    const gate: PageGate = {
      ticket: () => 7,
      acquire: async (ticket) => {
        expect(ticket).toBe(7);
        held++;
        turns++;
        maxHeld = Math.max(maxHeld, held);
        return () => void held--;
      },
    };
    let pages = 0;
    for await (const page of listPages(store, P, { pageSize: 10, gate, retryWaitMs: () => 1 })) {
      expect(held).toBe(1); // the page is consumed inside its turn
      pages += page.kvs.length > 0 ? 1 : 0;
    }
    expect(pages).toBe(10);
    expect(turns).toBe(11); // one failed attempt gave its turn back and queued again
    expect(held).toBe(0);
    expect(maxHeld).toBe(1);
  });
});
