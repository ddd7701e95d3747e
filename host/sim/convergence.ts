/**
 * Convergence of new pods: a probe starts when the operator side writes a
 * pod's records, and ends for one agent when that agent has both the pod's
 * ipcache record and its identity (the master key of a new label set; an
 * identity the agent already had counts as present). The latency is kept per
 * (pod, agent), so p50/p99 are over every agent's view, and split by agent
 * kind (full agents see the ipcache entry at their datapath sink, counting
 * agents when the event is decoded).
 *
 * A (pod, agent) pair that never converged within the bound is not left out
 * of the percentiles (that would report the fast ones only): it counts as
 * slower than the bound (censoredPercentile), and the count of such pairs is
 * reported beside them.
 */
export const IP_SEEN = 1;
export const IDENTITY_SEEN = 2;

export interface Probe {
  readonly ipKey: string;
  readonly identityKey: string | undefined;
  readonly identity: number;
  readonly start: number;
  readonly seen: Uint8Array;
  /** ms per agent; NaN until converged. */
  readonly latency: Float64Array;
  done: number;
  /** Store revision of the write that created the pod (its txn's), once it succeeded: an agent whose watch passed it should have the pod. */
  writeRevision?: number;
  /** Store revision of the churn write that deleted the pod again, if one did. */
  deleteRevision?: number;
}

export class ConvergenceTracker {
  private readonly byKey = new Map<string, Probe[]>();
  readonly probes: Probe[] = [];

  constructor(readonly agents: number) {}

  /** A pod's records are about to be written: `identityKey` when its identity is new to the cluster. */
  start(ipKey: string, identity: number, identityKey?: string): Probe {
    const p: Probe = {
      ipKey, identityKey, identity, start: performance.now(),
      seen: new Uint8Array(this.agents).fill(identityKey ? 0 : IDENTITY_SEEN),
      latency: new Float64Array(this.agents).fill(NaN), done: 0,
    };
    this.probes.push(p);
    this.index(ipKey, p);
    if (identityKey) this.index(identityKey, p);
    return p;
  }

  private index(key: string, p: Probe): void {
    const list = this.byKey.get(key);
    if (list) list.push(p);
    else this.byKey.set(key, [p]);
  }

  /** Agent `agent` now has `key` (an ipcache or identity master key). Cheap when nobody waits for it. */
  note(agent: number, key: string): void {
    const list = this.byKey.get(key);
    if (!list) return;
    for (const p of list) this.mark(p, agent, key === p.ipKey ? IP_SEEN : IDENTITY_SEEN);
  }

  mark(p: Probe, agent: number, bit: number): void {
    if (p.seen[agent]! === (IP_SEEN | IDENTITY_SEEN)) return;
    p.seen[agent]! |= bit;
    if (p.seen[agent] === (IP_SEEN | IDENTITY_SEEN)) {
      p.latency[agent] = performance.now() - p.start;
      if (++p.done === this.agents) {
        this.unindex(p.ipKey, p);
        if (p.identityKey) this.unindex(p.identityKey, p);
      }
    }
  }

  private unindex(key: string, p: Probe): void {
    const list = this.byKey.get(key)?.filter((x) => x !== p);
    if (!list?.length) this.byKey.delete(key);
    else this.byKey.set(key, list);
  }

  /** Forgets a probe whose pod was never written (its operator write failed): no agent can converge on it. */
  drop(p: Probe): void {
    const i = this.probes.indexOf(p);
    if (i >= 0) this.probes.splice(i, 1);
    this.unindex(p.ipKey, p);
    if (p.identityKey) this.unindex(p.identityKey, p);
  }

  /** Probes some agent has not converged on yet. */
  pending(): Probe[] {
    return this.probes.filter((p) => p.done < this.agents);
  }

  /** Latencies (ms) of agents in [from, to), over every probe; unconverged pairs are counted apart. */
  latencies(from: number, to: number): { ms: number[]; missing: number } {
    const ms: number[] = [];
    let missing = 0;
    for (const p of this.probes) {
      for (let a = from; a < to; a++) {
        const v = p.latency[a]!;
        if (Number.isNaN(v)) missing++;
        else ms.push(v);
      }
    }
    ms.sort((a, b) => a - b);
    return { ms, missing };
  }

  /** Per probe: ms until the last agent had it (NaN if one never did). */
  untilEveryAgent(): number[] {
    return this.probes.map((p) => (p.done < this.agents ? NaN : Math.max(...p.latency)));
  }
}

export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * The q-quantile of `sorted` (measured ms) together with `missing` samples
 * that never arrived within `boundMs`, each counted as slower than the bound.
 * A number when the quantile is a measured value known to be right: at or
 * under the bound, or anywhere when nothing is missing. `beyond` when it lies
 * past the bound with samples missing (their order among the late measured
 * ones is unknown, so only "> boundMs" is known). `none` without samples.
 */
export function censoredPercentile(sorted: readonly number[], missing: number, q: number, boundMs: number): number | "beyond" | "none" {
  const n = sorted.length + missing;
  if (n === 0) return "none";
  const i = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  if (i >= sorted.length) return "beyond";
  const v = sorted[i]!;
  return missing > 0 && v > boundMs ? "beyond" : v;
}
