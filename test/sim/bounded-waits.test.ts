/**
 * Every wait of the simulation is bounded: a phase that cannot converge is
 * marked INCOMPLETE (text and JSON), the agents behind are named with what
 * they lack, its figures are not reported as measured, and the run goes on
 * through every later phase to its report.
 *
 * The store is real (an etcd started on loopback, and the embedded store) and
 * so are the agents; faults are injected on single agents' connections,
 * under their discipline, the way a broken watch would behave:
 * - counting agent 2 LOSES one event: the ipcache put of churned pod churn-3
 *   never reaches it, while later events do (its watch passes that write);
 * - counting agent 4's ipcache watch STALLS at the first churned pod (a
 *   backlog: its view stays before every churn write);
 * - full agent 0's policies watch stalls (the policy never reaches it: the
 *   phase that once hung a 1,000-agent run for 98 minutes);
 * - the operator's transaction for churn-5 never answers (a write waiting
 *   for ever), so the writer's own bound must end it.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { etcdMissing, TestEtcd } from "../support/etcd.js";
import { DEFAULT_SIM, runSimulation, type SimReport } from "../../host/sim/simulation.js";
import { reportJson, reportLines } from "../../host/sim/report.js";
import { tempEmbeddedSpec } from "../../host/sim/store-target.js";
import { keys } from "../../host/kvstore/keys.js";
import { nodeName } from "../../host/sim/model.js";
import type { KvStore, Txn, Watch, WatchEvent } from "../../host/kvstore/store.js";

const SMALL = {
  ...DEFAULT_SIM, operatorQps: 50, nodes: 16, pods: 320, services: 30, labelSets: 20, fullAgents: 2, agentsPerClient: 8,
  churnSeconds: 1.5, podRate: 10, joinNodes: 4, apiserverQps: 50, resyncWindowMs: 600, resyncBaseMs: 200,
  backoffMinMs: 20, backoffMaxMs: 100, fixedRetryMs: 50, restartVariants: [] as never[], operatorAttempts: 3,
  // small, so the stalled agents cost seconds; the healthy ones converge in well under it on a small cluster
  convergeTimeoutMs: 4000,
};
const LOSES = 2;
const STALLS = 4;
// counting agent i runs on node fullAgents + i; full agent f on node f
const losing = nodeName(SMALL.fullAgents + LOSES);
const stalled = nodeName(SMALL.fullAgents + STALLS);
const policyStalled = nodeName(0);

const isChurnPut = (ev: WatchEvent, pod?: string) =>
  ev.type === "put" && (pod ? JSON.parse(ev.kv.value).podName === pod : String(JSON.parse(ev.kv.value).podName).startsWith("churn-"));

/** `inner`, except that events `drop` selects are never delivered and the first one `stall` selects holds the watch until it is closed. */
function faultyWatch(inner: Watch, fault: { drop?: (ev: WatchEvent) => boolean; stall?: (ev: WatchEvent) => boolean }): Watch {
  let release!: () => void;
  const closed = new Promise<void>((r) => (release = r));
  return {
    prefix: inner.prefix,
    get lastRevision() { return inner.lastRevision; },
    ready: inner.ready,
    close: async () => {
      release();
      await inner.close();
    },
    async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
      for await (const ev of inner) {
        if (fault.stall?.(ev)) {
          await closed;
          return;
        }
        if (fault.drop?.(ev)) continue;
        yield ev;
      }
    },
  };
}

