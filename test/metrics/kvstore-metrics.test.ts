// kvstore_operations_duration_seconds from the kvstore client: each backend
// call counted once under Cilium's action/kind/scope labels, failures as fail.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MeteredKvStore, scopeOfKey } from "../../host/kvstore/metered-store.js";
import { openKvStore } from "../../host/kvstore/open.js";
import { createMetrics } from "../../host/metrics/index.js";
import { sample, sum } from "./support.js";

describe("kvstore operation metrics", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "membrane-ob-kvmetrics-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("scopes are the key's first three segments, never the key", () => {
    expect(scopeOfKey("membrane/state/identities/v1/id/1234")).toBe("membrane/state/identities");
    expect(scopeOfKey("membrane/locks/operator")).toBe("membrane/locks/operator");
    expect(scopeOfKey("")).toBe("/");
  });

  it("counts each call by action, kind, outcome and scope", async () => {
    const metrics = createMetrics();
    const store = new MeteredKvStore(await openKvStore(`embedded:${join(dir, "store")}`), metrics.kvstoreOperations);
    try {
      await store.put("membrane/state/nodes/v1/default/a", "1");
      await store.put("membrane/state/nodes/v1/default/b", "2");
      await store.get("membrane/state/nodes/v1/default/a");
      await store.list("membrane/state/nodes/v1/");
      await store.delete("membrane/state/nodes/v1/default/b");
      await expect(store.deletePrefix("")).rejects.toThrow();
      const text = await metrics.registry.metrics();
      const count = (action: string, kind: string, outcome = "success") =>
        sample(text, "membrane_kvstore_operations_duration_seconds_count", { action, kind, outcome, scope: "membrane/state/nodes" });
      expect(count("Update", "set")).toBe(2);
      expect(count("Get", "read")).toBe(1);
      expect(count("ListPrefix", "read")).toBe(1);
      expect(count("Delete", "delete")).toBe(1);
      expect(sample(text, "membrane_kvstore_operations_duration_seconds_count", { action: "DeletePrefix", kind: "delete", outcome: "fail", scope: "/" })).toBe(1);
      expect(sum(text, "membrane_kvstore_operations_duration_seconds_count")).toBe(6);
    } finally {
      await store.close();
    }
  });
});
