/**
 * Why agents did not converge on the churned pods in time: slowness or a
 * lost event. Each churned pod's transaction has a store revision W (every
 * key of one txn shares it). An agent whose view of the pod's prefix
 * (ipcache, or identity masters for a new identity) reflects a revision >= W
 * has been handed every change up to W, the pod's included; if it still
 * lacks the pod, the event was LOST (watch or decode dropped it). An agent
 * whose view is still before W is BEHIND: a backlog, slowness, not loss.
 *
 * Two cases are neither:
 * - unapplied: a full agent whose reflector holds the record but whose
 *   datapath round has not applied it yet (a backlog inside the agent);
 * - deleted before seen: churn deleted the pod again at revision D, and the
 *   agent re-listed at or after D (a list after the delete rightly skips it),
 *   or cannot tell when it last listed and its view is past D.
 */
import { keys } from "../kvstore/keys.js";
import { cap, examples, type Lagging } from "./bounded.js";
import { IDENTITY_SEEN, IP_SEEN, type Probe } from "./convergence.js";

/** What an agent can say about how far its view of the store has come. */
export interface AgentRevisionView {
  /** Index in the convergence tracker. */
  readonly index: number;
  readonly name: string;
  readonly kind: string;
  /** The store revision its view of `prefix` reflects (its list, then each watch event); 0 before its first list. */
  revisionOf(prefix: string): number;
  /** The revision of its latest (re-)list of `prefix`; undefined when it cannot tell. */
  listedAt(prefix: string): number | undefined;
  /** It holds `key` but has not applied it (full agents: in the reflector, not yet at the sink); false for an agent without a mirror. */
  received(key: string): boolean;
}

export type Verdict = "lost" | "behind" | "unapplied" | "deleted before seen";

export interface MissingPair {
  key: string;
  verdict: Verdict;
  writeRevision: number;
  agentRevision: number;
}

export interface AgentLag {
  agent: string;
  kind: string;
  /** Churned pods it does not have (ipcache entry or new identity missing). */
  missingPods: number;
  verdicts: Record<Verdict, number>;
  /** A few of the missing pods, lost ones first. */
  examples: MissingPair[];
}

export interface LagDiagnosis {
  /** Agents missing at least one pod. */
  agentsBehind: number;
  /** (pod, agent) pairs missing, and of those the ones lost. */
  pairsMissing: number;
  lostEvents: number;
  /** The missing pairs by verdict, over every agent. */
  totals: Record<Verdict, number>;
  /** Every agent behind, the ones with lost events first. */
  agents: AgentLag[];
}

const EXAMPLES_KEPT = 3;
const VERDICTS: Verdict[] = ["lost", "behind", "unapplied", "deleted before seen"];

export function judge(p: Probe, view: AgentRevisionView): MissingPair | undefined {
  if (p.writeRevision === undefined) return undefined; // never written: no probe an agent could meet
  const seen = p.seen[view.index]!;
  const [prefix, key] = !(seen & IP_SEEN) ? [keys.ipcacheAll(), p.ipKey] : !(seen & IDENTITY_SEEN) && p.identityKey ? [keys.identityMasters(), p.identityKey] : [undefined, undefined];
  if (prefix === undefined || key === undefined) return undefined;
  const agentRevision = view.revisionOf(prefix);
  const pair = (verdict: Verdict): MissingPair => ({ key, verdict, writeRevision: p.writeRevision!, agentRevision });
  if (view.received(key)) return pair("unapplied");
  if (agentRevision < p.writeRevision) return pair("behind");
  if (p.deleteRevision !== undefined) {
    const listed = view.listedAt(prefix);
    if (listed === undefined ? agentRevision >= p.deleteRevision : listed >= p.deleteRevision) return pair("deleted before seen");
  }
  return pair("lost");
}

/** Judges every (pod, agent) pair not converged among `probes`. */
export function diagnoseLag(probes: readonly Probe[], views: readonly AgentRevisionView[]): LagDiagnosis {
  const agents: AgentLag[] = [];
  let pairsMissing = 0;
  let lostEvents = 0;
  const totals: Record<Verdict, number> = { lost: 0, behind: 0, unapplied: 0, "deleted before seen": 0 };
  for (const view of views) {
    const verdicts: Record<Verdict, number> = { lost: 0, behind: 0, unapplied: 0, "deleted before seen": 0 };
    const pairs: MissingPair[] = [];
    for (const p of probes) {
      if (!Number.isNaN(p.latency[view.index]!)) continue;
      const pair = judge(p, view);
      if (!pair) continue;
      verdicts[pair.verdict]++;
      if (pairs.length < EXAMPLES_KEPT || (pair.verdict === "lost" && pairs.some((x) => x.verdict !== "lost"))) {
        pairs.push(pair);
        pairs.sort((a, b) => Number(b.verdict === "lost") - Number(a.verdict === "lost"));
        pairs.length = Math.min(pairs.length, EXAMPLES_KEPT);
      }
    }
    const missingPods = VERDICTS.reduce((s, v) => s + verdicts[v], 0);
    if (missingPods === 0) continue;
    pairsMissing += missingPods;
    lostEvents += verdicts.lost;
    for (const v of VERDICTS) totals[v] += verdicts[v];
    agents.push({ agent: view.name, kind: view.kind, missingPods, verdicts, examples: pairs });
  }
  agents.sort((a, b) => b.verdicts.lost - a.verdicts.lost || b.missingPods - a.missingPods);
  return { agentsBehind: agents.length, pairsMissing, lostEvents, totals, agents };
}

/** One agent's lag in words, capped: "missing 12 pods: LOST 1, behind 11; e.g. <key> (write rev 812, agent at 930: lost)". */
export function describeLag(a: AgentLag): string {
  const split = VERDICTS.filter((v) => a.verdicts[v] > 0).map((v) => `${v === "lost" ? "LOST" : v} ${a.verdicts[v]}`).join(", ");
  const eg = examples(a.examples.map((x) => `${x.key} (write rev ${x.writeRevision}, agent at ${x.agentRevision}: ${x.verdict})`), EXAMPLES_KEPT);
  return cap(`missing ${a.missingPods} pod(s): ${split}; e.g. ${eg}`);
}

export function lagging(d: LagDiagnosis): Lagging[] {
  return d.agents.map((a) => ({ agent: a.agent, kind: a.kind, lacks: describeLag(a) }));
}

/** The missing pairs by verdict, each said in words. */
export function verdictSummary(d: LagDiagnosis): string {
  const n = d.totals;
  return `${n.lost} LOST (watch past the pod's write revision, pod never delivered); ${n.behind} behind (watch before the write: slowness, backlog), ${n.unapplied} received but not applied yet (backlog in the agent), ${n["deleted before seen"]} deleted before the agent listed (never to be seen: no fault)`;
}
