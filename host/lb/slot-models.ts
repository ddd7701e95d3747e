/**
 * Models of how a service's backend is chosen for a new flow, as pure
 * functions of a 32-bit flow hash, for the fairness report and as the
 * reference the datapath's slot tables are checked against (REFERENCE.md,
 * "Service load-balancer"):
 * - random (services v2, Cilium 1.5): slots 1..N hold the N backends densely,
 *   rewritten on every change; slot = hash % N + 1.
 * - legacy (before v2): slots hold backends; a removed backend's slots are
 *   filled with duplicates of the remaining ones and never given back, so
 *   churn leaves some backends with several slots.
 * - maglev: entry hash % M of the Maglev table (host/lb/maglev.ts).
 */
import { InvalidInputError } from "../errors.js";
import { legacySlots } from "./slots.js";

/** The services-v2 slot (1-based, slot 0 is the master entry) for a flow among `count` dense slots. */
export function randomSlot(flowHash: number, count: number): number {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`random slot: backend count ${count} is not a positive integer`);
  return ((flowHash >>> 0) % count) + 1;
}

/** The Maglev table index for a flow. */
export function maglevIndex(flowHash: number, tableSize: number): number {
  return (flowHash >>> 0) % tableSize;
}

/**
 * Pre-v2 slots of one service under churn, driven through the same slot
 * filling the service manager writes to the datapaths (host/lb/slots.ts
 * legacySlots): a removed backend's slots get duplicates of the remaining
 * ones, an added backend gets one new slot, and the duplicates stay, which is
 * the skew v2 removed.
 */
export class LegacySlots {
  private list: number[];

  constructor(ids: readonly number[]) {
    if (new Set(ids).size !== ids.length) throw new InvalidInputError(`legacy slots: backend ids repeat in ${ids.join(", ")}`);
    this.list = [...ids];
  }

  /** Backend id per slot, slot 1 first. Empty once the last backend is removed. */
  get slots(): readonly number[] {
    return this.list;
  }

  /** Distinct backends, in order of their first slot. */
  backends(): number[] {
    return [...new Set(this.list)];
  }

  remove(id: number): void {
    if (!this.list.includes(id)) throw new InvalidInputError(`legacy slots: backend ${id} is not in the service`);
    const remaining = this.backends().filter((b) => b !== id);
    this.list = remaining.length === 0 ? [] : legacySlots(this.list, remaining.map((b) => ({ id: b, weight: 1 })));
  }

  add(id: number): void {
    if (this.list.includes(id)) throw new InvalidInputError(`legacy slots: backend ${id} is already in the service`);
    this.list = legacySlots(this.list, [...this.backends(), id].map((b) => ({ id: b, weight: 1 })));
  }

  /** The backend for a flow, or undefined when the service has no backends. */
  select(flowHash: number): number | undefined {
    return this.list.length === 0 ? undefined : this.list[randomSlot(flowHash, this.list.length) - 1];
  }
}
