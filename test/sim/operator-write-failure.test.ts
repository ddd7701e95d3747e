/**
 * A failed operator write does not end the simulation: the operator retries
 * it with backoff, and once every attempt failed the write is counted, named
 * in the report (text and JSON) and the phase goes on. The store is real (an
 * etcd started on loopback, and the embedded store); only the chosen writes
 * are made to fail, the way a loaded etcd misses its deadline, by a wrapper
 * on the operator's connection under its discipline (so the retries are the
 * real ones).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { etcdMissing, TestEtcd } from "../support/etcd.js";
import { DEFAULT_SIM, runSimulation, type SimReport } from "../../host/sim/simulation.js";
import { reportJson, reportLines } from "../../host/sim/report.js";
import { tempEmbeddedSpec } from "../../host/sim/store-target.js";
import { KvStoreError, type KvStore, type Txn } from "../../host/kvstore/store.js";

const SMALL = {
  ...DEFAULT_SIM, operatorQps: 50, nodes: 16, pods: 320, services: 30, labelSets: 20, fullAgents: 2, agentsPerClient: 8,
  churnSeconds: 1.5, podRate: 10, joinNodes: 4, apiserverQps: 50, resyncWindowMs: 600, resyncBaseMs: 200,
  backoffMinMs: 20, backoffMaxMs: 100, fixedRetryMs: 50, restartVariants: [] as never[], operatorAttempts: 3,
};

/** The churned pod `churn-3`'s transaction (and every retry of it) fails as a deadline would; everything else goes through. */
function failChurn3(attempts: { n: number }) {
  return (inner: KvStore): KvStore =>
    new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === "txn") {
          return (txn: Txn) => {
            if (txn.success.some((op) => "key" in op && op.type === "put" && op.key.endsWith("/churn-3"))) {
              attempts.n++;
              return Promise.reject(new KvStoreError("KVSTORE_UNAVAILABLE", "etcd txn: 4 DEADLINE_EXCEEDED: Deadline exceeded (injected)"));
            }
            return target.txn(txn);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
}

function checkReport(r: SimReport, attempts: number): void {
  // the write was retried with backoff, then counted and named; the run went on through every later phase
  expect(attempts).toBe(SMALL.operatorAttempts);
  expect(r.failures.operatorWrites).toHaveLength(1);
  expect(r.failures.operatorWrites[0]).toMatchObject({ phase: "pod churn" });
  expect(r.failures.operatorWrites[0]!.error).toMatch(/after 3 attempts.*DEADLINE_EXCEEDED/);
  expect(r.failures.operatorRetries).toBeGreaterThanOrEqual(SMALL.operatorAttempts - 1);
  expect(r.failures.phases).toEqual([]);
  expect(r.failures.incomplete).toEqual([]);
  expect(r.churn.writesFailed).toBe(1);
  // the pod that was never written is no convergence probe; every other one converged everywhere
  for (const k of r.kinds) expect(k.notConverged, k.kind).toBe(0);
  expect(r.churn.created).toBeGreaterThan(5);
  const names = r.phases.map((p) => p.name);
  expect(names).toContain("pod churn");
  expect(names).toContain("slim records vs full objects");
  expect(r.mechanisms.map((m) => m.mechanism)).toEqual(expect.arrayContaining(["rate limit (operator)", "selective regeneration", "slim records"]));
  for (const c of r.counts) expect(c, c.agent).toMatchObject({ ok: true });
  // named in the text and the JSON
  const text = reportLines(r).join("\n");
  expect(text).toMatch(/failures: 1 operator write\(s\) failed/);
  expect(text).toMatch(/churn-3/);
  expect(text).toMatch(/1 not created \(operator write failed\)/);
  expect(JSON.parse(reportJson(r)).failures.operatorWrites[0].operation).toMatch(/churn-3/);
}

describeIf("membrane sim on etcd: a failed operator write", etcdMissing(), () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it("is retried, counted and named; the run completes and reports", async () => {
    const attempts = { n: 0 };
    const r = await runSimulation({ ...SMALL, kvstore: etcd.spec, wrapOperatorStore: failChurn3(attempts), log: () => {} });
    checkReport(r, attempts.n);
  }, 180_000);
});

it("a failed operator write on the embedded store: counted, named, the run completes", async () => {
  const store = tempEmbeddedSpec();
  try {
    const attempts = { n: 0 };
    const r = await runSimulation({ ...SMALL, kvstore: store.spec, wrapOperatorStore: failChurn3(attempts), log: () => {} });
    checkReport(r, attempts.n);
  } finally {
    store.remove();
  }
}, 180_000);