function withWatch(inner: KvStore, prefix: string, fault: Parameters<typeof faultyWatch>[1]): KvStore {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === "watch") {
        return (p: string, options?: Parameters<KvStore["watch"]>[1]) => (p === prefix ? faultyWatch(target.watch(p, options), fault) : target.watch(p, options));
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const wrapAgentStore = (agent: { kind: "counting" | "full"; index: number }, store: KvStore): KvStore => {
  if (agent.kind === "counting" && agent.index === LOSES) return withWatch(store, keys.ipcacheAll(), { drop: (ev) => isChurnPut(ev, "churn-3") });
  if (agent.kind === "counting" && agent.index === STALLS) return withWatch(store, keys.ipcacheAll(), { stall: (ev) => isChurnPut(ev) });
  if (agent.kind === "full" && agent.index === SMALL.nodes - SMALL.fullAgents) return withWatch(store, keys.policies(), { stall: (ev) => ev.type === "put" });
  return store;
};

/** The operator's txn writing churn-5 never answers. */
function hangChurn5(inner: KvStore): KvStore {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === "txn") {
        return (txn: Txn) => (txn.success.some((op) => "key" in op && op.type === "put" && op.key.endsWith("/churn-5")) ? new Promise(() => {}) : target.txn(txn));
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function checkReport(r: SimReport): void {
  const outcome = Object.fromEntries(r.phases.map((p) => [p.name, p.outcome]));
  // the churn and the policy phase ran out of their bound; the run went on through every later phase
  expect(outcome["pod churn"]).toBe("incomplete");
  expect(outcome["a policy selecting <= 10 endpoints of a node"]).toBe("incomplete");
  expect(outcome["services scaled (operator rate limited, then unlimited)"]).toBe("done");
  expect(outcome[`${SMALL.joinNodes} nodes join in one burst`]).toBe("done");
  expect(outcome["periodic resync, fixed interval then ln(1 + nodes)"]).toBe("done");
  expect(outcome["slim records vs full objects"]).toBe("done");
  // the agent that lost churn-3's put saw its delete: it ends one ipcache entry short, and is named for it
  expect(outcome["every agent back at the steady cluster"]).toBe("incomplete");
  expect(r.failures.phases).toEqual([]);

  const incomplete = Object.fromEntries(r.failures.incomplete.map((x) => [x.phase, x]));
  const churn = incomplete["pod churn"]!;
  expect(churn).toMatchObject({ wait: "every agent has every churned pod", boundMs: SMALL.convergeTimeoutMs });
  expect(churn.behind.map((b) => b.agent)).toEqual(expect.arrayContaining([losing, stalled]));
  expect(churn.behind.find((b) => b.agent === losing)!.lacks).toMatch(/^missing 1 pod\(s\): LOST 1; e\.g\. .*write rev \d+, agent at \d+: lost/);
  expect(churn.behind.find((b) => b.agent === stalled)!.lacks).toMatch(/^missing \d+ pod\(s\): behind \d+/);
  const policy = incomplete["a policy selecting <= 10 endpoints of a node"]!;
  expect(policy.behind).toEqual([expect.objectContaining({ agent: policyStalled, lacks: expect.stringMatching(/no policy record/) })]);
  expect(incomplete["every agent back at the steady cluster"]!.behind).toEqual(
    expect.arrayContaining([expect.objectContaining({ agent: losing, lacks: `holds ${SMALL.pods - 1} of ${SMALL.pods} ipcache entries, ${SMALL.nodes + SMALL.joinNodes} of ${SMALL.nodes + SMALL.joinNodes} nodes` })]),
  );

  // lost vs slow: exactly the one dropped event is lost, with its write revision behind the agent's view; the stalled agent is behind on every pod
  const d = r.churn.diagnosis!;
  expect(d.lostEvents).toBe(1);
  expect(d.totals.lost).toBe(1);
  expect(d.totals.behind).toBeGreaterThanOrEqual(r.churn.created);
  const lost = d.agents.find((a) => a.agent === losing)!;
  expect(lost.verdicts).toMatchObject({ lost: 1, behind: 0 });
  expect(lost.examples[0]!.agentRevision).toBeGreaterThan(lost.examples[0]!.writeRevision);
  const slow = d.agents.find((a) => a.agent === stalled)!;
  expect(slow.verdicts).toMatchObject({ lost: 0, behind: r.churn.created });
  expect(slow.examples[0]!.agentRevision).toBeLessThan(slow.examples[0]!.writeRevision);

  // the hung operator write ended at the writer's bound: counted, named, its pod no probe
  expect(r.churn.writesFailed).toBe(1);
  expect(r.failures.operatorWrites).toEqual([expect.objectContaining({ phase: "pod churn", error: expect.stringMatching(/churn-5.*did not happen within 4000 ms/) })]);

  // percentiles count the missing pairs as slower than the bound: the stalled agent misses 1 of 14 counting agents' pairs, past the 1% of p99
  const counting = r.kinds.find((k) => k.kind === "counting agents")!;
  expect(counting.notConverged).toBeGreaterThanOrEqual(r.churn.created + 1);
  expect(counting).toMatchObject({ convergenceP99Ms: null, convergenceBeyond: { p50: false, p99: true }, convergenceBoundMs: SMALL.convergeTimeoutMs });
  expect(counting.convergenceP50Ms).toBeGreaterThan(0);
  // every churned pod misses the stalled agent: no pod reached every agent, so no until-every-agent figure is a number
  expect(r.churn).toMatchObject({ complete: false, podsNotEverywhere: r.churn.created, untilEveryAgentP50Ms: null, untilEveryAgentP99Ms: null, untilEveryAgentBeyond: { p50: true, p99: true } });

  // no figure of the incomplete policy phase; the later phases' figures are there
  const mechanisms = r.mechanisms.map((m) => m.mechanism);
  expect(mechanisms).not.toContain("selective regeneration");
  expect(mechanisms).toEqual(expect.arrayContaining(["rate limit (operator)", "interval scaling", "slim records"]));

  // the text says INCOMPLETE and names them; the JSON carries the same
  const text = reportLines(r).join("\n");
  expect(text).toMatch(/3 phase\(s\) incomplete/);
  expect(text).toContain(`INCOMPLETE PHASE pod churn: every agent has every churned pod did not happen within 4,000 ms`);
  expect(text).toMatch(new RegExp(`LOST\\s+${losing} \\(counting agent\\)`));
  expect(text).toMatch(/churn at the bound: \d+ agent\(s\) behind, \d+ \(pod, agent\) pair\(s\) missing: 1 LOST/);
  expect(text).toContain(`> 4,000`);
  expect(text).toMatch(/until every agent had a new pod: p50 > 4,000 ms, p99 > 4,000 ms — INCOMPLETE/);
  const json = JSON.parse(reportJson(r));
  expect(json.failures.incomplete.map((x: { phase: string }) => x.phase)).toEqual(["pod churn", "a policy selecting <= 10 endpoints of a node", "every agent back at the steady cluster"]);
  expect(json.phases.find((p: { name: string }) => p.name === "pod churn").outcome).toBe("incomplete");
}

describeIf("membrane sim on etcd: bounded waits", etcdMissing(), () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it("a phase that cannot converge is marked incomplete, names the agents behind (lost vs slow); the run finishes", async () => {
    const r = await runSimulation({ ...SMALL, kvstore: etcd.spec, wrapAgentStore, wrapOperatorStore: hangChurn5, log: () => {} });
    checkReport(r);
  }, 180_000);
});

it("bounded waits on the embedded store: incomplete phases named, the run finishes", async () => {
  const store = tempEmbeddedSpec();
  try {
    const r = await runSimulation({ ...SMALL, kvstore: store.spec, wrapAgentStore, wrapOperatorStore: hangChurn5, log: () => {} });
    checkReport(r);
  } finally {
    store.remove();
  }
}, 180_000);
