/**
 * The conformance suite on the embedded store (a temp dir per run), plus what
 * only the embedded store has: the path's permissions and reopening.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openKvStore, parseKvStoreSpec } from "../../host/kvstore/open.js";
import { CompactedError, type KvStore } from "../../host/kvstore/store.js";
import { kvStoreConformance, take } from "./conformance.js";
import { waitFor } from "../support/wait-for.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-kv-"));
const path = join(dir, "kvstore");
const options = { embedded: { maintenanceIntervalMs: 100, pollIntervalMs: 10 } };
let store: KvStore;

beforeAll(async () => {
  store = await openKvStore(`embedded:${path}`, options);
});
afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("embedded kvstore conformance", () => {
  kvStoreConformance(
    {
      open: () => openKvStore(`embedded:${path}`, options),
      leaseTtl: 1,
      async interrupt(old, watch, whileDown) {
        const from = watch.lastRevision + 1;
        await watch.close();
        await old.close();
        await whileDown();
        const store = await openKvStore(`embedded:${path}`, options);
        return { store, watch: store.watch(watch.prefix, { fromRevision: from }) };
      },
    },
    () => store,
  );
});

describe("embedded kvstore specifics", () => {
  it("creates its directory 0700 and its files 0600", () => {
    expect(statSync(path).mode & 0o777).toBe(0o700);
    expect(statSync(join(path, "db")).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(join(path, "db"))) expect(statSync(join(path, "db", f)).mode & 0o777).toBe(0o600);
  });

  it("keeps writes across close and reopen", async () => {
    const a = await openKvStore(`embedded:${path}`, options);
    const r = await a.put("persist/k", "v");
    await a.close();
    const b = await openKvStore(`embedded:${path}`, options);
    expect(await b.get("persist/k")).toMatchObject({ value: "v", modRevision: r });
    await b.close();
  });

  it("compacts by itself, keeping the last N revisions", async () => {
    const sub = join(dir, "auto-compact");
    const s = await openKvStore(`embedded:${sub}`, { embedded: { keepRevisions: 20, maintenanceIntervalMs: 50 } });
    try {
      for (let i = 0; i < 60; i++) await s.put("k", String(i));
      const rev = await s.revision();
      // maintenance runs on its own timer: wait for it to catch up with the last write
      const compacted = await waitFor(
        "maintenance to compact up to the last 22 revisions",
        async () => {
          const c = await s.compactedRevision();
          return rev - c <= 22 ? c : undefined;
        },
        { intervalMs: 50, timeoutMs: 5_000 },
      );
      expect(compacted).toBeGreaterThan(0);
      // never more than asked: the last N revisions stay watchable
      expect(rev - compacted).toBeGreaterThanOrEqual(20);
      expect(rev - compacted).toBeLessThanOrEqual(22);
    } finally {
      await s.close();
    }
  });

  it("compacts a history larger than one batch", async () => {
    const sub = join(dir, "big-compact");
    const s = await openKvStore(`embedded:${sub}`, { embedded: { keepRevisions: 100_000 } });
    try {
      for (let chunk = 0; chunk < 24; chunk++) {
        await Promise.all([...Array(500).keys()].map((i) => s.put(`big/${i % 50}`, `${chunk}-${i}`)));
      }
      const rev = await s.revision();
      expect(rev).toBe(12_000);
      await s.compact(rev - 5);
      expect(await s.compactedRevision()).toBe(rev - 5);
      const w = s.watch("big/", { fromRevision: rev - 5 });
      const evs = await take(w, 6, "kept history");
      expect(evs.map((e) => e.revision)).toEqual([0, 1, 2, 3, 4, 5].map((i) => rev - 5 + i));
      await w.close();
      const old = s.watch("big/", { fromRevision: rev - 6 });
      await expect(take(old, 1)).rejects.toBeInstanceOf(CompactedError);
      await old.close();
      expect((await s.list("big/")).kvs).toHaveLength(50);
    } finally {
      await s.close();
    }
  });

  it("parses --kvstore specs and refuses nonsense", () => {
    expect(parseKvStoreSpec("embedded:/x/y")).toEqual({ backend: "embedded", path: "/x/y" });
    expect(parseKvStoreSpec(undefined)).toEqual({ backend: "embedded", path: "/var/lib/membrane/kvstore" });
    expect(parseKvStoreSpec("etcd:127.0.0.1:2379,https://h:2380")).toEqual({ backend: "etcd", endpoints: ["127.0.0.1:2379", "https://h:2380"] });
    expect(() => parseKvStoreSpec("etcd:")).toThrow(/at least one endpoint/);
    expect(() => parseKvStoreSpec("redis:1")).toThrow(/neither embedded/);
    expect(() => parseKvStoreSpec("etcd:nohost")).toThrow(/host:port/);
  });
});
