/**
 * How a simulated agent bootstraps, with each 1.5 choice switchable so the
 * same run can show it on and off:
 * - retry: exponential backoff with jitter (1.5) or a fixed retry interval;
 * - on a failed step: retry that step in place (1.5, "fail less quickly") or
 *   restart the whole bootstrap from the first step, as an agent that exits
 *   and is restarted does.
 * Both use the project's Backoff and runSteps (host/kvstore/).
 */
import { Backoff, type BackoffOptions } from "../kvstore/backoff.js";
import { runSteps, type Step } from "../kvstore/retry-in-place.js";
import { systemClock } from "../kvstore/clock.js";

export interface BootstrapPolicy {
  retry: "backoff" | "fixed";
  onFailure: "retry-in-place" | "restart";
  /** The backoff of `retry: "backoff"` (min, max, jitter, node scaling). */
  backoff: BackoffOptions;
  /** The interval of `retry: "fixed"`. */
  fixedMs: number;
}

export function retryBackoff(policy: BootstrapPolicy): BackoffOptions {
  return policy.retry === "backoff" ? policy.backoff : { minMs: policy.fixedMs, maxMs: policy.fixedMs, factor: 1, jitter: false };
}

/** Runs the steps under the policy; returns how many step attempts failed. */
export async function bootstrapSteps(steps: readonly Step[], policy: BootstrapPolicy, signal?: AbortSignal): Promise<number> {
  let failures = 0;
  if (policy.onFailure === "retry-in-place") {
    await runSteps(steps, { backoff: retryBackoff(policy), signal, onRetry: () => void failures++ });
    return failures;
  }
  const backoff = new Backoff(retryBackoff(policy));
  for (;;) {
    signal?.throwIfAborted();
    try {
      for (const step of steps) await step.run();
      return failures;
    } catch {
      failures++;
      await systemClock.sleep(backoff.next(), signal);
    }
  }
}
