/**
 * Cluster-wide identities on both backends: Cilium 1.5's allocation scheme
 * raced by 50 allocators in two processes, the local reference count, the
 * operator's GC (collects only what no node uses, even while allocators
 * churn), and agents re-creating masters they still use.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabelSet } from "../../host/identity/labels.js";
import { DisciplinedKvStore } from "../../host/kvstore/disciplined-store.js";
import { ClusterIdentityAllocator, IDENTITY_MASTER_PAGE_SIZE } from "../../host/kvstore/identities.js";
import { collectIdentities, listClusterIdentities } from "../../host/kvstore/identity-gc.js";
import { keys } from "../../host/kvstore/keys.js";
import { KvstoreIdentityAllocator } from "../../host/kvstore/kvstore-identity-allocator.js";
import { LOCAL_IDENTITY_SCOPE } from "../../host/identity/allocator.js";
import { parsePrefix } from "../../host/packet/cidr.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { openKvStore } from "../../host/kvstore/open.js";
import { UNLIMITED } from "../../host/kvstore/rate-limit.js";
import { decodeRecord } from "../../host/kvstore/records/codec.js";
import type { IdentityValueRecord } from "../../host/kvstore/records/identity.js";
import { KvStoreError, type KvStore, type Lease, type ListOptions } from "../../host/kvstore/store.js";
import { describeIf } from "../support/describe-if.js";
import { etcdMissing, TestEtcd } from "../support/etcd.js";
import { REPO_ROOT, tsNodeArgs } from "../support/ts-child.js";
import { pause } from "../support/wait-for.js";

const WORKER = join(import.meta.dirname, "identity-race-worker.ts");

const labelSet = (i: number) => LabelSet.parse([`k8s:app=app-${i}`, `k8s:io.kubernetes.pod.namespace=ns-${i % 3}`]);

function runWorker(spec: string, plan: unknown): Promise<{ allocations: { node: string; labels: string; id: number; created: boolean }[]; released: { node: string; labels: string; deleted: boolean }[]; errors: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, tsNodeArgs(WORKER, spec, JSON.stringify(plan)), { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`identity worker exited ${code}: ${err}`));
      resolve(JSON.parse(out.trim().split("\n").at(-1)!));
    });
  });
}

/** Every node key: labels -> ids seen, and the full list. */
async function nodeKeys(store: KvStore): Promise<{ labels: string; node: string; id: number }[]> {
  const out: { labels: string; node: string; id: number }[] = [];
  for (const kv of (await store.list(keys.identityValues())).kvs) {
    const { key, record } = decodeRecord(kv.key, kv.value);
    out.push({ labels: key.path[1]!, node: key.path[2]!, id: (record as IdentityValueRecord).id });
  }
  return out;
}

/** The invariants at rest: each label set one ID, each ID one label set, every node key's ID has its master. */
async function expectConsistent(store: KvStore): Promise<void> {
  const masters = await listClusterIdentities(store);
  const byLabels = new Map<string, Set<number>>();
  for (const { labels, id } of await nodeKeys(store)) {
    byLabels.set(labels, (byLabels.get(labels) ?? new Set()).add(id));
    expect(masters.get(id), `master of ${id} used by ${labels}`).toBe(labels);
  }
  for (const [labels, ids] of byLabels) expect([...ids], labels).toHaveLength(1);
  const labelsOfMasters = [...masters.values()];
  expect(new Set(labelsOfMasters).size).toBe(labelsOfMasters.length);
}

interface Backend {
  name: string;
  missing: () => string | undefined;
  spec: () => string;
  setup: () => Promise<void>;
  teardown: () => Promise<void>;
}

let etcd: TestEtcd | undefined;
let embeddedDir = "";
const backends: Backend[] = [
  {
    name: "embedded",
    missing: () => undefined,
    spec: () => `embedded:${join(embeddedDir, "store")}`,
    setup: async () => {
      embeddedDir = mkdtempSync(join(tmpdir(), "membrane-identities-"));
    },
    teardown: async () => rmSync(embeddedDir, { recursive: true, force: true }),
  },
  {
    name: "etcd",
    missing: etcdMissing,
    spec: () => `etcd:${etcd!.endpoint}`,
    setup: async () => {
      etcd = await TestEtcd.start();
    },
    teardown: async () => {
      await etcd?.stop();
    },
  },
];

