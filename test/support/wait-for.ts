/**
 * The one polling helper for tests: ask `probe` until it returns a value (not
 * undefined and not false) or the deadline passes. Tests wait on a condition
 * they can name, never on a fixed sleep, so a slow machine only makes them
 * slower, not flaky, and a failure says what never happened.
 */
export interface WaitOptions {
  /** How long to keep asking (default 30 s). */
  timeoutMs?: number;
  /** Pause between probes (default 25 ms). */
  intervalMs?: number;
  /** Extra context for the timeout message, computed only on failure. */
  detail?: () => string;
}

export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const parts = [`${what}: not within ${timeoutMs} ms`];
      if (lastError !== undefined) parts.push(`last error: ${(lastError as Error).message ?? String(lastError)}`);
      if (options.detail) parts.push(options.detail());
      throw new Error(parts.join("; "));
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Resolves after `ms`; for pacing traffic, never for waiting on a condition. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
