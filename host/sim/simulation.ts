/**
 * `membrane sim`: one process plays the operator, a sample of full agents
 * and thousands of counting agents against one kvstore (a private etcd by
 * default), drives the churn of issue 16 and measures each Cilium 1.5
 * mechanism on and off in the same run. Phases, in order:
 *   write -> agents join -> full agents join -> pod churn -> services scaled
 *   (operator limited / unlimited) -> node burst -> few-endpoint policies
 *   (incremental / full regeneration) -> resync intervals (fixed / scaled)
 *   -> synchronized restarts (backoff+jitter in place / fixed retry /
 *   restart from scratch) -> slim vs full objects.
 * Every figure says which kind of agent it comes from; nothing is
 * extrapolated.
 *
 * Every wait is bounded (bounded.ts): by --converge-timeout-ms for what
 * agents must converge on, by --join-timeout-ms for agents starting. A wait
 * that runs out marks its phase INCOMPLETE in the report (naming the agents
 * behind and what they lack), the phase's figure is not reported as
 * measured, and the run goes on to the next phase.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { InvalidInputError } from "../errors.js";
import { DisciplinedKvStore } from "../kvstore/disciplined-store.js";
import { clusterSizeDependantInterval, type BackoffOptions } from "../kvstore/backoff.js";
import { keys } from "../kvstore/keys.js";
import { openKvStore } from "../kvstore/open.js";
import { limited, UNLIMITED } from "../kvstore/rate-limit.js";
import { encodeRecord } from "../kvstore/records/codec.js";
import type { KvStore, TxnOp, WatchEvent } from "../kvstore/store.js";
import { DEFAULT_NODE_LEASE_TTL_SECONDS } from "../cluster/agent-core.js";
import { processMemory } from "../sys/process-memory.js";
import { ApiserverStandin } from "./apiserver-standin.js";
import type { BootstrapPolicy } from "./bootstrap.js";
import { BoundExceededError, LAGGING_LISTED, bounded, boundedEach, Deadline, until, type Lagging } from "./bounded.js";
import { censoredPercentile, ConvergenceTracker, type Probe } from "./convergence.js";
import { diagnoseLag, lagging, verdictSummary, type AgentRevisionView, type LagDiagnosis } from "./lag-diagnosis.js";
import { CLUSTER_PREFIXES, CountingAgent } from "./counting-agent.js";
import { FullAgent } from "./full-agent.js";
import { fullPodObject, parseAllocations } from "./full-pod.js";
import { MeteredKvStore, OpsTimeline, eventBytes } from "./metered-store.js";
import {
  CHURN_SLOT_BASE, checkSize, identityOf, identityPut, labelsOf, nodePut, podKeys, podPuts, servicePut, steadyPod,
  type ClusterSize, type Put, type SimPod,
} from "./model.js";
import { DEFAULT_CALL_TIMEOUT_MS, startSimStore, type SimStore } from "./store-target.js";
import { ListGate, type ListGateStats } from "./list-gate.js";
import { OperatorWriter, type OperatorWriteFailure } from "./operator-writer.js";
import { DEFAULT_LIST_PAGE_SIZE, pagedList } from "../kvstore/paged-list.js";

export interface SimOptions extends ClusterSize {
  /** "etcd" (start a private one), "etcd:<endpoints>" or "embedded:<path>". */
  kvstore: string;
  /** Agents to run, one per node from node 0 (0: one per node). Nodes beyond them have records and pods but no agent. */
  agents: number;
  fullAgents: number;
  agentsPerClient: number;
  operatorQps: number;
  churnSeconds: number;
  podRate: number;
  joinNodes: number;
  apiserverQps: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  fixedRetryMs: number;
  resyncBaseMs: number;
  resyncWindowMs: number;
  /** Bound of every wait for agents to converge (and of each operator write, and of stopping things). */
  convergeTimeoutMs: number;
  /** Bound of a join: every counting agent up, or every full agent started (lists the whole cluster). */
  joinTimeoutMs: number;
  leaseTtlSeconds: number;
  /** Keys per list page (every agent lists by pages at a pinned revision). */
  listPageSize: number;
  /** List pages fetched and decoded at once across all agents (list-gate.ts); 0: no limit. */
  listPagesInFlight: number;
  /** Which synchronized restarts of the counting agents to run (each re-lists the whole cluster on every counting agent). */
  restartVariants: RestartVariant[];
  /** Counting agents taking part in the resync-interval phase (0: all). */
  resyncAgents: number;
  /** Per-call deadline of the simulator's etcd clients (one list page is one call). */
  callTimeoutMs: number;
  /** Attempts per operator write (with backoff between them) before it is counted as failed and the phase goes on. */
  operatorAttempts: number;
  /**
   * Fault injection for tests: wraps the operator's connection under its
   * discipline (rate limit, retries), so a test can make chosen writes fail
   * and see the run go on and report them.
   */
  wrapOperatorStore?: (store: KvStore) => KvStore;
  /**
   * Fault injection for tests: wraps one agent's connection (under its
   * discipline), so a test can make a chosen agent lose or stall events and
   * see the phase marked incomplete with that agent named.
   */
  wrapAgentStore?: (agent: { kind: "counting" | "full"; index: number; node: number }, store: KvStore) => KvStore;
  etcdBinary?: string;
  log: (line: string) => void;
}

export const RESTART_VARIANTS = ["backoff", "fixed", "scratch"] as const;
export type RestartVariant = (typeof RESTART_VARIANTS)[number];

export const DEFAULT_SIM: Omit<SimOptions, "log"> = {
  nodes: 50, pods: 1000, services: 200, labelSets: 100, kvstore: "etcd", agents: 0, fullAgents: 20, agentsPerClient: 50,
  operatorQps: 200, churnSeconds: 5, podRate: 10, joinNodes: 10, apiserverQps: 50, backoffMinMs: 200, backoffMaxMs: 10_000,
  fixedRetryMs: 200, resyncBaseMs: 1000, resyncWindowMs: 4000, convergeTimeoutMs: 120_000, joinTimeoutMs: 600_000, leaseTtlSeconds: DEFAULT_NODE_LEASE_TTL_SECONDS,
  listPageSize: DEFAULT_LIST_PAGE_SIZE, listPagesInFlight: 16, restartVariants: [...RESTART_VARIANTS], resyncAgents: 0, callTimeoutMs: DEFAULT_CALL_TIMEOUT_MS,
  operatorAttempts: 8,
};

