/**
 * A small cluster through the whole simulation, on a real etcd and on the
 * embedded store: every agent converges on every churned pod, the counts each
 * agent holds match what the operator wrote, and each mechanism on/off moves
 * the figure it should.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { etcdMissing, TestEtcd } from "../support/etcd.js";
import { DEFAULT_SIM, runSimulation, type SimReport } from "../../host/sim/simulation.js";
import { tempEmbeddedSpec } from "../../host/sim/store-target.js";

const SMALL = { ...DEFAULT_SIM, operatorQps: 50, nodes: 24, pods: 480, services: 40, labelSets: 30, fullAgents: 3, agentsPerClient: 8, churnSeconds: 1.5, podRate: 10, joinNodes: 5, apiserverQps: 20, resyncWindowMs: 1500, resyncBaseMs: 300, backoffMinMs: 100, fixedRetryMs: 100 };

function checkReport(r: SimReport): void {
  // every agent of both kinds converged on every churned pod
  for (const k of r.kinds) {
    expect(k.notConverged, k.kind).toBe(0);
    expect(k.convergenceP50Ms).toBeGreaterThan(0);
    expect(k.eventsPerAgent).toBeGreaterThan(0);
  }
  expect(r.churn.created).toBeGreaterThan(5);
  expect(r.churn.newIdentities).toBeGreaterThan(0);
  // no bounded wait ran out: every phase done, every churn figure measured
  expect(r.failures.incomplete).toEqual([]);
  expect(r.phases.every((p) => p.outcome === "done"), r.phases.map((p) => `${p.name}: ${p.outcome}`).join("; ")).toBe(true);
  expect(r.churn).toMatchObject({ complete: true, podsNotEverywhere: 0, diagnosis: null });
  expect(r.churn.untilEveryAgentP99Ms).toBeGreaterThan(0);
  // what agents hold matches what was written
  for (const c of r.counts) expect(c, c.agent).toMatchObject({ ok: true, ipcache: SMALL.pods, services: SMALL.services, nodes: SMALL.nodes + SMALL.joinNodes, policies: 1 });
  const m = Object.fromEntries(r.mechanisms.map((x) => [x.mechanism, x]));
  // slim: at least 10x fewer bytes per pod change
  expect(m["slim records"]!.off / m["slim records"]!.on).toBeGreaterThanOrEqual(10);
  // incremental regenerates only selected endpoints (<= 10), full regenerates every local endpoint
  expect(m["selective regeneration"]!.on).toBeLessThanOrEqual(10);
  expect(m["selective regeneration"]!.off).toBeGreaterThan(m["selective regeneration"]!.on);
  // ln(1 + nodes) makes the resync rarer
  expect(m["interval scaling"]!.on).toBeLessThan(m["interval scaling"]!.off);
  // the operator's limiter holds its writes near its rate; without it they go as fast as the store takes them
  expect(m["rate limit (operator)"]!.on).toBeLessThan(m["rate limit (operator)"]!.off);
  expect(m["rate limit (operator)"]!.on).toBeLessThanOrEqual(SMALL.operatorQps * 2);
  // exponential backoff with jitter is refused less often than a fixed retry; restart from scratch repeats steps
  expect(m["backoff with jitter"]!.on).toBeLessThan(m["backoff with jitter"]!.off);
  expect(m["retry in place"]!.off).toBeGreaterThanOrEqual(m["retry in place"]!.on);
  expect(r.restarts).toHaveLength(3);
  for (const x of r.restarts) expect(x.apiserverRequests).toBeGreaterThanOrEqual(2 * x.agents);
}

describeIf("membrane sim on etcd", etcdMissing(), () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it("a small cluster converges everywhere; counts match; mechanisms on/off move their figures", async () => {
    const r = await runSimulation({ ...SMALL, kvstore: etcd.spec, log: () => {} });
    checkReport(r);
    expect(r.kvstore.clients).toBe(Math.ceil(SMALL.nodes / SMALL.agentsPerClient) + 1);
    // 20 qps stand-in, 21 agents starting at once: it refused some
    expect(r.restarts[0]!.apiserverTooMany).toBeGreaterThan(0);
  }, 180_000);
});

it("a small cluster converges on the embedded store too", async () => {
  const store = tempEmbeddedSpec();
  try {
    const r = await runSimulation({ ...SMALL, kvstore: store.spec, log: () => {} });
    checkReport(r);
    expect(r.kvstore.clients).toBe(1);
  } finally {
    store.remove();
  }
}, 180_000);
