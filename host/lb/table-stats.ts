/**
 * Measures of a selection table (Maglev or slot list): how evenly it shares
 * traffic and how much of it changes between two versions. Shared by the
 * tests and bench/lb-fairness.ts so both measure the same thing.
 */

/** Number of entries (or flows) per backend id. */
export function countPerBackend(entries: ArrayLike<number>): Map<number, number> {
  const counts = new Map<number, number>();
  for (let i = 0; i < entries.length; i++) counts.set(entries[i]!, (counts.get(entries[i]!) ?? 0) + 1);
  return counts;
}

/**
 * The largest share over the mean share among `backends` (ids), from `counts`:
 * 1 is perfect; a backend missing from `counts` counts as 0.
 */
export function maxOverMean(counts: ReadonlyMap<number, number>, backends: readonly number[]): number {
  let total = 0;
  let max = 0;
  for (const id of backends) {
    const c = counts.get(id) ?? 0;
    total += c;
    if (c > max) max = c;
  }
  return total === 0 ? 0 : max / (total / backends.length);
}

/** The smallest share over the mean share among `backends` (0 when one gets nothing). */
export function minOverMean(counts: ReadonlyMap<number, number>, backends: readonly number[]): number {
  let total = 0;
  let min = Infinity;
  for (const id of backends) {
    const c = counts.get(id) ?? 0;
    total += c;
    if (c < min) min = c;
  }
  return total === 0 ? 0 : min / (total / backends.length);
}

/** Entries whose backend differs between two tables of the same length. */
export function movedEntries(before: ArrayLike<number>, after: ArrayLike<number>): number {
  if (before.length !== after.length) throw new RangeError(`tables differ in length: ${before.length} vs ${after.length}`);
  let moved = 0;
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) moved++;
  return moved;
}