export interface KindFigures {
  kind: string;
  agents: number;
  /**
   * Over every (churned pod, agent) pair, the ones that never converged
   * counted as slower than convergenceBoundMs: null when the percentile is
   * not a measured value (it lies beyond the bound: convergenceBeyond says
   * so; or there was no probe).
   */
  convergenceP50Ms: number | null;
  convergenceP99Ms: number | null;
  convergenceBeyond: { p50: boolean; p99: boolean };
  convergenceBoundMs: number;
  /** (pod, agent) pairs that did not converge. */
  notConverged: number;
  eventsPerAgent: number;
  bytesPerAgent: number;
  bytesPerEvent: number;
  kvOpsPerAgent: number;
}

export interface RestartFigures {
  variant: string;
  agents: number;
  untilAllUpMs: number;
  apiserverRequests: number;
  apiserverTooMany: number;
  apiserverPeakPerSecond: number;
  kvstorePeakOpsPerSecond: number;
  bootstrapFailures: number;
  timeline: number[];
}

export interface SimReport {
  options: Omit<SimOptions, "log">;
  kvstore: { location: string; backend: string; clients: number; agentsPerClient: number; etcdPeakRssBytes: number | null };
  wallSeconds: number;
  peakRssBytes: number;
  loadAverage: number[];
  /**
   * Per phase: how it ended (done; incomplete: a bounded wait ran out, see
   * failures.incomplete; failed: it threw), wall seconds, and CPU seconds of
   * this process and of the private etcd (null for another store).
   */
  phases: { name: string; outcome: PhaseOutcome; startS: number; seconds: number; nodeCpuSeconds: number; etcdCpuSeconds: number | null }[];
  write: { records: number; seconds: number; opsPerSecond: number };
  join: { countingSeconds: number; fullSeconds: number; countingUpAtSeconds: number[] };
  /** The queue of list pages, and what paging cost the counting agents. */
  lists: { pageSize: number; pagesInFlight: number; gate: ListGateStats; pageRetries: number; relists: number; watchRelists: number };
  kinds: KindFigures[];
  /** heapDeltaBytes and perAgentPerPodBytes: NaN (JSON null) when the full agents' join did not complete. */
  fullAgentMemory: { heapDeltaBytes: number; perAgentPerPodBytes: number; goalBytes: number; measured: boolean };
  /** Counting agents' node leases that expired under them (keep-alives late) and were granted again. */
  leasesLost: number;
  /**
   * writesFailed: churned pods whose transaction failed after every retry
   * (not created, not probes). complete: every agent had every churned pod
   * within the bound. untilEveryAgent p50/p99: per pod, until the last agent
   * had it, pods some agent never had counted as beyond the bound (null and
   * untilEveryAgentBeyond when the percentile lies there). diagnosis: at the
   * bound, who was behind and whether by a lost event or a backlog
   * (lag-diagnosis.ts; agents capped at LAGGING_LISTED), null when every
   * agent converged.
   */
  churn: {
    created: number; deleted: number; newIdentities: number; writesFailed: number; complete: boolean;
    untilEveryAgentP50Ms: number | null; untilEveryAgentP99Ms: number | null; untilEveryAgentBeyond: { p50: boolean; p99: boolean };
    podsNotEverywhere: number; boundMs: number; diagnosis: LagDiagnosis | null;
  };
  /** untilEveryAgentMs: null when the phase did not complete (not every agent knew the nodes within the bound). */
  nodeBurst: { nodes: number; untilEveryAgentMs: number | null };
  counts: { agent: string; kind: string; nodes: number; ipcache: number; identities: number; services: number; policies: number; ok: boolean }[];
  mechanisms: { mechanism: string; measure: string; on: number; off: number; onLabel: string; offLabel: string; note: string }[];
  restarts: RestartFigures[];
  /**
   * What went wrong without stopping the run: operator writes that failed
   * after every retry (the phase went on without them), and phases that threw
   * (the run went on to the next phase; that phase's figures are missing or partial).
   */
  failures: { operatorWrites: OperatorWriteFailure[]; operatorRetries: number; phases: { phase: string; error: string }[]; incomplete: IncompletePhase[] };
  kvstoreOpsPerSecond: number[];
  convergenceCdf: { kind: string; ms: number[] }[];
}

export type PhaseOutcome = "done" | "incomplete" | "failed";

/** A phase whose bounded wait ran out: what it waited for, the bound, and the agents behind (the first LAGGING_LISTED; agentsBehind counts all). */
export interface IncompletePhase {
  phase: string;
  wait: string;
  boundMs: number;
  agentsBehind: number;
  behind: Lagging[];
}

/** Full GC when available (node --expose-gc, or the flag set at run time). */
function gcNow(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  try {
    setFlagsFromString("--expose-gc");
    return runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  }
}

function txnBatches(puts: readonly Put[], deletes: readonly string[] = []): TxnOp[][] {
  const ops: TxnOp[] = [...puts.map((p): TxnOp => ({ type: "put", key: p.key, value: p.value })), ...[...new Set(deletes)].map((key): TxnOp => ({ type: "delete", key }))];
  const out: TxnOp[][] = [];
  for (let i = 0; i < ops.length; i += 128) out.push(ops.slice(i, i + 128));
  return out;
}

export function validateSimOptions(o: Omit<SimOptions, "log">): void {
  checkSize(o);
  if (o.fullAgents < 2) throw new InvalidInputError(`--full-agents: at least 2 (one runs full regeneration as the control), got ${o.fullAgents}`);
  if (o.agents > o.nodes) throw new InvalidInputError(`--agents: at most --nodes (${o.nodes}), got ${o.agents}`);
  const agents = o.agents || o.nodes;
  if (o.fullAgents > agents) throw new InvalidInputError(`--full-agents: at most the number of agents (${agents}), got ${o.fullAgents}`);
  if (o.labelSets > o.pods) throw new InvalidInputError(`--label-sets: at most --pods (${o.pods}), got ${o.labelSets}`);
  if (o.pods < o.nodes) throw new InvalidInputError(`--pods: at least one per node (${o.nodes}), got ${o.pods}`);
}

