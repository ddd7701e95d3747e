/**
 * What slots 1..N of a service hold. v2 (random, maglev): dense, rewritten
 * on every change, no duplicates beyond what weights ask for. Legacy (pre-v2,
 * kept to measure against): slots of removed backends are refilled with
 * duplicates of the remaining ones and new backends are appended, so the
 * duplicates, and the skew they cause, outlive the churn.
 */

export interface SlotBackend {
  id: number;
  /** Slots the backend takes (0: drained, no new flows). */
  weight: number;
}

/** Backend ids, interleaved by weight: every backend once, then those with weight >= 2 again, ... */
export function denseSlots(backends: readonly SlotBackend[]): number[] {
  const slots: number[] = [];
  const maxWeight = backends.reduce((m, b) => Math.max(m, b.weight), 0);
  for (let round = 1; round <= maxWeight; round++) {
    for (const b of backends) if (b.weight >= round) slots.push(b.id);
  }
  return slots;
}

/** The pre-v2 slot filling from the slots the service had before. */
export function legacySlots(previous: readonly number[], backends: readonly SlotBackend[]): number[] {
  const active = backends.filter((b) => b.weight > 0);
  const activeIds = new Set(active.map((b) => b.id));
  const survivors = [...new Set(previous.filter((id) => activeIds.has(id)))];
  if (survivors.length === 0) return denseSlots(active);
  // A freed slot takes a survivor by its own index, so one removal's
  // duplicates spread over the survivors instead of piling on the first.
  const slots = previous.map((id, i) => (activeIds.has(id) ? id : survivors[i % survivors.length]));
  const present = new Set(previous);
  for (const b of active) {
    if (!present.has(b.id)) for (let i = 0; i < b.weight; i++) slots.push(b.id);
  }
  return slots;
}
