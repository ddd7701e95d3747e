/**
 * "Fail less quickly": a bootstrap made of steps (connect, register the node,
 * allocate the node's identities, ...) where a failed step is retried in
 * place with backoff, instead of the whole agent restarting and redoing the
 * steps that had already succeeded (Cilium 1.5: "Unable to initialize local
 * node. Retrying...").
 */
import { wrap } from "../errors.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { systemClock, type Clock } from "./clock.js";

export interface Step<T = unknown> {
  name: string;
  run: () => Promise<T> | T;
}

export interface RetryOptions {
  backoff?: BackoffOptions;
  clock?: Clock;
  /** Give up after this many attempts of one step (default: never give up). */
  maxAttempts?: number;
  /** Which errors are worth retrying (default: all). */
  retryable?: (err: unknown) => boolean;
  signal?: AbortSignal;
  /** Told before each wait, e.g. to log "register node: ... Retrying in 1.4 s". */
  onRetry?: (info: { step: string; attempt: number; waitMs: number; error: unknown }) => void;
}

/** Runs one step until it succeeds, waiting with backoff between attempts. */
export async function retryInPlace<T>(step: Step<T>, options: RetryOptions = {}): Promise<T> {
  const backoff = new Backoff(options.backoff, options.clock ?? systemClock);
  const clock = options.clock ?? systemClock;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await step.run();
    } catch (err) {
      const retryable = options.retryable?.(err) ?? true;
      if (!retryable || (options.maxAttempts !== undefined && attempt >= options.maxAttempts)) {
        throw wrap(`${step.name} (attempt ${attempt})`, err);
      }
      const waitMs = backoff.next();
      options.onRetry?.({ step: step.name, attempt, waitMs, error: err });
      await clock.sleep(waitMs, options.signal);
    }
  }
}

/**
 * Runs steps in order, each retried in place; a step that succeeded is never
 * run again. Returns each step's result by name.
 */
export async function runSteps(steps: readonly Step[], options: RetryOptions = {}): Promise<Map<string, unknown>> {
  const results = new Map<string, unknown>();
  for (const step of steps) results.set(step.name, await retryInPlace(step, options));
  return results;
}