export async function runSimulation(options: SimOptions): Promise<SimReport> {
  const o = options;
  validateSimOptions(o);
  const log = o.log;
  const started = performance.now();
  const timeline = new OpsTimeline(started);
  const phases: SimReport["phases"] = [];
  const phaseFailures: SimReport["failures"]["phases"] = [];
  const incomplete: IncompletePhase[] = [];
  const noteIncomplete = (name: string, e: BoundExceededError) => {
    incomplete.push({ phase: name, wait: e.what, boundMs: e.boundMs, agentsBehind: e.behind.length, behind: e.behind.slice(0, LAGGING_LISTED) });
    log(`sim: ${name} INCOMPLETE: ${e.what} did not happen within ${e.boundMs} ms; ${e.behind.length} agent(s) behind`);
    for (const b of e.behind.slice(0, LAGGING_LISTED)) log(`sim:   behind: ${b.agent} (${b.kind}): ${b.lacks}`);
    if (e.behind.length > LAGGING_LISTED) log(`sim:   ... and ${e.behind.length - LAGGING_LISTED} more agent(s) behind`);
  };
  // A phase that throws is recorded and the run goes on to the next one: the report is always written, naming what failed.
  // A bounded wait that ran out (thrown, or told through `incomplete` by a phase that still cleans up) makes it incomplete:
  // its result is dropped (undefined), so no figure of it is reported as measured.
  const phase = async <T>(name: string, body: (ctl: { incomplete: (e: BoundExceededError) => void }) => Promise<T>): Promise<T | undefined> => {
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const etcdCpu0 = target.cpuSeconds();
    log(`sim: ${name} ...`);
    let outcome: PhaseOutcome = "done";
    const ctl = { incomplete: (e: BoundExceededError) => ((outcome = "incomplete"), noteIncomplete(name, e)) };
    try {
      const result = await body(ctl);
      return outcome === "done" ? result : undefined;
    } catch (err) {
      if (err instanceof BoundExceededError) {
        ctl.incomplete(err);
        return undefined;
      }
      outcome = "failed";
      const error = err instanceof Error ? err.message : String(err);
      phaseFailures.push({ phase: name, error });
      log(`sim: ${name} failed: ${error}`);
      return undefined;
    } finally {
      const cpu = process.cpuUsage(cpu0);
      const nodeCpuSeconds = (cpu.user + cpu.system) / 1e6;
      const etcdCpu1 = target.cpuSeconds();
      const etcdCpuSeconds = etcdCpu0 === undefined || etcdCpu1 === undefined ? null : etcdCpu1 - etcdCpu0;
      phases.push({ name, outcome, startS: (t0 - started) / 1000, seconds: (performance.now() - t0) / 1000, nodeCpuSeconds, etcdCpuSeconds });
      log(`sim: ${name} ${outcome === "done" ? outcome : outcome.toUpperCase()} in ${((performance.now() - t0) / 1000).toFixed(1)} s (CPU: this process ${nodeCpuSeconds.toFixed(1)} s, etcd ${etcdCpuSeconds === null ? "-" : etcdCpuSeconds.toFixed(1)} s)`);
    }
  };

  const target: SimStore = await startSimStore(o.kvstore, o.etcdBinary, o.callTimeoutMs);
  const gate = new ListGate(o.listPagesInFlight);
  const standin = await ApiserverStandin.start({ qps: o.apiserverQps });
  const counting: CountingAgent[] = [];
  const full: FullAgent[] = [];
  const clients: KvStore[] = [];
  let tracker: ConvergenceTracker | undefined;
  try {
    const agentCount = o.agents || o.nodes;
    const countingCount = agentCount - o.fullAgents;
    const clientCount = Math.ceil(agentCount / o.agentsPerClient) + 1;
    // One connection per group of agents (the etcd3 client multiplexes every watch of its agents over it); the last is the operator's.
    for (let i = 0; i < clientCount; i++) clients.push(target.backend === "embedded" && i > 0 ? clients[0]! : await bounded(`kvstore client ${i} connected`, o.convergeTimeoutMs, target.open()));
    const clientFor = (agent: number) => clients[Math.floor(agent / o.agentsPerClient)]!;
    const backoff: BackoffOptions = { minMs: o.backoffMinMs, maxMs: o.backoffMaxMs };
    const operatorMeter = new MeteredKvStore(clients.at(-1)!, timeline);
    const operatorConnection = o.wrapOperatorStore ? o.wrapOperatorStore(operatorMeter) : operatorMeter;
    const operatorBurst = Math.max(1, Math.round(o.operatorQps / 10));
    // the operator retries a write the store did not answer with backoff and jitter; one that still fails is counted by `writer`
    const writer = new OperatorWriter(() => operator, o.convergeTimeoutMs);
    const operatorDiscipline = { backoff: { ...backoff }, maxAttempts: o.operatorAttempts, onRetry: () => writer.noteRetry() };
    const operator = new DisciplinedKvStore(operatorConnection, { ...operatorDiscipline, rateLimit: limited(o.operatorQps, operatorBurst) });
    const operatorUnlimited = new DisciplinedKvStore(operatorConnection, { ...operatorDiscipline, rateLimit: UNLIMITED });
    const size: ClusterSize = o;

    // ---- 1. the operator writes the cluster
    const puts: Put[] = [];
    for (let n = 0; n < o.nodes; n++) puts.push(nodePut(n));
    for (let l = 0; l < o.labelSets; l++) puts.push(identityPut(l));
    for (let p = 0; p < o.pods; p++) puts.push(...podPuts(steadyPod(p, size)));
    for (let s = 0; s < o.services; s++) puts.push(servicePut(s, size));
    const writeSeconds = await phase("operator writes the cluster", async () => {
      const t0 = performance.now();
      const failed = await writer.writeAll("operator writes the cluster", txnBatches(puts));
      if (failed.length) log(`sim:   ${failed.length} of ${puts.length} records not written (operator writes failed after ${o.operatorAttempts} attempts; named in the report)`);
      return (performance.now() - t0) / 1000;
    }) ?? NaN;

    // ---- 2. agents join
    const total = agentCount;
    tracker = undefined;
    const onKey = (i: number, key: string) => tracker?.note(i, key);
    const basePolicy: BootstrapPolicy = { retry: "backoff", onFailure: "retry-in-place", backoff, fixedMs: o.fixedRetryMs };
    const countingMeters: MeteredKvStore[] = [];
    for (let i = 0; i < countingCount; i++) {
      const meter = new MeteredKvStore(clientFor(i), timeline, undefined);
      countingMeters.push(meter);
      const wrapped = o.wrapAgentStore?.({ kind: "counting", index: i, node: o.fullAgents + i }, meter) ?? meter;
      const store = new DisciplinedKvStore(wrapped, { rateLimit: limited(20, 20), backoff: { ...backoff } });
      counting.push(new CountingAgent({ index: i, node: o.fullAgents + i, store, apiserver: standin.url, leaseTtlSeconds: o.leaseTtlSeconds, backoff, onKey, pageSize: o.listPageSize, gate }));
    }
    const startCounting = async (policy: BootstrapPolicy) => {
      const progress = setInterval(() => {
        const by = new Map<string, number>();
        for (const a of counting) by.set(a.step, (by.get(a.step) ?? 0) + 1);
        const mem = process.memoryUsage();
        log(`sim:   ${((performance.now() - started) / 1000).toFixed(0)} s: agents by bootstrap step: ${[...by].map(([k, v]) => `${k}: ${v}`).join(", ")}; list pages in flight ${gate.running}, queued ${gate.queued}, page retries ${counting.reduce((x, a) => x + a.counters.pageRetries, 0)}; rss ${(mem.rss / 2 ** 20).toFixed(0)} MiB, etcd ${((target.memory()?.rssBytes ?? 0) / 2 ** 20).toFixed(0)} MiB`);
      }, 10_000);
      try {
        // bounded: an agent that cannot bootstrap (retrying in place for ever) is named, not waited for
        await boundedEach("every counting agent up", o.joinTimeoutMs, counting, (a) => a.start(policy), (a) => ({ agent: a.name, kind: a.kind, lacks: `still at bootstrap step "${a.step}"` }));
      } finally {
        clearInterval(progress);
      }
    };
    const countingUpAt: number[] = [];
    const countingSeconds = await phase(`${countingCount} counting agents join`, async () => {
      const t0 = performance.now();
      await startCounting(basePolicy);
      for (const a of counting) countingUpAt.push((a.upAt - t0) / 1000);
      countingUpAt.sort((x, y) => x - y);
      return (performance.now() - t0) / 1000;
    }) ?? NaN;
    const gc = gcNow();
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const fullMeters: MeteredKvStore[] = [];
    const fullSeconds = await phase(`${o.fullAgents} full agents join`, async () => {
      const t0 = performance.now();
      for (let f = 0; f < o.fullAgents; f++) {
        const meter = new MeteredKvStore(clientFor(countingCount + f), timeline);
        fullMeters.push(meter);
        const wrapped = o.wrapAgentStore?.({ kind: "full", index: countingCount + f, node: f }, meter) ?? meter;
        const store = new DisciplinedKvStore(wrapped, { rateLimit: limited(20, 20), backoff: { ...backoff } });
        full.push(new FullAgent({ index: countingCount + f, node: f, store, tracker: () => tracker, backoff, mode: f === 1 ? "full" : "incremental", leaseTtlSeconds: o.leaseTtlSeconds, listPageSize: o.listPageSize, listGate: gate, log: (l) => (/failed|not applied|cannot|retrying/.test(l) ? log(`${nodePut(f).key}: ${l}`) : undefined) }));
      }
      // a few at a time: each lists the whole cluster; all of them within one bound
      const deadline = new Deadline("every full agent started (listed the cluster, applied it)", o.joinTimeoutMs);
      const up = new Set<FullAgent>();
      const notUp = () => full.filter((a) => !up.has(a)).map((a): Lagging => ({ agent: a.name, kind: a.kind, lacks: "not started (listing or applying the cluster)" }));
      for (let f = 0; f < full.length; f += 4) {
        await deadline.race(Promise.all(full.slice(f, f + 4).map(async (a) => (await a.start(), up.add(a)))), notUp);
      }
      return (performance.now() - t0) / 1000;
    }) ?? NaN;
    gc?.();
    // a join that did not complete (or failed) holds less than the full agents' state: no per-pod memory figure then
    const fullJoined = phases.at(-1)?.outcome === "done";
    const heapDelta = fullJoined ? process.memoryUsage().heapUsed - heapBefore : NaN;

    // ---- 3a. pod churn, every new pod a convergence probe
    tracker = new ConvergenceTracker(total);
    let created = 0;
    let deleted = 0;
    let newIdentities = 0;
    let churnWritesFailed = 0;
    let churnDiagnosis: LagDiagnosis | null = null;
    const revisionViews = (): AgentRevisionView[] => [...counting, ...full];
    const churnOutcome = () => phases.find((p) => p.name === "pod churn")?.outcome;
    await phase("pod churn", async (ctl) => {
      const live: SimPod[] = [];
      const probeOf = new Map<SimPod, Probe>();
      // pods whose deletion was in a transaction that failed: still in the store, deleted at the end
      const undeleted: SimPod[] = [];
      const interval = 1000 / o.podRate;
      const end = performance.now() + o.churnSeconds * 1000;
      const writes: Promise<unknown>[] = [];
      const landed = new Map<SimPod, Promise<unknown>>();
      for (let k = 0; performance.now() < end; k++) {
        const node = k % o.nodes;
        const fresh = k % 5 === 4; // one in five is a new deployment: a label set the cluster has not seen
        const labelSet = fresh ? o.labelSets + newIdentities++ : k % o.labelSets;
        const pod: SimPod = { name: `churn-${k}`, node, ip: `10.${64 + (node >> 8)}.${node & 255}.${CHURN_SLOT_BASE + 2 + (Math.floor(k / o.nodes) % 50)}`, labelSet };
        const ipKey = podKeys(pod)[1]!;
        const probe = tracker!.start(ipKey, identityOf(labelSet), fresh ? identityPut(labelSet).key : undefined);
        probeOf.set(pod, probe);
        const batch = [...(fresh ? [identityPut(labelSet)] : []), ...podPuts(pod)];
        const old = live.length >= o.podRate * 2 ? live.shift() : undefined;
        live.push(pod);
        created++;
        if (old) deleted++;
        // The txn that deletes `old` waits until `old`'s own create has landed: writes are in flight together and a
        // retried create could otherwise land after its delete and stay in the store for good.
        const oldLanded = old ? landed.get(old) : undefined;
        if (old) landed.delete(old);
        const write = (oldLanded ?? Promise.resolve()).then(() => writer.txnRevision("pod churn", txnBatches(batch, old ? podKeys(old) : [])[0]!)).then((revision) => {
          if (revision !== undefined) {
            // the revisions an agent's watch must pass to have seen this pod (and the old one go): how a lost event is told from a backlog
            probe.writeRevision = revision;
            const gone = old && probeOf.get(old);
            if (gone) gone.deleteRevision = revision;
            return;
          }
          // not written: no agent can see this pod, so it is no convergence probe (the failure is in the report)
          churnWritesFailed++;
          tracker!.drop(probe);
          created--;
          if (old) (deleted--, undeleted.push(old));
        });
        landed.set(pod, write);
        writes.push(write);
        await new Promise((r) => setTimeout(r, interval));
      }
      await Promise.all(writes);
      // the writes are bounded by the writer (each within the convergence bound, all of them in flight together)
      const diagnose = () => {
        churnDiagnosis = diagnoseLag(tracker!.pending(), revisionViews());
        return lagging(churnDiagnosis);
      };
      await until("every agent has every churned pod", o.convergeTimeoutMs, () => tracker!.pending().length === 0, diagnose).catch((err) => {
        if (!(err instanceof BoundExceededError)) throw err;
        // incomplete, but the churned pods are still deleted below so later phases start from the steady cluster
        ctl.incomplete(err);
        const d = churnDiagnosis!;
        log(`sim:   churn at the bound: ${d.agentsBehind} agent(s) miss ${d.pairsMissing} (pod, agent) pair(s): ${verdictSummary(d)}`);
        for (const a of d.agents.filter((x) => x.verdicts.lost > 0).slice(0, LAGGING_LISTED)) {
          log(`sim:   LOST EVENT: ${a.agent} (${a.kind}) never got ${a.verdicts.lost} churned pod(s) its watch had passed: ${a.examples.filter((x) => x.verdict === "lost").map((x) => `${x.key} written at revision ${x.writeRevision}, agent at ${x.agentRevision}`).join("; ")}`);
        }
      });
      const remaining = [...live, ...undeleted];
      const failed = new Set((await writer.writeAll("pod churn", txnBatches([], remaining.flatMap(podKeys)))).map((op) => ("key" in op ? op.key : "")));
      deleted += remaining.filter((p) => !podKeys(p).some((k) => failed.has(k))).length;
    });
    const churnTracker = tracker;
    tracker = undefined;

    // ---- 3b. services scaled by the operator, rate limited then unlimited (same count of writes)
    const mechanisms: SimReport["mechanisms"] = [];
    const scaleServices = async (store: KvStore, from: number, count: number) => {
      const w0 = performance.now();
      const done = await Promise.all(Array.from({ length: count }, (_, i) => servicePut((from + i) % o.services, size, 5)).map((p) => writer.put("services scaled", p.key, p.value, store)));
      const seconds = (performance.now() - w0) / 1000;
      // the rate counts writes that succeeded only
      return { seconds, rate: done.filter(Boolean).length / seconds };
    };
    await phase("services scaled (operator rate limited, then unlimited)", async () => {
      // at least three bursts' worth, so the limit (not its burst) decides the rate
      const half = Math.max(3 * operatorBurst, Math.floor(Math.min(o.services, 3 * o.operatorQps) / 2));
      const on = await scaleServices(operator, 0, half);
      const off = await scaleServices(operatorUnlimited, half, half);
      // Every service write goes to every agent: at 5,000 agents 1,500 writes are 7.5 million events, minutes of
      // decoding for this process after the writes are done. Wait for that backlog (bounded) and say how long it
      // took: the node burst after this once measured mostly the services backlog (docs/scale.md).
      // Timed from the last write's acknowledgement, not from the list below: the list's answer is decoded by this
      // same process, queued behind the agents' events, so it arrives only when most of the backlog is gone.
      const d0 = performance.now();
      const servicesPrefix = CLUSTER_PREFIXES[3]!;
      const listed = await bounded("the services written", o.convergeTimeoutMs, pagedList(clients.at(-1)!, servicesPrefix, { pageSize: o.listPageSize }));
      const last = Math.max(0, ...listed.kvs.map((kv) => kv.modRevision));
      await until("every agent has the services writes", o.convergeTimeoutMs, () => revisionViews().every((v) => v.revisionOf(servicesPrefix) >= last), () =>
        revisionViews().filter((v) => v.revisionOf(servicesPrefix) < last).map((v): Lagging => ({ agent: v.name, kind: v.kind, lacks: `its services view at revision ${v.revisionOf(servicesPrefix)}, the last service write at ${last}` })));
      const drainSeconds = (performance.now() - d0) / 1000;
      mechanisms.push({ mechanism: "rate limit (operator)", measure: `operator writes/s scaling ${half} services (5 backends)`, on: on.rate, off: off.rate, onLabel: `${o.operatorQps} qps`, offLabel: "unlimited", note: `took ${on.seconds.toFixed(2)} s vs ${off.seconds.toFixed(2)} s; every agent had all ${2 * half} writes ${drainSeconds.toFixed(1)} s after the last` });
    });

    // ---- 3c. nodes join in one burst
    let nodesNow = o.nodes + o.joinNodes;
    const joinMs = await phase(`${o.joinNodes} nodes join in one burst`, async () => {
      const t0 = performance.now();
      const failed = await writer.writeAll(`${o.joinNodes} nodes join in one burst`, txnBatches(Array.from({ length: o.joinNodes }, (_, j) => nodePut(o.nodes + j))));
      // agents can only learn of the nodes that were written, and a write counted as failed may still have landed
      // (its deadline ran out after etcd applied it): what every agent must know is what the store holds
      nodesNow = await bounded("node keys counted in the store", o.convergeTimeoutMs, pagedList(clients.at(-1)!, CLUSTER_PREFIXES[0]!, { pageSize: o.listPageSize }))
        .then((l) => l.kvs.length)
        .catch((err) => (log(`sim:   could not count the node keys in the store (${(err as Error).message}); counting ${failed.length} failed write(s) as not landed`), nodesNow - failed.length));
      if (failed.length > 0) log(`sim:   ${failed.length} node write(s) counted as failed; the store holds ${nodesNow} of the ${o.nodes + o.joinNodes} nodes`);
      const want = nodesNow;
      const behind = () => [
        ...counting.filter((a) => a.knownNodes < want).map((a): Lagging => ({ agent: a.name, kind: a.kind, lacks: `knows ${a.knownNodes} of ${want} nodes` })),
        ...full.filter((a) => a.core.nodes.records.size < want).map((a): Lagging => ({ agent: a.name, kind: a.kind, lacks: `knows ${a.core.nodes.records.size} of ${want} nodes` })),
      ];
      await until("every agent knows the new nodes", o.convergeTimeoutMs, () => counting.every((a) => a.knownNodes >= want) && full.every((a) => a.core.nodes.records.size >= want), behind);
      return performance.now() - t0;
    }) ?? null;

    // ---- 3d. a policy that selects at most 10 endpoints of node 0: incremental (full agent 0) vs full regeneration (full agent 1)
    await phase("a policy selecting <= 10 endpoints of a node", async () => {
      const before = full.map((x) => x.core.counters.regenerations);
      const appOf = (labels: string[]) => labels.find((l) => l.startsWith("k8s:app="))?.slice("k8s:app=".length);
      const perApp = new Map<string, number>();
      for (const e of full[0]!.core.localEndpoints()) {
        const app = appOf(e.labels);
        if (app) perApp.set(app, (perApp.get(app) ?? 0) + 1);
      }
      // and one endpoint of node 1 (an app node 0 does not run), so the control agent has a change to make at all
      const control = full[1]!.core.localEndpoints().map((e) => appOf(e.labels)).find((app) => app !== undefined && !perApp.has(app));
      const apps: string[] = [];
      let selected = 0;
      for (const [app, n] of [...perApp].sort((x, y) => x[1] - y[1])) {
        if (selected + n > 10) break;
        apps.push(app);
        selected += n;
      }
      const name = "sim-few-endpoints";
      const document = { apiVersion: "cilium.io/v2", kind: "CiliumClusterwideNetworkPolicy", metadata: { name }, spec: { endpointSelector: { matchExpressions: [{ key: "app", operator: "In", values: [...apps, ...(control ? [control] : [])] }] }, ingress: [{ fromEndpoints: [{ matchLabels: { env: "prod" } }] }] } };
      if (!(await writer.put("a policy selecting <= 10 endpoints of a node", keys.policy(undefined, name), encodeRecord("policy", { name, document })))) {
        log("sim:   the policy was not written (operator write failed; named in the report): no selective-regeneration figure");
        return;
      }
      await until("the policy reached the full agents", o.convergeTimeoutMs, () => full.every((x) => x.core.policies.records.size >= 1), () =>
        full.filter((x) => x.core.policies.records.size < 1).map((x) => ({ agent: x.name, kind: x.kind, lacks: `no policy record (its policies view at revision ${x.revisionOf(keys.policies())})` })));
      // settled() waits for every round an agent has queued: bounded, the agents still applying are named (this wait once hung a run for 98 minutes)
      await boundedEach("the full agents applied the policy (settled)", o.convergeTimeoutMs, full, (x) => x.core.settled(), (x) => ({ agent: x.name, kind: x.kind, lacks: `rounds not settled (${x.core.counters.regenerations - before[full.indexOf(x)]!} regenerations so far)` }));
      const d = full.map((x, i) => x.core.counters.regenerations - before[i]!);
      const locals = full[1]!.core.localEndpoints().length;
      mechanisms.push({ mechanism: "selective regeneration", measure: `endpoint regenerations for a rule selecting ${selected} endpoints of node 0`, on: d[0]!, off: d[1]!, onLabel: "incremental", offLabel: "full", note: `full agent 0 (incremental, ${selected} selected) vs full agent 1 (full regeneration, ${locals} local endpoints)` });
    });

    // ---- 3e. resync intervals, fixed vs ln(1 + nodes) (counting agents, time-compressed base)
    await phase("periodic resync, fixed interval then ln(1 + nodes)", async () => {
      // a window of at least three scaled periods, the same for both
      const windowMs = Math.max(o.resyncWindowMs, 3 * clusterSizeDependantInterval(o.resyncBaseMs, o.nodes + o.joinNodes));
      const resyncing = o.resyncAgents > 0 ? counting.slice(0, o.resyncAgents) : counting;
      const measure = async (scaled: boolean) => {
        const r0 = resyncing.reduce((s, a) => s + a.counters.resyncs, 0);
        for (const a of resyncing) a.startResync(o.resyncBaseMs, scaled);
        await new Promise((r) => setTimeout(r, windowMs));
        // stopping waits for a resync put in flight (its attempts and backoff): bounded
        await boundedEach("the resync timers stopped", o.convergeTimeoutMs, resyncing, (a) => a.stopResync(), (a) => ({ agent: a.name, kind: a.kind, lacks: "its resync put has not finished" }));
        return (resyncing.reduce((s, a) => s + a.counters.resyncs, 0) - r0) / (windowMs / 1000);
      };
      // Every resync put goes to every agent watching the nodes prefix: at 1,000 agents a fixed 1 s interval on 50
      // of them is 50,000 events/s for this one process to decode. Wait for that backlog to drain (bounded) after
      // each window, and say how long it took: otherwise the phases that follow measure the backlog, not themselves.
      const drained = async (): Promise<number> => {
        const written = await Promise.all(resyncing.map((a) => clients.at(-1)!.get(nodePut(a.options.node).key)));
        const last = Math.max(0, ...written.map((kv) => kv?.modRevision ?? 0));
        const nodesPrefix = CLUSTER_PREFIXES[0]!;
        return until("every agent has the resync writes", o.convergeTimeoutMs, () => revisionViews().every((v) => v.revisionOf(nodesPrefix) >= last), () =>
          revisionViews().filter((v) => v.revisionOf(nodesPrefix) < last).map((v): Lagging => ({ agent: v.name, kind: v.kind, lacks: `its nodes view at revision ${v.revisionOf(nodesPrefix)}, the last resync write at ${last}` })));
      };
      const fixed = await measure(false);
      const fixedDrainMs = await drained();
      const scaled = await measure(true);
      const scaledDrainMs = await drained();
      const to5min = 300_000 / o.resyncBaseMs;
      mechanisms.push({ mechanism: "interval scaling", measure: `resync ops/s of ${o.resyncAgents > 0 ? Math.min(o.resyncAgents, counting.length) : counting.length} counting agents (${nodesNow} nodes), base ${o.resyncBaseMs} ms, ${(windowMs / 1000).toFixed(1)} s window`, on: scaled, off: fixed, onLabel: "base x ln(1+nodes)", offLabel: "fixed", note: `every agent had the window's writes ${(scaledDrainMs / 1000).toFixed(1)} vs ${(fixedDrainMs / 1000).toFixed(1)} s after it ended (each put goes to every agent); measured; as a 5-minute base (divided by ${to5min.toFixed(0)}): ${(scaled / to5min).toFixed(3)} vs ${(fixed / to5min).toFixed(3)} ops/s. Computed, not measured: 5 min at 100 nodes ${(100 / 300).toFixed(2)} vs ${(100 / (clusterSizeDependantInterval(300_000, 100) / 1000)).toFixed(3)} ops/s, at 5,000 nodes ${(5000 / 300).toFixed(1)} vs ${(5000 / (clusterSizeDependantInterval(300_000, 5000) / 1000)).toFixed(2)} ops/s` });
    });

    // ---- 3f. synchronized restart of every counting agent, three ways
    const restarts: RestartFigures[] = [];
    const restartAll = async (variant: string, policy: BootstrapPolicy) => {
      await boundedEach("every counting agent stopped", o.convergeTimeoutMs, counting, (a) => a.stop(), (a) => ({ agent: a.name, kind: a.kind, lacks: "its watches and list loops have not ended" }));
      const fails0 = counting.reduce((s, a) => s + a.counters.bootstrapFailures, 0);
      standin.resetTimeline();
      const t0 = performance.now();
      await startCounting(policy);
      const untilAllUpMs = performance.now() - t0;
      restarts.push({
        variant, agents: counting.length, untilAllUpMs, apiserverRequests: standin.counts.requests, apiserverTooMany: standin.counts.tooMany,
        apiserverPeakPerSecond: standin.peakPerSecond(), kvstorePeakOpsPerSecond: timeline.peak(t0 - started, performance.now() - started + 1),
        bootstrapFailures: counting.reduce((s, a) => s + a.counters.bootstrapFailures, 0) - fails0, timeline: standin.timeline(),
      });
    };
    const variants: Record<RestartVariant, [string, BootstrapPolicy]> = {
      backoff: ["backoff + jitter, retry in place (1.5)", basePolicy],
      fixed: ["fixed retry, in place", { ...basePolicy, retry: "fixed" }],
      scratch: ["backoff + jitter, restart from scratch", { ...basePolicy, onFailure: "restart" }],
    };
    const chosen = RESTART_VARIANTS.filter((v) => o.restartVariants.includes(v));
    if (chosen.length > 0) {
      await phase(`synchronized restart of all counting agents (${chosen.join(", ")})`, async () => {
        for (const v of chosen) await restartAll(...variants[v]);
      });
    }
    const byVariant = (v: RestartVariant) => restarts.find((x) => x.variant === variants[v][0]);
    const [a, b, c] = [byVariant("backoff"), byVariant("fixed"), byVariant("scratch")];
    if (a && b) {
      mechanisms.push({ mechanism: "backoff with jitter", measure: "apiserver 429s in a synchronized restart", on: a.apiserverTooMany, off: b.apiserverTooMany, onLabel: "exp. backoff + jitter", offLabel: `fixed ${o.fixedRetryMs} ms`, note: `peak ${a.apiserverPeakPerSecond.toFixed(0)} vs ${b.apiserverPeakPerSecond.toFixed(0)} req/s; every agent up after ${(a.untilAllUpMs / 1000).toFixed(2)} vs ${(b.untilAllUpMs / 1000).toFixed(2)} s` });
    }
    if (a && c) {
      mechanisms.push({ mechanism: "retry in place", measure: "apiserver requests in a synchronized restart", on: a.apiserverRequests, off: c.apiserverRequests, onLabel: "retry the failed step", offLabel: "restart from scratch", note: `every agent up after ${(a.untilAllUpMs / 1000).toFixed(2)} vs ${(c.untilAllUpMs / 1000).toFixed(2)} s` });
    }

    // ---- 3g. slim records vs full objects, delivered to a watcher on the same store
    await phase("slim records vs full objects", async () => {
      const events = 20;
      const FULL_PREFIX = "membrane/sim/full-pods/";
      const seen = { slim: { n: 0, bytes: 0, allocs: 0 }, full: { n: 0, bytes: 0, allocs: 0 } };
      const watchers = [
        { which: "slim" as const, w: clients[0]!.watch(keys.ipcacheAll()) },
        { which: "slim" as const, w: clients[0]!.watch(keys.pods()) },
        { which: "full" as const, w: clients[0]!.watch(FULL_PREFIX) },
      ];
      let loops: Promise<void>[] = [];
      const pods: SimPod[] = Array.from({ length: events }, (_, k) => ({ name: `slim-${k}`, node: k % o.nodes, ip: `10.${64 + ((k % o.nodes) >> 8)}.${(k % o.nodes) & 255}.${CHURN_SLOT_BASE + 53}`, labelSet: k % o.labelSets }));
      const slimPhase = "slim records vs full objects";
      let slimWritten = 0;
      let fullWritten = 0;
      try {
        await bounded("the slim-vs-full watchers started", o.convergeTimeoutMs, Promise.all(watchers.map((x) => x.w.ready)));
        loops = watchers.map(async ({ which, w }) => {
          for await (const ev of w as AsyncIterable<WatchEvent>) {
            if (ev.type !== "put") continue;
            seen[which].n++;
            seen[which].bytes += eventBytes(ev);
            seen[which].allocs += parseAllocations(ev.kv.value);
          }
        });
        // 40 writes one after another: one bound for all of them
        const deadline = new Deadline("the slim and full pod changes written", o.convergeTimeoutMs);
        for (const [k, pod] of pods.entries()) {
          deadline.check();
          const [podRecord, ipcache] = podPuts(pod);
          if (await deadline.race(writer.txn(slimPhase, [podRecord!, ipcache!].map((p): TxnOp => ({ type: "put", key: p.key, value: p.value }))))) slimWritten++;
          const { namespace } = labelsOf(pod.labelSet);
          if (await deadline.race(writer.put(slimPhase, `${FULL_PREFIX}${namespace}/${pod.name}`, JSON.stringify(fullPodObject(pod, k))))) fullWritten++;
        }
        await until("the watchers got the pod changes", o.convergeTimeoutMs, () => seen.full.n >= fullWritten && seen.slim.n >= 2 * slimWritten);
      } finally {
        // whatever happened above: the watchers closed and the pods removed, so the steady-cluster check that follows can hold
        await bounded("the slim-vs-full watchers closed", o.convergeTimeoutMs, Promise.all(watchers.map((x) => x.w.close()).concat(loops)));
        await writer.writeAll(slimPhase, txnBatches([], [...pods.flatMap((p) => podKeys(p).slice(0, 2)), ...pods.map((p) => `${FULL_PREFIX}${labelsOf(p.labelSet).namespace}/${p.name}`)]));
      }
      if (slimWritten === 0 || fullWritten === 0) throw new Error(`no pod change written (${slimWritten} slim, ${fullWritten} full): no slim-vs-full figure`);
      const slimPer = (v: number) => v / slimWritten;
      const fullPer = (v: number) => v / fullWritten;
      mechanisms.push({ mechanism: "slim records", measure: "bytes delivered per pod change", on: slimPer(seen.slim.bytes), off: fullPer(seen.full.bytes), onLabel: "ipcache + pod record", offLabel: "full Pod object", note: `${(fullPer(seen.full.bytes) / slimPer(seen.slim.bytes)).toFixed(1)}x fewer bytes (goal >= 10x); allocations per change ${slimPer(seen.slim.allocs).toFixed(0)} vs ${fullPer(seen.full.allocs).toFixed(0)}${slimWritten < events || fullWritten < events ? ` (${slimWritten} slim and ${fullWritten} full of ${events} changes written)` : ""}` });
    });

    // ---- every agent back at the steady cluster (the last deletes delivered) before counting
    const ipcacheKey = CLUSTER_PREFIXES[2]!;
    await phase("every agent back at the steady cluster", async () => {
      const holds = (ipcache: number, nodes: number) => ipcache === o.pods && nodes === nodesNow;
      const lacks = (ipcache: number, nodes: number) => `holds ${ipcache} of ${o.pods} ipcache entries, ${nodes} of ${nodesNow} nodes`;
      await until("every agent holds the steady cluster", o.convergeTimeoutMs, () =>
        counting.every((ag) => holds(ag.present.get(ipcacheKey)!, ag.knownNodes)) && full.every((f) => holds(f.core.ipcache.records.size, f.core.nodes.records.size)), () => [
        ...counting.filter((ag) => !holds(ag.present.get(ipcacheKey)!, ag.knownNodes)).map((ag): Lagging => ({ agent: ag.name, kind: ag.kind, lacks: lacks(ag.present.get(ipcacheKey)!, ag.knownNodes) })),
        ...full.filter((f) => !holds(f.core.ipcache.records.size, f.core.nodes.records.size)).map((f): Lagging => ({ agent: f.name, kind: f.kind, lacks: lacks(f.core.ipcache.records.size, f.core.nodes.records.size) })),
      ]);
    });

    // ---- figures
    // Convergence percentiles count the pairs that never converged as slower than the bound the churn waited:
    // a percentile among them is "beyond the bound", not a number. A churn phase that failed (threw) waited no bound: no figure.
    const censored = (sorted: readonly number[], missing: number, q: number) => {
      const v = churnOutcome() === "failed" ? "none" : censoredPercentile(sorted, missing, q, o.convergeTimeoutMs);
      return { ms: typeof v === "number" ? v : null, beyond: v === "beyond" };
    };
    const kindFigures = (kind: string, from: number, to: number, meters: MeteredKvStore[]): KindFigures => {
      const lat = churnTracker.latencies(from, to);
      const n = Math.max(1, to - from);
      const sum = (f: (m: MeteredKvStore) => number) => meters.reduce((s, m) => s + f(m), 0);
      const records = sum((m) => m.counts.events + m.counts.listed);
      const [p50, p99] = [censored(lat.ms, lat.missing, 0.5), censored(lat.ms, lat.missing, 0.99)];
      return {
        kind, agents: to - from, convergenceP50Ms: p50.ms, convergenceP99Ms: p99.ms, convergenceBeyond: { p50: p50.beyond, p99: p99.beyond },
        convergenceBoundMs: o.convergeTimeoutMs, notConverged: lat.missing,
        eventsPerAgent: sum((m) => m.counts.events) / n, bytesPerAgent: sum((m) => m.counts.bytes) / n,
        bytesPerEvent: records ? sum((m) => m.counts.bytes) / records : 0, kvOpsPerAgent: sum((m) => m.counts.ops) / n,
      };
    };
    const kinds = [kindFigures("counting agents", 0, countingCount, countingMeters), kindFigures("full agents", countingCount, total, fullMeters)];
    const counts: SimReport["counts"] = [];
    for (const f of full) {
      const s = f.core.status().counts;
      counts.push({ agent: f.core.node, kind: f.kind, nodes: s.nodes, ipcache: s.ipcache, identities: s.identities, services: s.services, policies: s.policies, ok: s.nodes === nodesNow && s.ipcache === o.pods && s.services === o.services && s.policies === 1 });
    }
    for (const ag of counting.slice(0, 3)) {
      const p = (i: number) => ag.present.get(CLUSTER_PREFIXES[i]!)!;
      counts.push({ agent: ag.name, kind: "counting agent", nodes: p(0), ipcache: p(2), identities: p(1), services: p(3), policies: p(4), ok: p(0) === nodesNow && p(2) === o.pods && p(3) === o.services && p(4) === 1 });
    }
    const untilEvery = churnTracker.untilEveryAgent();
    const every = untilEvery.filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
    const podsNotEverywhere = untilEvery.length - every.length;
    const [every50, every99] = [censored(every, podsNotEverywhere, 0.5), censored(every, podsNotEverywhere, 0.99)];
    const etcdMem = target.memory();
    const report: SimReport = {
      options: { ...o, agents: agentCount, log: undefined } as unknown as SimReport["options"],
      kvstore: { location: target.location, backend: target.backend, clients: target.backend === "embedded" ? 1 : clients.length, agentsPerClient: o.agentsPerClient, etcdPeakRssBytes: etcdMem?.peakRssBytes ?? null },
      wallSeconds: (performance.now() - started) / 1000,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      loadAverage: (await import("node:os")).loadavg(),
      phases,
      write: { records: puts.length, seconds: writeSeconds, opsPerSecond: operatorMeter.counts.ops / Math.max(0.001, writeSeconds) },
      join: { countingSeconds, fullSeconds, countingUpAtSeconds: countingUpAt },
      lists: {
        pageSize: o.listPageSize, pagesInFlight: o.listPagesInFlight, gate: { ...gate.stats },
        pageRetries: counting.reduce((x, ag) => x + ag.counters.pageRetries, 0), relists: counting.reduce((x, ag) => x + ag.counters.relists, 0), watchRelists: counting.reduce((x, ag) => x + ag.counters.watchRelists, 0),
      },
      kinds,
      fullAgentMemory: { heapDeltaBytes: heapDelta, perAgentPerPodBytes: heapDelta / o.fullAgents / o.pods, goalBytes: 2048, measured: gc !== undefined },
      leasesLost: counting.reduce((sum, ag) => sum + ag.counters.leasesLost, 0),
      churn: {
        created, deleted, newIdentities, writesFailed: churnWritesFailed, complete: churnOutcome() === "done",
        untilEveryAgentP50Ms: every50.ms, untilEveryAgentP99Ms: every99.ms, untilEveryAgentBeyond: { p50: every50.beyond, p99: every99.beyond },
        podsNotEverywhere, boundMs: o.convergeTimeoutMs, diagnosis: capDiagnosis(churnDiagnosis),
      },
      nodeBurst: { nodes: o.joinNodes, untilEveryAgentMs: joinMs },
      counts,
      mechanisms,
      restarts,
      failures: { operatorWrites: writer.counts.failures, operatorRetries: writer.counts.retries, phases: phaseFailures, incomplete },
      kvstoreOpsPerSecond: timeline.perSecond,
      convergenceCdf: [
        { kind: "counting agents", ms: churnTracker.latencies(0, countingCount).ms },
        { kind: "full agents", ms: churnTracker.latencies(countingCount, total).ms },
      ],
    };
    return report;
  } finally {
    // teardown is bounded too (an agent stuck in a round must not hold the report back); what did not stop is logged
    const settle = (what: string, p: Promise<unknown>) => bounded(what, o.convergeTimeoutMs, p).catch((err) => log(`sim: teardown: ${(err as Error).message}`));
    await settle("the full agents stopped", Promise.all(full.map((a) => a.stop().catch(() => {}))));
    await settle("the counting agents stopped", Promise.all(counting.map((a) => a.stop().catch(() => {}))));
    await settle("the kvstore clients closed", Promise.all([...new Set(clients)].map((c) => c.close().catch(() => {}))));
    await settle("the apiserver stand-in stopped", standin.stop());
    await target.stop();
  }
}

/** The diagnosis as the report keeps it: the first LAGGING_LISTED agents (the counts cover all). */
function capDiagnosis(d: LagDiagnosis | null): LagDiagnosis | null {
  return d && { ...d, agents: d.agents.slice(0, LAGGING_LISTED) };
}