for (const backend of backends) {
  describeIf(`cluster identities on ${backend.name}`, backend.missing(), () => {
    let store: KvStore;
    let operatorLease: Lease;
    const spec = () => backend.spec();

    beforeAll(async () => {
      await backend.setup();
      store = await openKvStore(spec());
      operatorLease = await store.grantLease(60);
    });
    afterAll(async () => {
      await operatorLease?.revoke().catch(() => undefined);
      await store?.close();
      await backend.teardown();
    });

    async function newAllocator(node: string, ttl = 60): Promise<{ allocator: ClusterIdentityAllocator; lease: Lease }> {
      const lease = await store.grantLease(ttl);
      return { allocator: new ClusterIdentityAllocator(new DisciplinedKvStore(store, { rateLimit: UNLIMITED }), { node, lease }), lease };
    }

    it("50 allocators in two processes racing on overlapping label sets: one ID per label set, one label set per ID; GC takes only unused IDs", async () => {
      const sets = Array.from({ length: 12 }, (_, i) => labelSet(100 + i).toStrings().join(","));
      const plans = [0, 1].map((p) => {
        const nodes = Array.from({ length: 25 }, (_, j) => `race-${p}-${j}`);
        // Every node takes 5 of the 12 sets, overlapping heavily; set 0 is taken by everyone and released by everyone.
        const chosen = nodes.map((_, j) => [0, 1 + ((j + p) % 11), 1 + ((j * 3 + p) % 11), 1 + ((j * 7 + 2) % 11), 1 + ((j + 5) % 11)]);
        return {
          nodes,
          sets: chosen.map((c) => [...new Set(c)].map((i) => sets[i]!)),
          release: chosen.map((c) => [sets[0]!, ...(c.includes(11) ? [sets[11]!] : [])]),
        };
      });
      const results = await Promise.all(plans.map((plan) => runWorker(spec(), plan)));
      const errors = results.flatMap((r) => r.errors);
      expect(errors).toEqual([]);
      const all = results.flatMap((r) => r.allocations);
      expect(all.length).toBe(plans.flatMap((p) => p.sets).flat().length);

      // Never two IDs for one label set, never one ID for two label sets, across both processes.
      const idsOf = new Map<string, Set<number>>();
      const labelsOf = new Map<number, Set<string>>();
      for (const a of all) {
        idsOf.set(a.labels, (idsOf.get(a.labels) ?? new Set()).add(a.id));
        labelsOf.set(a.id, (labelsOf.get(a.id) ?? new Set()).add(a.labels));
      }
      for (const [labels, ids] of idsOf) expect([...ids], labels).toHaveLength(1);
      for (const [id, labelSets] of labelsOf) expect([...labelSets], String(id)).toHaveLength(1);
      expect(idsOf.size).toBe(12);
      // Exactly one allocator created each master.
      expect(all.filter((a) => a.created).length).toBe(12);
      await expectConsistent(store);

      // Set 0 was released by every node (its node keys are gone), set 11 by everyone who had it;
      // the others are still in use. GC deletes exactly the unused masters.
      const id0 = [...idsOf.get(LabelSet.parse(sets[0]!.split(",")).id)!][0]!;
      const id11 = [...idsOf.get(LabelSet.parse(sets[11]!.split(",")).id)!][0]!;
      const stillUsed = new Set((await nodeKeys(store)).map((k) => k.id));
      expect(stillUsed.has(id0)).toBe(false);
      expect(stillUsed.has(id11)).toBe(false);
      expect(stillUsed.size).toBe(10);
      const gc = await collectIdentities(store, operatorLease);
      expect(gc.deleted.sort((a, b) => a - b)).toEqual([id0, id11].sort((a, b) => a - b));
      const left = await listClusterIdentities(store);
      expect(new Set(left.keys())).toEqual(stillUsed);
      await expectConsistent(store);
      // A second run finds nothing more to collect.
      expect((await collectIdentities(store, operatorLease)).deleted).toEqual([]);
    });

    it("a repeated use is answered locally (no kvstore operation); the node key goes on the last release", async () => {
      const { allocator, lease } = await newAllocator("refcount-node");
      const labels = labelSet(1);
      const first = await allocator.allocate(labels);
      const ops = allocator.kvOperations;
      const again = await allocator.allocate(labels);
      expect(again.id).toBe(first.id);
      expect(again.created).toBe(false);
      expect(allocator.kvOperations).toBe(ops);
      expect(allocator.references(labels)).toBe(2);
      const valueKey = keys.identityValue(labels.id, "refcount-node");
      expect(await allocator.release(labels)).toBe(false);
      expect(await store.get(valueKey)).toBeDefined();
      expect(await allocator.release(labels)).toBe(true);
      expect(await store.get(valueKey)).toBeUndefined();
      const kv = await store.get(keys.identityMaster(first.id));
      expect(kv?.lease).toBeUndefined(); // the master outlives the node: no lease
      await lease.revoke();
    });

    it("a second node gets the same ID; GC keeps it while any node holds it and after a node's lease ends collects nothing it still needs", async () => {
      const a = await newAllocator("gc-a");
      const b = await newAllocator("gc-b");
      const labels = labelSet(2);
      const ia = await a.allocator.allocate(labels);
      const ib = await b.allocator.allocate(labels);
      expect(ib.id).toBe(ia.id);
      expect(ib.created).toBe(false);
      await a.lease.revoke(); // node a died: its key vanished with its lease
      expect((await collectIdentities(store, operatorLease)).deleted).not.toContain(ia.id);
      expect((await listClusterIdentities(store)).get(ia.id)).toBe(labels.id);
      await b.allocator.release(labels);
      expect((await collectIdentities(store, operatorLease)).deleted).toContain(ia.id);
      expect((await listClusterIdentities(store)).has(ia.id)).toBe(false);
      await b.lease.revoke();
    });

    it("agents re-create masters they still use; a new allocation then reuses the ID", async () => {
      const { allocator, lease } = await newAllocator("resync-node");
      const labels = labelSet(3);
      const { id } = await allocator.allocate(labels);
      await store.delete(keys.identityMaster(id)); // collected by a buggy or partitioned operator
      await store.delete(keys.identityValue(labels.id, "resync-node")); // and our key lost
      const report = await allocator.resync();
      expect(report).toMatchObject({ mastersRecreated: 1, valuesRewritten: 1, conflicts: [] });
      expect((await listClusterIdentities(store)).get(id)).toBe(labels.id);
      const other = await newAllocator("resync-other");
      expect((await other.allocator.allocate(labels)).id).toBe(id);
      expect((await allocator.resync()).mastersRecreated).toBe(0);
      await lease.revoke();
      await other.lease.revoke();
    });

    it("GC racing with allocators that churn never lets an ID serve two label sets", async () => {
      const nodes = await Promise.all(Array.from({ length: 8 }, (_, i) => newAllocator(`churn-${i}`)));
      const sets = Array.from({ length: 5 }, (_, i) => labelSet(200 + i));
      let stop = false;
      const gcRuns = (async () => {
        let runs = 0;
        while (!stop) {
          await collectIdentities(store, operatorLease);
          runs++;
          // Yield to timers between runs (the embedded store answers reads
          // without a macrotask, so a bare loop would starve the watches that
          // wake lock waiters): pacing, not waiting on anything.
          await pause(2);
        }
        return runs;
      })();
      await Promise.all(
        nodes.map(async ({ allocator }, n) => {
          for (let round = 0; round < 6; round++) {
            const mine = sets.filter((_, i) => (i + n + round) % 2 === 0);
            await Promise.all(mine.map((l) => allocator.allocate(l)));
            await expectHeldConsistent(nodes.map((x) => x.allocator));
            await Promise.all(mine.map((l) => allocator.release(l)));
          }
        }),
      );
      stop = true;
      expect(await gcRuns).toBeGreaterThan(0);
      await expectConsistent(store);
      for (const { lease } of nodes) await lease.revoke();
    });

    /** Whatever is held right now by any allocator: each label set one ID, each ID one label set. */
    async function expectHeldConsistent(allocators: ClusterIdentityAllocator[]): Promise<void> {
      const idOf = new Map<string, number>();
      const labelsOf = new Map<number, string>();
      for (const a of allocators) {
        for (const [labels, { id }] of a.holdings()) {
          if (idOf.has(labels)) expect(idOf.get(labels), labels).toBe(id);
          if (labelsOf.has(id)) expect(labelsOf.get(id), String(id)).toBe(labels);
          idOf.set(labels, id);
          labelsOf.set(id, labels);
        }
      }
    }

    it("backs the policy engine's synchronous allocator: prepared label sets from the cluster, reserved and CIDR ones local as before", async () => {
      const { allocator, lease } = await newAllocator("engine-node");
      const adapter = new KvstoreIdentityAllocator(allocator);
      const engine = new PolicyEngine({ allocator: adapter });
      expect(engine.allocator).toBe(adapter);
      const web = labelSet(4);
      expect(() => adapter.allocate(web)).toThrow(/prepare\(\)/);
      await adapter.prepare([web, web]);
      const a = adapter.allocate(web);
      expect(a.created).toBe(true);
      expect(a.identity.id).toBeGreaterThanOrEqual(256);
      expect((await listClusterIdentities(store)).get(a.identity.id)).toBe(web.id);
      expect(adapter.allocate(web)).toMatchObject({ created: false, identity: { id: a.identity.id } });
      expect(adapter.get(2)?.labels.id).toBe("reserved:world"); // reserved identities as before
      const cidr = adapter.allocateCidr(parsePrefix("10.0.0.0/8", "test"));
      expect(cidr.identity.id).toBeGreaterThanOrEqual(LOCAL_IDENTITY_SCOPE);
      expect(adapter.release(a.identity.id)).toBeUndefined();
      const valueKey = keys.identityValue(web.id, "engine-node");
      expect(await store.get(valueKey)).toBeDefined();
      expect(adapter.release(a.identity.id)?.id).toBe(a.identity.id);
      await adapter.settled();
      expect(await store.get(valueKey)).toBeUndefined();
      expect(adapter.release(cidr.identity.id)?.id).toBe(cidr.identity.id);
      await lease.revoke();
    });

    /** `store` seen through a recorder of every list of the masters prefix (its options), failing the lists `failList` picks once each. */
    function recordingMasterLists(failList: (call: number) => boolean = () => false): { store: KvStore; lists: (ListOptions | undefined)[] } {
      const lists: (ListOptions | undefined)[] = [];
      const recorded = new Proxy(store, {
        get(target, prop, receiver) {
          if (prop !== "list") {
            const v = Reflect.get(target, prop, receiver);
            return typeof v === "function" ? v.bind(target) : v;
          }
          return (prefix: string, options?: ListOptions) => {
            if (prefix === keys.identityMasters()) {
              lists.push(options);
              if (failList(lists.length)) return Promise.reject(new KvStoreError("KVSTORE_UNAVAILABLE", "test: page lost"));
            }
            return target.list(prefix, options);
          };
        },
      });
      return { store: recorded, lists };
    }

    /** The lowest `n` consecutive IDs no master holds (earlier tests left masters at random IDs). */
    async function freeRun(n: number): Promise<number> {
      const used = await listClusterIdentities(store);
      for (let base = 256; ; base++) if (Array.from({ length: n }, (_, i) => base + i).every((id) => !used.has(id))) return base;
    }

    it("with the watched masters, a new identity lists no master; an ID the watch has not delivered yet is a lost race, retried", async () => {
      const base = await freeRun(3);
      const lease = await store.grantLease(60);
      // `base` exists in the store, but this node's mirror has not seen it yet
      expect(await store.create(keys.identityMaster(base), JSON.stringify({ labels: labelSet(40).toStrings() }))).toMatchObject({ succeeded: true });
      const reused = labelSet(41); // a master nobody references any more, which the mirror has seen
      expect(await store.create(keys.identityMaster(base + 2), JSON.stringify({ labels: reused.toStrings() }))).toMatchObject({ succeeded: true });
      const { store: recorded, lists } = recordingMasterLists();
      let draws = 0;
      const allocator = new ClusterIdentityAllocator(new DisciplinedKvStore(recorded, { rateLimit: UNLIMITED }), {
        node: "mirror-node",
        lease,
        minId: base,
        maxId: base + 1,
        random: () => (draws++ === 0 ? 0 : 0.99), // first pick `base` (taken), then base + 1
        knownMasters: () => [{ id: base + 2, labels: reused.id }],
      });
      expect(await allocator.allocate(labelSet(42))).toMatchObject({ id: base + 1, created: true });
      expect(await allocator.allocate(reused)).toMatchObject({ id: base + 2, created: false });
      expect(lists).toEqual([]);
      expect((await listClusterIdentities(store)).get(base + 1)).toBe(labelSet(42).id);
      await allocator.release(labelSet(42));
      await allocator.release(reused);
      for (const id of [base, base + 1, base + 2]) await store.delete(keys.identityMaster(id));
      await lease.revoke();
    });

    it("without a mirror, the masters are listed in pages of 500, a lost page retried in place", async () => {
      // 1,201 IDs from `base`, every one held by a master but `free`: 1,200+ masters, and the allocator must read them all to find it
      const base = 50_000;
      const used = await listClusterIdentities(store);
      const candidates = Array.from({ length: 1_201 }, (_, i) => base + i).filter((id) => !used.has(id));
      const free = candidates.at(-1)!;
      const bulk = candidates.slice(0, -1);
      for (let i = 0; i < bulk.length; i += 100) {
        await store.txn({
          compare: [],
          success: bulk.slice(i, i + 100).map((id) => ({ type: "put" as const, key: keys.identityMaster(id), value: JSON.stringify({ labels: [`k8s:bulk=b${id}`] }) })),
        });
      }
      const lease = await store.grantLease(60);
      const { store: recorded, lists } = recordingMasterLists((call) => call === 2);
      const allocator = new ClusterIdentityAllocator(new DisciplinedKvStore(recorded, { rateLimit: UNLIMITED }), { node: "paged-node", lease, minId: base, maxId: base + 1_200 });
      const labels = labelSet(43);
      expect(await allocator.allocate(labels)).toMatchObject({ id: free, created: true });
      expect(lists.length).toBeGreaterThanOrEqual(4); // 3+ pages, one of them lost once
      expect(lists.every((o) => o?.limit === IDENTITY_MASTER_PAGE_SIZE)).toBe(true);
      expect(lists[0]!.startAfter).toBeUndefined();
      expect(lists[1]!.startAfter).toBeDefined();
      expect(lists[2]!.startAfter).toBe(lists[1]!.startAfter); // the lost page again, from the same key
      expect(lists[3]!.startAfter! > lists[2]!.startAfter!).toBe(true);
      expect(new Set(lists.slice(1).map((o) => o?.revision)).size).toBe(1); // every later page at the first page's revision
      await allocator.release(labels);
      for (const id of [...bulk, free]) await store.delete(keys.identityMaster(id));
      await lease.revoke();
    });

    it("reserved and CIDR label sets are refused: they stay node-local", async () => {
      const { allocator, lease } = await newAllocator("reserved-node");
      await expect(allocator.allocate(LabelSet.of([{ source: "reserved", key: "host", value: "" }]))).rejects.toThrow(/node-local/);
      await lease.revoke();
    });
  });
}
