/**
 * Lists on etcd read RangeResponse bytes directly (host/kvstore/etcd/range-response.ts).
 * Against a real etcd: every field a list returns equals what a get (the
 * etcd3 library's own decoding) returns for the same key, for UTF-8 values,
 * an empty value, a key on a lease, rewritten keys; `more` and the revision
 * of a limited list; and a truncated reply is an error, not a short list.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { etcdMissing, TestEtcd } from "../support/etcd.js";
import { openKvStore } from "../../host/kvstore/open.js";
import { decodeRangeResponse } from "../../host/kvstore/etcd/range-response.js";
import type { KvStore } from "../../host/kvstore/store.js";

describeIf("etcd lists decode RangeResponse themselves", etcdMissing(), () => {
  let etcd: TestEtcd;
  let store: KvStore;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
    store = await openKvStore(etcd.spec);
  });
  afterAll(async () => {
    await store?.close();
    await etcd?.stop();
  });

  it("lists what get returns, field for field", async () => {
    const lease = await store.grantLease(60);
    await store.put("rr/a", "plain");
    await store.put("rr/b", "héllo ✓ 🚀");
    await store.put("rr/c", "");
    await store.put("rr/d", "on a lease", { lease: lease.id });
    await store.put("rr/a", "rewritten");
    await store.put("rr/ü-key", JSON.stringify({ x: [1, 2, 3] }));
    const listed = await store.list("rr/");
    expect(listed.kvs.map((kv) => kv.key)).toEqual(["rr/a", "rr/b", "rr/c", "rr/d", "rr/ü-key"]);
    for (const kv of listed.kvs) expect(kv).toEqual(await store.get(kv.key));
    expect(listed.kvs.find((kv) => kv.key === "rr/d")!.lease).toBe(lease.id);
    expect(listed.kvs[0]).toMatchObject({ value: "rewritten", version: 2 });
    expect(listed.revision).toBe(await store.revision());
    const page = await store.list("rr/", { limit: 2 });
    expect(page.kvs.map((kv) => kv.key)).toEqual(["rr/a", "rr/b"]);
    expect(page.more).toBe(true);
    const last = await store.list("rr/", { limit: 2, startAfter: "rr/d", revision: page.revision });
    expect(last.kvs.map((kv) => kv.key)).toEqual(["rr/ü-key"]);
    expect(last.revision).toBe(page.revision);
    expect(last.more).toBe(false);
    lease.release();
  });
});

it("a truncated RangeResponse is an error", () => {
  // header { revision: 5 }, kvs { key: "k", value: "v", mod_revision: 300 }
  const kv = Buffer.from([0x0a, 1, 0x6b, 0x18, 0xac, 0x02, 0x2a, 1, 0x76]);
  const whole = Buffer.concat([Buffer.from([0x0a, 2, 0x18, 5, 0x12, kv.length]), kv, Buffer.from([0x18, 1])]);
  expect(decodeRangeResponse(whole)).toEqual({ revision: 5, more: true, count: 0, kvs: [{ key: "k", value: "v", createRevision: 0, modRevision: 300, version: 0, lease: undefined }] });
  expect(() => decodeRangeResponse(whole.subarray(0, 10))).toThrow(/etcd range response/);
});
