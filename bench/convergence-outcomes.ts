/**
 * Reading bench:convergence's probe attempts: when, after an apply, a node's
 * new flows were first decided under the new state. Attempts are the probe's
 * JSON lines (bench/convergence-probe.ts), printed in completion order.
 */

/** One new connection: its send time (ms since the epoch), whether it got an answer, and from whom. */
export interface ProbeAttempt {
  t: number;
  ok: boolean;
  reply: string;
  port?: number;
}

export function isProbeAttempt(line: unknown): line is ProbeAttempt {
  return typeof line === "object" && line !== null && typeof (line as ProbeAttempt).t === "number" && typeof (line as ProbeAttempt).ok === "boolean";
}

/** The attempts sent at or after t0, by send time. */
function sentSince(attempts: readonly ProbeAttempt[], t0: number): ProbeAttempt[] {
  return attempts.filter((a) => a.t >= t0).sort((x, y) => x.t - y.t);
}

/**
 * For an outcome the old state cannot give (a new backend answers, a denied
 * flow is accepted): ms from t0 to the send time of the first attempt with
 * it, or undefined while there is none.
 */
export function firstNewOutcome(attempts: readonly ProbeAttempt[], t0: number, isNew: (a: ProbeAttempt) => boolean): number | undefined {
  const hit = sentSince(attempts, t0).find(isNew);
  return hit ? hit.t - t0 : undefined;
}

/**
 * For an outcome the old state can give too (another backend answers, a flow
 * is refused): ms from t0 to the send time of the first attempt after the
 * last one with the old outcome, once `confirm` attempts after it all show
 * the new outcome (attempts that are neither, such as a refused flow while
 * counting answers, are passed over); undefined until then.
 */
export function afterLastOldOutcome(
  attempts: readonly ProbeAttempt[], t0: number, isOld: (a: ProbeAttempt) => boolean, isNew: (a: ProbeAttempt) => boolean, confirm: number,
): number | undefined {
  const since = sentSince(attempts, t0);
  let lastOld = -1;
  since.forEach((a, i) => {
    if (isOld(a)) lastOld = i;
  });
  const after = since.slice(lastOld + 1);
  if (after.filter(isNew).length < confirm) return undefined;
  return after[0]!.t - t0;
}

/** The nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
