/**
 * Every wait of the simulation has a bound. A 1,000-agent run once printed
 * nothing for 98 minutes: one await (a full agent's settled()) waited for
 * ever. Here a wait that runs out throws BoundExceededError naming what was
 * awaited, the bound, and which agents are behind (and what they lack), so
 * the phase is marked incomplete in the report and the run goes on to the
 * next phase.
 *
 * Bounding a promise does not cancel the work behind it (an etcd call, an
 * agent's round): it goes on in the background; the simulation just stops
 * waiting for it and says so.
 */

/** One agent that was behind when a bound ran out, and what it lacked. */
export interface Lagging {
  agent: string;
  kind: string;
  /** What it lacks ("missing 37 pods, e.g. ..."), capped at LACKS_MAX_CHARS. */
  lacks: string;
}

/** Agents named per incomplete wait (the count of all of them is kept apart). */
export const LAGGING_LISTED = 20;
export const LACKS_MAX_CHARS = 300;

export function cap(text: string, max = LACKS_MAX_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A few examples of `items`, and how many more there are: "a, b, c and 34 more". */
export function examples(items: readonly string[], shown = 3): string {
  const head = items.slice(0, shown).join(", ");
  return items.length > shown ? `${head} and ${items.length - shown} more` : head;
}

export class BoundExceededError extends Error {
  /**
   * `behind`: every agent found behind (the report lists the first
   * LAGGING_LISTED and counts all of them).
   */
  constructor(readonly what: string, readonly boundMs: number, readonly behind: Lagging[] = []) {
    super(`sim: ${what} did not happen within ${boundMs} ms${behind.length ? ` (${behind.length} agent(s) behind)` : ""}`);
  }
}

/**
 * `p`, or BoundExceededError after `boundMs`; `behind` is asked then (not
 * before) who is still behind.
 */
export function bounded<T>(what: string, boundMs: number, p: Promise<T>, behind?: () => Lagging[]): Promise<T> {
  return raceTimer(p, boundMs, () => new BoundExceededError(what, boundMs, behind?.() ?? []));
}

function raceTimer<T>(p: Promise<T>, waitMs: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), Math.max(0, waitMs));
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

/**
 * Waits for each of `items` (one promise per agent, say) together, within
 * one bound; on expiry the ones not finished are named through `name`.
 */
export async function boundedEach<I>(what: string, boundMs: number, items: readonly I[], run: (item: I) => Promise<unknown>, name: (item: I) => Lagging): Promise<void> {
  const done = new Set<I>();
  await bounded(what, boundMs, Promise.all(items.map(async (item) => {
    await run(item);
    done.add(item);
  })), () => items.filter((i) => !done.has(i)).map(name));
}

/** Polls `check` every 20 ms; the ms it took, or BoundExceededError after `boundMs`. */
export async function until(what: string, boundMs: number, check: () => boolean, behind?: () => Lagging[]): Promise<number> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > boundMs) throw new BoundExceededError(what, boundMs, behind?.() ?? []);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - t0;
}

/**
 * A bound shared by a sequence of waits (a loop of writes, agents started a
 * few at a time): each wait gets what is left of it.
 */
export class Deadline {
  private readonly end: number;
  constructor(readonly what: string, readonly boundMs: number) {
    this.end = performance.now() + boundMs;
  }

  remainingMs(): number {
    return Math.max(0, this.end - performance.now());
  }

  /** Throws BoundExceededError once the bound has run out. */
  check(behind?: () => Lagging[]): void {
    if (this.remainingMs() <= 0) throw new BoundExceededError(this.what, this.boundMs, behind?.() ?? []);
  }

  /**
   * `p`, or BoundExceededError (naming the whole bound) once what is left of it
   * has run out. A timer can fire before the clock reaches the end (Node
   * schedules from the event loop's cached time, whole milliseconds), so an
   * early one waits out the rest: after the error, check() throws too.
   */
  race<T>(p: Promise<T>, behind?: () => Lagging[]): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      const wait = () => {
        const left = this.remainingMs();
        if (left <= 0) reject(new BoundExceededError(this.what, this.boundMs, behind?.() ?? []));
        else timer = setTimeout(wait, Math.ceil(left));
      };
      wait();
    });
    return Promise.race([p, expired]).finally(() => clearTimeout(timer));
  }
}
