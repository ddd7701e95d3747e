/**
 * Writes a record only when a field agents use changed (Cilium 1.5's
 * operator: thousands of agents receive an event only when it matters to
 * them). The slim encoding of what was last written (or found in the store)
 * is remembered per key; a new input whose slim form encodes the same is
 * dropped, whatever else changed in the full object.
 */
import { parseStateKey } from "../keys.js";
import { encodeRecord, recordTypeOf } from "./codec.js";

export class ChangeFilter {
  private readonly last = new Map<string, string>();

  /** The value to write at `key`, or undefined when it would change nothing agents read. */
  encode(key: string, input: unknown): string | undefined {
    const type = recordTypeOf(parseStateKey(key), key);
    const value = encodeRecord(type, input, key);
    if (this.last.get(key) === value) return undefined;
    this.last.set(key, value);
    return value;
  }

  /** What the store holds at `key` (from a list at start-up), so the first encode after a restart is not a needless write. */
  seed(key: string, storedValue: string): void {
    const type = recordTypeOf(parseStateKey(key), key);
    this.last.set(key, encodeRecord(type, JSON.parse(storedValue), key));
  }

  /** The write failed or the key was deleted: the next encode must write. */
  forget(key: string): void {
    this.last.delete(key);
  }
}
